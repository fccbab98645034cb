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
	"chatd/store/storetest"

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

// lobby is the room the tests' messages go to when the room does not matter.
const lobby = "#lobby"

// openAt opens a store at path with cfg's other settings, closing it when the test ends. A store
// with today's schema has the room lobby.
func openAt(t testing.TB, path string, cfg Config, opts options) (*SQLite, *syncBuffer) {
	t.Helper()
	cfg.Path = path
	logs := &syncBuffer{}
	s, err := open(cfg, log.New(logs), opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	if opts.migrations == nil {
		if err := s.SaveRoom(chat.Room{Name: lobby}); err != nil {
			t.Fatal(err)
		}
	}
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

// recent is the newest n messages of lobby.
func recent(t testing.TB, s *SQLite, n int) []chat.Message {
	t.Helper()
	return recentIn(t, s, lobby, n)
}

func recentIn(t testing.TB, s *SQLite, room string, n int) []chat.Message {
	t.Helper()
	msgs, err := s.Recent(room, n)
	if err != nil {
		t.Fatalf("Recent(%s, %d): %v", room, n, err)
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

// TestConformance runs the suite every room.Store runs, on a real file.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := Open(Config{Path: filepath.Join(t.TempDir(), "chat.db")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return s
	})
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
		{"negative web tokens per name", func(c *Config) { c.MaxWebTokensPerName = -1 }, "web tokens per name"},
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

// TestClaimRaceTwoStores claims one free name from many goroutines, through two stores on the
// same file (as two chatd processes would): exactly one claim wins, and everyone sees the
// winner's key. (The suite races claims within one store.)
func TestClaimRaceTwoStores(t *testing.T) {
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
	goRoom := chat.Room{Name: "#go", Owner: "Alice", Topic: "gophers", Private: true, Created: clk.Now()}
	for _, err := range []error{
		s.SaveRoom(chat.Room{Name: lobby}),
		s.SaveRoom(goRoom),
		s.Invite("#go", "Bob"),
		s.AddMembership("alice", "#go"),
		s.SetSetting("motd", "hello"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Append(chat.Message{Room: "#go", Kind: chat.KindMessage, From: "Alice", Text: "in #go"})
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
		m := chat.Message{Room: lobby, At: base.Add(time.Duration(i)*1001*time.Millisecond + 999_999), Kind: chat.KindMessage, From: "Alice", Text: fmt.Sprintf("m%d", i)}
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
	rooms, err := s.Rooms()
	goRoom.Name, goRoom.Created, goRoom.Invited = "#go", goRoom.Created.Truncate(time.Millisecond), []string{"Bob"}
	if err != nil || len(rooms) != 2 || rooms[0].Name != "#go" || rooms[1].Name != lobby ||
		rooms[0].Owner != goRoom.Owner || rooms[0].Topic != goRoom.Topic || !rooms[0].Private || !rooms[0].Created.Equal(goRoom.Created) ||
		!slices.Equal(rooms[0].Invited, goRoom.Invited) {
		t.Fatalf("Rooms after restart = %+v, %v; want #go (%+v) and %s", rooms, err, goRoom, lobby)
	}
	if got := texts(recentIn(t, s, "#go", 10)); !slices.Equal(got, []string{"in #go"}) {
		t.Fatalf("#go after restart = %v", got)
	}
	if got, err := s.Memberships("ALICE"); err != nil || !slices.Equal(got, []string{"#go"}) {
		t.Fatalf("Memberships after restart = %v, %v", got, err)
	}
	if v, ok, err := s.Setting("motd"); v != "hello" || !ok || err != nil {
		t.Fatalf("Setting after restart = %q, %v, %v", v, ok, err)
	}
}

// TestClock: Config.Now is the time of everything the store dates, and what pending keys and
// bans expire by.
func TestClock(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now})
	now := clk.Now().Truncate(time.Millisecond)
	s.Append(chat.Message{Room: lobby, ID: 42, Kind: chat.KindAction, From: "a", Text: "zero time"})
	flush(t, s)
	got := recent(t, s, 1)
	if len(got) != 1 || got[0].ID == 42 || got[0].ID == 0 || !got[0].At.Equal(now) || got[0].Kind != chat.KindAction {
		t.Fatalf("Recent = %+v; want the clock's time to the ms and a store-assigned id", got)
	}
	id, _, err := s.Claim("alice", testKey(1))
	if err != nil || !id.Created.Equal(now) || !id.Keys[0].Added.Equal(now) {
		t.Fatalf("Claim = %+v, %v; want the clock's time", id, err)
	}
	if err := s.SaveRoom(chat.Room{Name: "#new"}); err != nil {
		t.Fatal(err)
	}
	if rooms, err := s.Rooms(); err != nil || len(rooms) != 2 || !rooms[0].Created.Equal(now) {
		t.Fatalf("Rooms = %+v, %v; want #new created at the clock's time", rooms, err)
	}
	if err := s.ProposeKey("alice", testKey(2), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBan(chat.Ban{Kind: chat.BanName, Value: "x", Expires: clk.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if id, _, _ := s.Identity("alice"); len(id.Pending) != 0 {
		t.Errorf("a key proposed an hour ago by the clock is still pending: %+v", id.Pending)
	}
	if bans, err := s.Bans(); err != nil || len(bans) != 0 {
		t.Errorf("a ban that expired by the clock is listed: %+v, %v", bans, err)
	}
}

// TestFlush: with the longest interval, only Flush explains a prompt commit. (The suite checks
// Flush with concurrent appenders.)
func TestFlush(t *testing.T) {
	s, _ := openTest(t, Config{FlushInterval: 500 * time.Millisecond, MaxBatch: 10})
	flush(t, s) // nothing queued
	for i := range 25 {
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	flush(t, s)
	if got := texts(recent(t, s, 100)); !slices.Equal(got, seqTexts(0, 25)) {
		t.Fatalf("after Flush, Recent = %v", got)
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
	s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: "one"})
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

	s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: "m0"})
	// The writer takes m0 at once for the Flush and waits for the lock: Flush cannot finish.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush while the db is locked = %v, want a deadline error", err)
	}
	for i := 1; i < 20_000; i++ { // a hang here is the failure
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
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
	s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: "m0"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	s.Flush(ctx) // the writer now holds m0, stuck on the lock
	cancel()
	for i := 1; i <= 150; i++ {
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
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
	s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: "late 1"})
	s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: "late 2"})
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
	_, calls["Recent"] = s.Recent(lobby, 1)
	_, calls["QueueDM"] = s.QueueDM(chat.DM{From: "a", To: "b"})
	_, calls["TakeDMs"] = s.TakeDMs("b")
	_, calls["AddBan"] = s.AddBan(chat.Ban{Kind: chat.BanName, Value: "x"})
	_, calls["RemoveBan"] = s.RemoveBan(1)
	_, calls["Bans"] = s.Bans()
	_, _, calls["Setting"] = s.Setting("motd")
	calls["SetSetting"] = s.SetSetting("motd", "x")
	_, calls["Rooms"] = s.Rooms()
	calls["SaveRoom"] = s.SaveRoom(chat.Room{Name: "#x"})
	calls["DeleteRoom"] = s.DeleteRoom(lobby)
	calls["Invite"] = s.Invite(lobby, "a")
	_, calls["Memberships"] = s.Memberships("a")
	calls["AddMembership"] = s.AddMembership("a", lobby)
	calls["RemoveMembership"] = s.RemoveMembership("a", lobby)
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

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	path := filepath.Join(dir, "chat.db")
	s, _ := openAt(t, path, Config{}, options{})
	s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: "x"})
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

// TestQueryPlans guards the schema's indexes: a room's newest-first history read walks
// messages_room backwards without sorting, as do the per-room retention and a deleted room's
// chunks; a time range walks messages_room_at; memberships, invitations, the DM queue and web
// tokens are found through their indexes.
func TestQueryPlans(t *testing.T) {
	s, _ := openTest(t, Config{})
	tests := []struct {
		query   string
		args    []any
		want    string
		notWant string
	}{
		{recentSQL, []any{"#x", 10}, "INDEX messages_room", "TEMP B-TREE"},
		{`SELECT id FROM messages WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?`, []any{"#x", 10}, "INDEX messages_room", "TEMP B-TREE"},
		{`DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE room = ? AND id <= ? ORDER BY id LIMIT ?)`, []any{"#x", 5, 500},
			"INDEX messages_room", "TEMP B-TREE"},
		{`SELECT coalesce((SELECT max(id) FROM messages WHERE room = ?1), 0)`, []any{"#x"}, "INDEX messages_room", "SCAN messages"},
		{`SELECT at FROM messages ORDER BY id LIMIT 1`, nil, "SCAN messages", "TEMP B-TREE"},
		{`DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?) AND at < ?`, []any{500, 9}, "SEARCH messages", "TEMP B-TREE"},
		{`SELECT room FROM memberships WHERE name_key = ? ORDER BY room`, []any{"x"}, "PRIMARY KEY", "TEMP B-TREE"},
		{`DELETE FROM memberships WHERE room = ?`, []any{"#x"}, "INDEX memberships_room", "SCAN memberships"},
		{`DELETE FROM invitations WHERE room = ?`, []any{"#x"}, "INDEX sqlite_autoindex_invitations", "SCAN invitations"},
		{`SELECT id, at, sender, recipient, text FROM dms WHERE recipient_key = 'x' ORDER BY id`, nil, "INDEX dms_recipient", "TEMP B-TREE"},
		{`SELECT count(*) FROM dms WHERE recipient_key = 'x'`, nil, "INDEX dms_recipient", "SCAN"},
		{`SELECT i.name FROM keys k JOIN identities i ON i.name_key = k.identity WHERE k.fingerprint = 'x' AND k.expires = 0 ORDER BY i.name_key`, nil,
			"INDEX keys_fingerprint", "SCAN k"},
		{`SELECT EXISTS (SELECT 1 FROM keys WHERE expires != 0 AND expires <= 5)`, nil, "INDEX keys_pending", "SCAN keys"},
		{historyBeforeSQL, []any{"#x", 9, 5, 100}, "INDEX messages_room_at", "TEMP B-TREE"},
		{historyAfterSQL, []any{"#x", 5, 9, 100}, "INDEX messages_room_at", "TEMP B-TREE"},
		{webTokenSQL, []any{"h", "session", 5}, "INDEX sqlite_autoindex_web_tokens", "SCAN web_tokens"},
		{`SELECT count(*) FROM web_tokens WHERE name_key = 'x' AND (expires = 0 OR expires > 5)`, nil, "INDEX web_tokens_name", "SCAN web_tokens"},
		{`SELECT id FROM web_tokens WHERE name_key = 'x' AND kind IN ('session', 'bot') AND (expires = 0 OR expires > 5) ORDER BY created, id`, nil,
			"INDEX web_tokens_name", "SCAN web_tokens"},
		{`DELETE FROM web_tokens WHERE name_key = 'x'`, nil, "INDEX web_tokens_name", "SCAN web_tokens"},
		{`SELECT EXISTS (SELECT 1 FROM web_tokens WHERE expires != 0 AND expires <= 5)`, nil, "INDEX web_tokens_expires", "SCAN web_tokens"},
	}
	for _, tt := range tests {
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+tt.query, tt.args...)
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
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
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
		s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "25 messages could not be committed") {
		t.Fatalf("Close = %v\n%s", err, logs)
	}
	if n := strings.Count(logs.String(), "cannot commit messages at close"); n != 1 {
		t.Errorf("%d batches tried at close after the first failed for good, want 1:\n%s", n, logs)
	}
}
