package natsjs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"chatd/chat"
	"chatd/store/natsjs/natstest"

	"github.com/nats-io/nuid"
)

// TestBacklogWhileNATSIsDown: with NATS gone, Append still returns at once; the backlog holds
// MaxBacklog lines (and the batch in flight) and drops those that find it full, saying so in
// the log (once for each stretch of drops) and once to Flush; when NATS is back, the lines held are stored, each once, in
// order.
func TestBacklogWhileNATSIsDown(t *testing.T) {
	srv := natstest.Start(t)
	const backlog, inFlight, sent = 10, 5, 50
	s, logs := openStore(t, srv.URL(), Config{MaxBacklog: backlog, MaxInFlight: inFlight, Timeout: 2 * time.Second})
	saveRoom(t, s, "#r")
	srv.Stop()
	for i := range sent {
		s.Append(chat.Message{Room: "#r", Kind: chat.KindMessage, From: "a", Text: fmt.Sprint("m", i)})
	}
	srv.Start()
	err := s.Flush(t.Context())
	got, rerr := s.Recent("#r", 100)
	if rerr != nil {
		t.Fatal(rerr)
	}
	kept := len(got)
	if kept < backlog || kept > backlog+inFlight {
		t.Fatalf("%d lines stored, want the %d the backlog holds and up to %d in flight", kept, backlog, inFlight)
	}
	// The first lines filled the backlog; a later few got in when the publisher took a batch
	// out of it. Each is stored once, in order.
	last := -1
	for i, m := range got {
		var n int
		if _, err := fmt.Sscanf(m.Text, "m%d", &n); err != nil || n <= last || i < backlog && n != i {
			t.Fatalf("stored %v, want m0..m%d then later ones, once each, in order", texts(got), backlog-1)
		}
		last = n
	}
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d messages were dropped", sent-kept)) {
		t.Fatalf("Flush = %v, want %d messages dropped", err, sent-kept)
	}
	// Logged once per stretch of drops: a line let in between starts another.
	if n := strings.Count(logs.String(), "history backlog full"); n < 1 || n > 1+kept-backlog {
		t.Errorf("the full backlog was logged %d times, want 1 to %d:\n%s", n, 1+kept-backlog, logs)
	}
	flushOK(t, s) // said once
}

// TestRestart: a store goes on across its NATS server's restart: its rooms' watcher, started
// again on the reconnection, sees what another store writes afterwards.
func TestRestart(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoNodes(t, srv.URL())
	saveRoom(t, a, "#before")
	srv.Stop()
	srv.Start()
	saveRoom(t, a, "#after")
	start := time.Now()
	for _, ok := b.cache.get("#after"); !ok; _, ok = b.cache.get("#after") {
		if time.Since(start) > time.Minute {
			t.Fatal("b's watcher never saw #after")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("b's watcher saw a room made after the restart in %v", time.Since(start))
	rooms, err := b.Rooms()
	if err != nil || !slices.ContainsFunc(rooms, func(r chat.Room) bool { return r.Name == "#after" }) {
		t.Fatalf("b: Rooms = %+v, %v; want #after", rooms, err)
	}
	b.Append(chat.Message{Room: "#after", Kind: chat.KindMessage, From: "b", Text: "hi"})
	flushOK(t, b)
	if got, err := a.Recent("#after", 1); err != nil || len(got) != 1 {
		t.Fatalf("a: Recent = %v, %v", got, err)
	}
}

// TestBounds: what a peer can make the store keep or look up is bounded, and too much is refused
// with an error, never a crash.
func TestBounds(t *testing.T) {
	srv := natstest.Start(t)
	s, logs := openStore(t, srv.URL(), Config{})
	long := "SHA256:" + strings.Repeat("x", maxFingerprintLen)
	if _, _, err := s.Claim("alice", chat.Key{Fingerprint: long}); err == nil {
		t.Error("Claim with a fingerprint too long succeeded")
	}
	if names, err := s.NamesOfKey(long); err != nil || len(names) != 0 {
		t.Errorf("NamesOfKey(too long) = %v, %v", names, err)
	}
	if _, ok, err := s.ConfirmKey("alice", long); ok || err != nil {
		t.Errorf("ConfirmKey(too long) = %v, %v", ok, err)
	}
	key := strings.Repeat("k", maxSettingKeyLen+1)
	if err := s.SetSetting(key, "v"); err == nil {
		t.Error("SetSetting with a key too long succeeded")
	}
	if _, ok, err := s.Setting(key); ok || err != nil {
		t.Errorf("Setting(too long) = %v, %v", ok, err)
	}
	for _, k := range []string{"motd", "a.b", "a b", "*", ">", "ü", "="} {
		if err := s.SetSetting(k, "value of "+k); err != nil {
			t.Fatalf("SetSetting(%q): %v", k, err)
		}
	}
	for _, k := range []string{"motd", "a.b", "a b", "*", ">", "ü", "="} {
		if v, ok, err := s.Setting(k); v != "value of "+k || !ok || err != nil {
			t.Errorf("Setting(%q) = %q, %v, %v", k, v, ok, err)
		}
	}

	// A line larger than the stream takes is dropped, and said.
	saveRoom(t, s, "#r")
	s.Append(chat.Message{Room: "#r", Kind: chat.KindMessage, From: "a", Text: strings.Repeat("x", maxLineSize)})
	s.Append(chat.Message{Room: "#r", Kind: chat.KindMessage, From: "a", Text: "small"})
	flushOK(t, s)
	if got, err := s.Recent("#r", 10); err != nil || !slices.Equal(texts(got), []string{"small"}) {
		t.Errorf("Recent = %v, %v; want only the small line", texts(got), err)
	}
	if !strings.Contains(logs.String(), "too large") {
		t.Errorf("the dropped line was not logged:\n%s", logs)
	}

	// A record larger than a bucket takes is refused, and leaves the record as it was.
	if _, err := s.QueueDM(chat.DM{From: "a", To: "bob", Text: "first"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueueDM(chat.DM{From: "b", To: "bob", Text: strings.Repeat("x", maxValueSize)}); err == nil {
		t.Error("QueueDM of a message larger than a record succeeded")
	}
	if dms, err := s.TakeDMs("bob"); err != nil || len(dms) != 1 || dms[0].Text != "first" {
		t.Errorf("TakeDMs = %+v, %v; want the first message only", dms, err)
	}
}

// TestClose: Close publishes what is queued and may be called again; every method fails after
// it.
func TestClose(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	s, err := Open(t.Context(), Config{URLs: []string{srv.URL()}, Prefix: prefix}, nil)
	if err != nil {
		t.Fatal(err)
	}
	saveRoom(t, s, "#r")
	for i := range 100 {
		s.Append(chat.Message{Room: "#r", Kind: chat.KindMessage, From: "a", Text: fmt.Sprint(i)})
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if _, err := s.Recent("#r", 1); !errors.Is(err, errClosed) {
		t.Errorf("Recent after Close = %v", err)
	}
	if _, _, err := s.Claim("alice", testKey(1)); !errors.Is(err, errClosed) {
		t.Errorf("Claim after Close = %v", err)
	}
	if err := s.Flush(t.Context()); !errors.Is(err, errClosed) {
		t.Errorf("Flush after Close = %v", err)
	}
	s.Append(chat.Message{Room: "#r", Kind: chat.KindMessage, From: "a", Text: "late"}) // dropped, no panic

	again, _ := openStore(t, srv.URL(), Config{Prefix: prefix})
	if got, err := again.Recent("#r", 1000); err != nil || len(got) != 100 {
		t.Fatalf("after Close, %d lines stored (%v), want the 100 appended before", len(got), err)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{URLs: []string{"nats://127.0.0.1:4222"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v", ok, err)
	}
	for _, tt := range []struct {
		name string
		edit func(*Config)
	}{
		{"no server", func(c *Config) { c.URLs = nil }},
		{"two URLs in one", func(c *Config) { c.URLs = []string{"nats://a:1,nats://b:2"} }},
		{"empty URL", func(c *Config) { c.URLs = []string{""} }},
		{"replicas", func(c *Config) { c.Replicas = 7 }},
		{"negative replicas", func(c *Config) { c.Replicas = -1 }},
		{"prefix with a dot", func(c *Config) { c.Prefix = "chat.d" }},
		{"prefix too long", func(c *Config) { c.Prefix = strings.Repeat("p", 33) }},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }},
		{"negative backlog", func(c *Config) { c.MaxBacklog = -1 }},
		{"negative cap", func(c *Config) { c.MaxQueuedDMs = -1 }},
		{"negative keep", func(c *Config) { c.KeepMessages = -1 }},
		{"keep for seconds", func(c *Config) { c.KeepFor = 30 * time.Second }},
		{"missing creds file", func(c *Config) { c.CredsFile = "/nonexistent/creds" }},
		{"missing CA file", func(c *Config) { c.CAFile = "/nonexistent/ca.pem" }},
	} {
		c := ok
		tt.edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate(%+v) = nil", tt.name, c)
		}
	}
	if got := ParseURLs(" nats://a:1, ,tls://b:2,"); !slices.Equal(got, []string{"nats://a:1", "tls://b:2"}) {
		t.Errorf("ParseURLs = %v", got)
	}
}

// TestRetention: the stream keeps KeepMessages lines per room, the newest.
func TestRetention(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{KeepMessages: 5})
	saveRoom(t, s, "#a")
	saveRoom(t, s, "#b")
	for i := range 20 {
		s.Append(chat.Message{Room: "#a", Kind: chat.KindMessage, From: "x", Text: fmt.Sprint("a", i)})
		if i < 3 {
			s.Append(chat.Message{Room: "#b", Kind: chat.KindMessage, From: "x", Text: fmt.Sprint("b", i)})
		}
	}
	flushOK(t, s)
	if got, err := s.Recent("#a", 100); err != nil || !slices.Equal(texts(got), []string{"a15", "a16", "a17", "a18", "a19"}) {
		t.Errorf("#a keeps %v, %v; want its newest 5", texts(got), err)
	}
	if got, err := s.Recent("#b", 100); err != nil || len(got) != 3 {
		t.Errorf("#b keeps %v, %v; want its 3", texts(got), err)
	}
}
