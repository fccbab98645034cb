package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chatd/chat"
)

func openAdmin(t *testing.T, path string) *Admin {
	t.Helper()
	a, err := OpenAdmin(path)
	if err != nil {
		t.Fatalf("OpenAdmin: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestBackupWhileWriting: a backup taken while the store commits messages holds every message
// committed before it began, passes the integrity check, and the writes go on meanwhile.
func TestBackupWhileWriting(t *testing.T) {
	s, path := openTest(t, Config{})
	if _, _, err := s.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "alice", Text: fmt.Sprintf("before %d", i)})
	}
	flush(t, s)
	before := recent(t, s, 1)[0].ID

	// A writer keeps appending and committing while the backup runs.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var during atomic.Int64
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "bob", Text: fmt.Sprintf("during %d", i)})
			if i%50 == 0 {
				if err := s.Flush(context.Background()); err != nil {
					t.Error(err)
					return
				}
				during.Add(50)
			}
		}
	})
	waitUntil(t, "writes under way", func() bool { return during.Load() > 100 })

	a := openAdmin(t, path)
	dest := filepath.Join(t.TempDir(), "backup.db")
	sum, err := a.Backup(context.Background(), dest)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if sum.LastMessage < before || sum.Messages < 5000 || sum.Identities != 1 || sum.Version != SchemaVersion() {
		t.Errorf("summary %+v: want every message up to id %d, 1 name", sum, before)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %04o, want 0600", fi.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// The copy opens as a store and holds the history.
	b, _ := openAt(t, dest, Config{KeepMessages: 0}, options{})
	got := recent(t, b, 1000)
	if got[len(got)-1].ID < before {
		t.Errorf("newest message in the backup %d, want at least %d", got[len(got)-1].ID, before)
	}
	if sum2, err := InspectFile(context.Background(), dest); err == nil {
		t.Logf("backup: %+v", sum2)
	}

	// Never over an existing file.
	if _, err := a.Backup(context.Background(), dest); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second backup to %s: %v, want fs.ErrExist", dest, err)
	}
}

// TestInspectRefuses: restore's check of a file refuses what is not a usable chatd database.
func TestInspectRefuses(t *testing.T) {
	dir := t.TempDir()
	good, _ := openTest(t, Config{})
	for i := range 3000 {
		good.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "a", Text: fmt.Sprintf("%d %s", i, strings.Repeat("x", 100))})
	}
	flush(t, good)
	a := openAdmin(t, good.path)
	backup := filepath.Join(dir, "good.db")
	if _, err := a.Backup(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	if _, err := InspectFile(context.Background(), backup); err != nil {
		t.Fatalf("a good backup: %v", err)
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}

	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	damaged := slices.Clone(data)
	for i := len(damaged) / 2; i < len(damaged)/2+2048; i++ {
		damaged[i] = 0xA5
	}
	newer := write("newer.db", data)
	execRaw(t, newer, fmt.Sprintf(`PRAGMA user_version = %d`, SchemaVersion()+1))
	other := filepath.Join(dir, "other.db")
	execRaw(t, other, `CREATE TABLE photos (id INTEGER PRIMARY KEY)`)
	withWAL := write("wal.db", data)
	write("wal.db-wal", []byte("a log"))

	tests := []struct {
		path    string
		wantErr error
		want    string
	}{
		{write("garbage.db", []byte(strings.Repeat("not a database\n", 300))), ErrCorrupt, "garbage.db"},
		{write("damaged.db", damaged), ErrCorrupt, "damaged.db"},
		{write("truncated.db", data[:len(data)/2]), ErrCorrupt, "truncated.db"},
		{newer, ErrNewerSchema, "use a newer chatd"},
		{other, ErrCorrupt, "another program"},
		{write("empty.db", nil), ErrCorrupt, "empty SQLite database"},
		{withWAL, nil, "write-ahead log beside it"},
	}
	for _, tt := range tests {
		_, err := InspectFile(context.Background(), tt.path)
		if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("InspectFile(%s) = %v, want %v saying %q", filepath.Base(tt.path), err, tt.wantErr, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "good.db-shm")); err == nil {
		t.Error("InspectFile created a -shm file")
	}
}

// TestRestore: the backup replaces the database, which is kept aside with its log.
func TestRestore(t *testing.T) {
	s, path := openTest(t, Config{})
	s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "a", Text: "in the backup"})
	flush(t, s)
	a := openAdmin(t, path)
	backup := filepath.Join(t.TempDir(), "b.db")
	if _, err := a.Backup(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	a.Close()
	s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "a", Text: "after the backup"})
	flush(t, s)
	s.Close()
	// A log left behind, as a killed server leaves it.
	if err := os.WriteFile(path+"-wal", []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := Restore(context.Background(), path, path); err == nil {
		t.Error("restoring the database onto itself succeeded")
	}
	r, err := Restore(context.Background(), backup, path)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if r.Previous == "" || r.Messages != 1 {
		t.Errorf("restored %+v", r)
	}
	if b, err := os.ReadFile(r.Previous + "-wal"); err != nil || string(b) != "stale" {
		t.Errorf("the old log was not kept with the old database: %q %v", b, err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Error("the old log was left beside the restored database")
	}
	s2, _ := openAt(t, path, Config{}, options{})
	if got := texts(recent(t, s2, 10)); !slices.Equal(got, []string{"in the backup"}) {
		t.Errorf("history after restore: %q", got)
	}

	// A damaged file is refused and the database left alone.
	bad := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(bad, []byte(strings.Repeat("junk", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), bad, path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Restore of junk: %v", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".chat.db.restore-*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestNamesAndRelease: the operator sees a name's keys and rooms, and a release frees it for a
// new key while the history keeps the name.
func TestNamesAndRelease(t *testing.T) {
	s, path := openTest(t, Config{})
	for _, n := range []string{"Alice", "bob"} {
		if _, _, err := s.Claim(n, testKey(len(n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ProposeKey("alice", testKey(9), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRoom(chat.Room{Name: "#go", Owner: "Alice", Private: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRoom(chat.Room{Name: "#secret", Owner: "bob", Private: true}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"#go", lobby} {
		if err := s.AddMembership("alice", r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Invite("#secret", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueueDM(chat.DM{From: "bob", To: "alice", Text: "for alice only"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddWebToken(chat.WebToken{Kind: chat.WebSession, Hash: strings.Repeat("ab", 32), Name: "alice", Label: "firefox"}); err != nil {
		t.Fatal(err)
	}
	s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "Alice", Text: "said before"})
	flush(t, s)

	a := openAdmin(t, path)
	ctx := context.Background()
	names, err := a.Names(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0].Name != "Alice" || len(names[0].Keys) != 1 || len(names[0].Pending) != 1 ||
		!slices.Equal(names[0].Rooms, []string{"#go", lobby}) || names[1].Name != "bob" {
		t.Errorf("Names = %+v", names)
	}
	info, ok, err := a.Name(ctx, "ALICE")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if !slices.Equal(info.Owns, []string{"#go"}) || !slices.Equal(info.Invited, []string{"#secret"}) || info.QueuedDMs != 1 || info.WebTokens != 1 {
		t.Errorf("Name(alice) = %+v", info)
	}
	if _, ok, err := a.Name(ctx, "carol"); ok || err != nil {
		t.Errorf("Name(carol) = %v, %v", ok, err)
	}

	r, err := a.ReleaseName(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	want := Released{Name: "Alice", Keys: 1, Pending: 1, Memberships: 2, WebTokens: 1, QueuedDMs: 1,
		Owned: []string{"#go"}, Invited: []string{"#secret"}, Messages: 1}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("released %+v\nwant     %+v", r, want)
	}
	if _, err := a.ReleaseName(ctx, "alice", false); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("second release: %v", err)
	}
	for table, where := range map[string]string{
		"keys": "identity = 'alice'", "memberships": "name_key = 'alice'", "dms": "recipient_key = 'alice'",
		"web_tokens": "name_key = 'alice'", "invitations": "name_key = 'alice'", "rooms": "owner = 'Alice'",
	} {
		if n := count(t, s, table, where); n != 0 {
			t.Errorf("%d rows of %s left for alice", n, table)
		}
	}

	// A new key claims the name; the history still says Alice.
	if _, claimed, err := s.Claim("alice", testKey(42)); err != nil || !claimed {
		t.Fatalf("claim after release: %v %v", claimed, err)
	}
	if got := recent(t, s, 1); len(got) != 1 || got[0].From != "Alice" || got[0].Text != "said before" {
		t.Errorf("history after release: %+v", got)
	}

	// --keep-rooms keeps the rooms' owner and invitations.
	if err := s.SaveRoom(chat.Room{Name: "#go", Owner: "bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReleaseName(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "rooms", "owner = 'bob'"); n != 2 {
		t.Errorf("bob owns %d rooms after a release keeping them, want 2", n)
	}
}

// TestExport: every message, or a room's, or those since a time, oldest first, across chunks,
// without the history of a room being deleted.
func TestExport(t *testing.T) {
	s, path := openTest(t, Config{KeepMessages: 0})
	for _, r := range []string{"#go", "#gone"} {
		if err := s.SaveRoom(chat.Room{Name: r}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 2500 // more than two chunks
	for i := range n {
		room := lobby
		if i%2 == 1 {
			room = "#go"
		}
		s.Append(chat.Message{At: start.Add(time.Duration(i) * time.Minute), Kind: chat.KindMessage, Room: room, From: "a", Text: fmt.Sprint(i)})
	}
	s.Append(chat.Message{At: start, Kind: chat.KindAction, Room: "#gone", From: "a", Text: "gone"})
	flush(t, s)
	if err := s.DeleteRoom("#gone"); err != nil {
		t.Fatal(err)
	}
	a := openAdmin(t, path)
	export := func(f ExportFilter) []chat.Message {
		t.Helper()
		var got []chat.Message
		if _, err := a.Export(context.Background(), f, func(m chat.Message) error { got = append(got, m); return nil }); err != nil {
			t.Fatalf("Export(%+v): %v", f, err)
		}
		return got
	}
	all := export(ExportFilter{})
	if len(all) != n {
		t.Fatalf("exported %d messages, want %d", len(all), n)
	}
	for i, m := range all {
		if m.Text != fmt.Sprint(i) || i > 0 && m.ID <= all[i-1].ID {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	goOnly := export(ExportFilter{Room: "go"})
	if len(goOnly) != n/2 || goOnly[0].Text != "1" || goOnly[0].Room != "#go" {
		t.Errorf("#go: %d messages, first %+v", len(goOnly), goOnly[0])
	}
	since := export(ExportFilter{Room: "#go", Since: start.Add(2000 * time.Minute)})
	if len(since) != 250 || since[0].Text != "2001" {
		t.Errorf("#go since minute 2000: %d messages, first %+v", len(since), since[0])
	}
	if _, err := a.Export(context.Background(), ExportFilter{Room: "#nowhere"}, func(chat.Message) error { return nil }); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("export of a room that does not exist: %v", err)
	}
	stop := errors.New("stop")
	if k, err := a.Export(context.Background(), ExportFilter{}, func(chat.Message) error { return stop }); !errors.Is(err, stop) || k != 0 {
		t.Errorf("export stopped by its callback: %d, %v", k, err)
	}
}

// TestCheck: an intact database passes; a damaged one says what is wrong.
func TestCheck(t *testing.T) {
	s, path := openTest(t, Config{})
	for i := range 3000 {
		s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "a", Text: fmt.Sprintf("%d %s", i, strings.Repeat("y", 200))})
	}
	flush(t, s)
	a := openAdmin(t, path)
	r, err := a.Check(context.Background())
	if err != nil || !r.OK() || r.Messages != 3000 {
		t.Fatalf("Check = %+v, %v", r, err)
	}
	a.Close()
	s.Close()

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+4096; i++ {
		b[i] = 0x5A
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	a2, err := OpenAdmin(path)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("OpenAdmin of a damaged file: %v", err)
		}
		return
	}
	defer a2.Close()
	r, err = a2.Check(context.Background())
	if err == nil && r.OK() {
		t.Fatalf("a damaged database passed the check: %+v", r)
	}
	t.Logf("check of a damaged file: %+v, %v", r, err)

	if _, err := OpenAdmin(filepath.Join(t.TempDir(), "missing.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenAdmin of a missing file: %v", err)
	}
}

// BenchmarkBackup: a backup of a database of 100 000 messages of 100 bytes (about 20 MB) with
// the server's store open beside it.
func BenchmarkBackup(b *testing.B) {
	s, path := openTest(b, Config{KeepMessages: 0})
	for i := range 100_000 {
		s.Append(chat.Message{Kind: chat.KindMessage, Room: lobby, From: "alice", Text: fmt.Sprintf("%06d %s", i, strings.Repeat("x", 93))})
	}
	flush(b, s)
	a, err := OpenAdmin(path)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	dir := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		if _, err := a.Backup(context.Background(), filepath.Join(dir, fmt.Sprintf("b%d.db", i))); err != nil {
			b.Fatal(err)
		}
	}
}
