package sqlite

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chatd/chat"
)

func TestParseKeep(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in       string
		messages int
		age      time.Duration
		wantErr  string
		format   string // FormatKeep of the result, when not in
	}{
		{in: "100000,365d", messages: 100_000, age: 365 * day},
		{in: "365d, 100000", messages: 100_000, age: 365 * day, format: "100000,365d"},
		{in: "100000", messages: 100_000},
		{in: "30d", age: 30 * day},
		{in: "1y", age: 365 * day, format: "365d"},
		{in: "2w", age: 14 * day, format: "14d"},
		{in: "1y6w", age: (365 + 42) * day, format: "407d"},
		{in: "36h", age: 36 * time.Hour},
		{in: "90m", age: 90 * time.Minute},
		{in: "45s", age: 45 * time.Second},
		{in: "all"},
		{in: "ALL", format: "all"},
		{in: "", wantErr: "empty"},
		{in: "0", wantErr: "positive"},
		{in: "-5", wantErr: "positive"},
		{in: "0d", wantErr: "positive"},
		{in: "10,20", wantErr: "two counts"},
		{in: "1d,2d", wantErr: "two ages"},
		{in: "10x", wantErr: "neither a count"},
		{in: "d", wantErr: "neither a count"},
		{in: "1.5d", wantErr: "neither a count"},
		{in: "100000,", wantErr: "neither a count"},
		{in: "200y", wantErr: "more than 100 years"},
		{in: "9999999d", wantErr: "neither a count"},
	}
	for _, tt := range tests {
		messages, age, err := ParseKeep(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKeep(%q) = %d, %v, %v; want an error containing %q", tt.in, messages, age, err, tt.wantErr)
			}
			continue
		}
		if err != nil || messages != tt.messages || age != tt.age {
			t.Errorf("ParseKeep(%q) = %d, %v, %v; want %d, %v", tt.in, messages, age, err, tt.messages, tt.age)
			continue
		}
		want := tt.format
		if want == "" {
			want = tt.in
		}
		if got := FormatKeep(messages, age); got != want {
			t.Errorf("FormatKeep(%d, %v) = %q, want %q", messages, age, got, want)
		}
	}
	if got := FormatKeep(DefaultKeepMessages, DefaultKeepFor); got != "100000,365d" {
		t.Errorf("the defaults format as %q", got)
	}
}

// pruneResult is the outcome of one prune pass.
type pruneResult struct {
	deleted int
	err     error
}

// openPruned opens a store whose pruner runs only when asked (and at start; and when the writer
// asks, if popts.every is set), reporting each pass on the returned channel; the pass at start
// has been waited for.
func openPruned(t *testing.T, cfg Config, popts pruneOptions) (*SQLite, string, chan pruneResult) {
	t.Helper()
	passes := make(chan pruneResult, 100)
	popts.interval = time.Hour
	if popts.every == 0 {
		popts.every = 1 << 40
	}
	popts.done = func(n int, err error) { passes <- pruneResult{n, err} }
	path := filepath.Join(t.TempDir(), "chat.db")
	s, _ := openAt(t, path, cfg, options{prune: popts})
	if r := <-passes; r.err != nil {
		t.Fatalf("the pass at start: %v", r.err)
	}
	return s, path, passes
}

// pruneNow runs a pass and returns what it deleted.
func pruneNow(t *testing.T, s *SQLite, passes chan pruneResult) int {
	t.Helper()
	s.p.request()
	select {
	case r := <-passes:
		if r.err != nil {
			t.Fatalf("prune: %v", r.err)
		}
		return r.deleted
	case <-time.After(hangGuard):
		t.Fatalf("no prune pass within %v of asking", hangGuard)
		return 0
	}
}

func appendN(s *SQLite, from, to int, at func(i int) time.Time) {
	for i := from; i < to; i++ {
		m := chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)}
		if at != nil {
			m.At = at(i)
		}
		s.Append(m)
	}
}

// TestPruneByCount keeps the newest KeepMessages, deleting the rest in chunks.
func TestPruneByCount(t *testing.T) {
	s, _, passes := openPruned(t, Config{KeepMessages: 50}, pruneOptions{chunk: 7})
	appendN(s, 0, 40, nil)
	flush(t, s)
	if n := pruneNow(t, s, passes); n != 0 {
		t.Fatalf("under the limit, a pass deleted %d", n)
	}
	appendN(s, 40, 200, nil)
	flush(t, s)
	if n := pruneNow(t, s, passes); n != 150 {
		t.Fatalf("a pass deleted %d, want 150 (in chunks of 7)", n)
	}
	if got := texts(recent(t, s, 1000)); !slices.Equal(got, seqTexts(150, 200)) {
		t.Fatalf("after the prune: %v", got)
	}
}

// TestPruneByAge deletes what is older than KeepFor, by the store's clock, and keeps the rest.
func TestPruneByAge(t *testing.T) {
	clk := newClock()
	s, _, passes := openPruned(t, Config{KeepFor: time.Hour, Now: clk.Now}, pruneOptions{chunk: 3})
	start := clk.Now()
	appendN(s, 0, 20, func(i int) time.Time { return start.Add(time.Duration(i) * 10 * time.Minute) }) // m0 .. m19, 10 min apart
	flush(t, s)
	if n := pruneNow(t, s, passes); n != 0 {
		t.Fatalf("nothing is an hour old yet, and a pass deleted %d", n)
	}
	clk.Advance(2 * time.Hour) // m0..m5 are over an hour old; m6 is exactly an hour old and stays
	if n := pruneNow(t, s, passes); n != 6 {
		t.Fatalf("a pass deleted %d, want 6", n)
	}
	if got := texts(recent(t, s, 100)); !slices.Equal(got, seqTexts(6, 20)) {
		t.Fatalf("after the prune: %v", got)
	}
}

// TestPruneKeepsWhatTheRoomLoads: a limit above the room's 1000 messages leaves those alone.
func TestPruneKeepsWhatTheRoomLoads(t *testing.T) {
	const roomHistory = 1000 // room.HistorySize
	s, _, passes := openPruned(t, Config{KeepMessages: 1500}, pruneOptions{})
	appendN(s, 0, 3000, nil)
	flush(t, s)
	before := recent(t, s, roomHistory)
	if n := pruneNow(t, s, passes); n != 1500 {
		t.Fatalf("a pass deleted %d, want 1500", n)
	}
	after := recent(t, s, roomHistory)
	if !slices.Equal(after, before) || !slices.Equal(texts(after), seqTexts(2000, 3000)) {
		t.Fatalf("the newest %d changed: %v...", roomHistory, texts(after)[:3])
	}
	if got := len(recent(t, s, 5000)); got != 1500 {
		t.Fatalf("%d messages kept, want 1500", got)
	}
}

// TestWriterAsksForPrunes: a flood is pruned without waiting for the interval, once the writer
// has committed pruneEvery messages.
func TestWriterAsksForPrunes(t *testing.T) {
	s, _, passes := openPruned(t, Config{KeepMessages: 10, MaxBatch: 25}, pruneOptions{every: 100})
	appendN(s, 0, 250, nil)
	flush(t, s)
	deleted := 0
	deadline := time.After(hangGuard)
	for deleted == 0 {
		select {
		case r := <-passes:
			if r.err != nil {
				t.Fatal(r.err)
			}
			deleted += r.deleted
		case <-deadline:
			t.Fatalf("no prune pass within %v of the writer committing 250 messages (it asks every 100)", hangGuard)
		}
	}
}

// TestNoLimitsKeepEverything: with both limits off, nothing is ever deleted.
func TestNoLimitsKeepEverything(t *testing.T) {
	clk := newClock()
	s, _, passes := openPruned(t, Config{Now: clk.Now}, pruneOptions{})
	appendN(s, 0, 100, func(int) time.Time { return clk.Now() })
	flush(t, s)
	clk.Advance(100 * 365 * 24 * time.Hour)
	if n := pruneNow(t, s, passes); n != 0 || len(recent(t, s, 1000)) != 100 {
		t.Fatalf("without limits a pass deleted %d", n)
	}
}

// TestAppendNeverWaitsOnPrune holds a prune inside its delete, behind another process's write
// lock (as TestAppendNeverBlocks does the writer): Append still returns at once, and once the
// lock goes everything is committed and the prune finishes.
func TestAppendNeverWaitsOnPrune(t *testing.T) {
	inChunk := make(chan struct{}, 1)
	s, path, passes := openPruned(t, Config{KeepMessages: 10}, pruneOptions{beforeChunk: func() {
		select {
		case inChunk <- struct{}{}:
		default:
		}
	}})
	appendN(s, 0, 100, nil)
	flush(t, s)
	release := lockDB(t, path)
	s.p.request()
	// The pruner holds the store's write mutex; its DELETE waits for the lock.
	<-inChunk
	for i := 100; i < 20_000; i++ { // a hang here is the failure
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	release()
	flush(t, s)
	// The held pass ends (or failed, had the lock outlasted SQLite's busy timeout); then one
	// more pass brings the history down to the limit.
	<-passes
	pruneNow(t, s, passes)
	if got := texts(recent(t, s, 30_000)); !slices.Equal(got, seqTexts(19_990, 20_000)) {
		t.Fatalf("after the prune: %d messages (%v...)", len(got), got[:min(3, len(got))])
	}
}

// TestExpiredKeysAreDeleted: the background pass forgets lapsed proposals.
func TestExpiredKeysAreDeleted(t *testing.T) {
	clk := newClock()
	passes := make(chan error, 10)
	s, _ := openAt(t, t.TempDir()+"/chat.db", Config{Now: clk.Now}, options{prune: pruneOptions{
		interval: time.Hour,
		done:     func(_ int, err error) { passes <- err },
	}})
	<-passes // the pass at start
	if _, _, err := s.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	for i, ttl := range []time.Duration{time.Minute, time.Hour} {
		if err := s.ProposeKey("alice", testKey(2+i), clk.Now().Add(ttl)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	s.p.request()
	if err := <-passes; err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.db.QueryRow(`SELECT count(*) FROM keys WHERE expires != 0`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d pending rows after the pass, want 1 (%v)", rows, err)
	}
}

// TestPruneByCountPerRoom: KeepMessages is per room: a busy room loses its oldest messages, a
// quiet one keeps all of its own, and only rooms with new messages are counted again.
func TestPruneByCountPerRoom(t *testing.T) {
	s, _, passes := openPruned(t, Config{KeepMessages: 10}, pruneOptions{chunk: 4})
	for _, r := range []string{"#busy", "#quiet"} {
		if err := s.SaveRoom(chat.Room{Name: r}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		s.Append(chat.Message{Room: "#busy", Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
		if i%10 == 0 {
			s.Append(chat.Message{Room: "#quiet", Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("q%d", i)})
		}
	}
	flush(t, s)
	if n := pruneNow(t, s, passes); n != 50 {
		t.Fatalf("a pass deleted %d, want 50", n)
	}
	if got := texts(recentIn(t, s, "#busy", 100)); !slices.Equal(got, seqTexts(50, 60)) {
		t.Fatalf("#busy after the prune: %v", got)
	}
	if got := texts(recentIn(t, s, "#quiet", 100)); len(got) != 6 {
		t.Fatalf("#quiet after the prune: %v, want its 6 messages", got)
	}
	// Ten more in #quiet: it is over its limit, and was the only room written to.
	for i := range 10 {
		s.Append(chat.Message{Room: "#quiet", Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("r%d", i)})
	}
	flush(t, s)
	if n := pruneNow(t, s, passes); n != 6 {
		t.Fatalf("a pass deleted %d, want 6", n)
	}
	if got := texts(recentIn(t, s, "#quiet", 100)); len(got) != 10 || got[0] != "r0" {
		t.Fatalf("#quiet after the prune: %v", got)
	}
	if n := pruneNow(t, s, passes); n != 0 {
		t.Fatalf("a pass with nothing new deleted %d", n)
	}
}
