package sqlite

import (
	"bytes"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"chatd/chat"

	"golang.org/x/crypto/ssh"
)

// writeV1 makes a version 1 chatd database at path, closed: alice with a key, and messages.
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
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		if _, err := tx.Exec(`INSERT INTO messages(at, kind, sender, text) VALUES (?, 1, 'alice', ?)`,
			1000+i, fmt.Sprintf("m%d %s", i, strings.Repeat("x", 200))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
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
		s, logs := openAt(t, path, Config{StoreLimits: chat.StoreLimits{MaxQueuedDMsPerSender: 2}}, options{})
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

// fixtureKey is the key the fixtures' generator made from seed: ed25519, the seed zero-padded.
func fixtureKey(t *testing.T, seed string) chat.Key {
	t.Helper()
	b := make([]byte, ed25519.SeedSize)
	copy(b, seed)
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(b).Public())
	if err != nil {
		t.Fatal(err)
	}
	return chat.Key{
		Fingerprint:   ssh.FingerprintSHA256(pub),
		Type:          pub.Type(),
		AuthorizedKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
	}
}

// copyFixture copies testdata/name into a new temporary directory: the tests never write to
// the fixtures.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "chat.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFixtures opens copies of databases written by earlier chatds (testdata/README.md says
// how they were made) with today's code: everything in them survives the migrations, the
// history in #lobby, in order.
func TestFixtures(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi int) time.Time { return time.Date(y, mo, d, h, mi, 0, 0, time.UTC) }
	tests := []struct {
		file    string
		version int
		prefix  string    // of the message texts
		base    time.Time // the generator's clock at start
		ms      int       // the messages' milliseconds
		dm      chat.DM
		ban     chat.Ban
		motd    string
		// alice's keys: the seeds and when they became active; pending ones (v3)
		keys    []string
		added   []time.Time
		pending []string
		// v4: the rooms besides #lobby, and the memberships
		rooms       []chat.Room
		goTexts     []string // #go's history
		memberships map[string][]string
	}{
		{
			file: "v2.db", version: 2, prefix: "v2", base: utc(2026, 1, 10, 12, 0), ms: 123,
			dm:      chat.DM{At: utc(2026, 1, 10, 14, 0), From: "Alice", To: "Dave", Text: "v2 dm for dave"},
			ban:     chat.Ban{Kind: chat.BanName, Value: "mallory", Reason: "spam (v2)", By: "Alice", Created: utc(2026, 1, 10, 15, 0)},
			motd:    "welcome to the v2 fixture",
			keys:    []string{"alice-desktop", "alice-laptop"},
			added:   []time.Time{utc(2026, 1, 10, 12, 0), utc(2026, 1, 10, 12, 3)},
			pending: nil,
		},
		{
			file: "v3.db", version: 3, prefix: "v3", base: utc(2026, 2, 20, 9, 0), ms: 456,
			dm: chat.DM{At: utc(2026, 2, 20, 11, 0), From: "Alice", FromAddr: "192.0.2.7", To: "Dave", Text: "v3 dm for dave"},
			ban: chat.Ban{Kind: chat.BanKey, Value: "SHA256:bannedkeyfromthev3fixture", Reason: "spam (v3)", By: "Alice",
				Created: utc(2026, 2, 20, 12, 0), Expires: utc(2100, 1, 1, 0, 0)},
			motd:    "welcome to the v3 fixture",
			keys:    []string{"alice-desktop", "alice-laptop"},
			added:   []time.Time{utc(2026, 2, 20, 9, 0), utc(2026, 2, 20, 9, 4)},
			pending: []string{"alice-phone"}, // alice-lapsed's proposal expired long ago
		},
		{
			file: "v4.db", version: 4, prefix: "v4", base: utc(2026, 3, 15, 8, 0), ms: 789,
			dm: chat.DM{At: utc(2026, 3, 15, 11, 0), From: "Alice", FromAddr: "192.0.2.7", To: "Dave", Text: "v4 dm for dave"},
			ban: chat.Ban{Kind: chat.BanIP, Value: "198.51.100.0/24", Reason: "spam (v4)", By: "Alice",
				Created: utc(2026, 3, 15, 12, 0), Expires: utc(2100, 1, 1, 0, 0)},
			motd:    "welcome to the v4 fixture",
			keys:    []string{"alice-desktop", "alice-laptop"},
			added:   []time.Time{utc(2026, 3, 15, 8, 0), utc(2026, 3, 15, 8, 4)},
			pending: []string{"alice-phone"},
			rooms: []chat.Room{{Name: "#go", Owner: "Alice", Topic: "v4 topic: gophers ✓", Private: true, Created: utc(2026, 3, 15, 8, 30),
				Invited: []string{"bob", "Dave"}}},
			goTexts:     []string{"v4 go 0", "v4 go 1", "v4 go 2", "v4 go 3", "v4 go 4"},
			memberships: map[string][]string{"alice": {"#go", lobby}, "bob": {"#go"}, "carol.b": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := copyFixture(t, tt.file)
			var version int
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			err = db.QueryRow(`PRAGMA user_version`).Scan(&version)
			db.Close()
			if err != nil || version != tt.version {
				t.Fatalf("the fixture's schema version = %d, %v; want %d", version, err, tt.version)
			}

			s, err := Open(Config{Path: path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != len(schema()) {
				t.Fatalf("schema version after opening = %d, %v; want %d", version, err, len(schema()))
			}

			// Identities and keys.
			for i, c := range []struct{ name, seed string }{{"Alice", "alice-desktop"}, {"bob", "bob"}, {"Carol.B", "carol"}} {
				id, ok, err := s.Identity(strings.ToUpper(c.name))
				created := tt.base.Add(time.Duration(i) * time.Minute)
				if err != nil || !ok || id.Name != c.name || !id.Created.Equal(created) {
					t.Fatalf("Identity(%s) = %+v, %v, %v; want created %v", c.name, id, ok, err, created)
				}
				if names, err := s.NamesOfKey(fixtureKey(t, c.seed).Fingerprint); err != nil || !slices.Equal(names, []string{c.name}) {
					t.Errorf("NamesOfKey(%s's key) = %v, %v", c.name, names, err)
				}
			}
			alice, _, _ := s.Identity("alice")
			if len(alice.Keys) != len(tt.keys) || len(alice.Pending) != len(tt.pending) {
				t.Fatalf("alice's keys = %+v, pending %+v; want %v, pending %v", alice.Keys, alice.Pending, tt.keys, tt.pending)
			}
			for i, seed := range tt.keys {
				want, got := fixtureKey(t, seed), alice.Keys[i]
				if got.Fingerprint != want.Fingerprint || got.Type != want.Type || got.AuthorizedKey != want.AuthorizedKey ||
					!got.Added.Equal(tt.added[i]) || !got.Expires.IsZero() {
					t.Errorf("alice's key %d = %+v, want %s (%+v) active since %v", i, got, seed, want, tt.added[i])
				}
			}
			for i, seed := range tt.pending {
				if got := alice.Pending[i]; got.Fingerprint != fixtureKey(t, seed).Fingerprint || !got.Expires.Equal(utc(2100, 1, 1, 0, 0)) {
					t.Errorf("alice's pending key %d = %+v, want %s until 2100", i, got, seed)
				}
			}

			// The history, in #lobby, created at its first message; v4's other rooms as they were.
			rooms, err := s.Rooms()
			first := tt.base.Add(time.Hour + time.Duration(tt.ms)*time.Millisecond)
			wantRooms := append(slices.Clone(tt.rooms), chat.Room{Name: lobby, Created: first})
			if err != nil || !slices.EqualFunc(rooms, wantRooms, sameRoom) {
				t.Fatalf("Rooms = %+v, %v; want %+v", rooms, err, wantRooms)
			}
			if tt.goTexts != nil {
				if got := texts(recentIn(t, s, "#go", 100)); !slices.Equal(got, tt.goTexts) {
					t.Fatalf("#go = %v, want %v", got, tt.goTexts)
				}
			}
			for name, want := range tt.memberships {
				if got, err := s.Memberships(name); err != nil || !slices.Equal(got, want) {
					t.Fatalf("Memberships(%s) = %v, %v; want %v", name, got, err, want)
				}
			}
			msgs := recent(t, s, 1000)
			if len(msgs) != 50 {
				t.Fatalf("%d messages in %s, want 50", len(msgs), lobby)
			}
			names := []string{"Alice", "bob", "Carol.B"}
			for i, m := range msgs {
				want := chat.Message{Room: lobby, Kind: chat.KindMessage, From: names[i%3], Text: fmt.Sprintf("%s message %d", tt.prefix, i),
					At: tt.base.Add(time.Hour + time.Duration(i)*7*time.Second + time.Duration(tt.ms)*time.Millisecond)}
				if i%5 == 4 {
					want.Kind, want.Text = chat.KindAction, fmt.Sprintf("waves (%s action %d)", tt.prefix, i)
				}
				if i == 7 {
					want.Text = tt.prefix + " message 7: héllo, 世界 👋"
				}
				if m.Room != want.Room || m.Kind != want.Kind || m.From != want.From || m.Text != want.Text || !m.At.Equal(want.At) {
					t.Fatalf("message %d = %+v, want %+v", i, m, want)
				}
				if i > 0 && m.ID <= msgs[i-1].ID {
					t.Fatalf("ids not increasing: %d after %d", m.ID, msgs[i-1].ID)
				}
			}
			s.Append(chat.Message{Room: lobby, Kind: chat.KindMessage, From: "bob", Text: "after the upgrade"})
			flush(t, s)
			if got := recent(t, s, 2); len(got) != 2 || got[1].Text != "after the upgrade" || got[1].ID <= msgs[49].ID {
				t.Fatalf("a new message after the upgrade: %+v", got)
			}

			// The queued DM, the ban and the setting.
			dms, err := s.TakeDMs("dave")
			if err != nil || len(dms) != 1 || dms[0].ID == 0 || !dms[0].At.Equal(tt.dm.At) || dms[0].From != tt.dm.From || dms[0].FromAddr != tt.dm.FromAddr ||
				dms[0].To != tt.dm.To || dms[0].Text != tt.dm.Text {
				t.Fatalf("TakeDMs(dave) = %+v, %v; want [%+v]", dms, err, tt.dm)
			}
			bans, err := s.Bans()
			if b := tt.ban; err != nil || len(bans) != 1 || bans[0].Kind != b.Kind || bans[0].Value != b.Value || bans[0].Reason != b.Reason ||
				bans[0].By != b.By || !bans[0].Created.Equal(b.Created) || !bans[0].Expires.Equal(b.Expires) {
				t.Fatalf("Bans = %+v, %v; want [%+v]", bans, err, tt.ban)
			}
			if v, ok, err := s.Setting("motd"); v != tt.motd || !ok || err != nil {
				t.Fatalf("motd = %q, %v, %v; want %q", v, ok, err, tt.motd)
			}

			// And the new tables work on the old data.
			if err := s.AddMembership("carol.b", lobby); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Memberships("CAROL.B"); err != nil || !slices.Equal(got, []string{lobby}) {
				t.Fatalf("Memberships = %v, %v", got, err)
			}
			tok, err := s.AddWebToken(chat.WebToken{Kind: chat.WebSession, Hash: hashOf(1), Name: "alice", Label: "after the upgrade"})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.WebTokens("Alice"); err != nil || len(got) != 1 || got[0].ID != tok.ID {
				t.Fatalf("WebTokens(alice) = %+v, %v; want [%+v]", got, err, tok)
			}
			page, err := s.History(lobby, chat.HistoryRange{After: msgs[9].At, Before: msgs[13].At, Limit: 10})
			if err != nil || !slices.Equal(texts(page), texts(msgs[10:13])) {
				t.Fatalf("History of the old messages = %v, %v; want %v", texts(page), err, texts(msgs[10:13]))
			}
		})
	}
}

// sameRoom compares rooms as Rooms returns them.
func sameRoom(a, b chat.Room) bool {
	return a.Name == b.Name && a.Owner == b.Owner && a.Topic == b.Topic && a.Private == b.Private && a.Created.Equal(b.Created) &&
		slices.Equal(a.Invited, b.Invited)
}

// TestMigrationWithoutHistory: a database with no messages gets no room from the migration to
// v4; the server creates its default room, whatever its name.
func TestMigrationWithoutHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	writeV1(t, path, 0)
	s, err := Open(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rooms, err := s.Rooms(); err != nil || len(rooms) != 0 {
		t.Fatalf("Rooms = %+v, %v; want none", rooms, err)
	}
	if _, err := s.Recent(lobby, 10); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("Recent(%s) = %v, want ErrNotFound", lobby, err)
	}
}
