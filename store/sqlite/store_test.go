package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chatd/chat"

	"github.com/charmbracelet/log"
)

// syncBuffer is a log destination the test may read while the store writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// openAt opens a store at path with cfg's other settings, closing it when the test ends.
func openAt(t testing.TB, path string, cfg Config, opts options) (*SQLite, *syncBuffer) {
	t.Helper()
	cfg.Path = path
	logs := &syncBuffer{}
	s, err := open(cfg, log.New(logs), opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// openTest opens a store in a new temporary directory.
func openTest(t testing.TB, cfg Config) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chat.db")
	s, _ := openAt(t, path, cfg, options{})
	return s, path
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testKey(n int) chat.Key {
	return chat.Key{
		Fingerprint:   fmt.Sprintf("SHA256:key%03d", n),
		Type:          "ssh-ed25519",
		AuthorizedKey: fmt.Sprintf("ssh-ed25519 AAAAkey%03d", n),
	}
}

func flush(t testing.TB, s *SQLite) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func recent(t testing.TB, s *SQLite, n int) []chat.Message {
	t.Helper()
	msgs, err := s.Recent(n)
	if err != nil {
		t.Fatalf("recent(%d): %v", n, err)
	}
	return msgs
}

func texts(msgs []chat.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Text
	}
	return out
}

func seqTexts(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("m%d", i))
	}
	return out
}

func fingerprints(id chat.Identity) []string {
	var out []string
	for _, k := range id.Keys {
		out = append(out, k.Fingerprint)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(c *Config) {}, ""},
		{"zero values mean defaults", func(c *Config) { *c = Config{Path: "x.db"} }, ""},
		{"no path", func(c *Config) { c.Path = "" }, "path is required"},
		{"flush interval at the limit", func(c *Config) { c.FlushInterval = 500 * time.Millisecond }, ""},
		{"flush interval too long", func(c *Config) { c.FlushInterval = 501 * time.Millisecond }, "flush interval"},
		{"negative flush interval", func(c *Config) { c.FlushInterval = -1 }, "flush interval"},
		{"negative batch", func(c *Config) { c.MaxBatch = -1 }, "max batch"},
		{"negative DM queue", func(c *Config) { c.MaxQueuedDMs = -1 }, "max queued"},
		{"negative DM queue per sender", func(c *Config) { c.MaxQueuedDMsPerSender = -1 }, "per sender"},
		{"negative DM queue per address", func(c *Config) { c.MaxQueuedDMsPerAddr = -1 }, "per address"},
		{"negative names per key", func(c *Config) { c.MaxNamesPerKey = -1 }, "names per key"},
		{"negative keys per name", func(c *Config) { c.MaxKeysPerName = -1 }, "keys per name"},
		{"negative keep messages", func(c *Config) { c.KeepMessages = -1 }, "keep messages"},
		{"negative keep for", func(c *Config) { c.KeepFor = -time.Hour }, "keep for"},
		{"keep everything", func(c *Config) { c.KeepMessages, c.KeepFor = 0, 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Path = "x.db"
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Open(Config{}, nil); err == nil {
		t.Fatal("Open without a path succeeded")
	}
}

func TestClaimAndIdentity(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now})
	k1, k2 := testKey(1), testKey(2)

	if id, ok, err := s.Identity("Alice"); err != nil || ok || id.Name != "" {
		t.Fatalf("Identity(unclaimed) = %+v, %v, %v", id, ok, err)
	}
	id, claimed, err := s.Claim("Alice", k1)
	if err != nil || !claimed {
		t.Fatalf("Claim = %v, %v", claimed, err)
	}
	wantTime := time.UnixMilli(clk.Now().UnixMilli())
	if id.Name != "Alice" || !id.Created.Equal(wantTime) || len(id.Keys) != 1 || id.Keys[0].Fingerprint != k1.Fingerprint || !id.Keys[0].Added.Equal(wantTime) {
		t.Fatalf("claimed identity = %+v", id)
	}
	if id.Created.Location() != time.Local {
		t.Errorf("Created is in %v, want Local", id.Created.Location())
	}

	clk.Advance(time.Hour)
	// Another claim, whatever the case and the key, finds the first one unchanged.
	for _, name := range []string{"Alice", "alice", "ALICE", "aLiCe"} {
		got, claimed, err := s.Claim(name, k2)
		if err != nil || claimed || !got.Created.Equal(id.Created) || got.Name != "Alice" || !slices.Equal(fingerprints(got), []string{k1.Fingerprint}) {
			t.Fatalf("Claim(%q) = %+v, %v, %v; want the existing identity", name, got, claimed, err)
		}
		got, ok, err := s.Identity(name)
		if err != nil || !ok || got.Name != "Alice" || !got.Created.Equal(id.Created) || got.Keys[0].AuthorizedKey != k1.AuthorizedKey || got.Keys[0].Type != k1.Type {
			t.Fatalf("Identity(%q) = %+v, %v, %v", name, got, ok, err)
		}
	}

	// A key with its own Added time keeps it; the same key may own several names.
	k1.Added = time.Date(2020, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	bob, claimed, err := s.Claim("bob", k1)
	if err != nil || !claimed || !bob.Keys[0].Added.Equal(k1.Added) || bob.Name != "bob" {
		t.Fatalf("Claim(bob) = %+v, %v, %v", bob, claimed, err)
	}

	for _, name := range []string{"", "al ice", "ålice", "a:b", "x\x00"} {
		if _, _, err := s.Claim(name, k1); err == nil {
			t.Errorf("Claim(%q) succeeded", name)
		}
		if _, ok, err := s.Identity(name); err != nil || ok {
			t.Errorf("Identity(%q) = %v, %v", name, ok, err)
		}
	}
	if _, _, err := s.Claim("carol", chat.Key{}); err == nil {
		t.Error("Claim with a key without fingerprint succeeded")
	}
}

func TestKeys(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now})
	if _, _, err := s.Claim("Alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	type step struct {
		op      string // "propose", "confirm" or "remove"
		name    string
		key     int
		wantErr error
		wantOK  bool  // confirm: the key is active afterwards
		want    []int // Alice's active keys after the step
		pending []int // and her pending ones
	}
	steps := []step{
		{op: "remove", name: "alice", key: 1, wantErr: chat.ErrLastKey, want: []int{1}},
		{op: "propose", name: "ALICE", key: 1, wantErr: chat.ErrKeyExists, want: []int{1}},
		{op: "confirm", name: "alice", key: 2, want: []int{1}}, // never proposed: nothing to confirm
		{op: "propose", name: "alice", key: 2, want: []int{1}, pending: []int{2}},
		{op: "propose", name: "Alice", key: 3, want: []int{1}, pending: []int{2, 3}},
		{op: "propose", name: "Alice", key: 2, want: []int{1}, pending: []int{2, 3}}, // again: renewed
		{op: "propose", name: "nobody", key: 4, wantErr: chat.ErrNotFound, want: []int{1}, pending: []int{2, 3}},
		{op: "confirm", name: "nobody", key: 2, want: []int{1}, pending: []int{2, 3}},
		{op: "confirm", name: "ALICE", key: 2, wantOK: true, want: []int{1, 2}, pending: []int{3}},
		{op: "confirm", name: "alice", key: 2, wantOK: true, want: []int{1, 2}, pending: []int{3}}, // twice: still active
		{op: "remove", name: "nobody", key: 1, wantErr: chat.ErrNotFound, want: []int{1, 2}, pending: []int{3}},
		{op: "remove", name: "alice", key: 9, wantErr: chat.ErrNotFound, want: []int{1, 2}, pending: []int{3}},
		{op: "remove", name: "alice", key: 3, want: []int{1, 2}},                        // a pending key may go
		{op: "confirm", name: "alice", key: 3, want: []int{1, 2}},                       // and is gone
		{op: "remove", name: "alice", key: 1, want: []int{2}},                           // the first key may go while others remain
		{op: "remove", name: "Alice", key: 2, wantErr: chat.ErrLastKey, want: []int{2}}, // but not the last
		{op: "propose", name: "alice", key: 1, want: []int{2}, pending: []int{1}},
		{op: "remove", name: "Alice", key: 2, wantErr: chat.ErrLastKey, want: []int{2}, pending: []int{1}}, // a pending key does not count
		{op: "confirm", name: "alice", key: 1, wantOK: true, want: []int{2, 1}},                            // oldest first: key 1 is now the newest
	}
	for i, st := range steps {
		clk.Advance(time.Second)
		var err error
		switch st.op {
		case "propose":
			err = s.ProposeKey(st.name, testKey(st.key), clk.Now().Add(time.Hour))
		case "confirm":
			var ok bool
			_, ok, err = s.ConfirmKey(st.name, testKey(st.key).Fingerprint)
			if ok != st.wantOK {
				t.Fatalf("step %d: ConfirmKey(%s, key %d) = %v, want %v", i, st.name, st.key, ok, st.wantOK)
			}
		case "remove":
			err = s.RemoveKey(st.name, testKey(st.key).Fingerprint)
		}
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("step %d: %s(%s, key %d) = %v, want %v", i, st.op, st.name, st.key, err, st.wantErr)
		}
		id, ok, err := s.Identity("alice")
		if err != nil || !ok {
			t.Fatalf("step %d: Identity = %v, %v", i, ok, err)
		}
		if got, want := fingerprints(id), keyFPs(st.want); !slices.Equal(got, want) {
			t.Fatalf("step %d: keys %v, want %v", i, got, want)
		}
		if got, want := pendingFPs(id), keyFPs(st.pending); !slices.Equal(got, want) {
			t.Fatalf("step %d: pending %v, want %v", i, got, want)
		}
	}
	if err := s.ProposeKey("alice", chat.Key{}, clk.Now().Add(time.Hour)); err == nil {
		t.Error("ProposeKey without a fingerprint succeeded")
	}
	if err := s.ProposeKey("alice", testKey(5), time.Time{}); err == nil {
		t.Error("ProposeKey without an expiry succeeded: the key would never lapse")
	}
}

func keyFPs(ns []int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, testKey(n).Fingerprint)
	}
	return out
}

func pendingFPs(id chat.Identity) []string {
	var out []string
	for _, k := range id.Pending {
		out = append(out, k.Fingerprint)
	}
	return out
}

// TestClaimRace claims one free name from many goroutines, through two stores on the same file
// (as two chatd processes would): exactly one claim wins, and everyone sees the winner's key.
func TestClaimRace(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), "chat.db")
		a, _ := openAt(t, path, Config{}, options{})
		b, _ := openAt(t, path, Config{}, options{})
		const n = 16
		type result struct {
			id      chat.Identity
			claimed bool
			err     error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				<-start
				id, claimed, err := s.Claim("Alice", testKey(i))
				results[i] = result{id, claimed, err}
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		var winner string
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("round %d: claim %d: %v", round, i, r.err)
			}
			if r.claimed {
				winners++
				winner = testKey(i).Fingerprint
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d claims won, want exactly 1", round, winners)
		}
		for i, r := range results {
			if got := fingerprints(r.id); !slices.Equal(got, []string{winner}) {
				t.Fatalf("round %d: claim %d saw keys %v, want [%s]", round, i, got, winner)
			}
		}
	}
}

func TestRestart(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "data", "chat.db")
	cfg := Config{Path: path, Now: clk.Now, FlushInterval: 500 * time.Millisecond}
	s, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim("Alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := s.ProposeKey("alice", testKey(2), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ConfirmKey("alice", testKey(2).Fingerprint); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.ProposeKey("alice", testKey(3), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before, _, _ := s.Identity("alice")

	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var sent []chat.Message
	for i := range 50 {
		m := chat.Message{At: base.Add(time.Duration(i)*1001*time.Millisecond + 999_999), Kind: chat.KindMessage, From: "Alice", Text: fmt.Sprintf("m%d", i)}
		if i%3 == 0 {
			m.Kind = chat.KindAction
		}
		sent = append(sent, m)
		s.Append(m)
	}
	dm, err := s.QueueDM(chat.DM{At: base, From: "Alice", To: "Bob", Text: "hi bob"})
	if err != nil {
		t.Fatal(err)
	}
	// No Flush: Close must commit what is queued.
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	s, _ = openAt(t, path, cfg, options{})
	after, ok, err := s.Identity("ALICE")
	if err != nil || !ok {
		t.Fatalf("Identity after restart = %v, %v", ok, err)
	}
	sameKey := func(a, b chat.Key) bool {
		return a.Fingerprint == b.Fingerprint && a.Type == b.Type && a.AuthorizedKey == b.AuthorizedKey && a.Added.Equal(b.Added) && a.Expires.Equal(b.Expires)
	}
	if after.Name != before.Name || !after.Created.Equal(before.Created) || !slices.EqualFunc(after.Keys, before.Keys, sameKey) ||
		len(after.Pending) != 1 || !slices.EqualFunc(after.Pending, before.Pending, sameKey) {
		t.Fatalf("identity after restart = %+v, before %+v", after, before)
	}
	got := recent(t, s, 100)
	if len(got) != len(sent) {
		t.Fatalf("%d messages after restart, want %d", len(got), len(sent))
	}
	for i, m := range got {
		w := sent[i]
		wantAt := w.At.Truncate(time.Millisecond)
		if m.Text != w.Text || m.Kind != w.Kind || m.From != w.From || !m.At.Equal(wantAt) || m.At.Location() != time.Local {
			t.Fatalf("message %d after restart = %+v (%v), want %+v at %v", i, m, m.At.Location(), w, wantAt)
		}
		if i > 0 && m.ID <= got[i-1].ID {
			t.Fatalf("ids not increasing: %d after %d", m.ID, got[i-1].ID)
		}
	}
	dms, err := s.TakeDMs("bob")
	if err != nil || len(dms) != 1 || dms[0] != dm {
		t.Fatalf("TakeDMs after restart = %+v, %v; want [%+v]", dms, err, dm)
	}
}

func TestRecent(t *testing.T) {
	s, _ := openTest(t, Config{MaxBatch: 7})
	if got := recent(t, s, 10); len(got) != 0 {
		t.Fatalf("Recent on an empty store = %v", got)
	}
	for i := range 100 {
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	flush(t, s)
	tests := []struct {
		n    int
		want []string
	}{
		{-1, nil},
		{0, nil},
		{1, seqTexts(99, 100)},
		{10, seqTexts(90, 100)},
		{100, seqTexts(0, 100)},
		{1000, seqTexts(0, 100)},
	}
	for _, tt := range tests {
		if got := texts(recent(t, s, tt.n)); !slices.Equal(got, tt.want) {
			t.Errorf("Recent(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestAppendTimestamps(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now})
	s.Append(chat.Message{ID: 42, Kind: chat.KindAction, From: "a", Text: "zero time"})
	flush(t, s)
	got := recent(t, s, 1)
	if len(got) != 1 || got[0].ID == 42 || got[0].ID == 0 || !got[0].At.Equal(clk.Now().Truncate(time.Millisecond)) || got[0].Kind != chat.KindAction {
		t.Fatalf("Recent = %+v; want the clock's time to the ms and a store-assigned id", got)
	}
}

func TestFlush(t *testing.T) {
	// With the longest interval, only Flush explains a prompt commit.
	s, _ := openTest(t, Config{FlushInterval: 500 * time.Millisecond, MaxBatch: 10})
	flush(t, s) // nothing queued
	for i := range 25 {
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	flush(t, s)
	if got := texts(recent(t, s, 100)); !slices.Equal(got, seqTexts(0, 25)) {
		t.Fatalf("after Flush, Recent = %v", got)
	}

	// Concurrent appenders and flushers: each Flush covers what its goroutine appended before.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 30 {
				text := fmt.Sprintf("g%d-%d", g, i)
				s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: text})
				if i%10 == 9 {
					if err := s.Flush(context.Background()); err != nil {
						t.Errorf("flush: %v", err)
						return
					}
					msgs, err := s.Recent(200)
					if err != nil || !slices.Contains(texts(msgs), text) {
						t.Errorf("%s not committed after Flush (err %v)", text, err)
					}
				}
			}
		})
	}
	wg.Wait()
	if got := len(recent(t, s, 1000)); got != 25+4*30 {
		t.Fatalf("%d messages, want %d", got, 25+4*30)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "late"})
	if err := s.Flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush(cancelled) = %v", err)
	}
}

// hangGuard bounds a poll for something that must happen, only so that a bug fails the test
// with a message instead of hanging it: it asserts no speed.
const hangGuard = 20 * time.Second

// waitUntil polls cond until it holds, failing the test with what it waited for after hangGuard.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", hangGuard, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWriterCommitsWithoutFlush checks that the writer commits on its own, without a Flush:
// Recent is polled.
func TestWriterCommitsWithoutFlush(t *testing.T) {
	s, _ := openTest(t, Config{FlushInterval: 10 * time.Millisecond})
	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "one"})
	waitUntil(t, "the writer to commit a message nobody flushed", func() bool { return len(recent(t, s, 1)) > 0 })
}

// lockDB takes SQLite's write lock on path from another connection, as another process would,
// and returns the function that releases it.
func lockDB(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), `INSERT INTO messages(at, kind, sender, text) VALUES (0, 1, 'other', 'other process')`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := conn.ExecContext(context.Background(), `COMMIT`); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
}

// TestAppendNeverBlocks holds the database's write lock from another connection while the
// writer is stuck in a commit: Append still returns at once, because it never touches the db.
func TestAppendNeverBlocks(t *testing.T) {
	s, path := openTest(t, Config{})
	release := lockDB(t, path)

	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "m0"})
	// The writer takes m0 at once for the Flush and waits for the lock: Flush cannot finish.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush while the db is locked = %v, want a deadline error", err)
	}
	for i := 1; i < 20_000; i++ { // a hang here is the failure
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	release()
	flush(t, s)
	got := texts(recent(t, s, 30_000))
	if want := append([]string{"other process"}, seqTexts(0, 20_000)...); !slices.Equal(got, want) {
		t.Fatalf("got %d messages (%v...), want %d", len(got), got[:min(3, len(got))], len(want))
	}
}

// TestBacklogBound drops the oldest messages once the backlog is full, counts and logs them, and
// keeps the rest.
func TestBacklogBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s, logs := openAt(t, path, Config{}, options{maxBacklog: 100})
	release := lockDB(t, path)
	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "m0"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	s.Flush(ctx) // the writer now holds m0, stuck on the lock
	cancel()
	for i := 1; i <= 150; i++ {
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	// The backlog (m1...) reached 100 at m100: m1..m10 went; at m110, m11..m20; ...
	release()
	err := s.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("Flush after drops = %v, want an error about dropped messages", err)
	}
	got := texts(recent(t, s, 1000))
	want := append([]string{"other process", "m0"}, seqTexts(51, 151)...)
	if !slices.Equal(got, want) {
		t.Fatalf("after drops: %v\nwant %v", got, want)
	}
	if !strings.Contains(logs.String(), "dropped=50") {
		t.Errorf("drops not logged: %s", logs)
	}
	flush(t, s) // nothing dropped since
}

func TestClosed(t *testing.T) {
	s, path := openTest(t, Config{})
	logs := &syncBuffer{}
	s.log = log.New(logs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "late 1"})
	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "late 2"})
	if n := strings.Count(logs.String(), "after the store was closed"); n != 1 {
		t.Errorf("Append after Close logged %d times, want once:\n%s", n, logs)
	}
	calls := map[string]error{}
	_, _, calls["Identity"] = s.Identity("a")
	_, _, calls["Claim"] = s.Claim("a", testKey(1))
	calls["ProposeKey"] = s.ProposeKey("a", testKey(1), time.Now())
	_, _, calls["ConfirmKey"] = s.ConfirmKey("a", "x")
	_, calls["NamesOfKey"] = s.NamesOfKey("x")
	calls["RemoveKey"] = s.RemoveKey("a", "x")
	_, calls["Recent"] = s.Recent(1)
	_, calls["QueueDM"] = s.QueueDM(chat.DM{From: "a", To: "b"})
	_, calls["TakeDMs"] = s.TakeDMs("b")
	calls["Flush"] = s.Flush(context.Background())
	for name, err := range calls {
		if !errors.Is(err, errClosed) {
			t.Errorf("%s after Close = %v, want an error", name, err)
		}
	}
	s2, _ := openAt(t, path, Config{}, options{})
	if got := recent(t, s2, 10); len(got) != 0 {
		t.Errorf("messages appended after Close were stored: %v", got)
	}
}

func TestDMs(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{MaxQueuedDMs: 3, Now: clk.Now})
	var queued []chat.DM
	for i, to := range []string{"Bob", "bob", "BOB"} {
		clk.Advance(time.Second)
		dm, err := s.QueueDM(chat.DM{From: "alice", To: to, Text: fmt.Sprintf("dm%d", i)})
		if err != nil {
			t.Fatalf("QueueDM %d: %v", i, err)
		}
		if dm.ID == 0 || !dm.At.Equal(clk.Now().Truncate(time.Millisecond)) || dm.To != to {
			t.Fatalf("QueueDM returned %+v", dm)
		}
		queued = append(queued, dm)
	}
	if _, err := s.QueueDM(chat.DM{From: "alice", To: "bOb", Text: "one too many"}); !errors.Is(err, chat.ErrQueueFull) {
		t.Fatalf("fourth QueueDM = %v, want ErrQueueFull", err)
	}
	carol, err := s.QueueDM(chat.DM{At: time.UnixMilli(5), From: "alice", To: "carol", Text: "for carol"})
	if err != nil || !carol.At.Equal(time.UnixMilli(5)) {
		t.Fatalf("QueueDM(carol) = %+v, %v", carol, err)
	}
	if _, err := s.QueueDM(chat.DM{From: "alice", To: "no one", Text: "x"}); err == nil {
		t.Fatal("QueueDM to an invalid name succeeded")
	}

	if got, err := s.TakeDMs("nobody"); err != nil || len(got) != 0 {
		t.Fatalf("TakeDMs(nobody) = %v, %v", got, err)
	}
	got, err := s.TakeDMs("BoB")
	if err != nil || !slices.Equal(got, queued) {
		t.Fatalf("TakeDMs(bob) = %+v, %v\nwant %+v", got, err, queued)
	}
	if got, err := s.TakeDMs("bob"); err != nil || len(got) != 0 {
		t.Fatalf("second TakeDMs(bob) = %v, %v", got, err)
	}
	// The queue has room again; carol's message was not touched.
	if _, err := s.QueueDM(chat.DM{From: "alice", To: "bob", Text: "again"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TakeDMs("carol"); err != nil || !slices.Equal(got, []chat.DM{carol}) {
		t.Fatalf("TakeDMs(carol) = %v, %v", got, err)
	}
}

// TestTakeDMsConcurrent: each queued message is taken exactly once, whoever takes it.
func TestTakeDMsConcurrent(t *testing.T) {
	s, _ := openTest(t, Config{MaxQueuedDMs: 1000, MaxQueuedDMsPerSender: 1000})
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			if _, err := s.QueueDM(chat.DM{From: "a", To: "bob", Text: fmt.Sprint(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 3 {
		wg.Go(func() {
			for range 100 {
				dms, err := s.TakeDMs("bob")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, dm := range dms {
					seen[dm.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rest, err := s.TakeDMs("bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, dm := range rest {
		seen[dm.ID]++
	}
	if len(seen) != 200 {
		t.Fatalf("%d distinct messages taken, want 200", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %d taken %d times", id, n)
		}
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	path := filepath.Join(dir, "chat.db")
	s, _ := openAt(t, path, Config{}, options{})
	s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "x"})
	flush(t, s)
	for p, want := range map[string]os.FileMode{
		dir:               0o700 | os.ModeDir,
		filepath.Dir(dir): 0o700 | os.ModeDir,
		path:              0o600,
		path + "-wal":     0o600,
		path + "-shm":     0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}

	// An existing file keeps its mode, and a path needing escapes in a URI works.
	odd := filepath.Join(t.TempDir(), "we?ird #50% dir", "chat.db")
	if err := os.MkdirAll(filepath.Dir(odd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(odd, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	s2, _ := openAt(t, odd, Config{}, options{})
	if _, _, err := s2.Claim("a", testKey(1)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(odd); err != nil || fi.Mode() != 0o640 || fi.Size() == 0 {
		t.Fatalf("existing file: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(odd)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("existing dir: %v, %v", fi.Mode(), err)
	}
}

// writeV1 makes a chatd database with some content at path, closed.
func writeV1(t *testing.T, path string, messages int) {
	t.Helper()
	s, err := open(Config{Path: path}, nil, options{migrations: schema()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	// Raw statements: today's methods expect today's schema.
	if _, err := s.db.Exec(`INSERT INTO identities(name_key, name, created) VALUES ('alice', 'alice', 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO keys(identity, fingerprint, type, authorized_key, added) VALUES ('alice', ?, 'ssh-ed25519', ?, 1)`,
		testKey(1).Fingerprint, testKey(1).AuthorizedKey); err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		s.Append(chat.Message{Kind: chat.KindMessage, From: "alice", Text: fmt.Sprintf("m%d %s", i, strings.Repeat("x", 200))})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// execRaw runs statements on path with a plain connection, not through the store.
func execRaw(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestRefusedFiles: files that are not a usable chatd database are refused with a helpful error,
// and left byte for byte as they were.
func TestRefusedFiles(t *testing.T) {
	tests := []struct {
		name    string
		make    func(t *testing.T, path string)
		wantErr error
		wantMsg []string
	}{
		{"garbage", func(t *testing.T, path string) {
			garbage := bytes.Repeat([]byte("this is not an SQLite database\n"), 300)
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, []string{"restore a backup", "move the file away"}},
		{"truncated header", func(t *testing.T, path string) {
			writeV1(t, path, 10)
			if err := os.Truncate(path, 50); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, []string{"restore a backup"}},
		{"truncated in half", func(t *testing.T, path string) {
			writeV1(t, path, 2000)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, []string{"restore a backup"}},
		{"damaged page", func(t *testing.T, path string) {
			writeV1(t, path, 2000)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := 4096 * 3; i < 4096*3+512; i++ { // inside a b-tree page
				b[i] = 0xA5
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, []string{"restore a backup"}},
		{"another program's database", func(t *testing.T, path string) {
			execRaw(t, path, `CREATE TABLE photos (id INTEGER PRIMARY KEY, data BLOB)`, `INSERT INTO photos(data) VALUES (x'00ff')`)
		}, ErrCorrupt, []string{"another program", `"photos"`}},
		{"newer schema", func(t *testing.T, path string) {
			writeV1(t, path, 10)
			execRaw(t, path, `PRAGMA user_version = 7`)
		}, ErrNewerSchema, []string{"schema version 7", "knows up to " + fmt.Sprint(len(schema())), "upgrade chatd or restore a backup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "chat.db")
			tt.make(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			filesBefore, _ := filepath.Glob(filepath.Join(dir, "*"))

			s, err := Open(Config{Path: path}, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
			for _, want := range append(tt.wantMsg, path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			t.Logf("error: %v", err)

			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("the refused file was modified")
			}
			if filesAfter, _ := filepath.Glob(filepath.Join(dir, "*")); !slices.Equal(filesBefore, filesAfter) {
				t.Errorf("files before %v, after %v", filesBefore, filesAfter)
			}
		})
	}
}

func TestEmptyFileIsNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := openAt(t, path, Config{}, options{})
	if _, claimed, err := s.Claim("a", testKey(1)); err != nil || !claimed {
		t.Fatal(claimed, err)
	}
}

// TestMigrationUpgrade opens a version 1 database, with a private message queued the way version
// 1 queued them, with today's code: the migrations run once, and the data survives them.
func TestMigrationUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	writeV1(t, path, 5)
	execRaw(t, path, `INSERT INTO dms(at, sender, recipient_key, recipient, text) VALUES (1, 'Carol', 'bob', 'Bob', 'from v1')`)

	latest := len(schema())
	for round := range 2 { // the second open finds nothing to do
		s, logs := openAt(t, path, Config{MaxQueuedDMsPerSender: 2}, options{})
		var version int
		if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != latest {
			t.Fatalf("user_version = %d, %v; want %d", version, err, latest)
		}
		if _, err := s.AddBan(chat.Ban{Kind: chat.BanName, Value: "mallory", Reason: "spam", By: "op"}); err != nil {
			t.Fatalf("the bans table (v2): %v", err)
		}
		id, ok, err := s.Identity("alice")
		if !ok || err != nil || !slices.Equal(fingerprints(id), []string{testKey(1).Fingerprint}) || len(id.Pending) != 0 {
			t.Fatalf("alice after the upgrade: %+v, %v, %v; want her key active", id, ok, err)
		}
		if names, err := s.NamesOfKey(testKey(1).Fingerprint); err != nil || !slices.Equal(names, []string{"alice"}) {
			t.Fatalf("NamesOfKey after the upgrade = %v, %v", names, err)
		}
		if got := len(recent(t, s, 100)); got != 5 {
			t.Fatalf("%d messages after the upgrade, want 5", got)
		}
		if round == 0 {
			// v1's message counts towards its sender's cap (v3 fills in sender_key): one more fits.
			if _, err := s.QueueDM(chat.DM{From: "carol", To: "bob", Text: "from v3"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.QueueDM(chat.DM{From: "CAROL", To: "bob", Text: "one too many"}); !errors.Is(err, chat.ErrSenderQueueFull) {
				t.Fatalf("third message from carol = %v, want ErrSenderQueueFull", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Log(logs)
	}
	// Code that knows only an older version now refuses the file.
	if _, err := open(Config{Path: path}, nil, options{migrations: schema()[:latest-1]}); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("older code opening a v%d database: %v", latest, err)
	}
}

// TestFailedMigrationRollsBack: a migration that fails leaves the database at the version before.
func TestFailedMigrationRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	writeV1(t, path, 1)
	v1 := schema()[:1]
	bad := append(v1[:1:1], migration{"broken", `CREATE TABLE t2 (x INTEGER); CREATE TABLE messages (x INTEGER)`})
	if _, err := open(Config{Path: path}, nil, options{migrations: bad}); err == nil || !strings.Contains(err.Error(), "migrate to version 2") {
		t.Fatalf("open with a broken migration = %v", err)
	}
	s, _ := openAt(t, path, Config{}, options{migrations: v1})
	var version, t2 int
	if err := s.db.QueryRow(`SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema WHERE name = 't2')`).Scan(&version, &t2); err != nil {
		t.Fatal(err)
	}
	if version != 1 || t2 != 0 {
		t.Fatalf("after a failed migration: version %d, t2 tables %d; want 1, 0", version, t2)
	}
}

func TestWALMode(t *testing.T) {
	s, _ := openTest(t, Config{})
	var mode string
	var fk, sync, busy int
	if err := s.db.QueryRow(`SELECT (SELECT journal_mode FROM pragma_journal_mode), (SELECT foreign_keys FROM pragma_foreign_keys),
		(SELECT synchronous FROM pragma_synchronous), (SELECT timeout FROM pragma_busy_timeout)`).Scan(&mode, &fk, &sync, &busy); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || fk != 1 || sync != 1 || busy != int(busyTimeout.Milliseconds()) {
		t.Fatalf("journal_mode %s, foreign_keys %d, synchronous %d, busy_timeout %d", mode, fk, sync, busy)
	}
}

// TestQueryPlans guards the schema's indexes: the newest-first history read walks the primary
// key without sorting, and the DM queue is found through its index.
func TestQueryPlans(t *testing.T) {
	s, _ := openTest(t, Config{})
	tests := []struct {
		query   string
		want    string
		notWant string
	}{
		{`SELECT id, at, kind, sender, text FROM messages ORDER BY id DESC LIMIT 10`, "SCAN messages", "TEMP B-TREE"},
		{`SELECT id, at, sender, recipient, text FROM dms WHERE recipient_key = 'x' ORDER BY id`, "INDEX dms_recipient", "TEMP B-TREE"},
		{`SELECT count(*) FROM dms WHERE recipient_key = 'x'`, "INDEX dms_recipient", "SCAN"},
		{`SELECT i.name FROM keys k JOIN identities i ON i.name_key = k.identity WHERE k.fingerprint = 'x' AND k.expires = 0 ORDER BY i.name_key`,
			"INDEX keys_fingerprint", "SCAN k"},
		{`SELECT EXISTS (SELECT 1 FROM keys WHERE expires != 0 AND expires <= 5)`, "INDEX keys_pending", "SCAN keys"},
		{`DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT 500) AND (id <= 7 OR at < 9)`, "SEARCH messages", "TEMP B-TREE"},
	}
	for _, tt := range tests {
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN ` + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "; ")
		if !strings.Contains(all, tt.want) || strings.Contains(all, tt.notWant) {
			t.Errorf("%s\nplan: %s\nwant %q and no %q", tt.query, all, tt.want, tt.notWant)
		}
	}
}

// TestCommitRetry: a batch whose commit fails is retried, not lost, and the failure is logged.
func TestCommitRetry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s, logs := openAt(t, path, Config{}, options{})
	execRaw(t, path, `ALTER TABLE messages RENAME TO messages_away`) // every insert now fails
	for i := range 10 {
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	waitUntil(t, `the writer to log a failed commit ("will retry")`, func() bool { return strings.Contains(logs.String(), "will retry") })
	execRaw(t, path, `ALTER TABLE messages_away RENAME TO messages`)
	flush(t, s)
	if got := texts(recent(t, s, 100)); !slices.Equal(got, seqTexts(0, 10)) {
		t.Fatalf("after retrying: %v", got)
	}
}

// TestCloseGivesUp: Close does not hang on a database that refuses the queued messages: it
// gives up after a retry and says how many messages were lost.
func TestCloseGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s, logs := openAt(t, path, Config{MaxBatch: 10}, options{})
	execRaw(t, path, `ALTER TABLE messages RENAME TO messages_away`)
	for i := range 25 {
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "25 messages could not be committed") {
		t.Fatalf("Close = %v\n%s", err, logs)
	}
	if n := strings.Count(logs.String(), "cannot commit messages at close"); n != 1 {
		t.Errorf("%d batches tried at close after the first failed for good, want 1:\n%s", n, logs)
	}
}

func TestBans(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s, _ := openTest(t, Config{Now: func() time.Time { return now }})
	forever, err := s.AddBan(chat.Ban{Kind: chat.BanKey, Value: "SHA256:abc", Reason: "spam", By: "op"})
	if err != nil || forever.ID == 0 || !forever.Created.Equal(now) {
		t.Fatalf("AddBan = %+v, %v", forever, err)
	}
	timed, err := s.AddBan(chat.Ban{Kind: chat.BanIP, Value: "192.0.2.0/24", By: "op", Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBan(chat.Ban{Kind: "bogus", Value: "x"}); err == nil {
		t.Error("a ban of an unknown kind was stored")
	}
	bans, err := s.Bans()
	if err != nil || len(bans) != 2 || bans[1].Expires.UnixMilli() != timed.Expires.UnixMilli() || bans[0].Reason != "spam" {
		t.Fatalf("Bans = %+v, %v", bans, err)
	}
	now = now.Add(2 * time.Hour) // the timed ban expires and is forgotten
	if bans, _ := s.Bans(); len(bans) != 1 || bans[0].ID != forever.ID {
		t.Fatalf("after expiry: %+v", bans)
	}
	if _, err := s.RemoveBan(timed.ID); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("removing an expired ban: %v", err)
	}
	got, err := s.RemoveBan(forever.ID)
	if err != nil || got.Value != "SHA256:abc" {
		t.Fatalf("RemoveBan = %+v, %v", got, err)
	}
	if bans, _ := s.Bans(); len(bans) != 0 {
		t.Errorf("bans left: %+v", bans)
	}
}

func TestSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s, _ := openAt(t, path, Config{}, options{})
	if _, ok, err := s.Setting("motd"); ok || err != nil {
		t.Fatalf("unset setting: %v %v", ok, err)
	}
	for _, v := range []string{"first", "second"} {
		if err := s.SetSetting("motd", v); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, _ = openAt(t, path, Config{}, options{})
	if v, ok, err := s.Setting("motd"); v != "second" || !ok || err != nil {
		t.Errorf("after a restart: %q %v %v", v, ok, err)
	}
}
