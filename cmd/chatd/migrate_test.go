package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"chatd/chat"
	"chatd/datadir"
	"chatd/store/natsjs"
	"chatd/store/natsjs/natstest"
	"chatd/store/sqlite"
)

// singleNode is a data directory as a single chatd leaves it, made by store/sqlite's own
// methods, and what it holds.
type singleNode struct {
	dir     string
	base    time.Time                 // the first line's time
	history map[string][]chat.Message // each room's lines, in order
}

func hashHex(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// makeSingleNode writes a database: 20 names (alice with two keys and one proposed, bob, carol
// and 17 more), three rooms (#go private, owned by alice, with invitations), memberships, lines
// lines of history across the rooms a second apart from a month ago, bans (one of them
// expired), a private message waiting for alice, the message of the day, a browser session of
// alice's and a bot token of bob's.
func makeSingleNode(t testing.TB, lines int) *singleNode {
	t.Helper()
	n := &singleNode{dir: filepath.Join(t.TempDir(), "data"), history: map[string][]chat.Message{}}
	// A month ago: within what the cluster keeps (a year), so every line is copied.
	n.base = time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	clock := n.base.Add(-24 * time.Hour)
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(n.dir, "chat.db")
	cfg.Now = func() time.Time { return clock }
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	key := func(s string) chat.Key {
		return chat.Key{Fingerprint: "SHA256:" + s, Type: "ssh-ed25519", AuthorizedKey: "ssh-ed25519 AAAA" + s}
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		_, _, err := st.Claim(name, key(name))
		must(err)
	}
	for i := range 17 {
		_, _, err := st.Claim(fmt.Sprintf("user%02d", i), key(fmt.Sprint("u", i)))
		must(err)
	}
	clock = clock.Add(time.Hour)
	must(st.ProposeKey("alice", key("alice2"), clock.Add(time.Minute)))
	_, ok, err := st.ConfirmKey("alice", "SHA256:alice2")
	if err != nil || !ok {
		t.Fatalf("confirm: %v, %v", ok, err)
	}
	must(st.ProposeKey("alice", key("alice3"), time.Now().Add(24*time.Hour)))
	must(st.SaveRoom(chat.Room{Name: "#lobby"}))
	must(st.SaveRoom(chat.Room{Name: "#go", Owner: "alice", Topic: "gophers only", Private: true}))
	must(st.SaveRoom(chat.Room{Name: "#rust", Owner: "bob", Topic: "crabs"}))
	must(st.Invite("#go", "bob"))
	must(st.Invite("#go", "Carol"))
	for _, m := range [][2]string{{"alice", "#lobby"}, {"alice", "#go"}, {"bob", "#go"}, {"bob", "#rust"}, {"carol", "#go"}, {"carol", "#lobby"}} {
		must(st.AddMembership(m[0], m[1]))
	}
	n.append(st, lines, n.base)
	must(st.Flush(t.Context()))
	for _, b := range []chat.Ban{
		{Kind: chat.BanIP, Value: "192.0.2.0/24", Reason: "flood", By: "alice", Expires: time.Now().Add(48 * time.Hour)},
		{Kind: chat.BanKey, Value: "SHA256:evil", Reason: "spam", By: "alice"},
		{Kind: chat.BanName, Value: "mallory", By: "bob"},
		{Kind: chat.BanName, Value: "oldtimer", By: "bob", Expires: clock.Add(time.Hour)}, // long expired
	} {
		_, err := st.AddBan(b)
		must(err)
	}
	_, err = st.QueueDM(chat.DM{From: "bob", FromAddr: "192.0.2.7", To: "alice", Text: "lunch?"})
	must(err)
	_, err = st.QueueDM(chat.DM{From: "alice", To: "bob", Text: "see you"})
	must(err)
	must(st.SetSetting("motd", "be kind"))
	_, err = st.AddWebToken(chat.WebToken{Kind: chat.WebSession, Hash: hashHex("alice-browser"), Name: "alice", Label: "Firefox"})
	must(err)
	_, err = st.AddWebToken(chat.WebToken{Kind: chat.WebBot, Hash: hashHex("bob-bot"), Name: "bob", Label: "ci"})
	must(err)
	must(st.Close())
	return n
}

// append says count lines across the rooms, a second apart from at.
func (n *singleNode) append(st *sqlite.SQLite, count int, at time.Time) {
	rooms := []string{"#lobby", "#go", "#go", "#rust"}
	senders := []string{"alice", "bob", "carol"}
	offset := 0
	for _, h := range n.history {
		offset += len(h)
	}
	for i := range count {
		m := chat.Message{Room: rooms[i%len(rooms)], Kind: chat.KindMessage, From: senders[i%len(senders)],
			Text: fmt.Sprintf("line %d", offset+i), At: at.Add(time.Duration(i) * time.Second)}
		if i%10 == 0 {
			m.Kind = chat.KindAction
		}
		st.Append(m)
		n.history[m.Room] = append(n.history[m.Room], m)
	}
}

// reopen opens the database again as the single node would, to add lines after the first copy.
func (n *singleNode) reopen(t *testing.T) *sqlite.SQLite {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(n.dir, "chat.db")
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func noEnv(string) (string, bool) { return "", false }

// migrateRun runs chatd migrate in this process, as main does.
func migrateRun(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(ctx, append([]string{"migrate"}, args...), noEnv, &out, &errOut)
	return code, out.String(), errOut.String()
}

// counts reads the report's table: per kind, copied, already there, not copied.
func counts(t testing.TB, out string) map[string][3]int {
	t.Helper()
	got := map[string][3]int{}
	re := regexp.MustCompile(`(?m)^\s*([a-z][a-z ]*[a-z])\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		var c [3]int
		for i := range c {
			c[i], _ = strconv.Atoi(m[2+i])
		}
		got[m[1]] = c
	}
	if len(got) != int(numKinds) {
		t.Fatalf("the report's table has %d kinds, want %d:\n%s", len(got), numKinds, out)
	}
	return got
}

func wantCounts(t *testing.T, out string, want map[string][3]int) {
	t.Helper()
	got := counts(t, out)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: copied, already there, not copied = %v, want %v\n%s", k, got[k], w, out)
		}
	}
}

// openCluster opens the cluster's store, as a node does, to see what it holds.
func openCluster(t *testing.T, url string) *natsjs.Store {
	t.Helper()
	cfg := natsjs.DefaultConfig()
	cfg.URLs = []string{url}
	st, err := natsjs.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// sameHistory checks that the cluster's room holds want, in order, with the same times (to the
// millisecond), kinds, senders and texts.
func sameHistory(t *testing.T, st *natsjs.Store, room string, want []chat.Message) {
	t.Helper()
	got, err := st.Recent(room, len(want)+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d lines in the cluster, want %d", room, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.At.Equal(w.At) || g.Kind != w.Kind || g.From != w.From || g.Text != w.Text {
			t.Fatalf("%s line %d: %v %d %s %q, want %v %d %s %q", room, i, g.At, g.Kind, g.From, g.Text, w.At, w.Kind, w.From, w.Text)
		}
	}
}

// TestMigrate copies a single node's database into a cluster through chatd migrate: every
// kind arrives with its own times; a second run copies nothing; a cluster node started on it
// serves the history, and its new lines go after the copied ones; migrate refuses while the
// node runs.
func TestMigrate(t *testing.T) {
	src := makeSingleNode(t, 3000)
	srv := natstest.Start(t)
	code, out, errOut := migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
	if code != 0 {
		t.Fatalf("chatd migrate: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("chatd migrate:\n%s", out)
	wantCounts(t, out, map[string][3]int{
		"names": {20, 0, 0}, "rooms": {3, 0, 0}, "memberships": {6, 0, 0}, "history lines": {3000, 0, 0},
		"bans": {3, 0, 0}, "queued messages": {2, 0, 0}, "settings": {1, 0, 0}, "web tokens": {2, 0, 0},
	})
	for _, secret := range []string{"lunch?", hashHex("alice-browser"), "AAAAalice"} {
		if strings.Contains(out+errOut, secret) {
			t.Errorf("the report shows %q", secret)
		}
	}
	if !strings.Contains(out, "browser sessions and bot tokens go on working") {
		t.Errorf("the report does not say the web tokens go on working:\n%s", out)
	}

	st := openCluster(t, srv.URL())
	for room, h := range src.history {
		sameHistory(t, st, room, h)
	}
	// History's time ranges find the copied lines by their own times.
	goLines := src.history["#go"]
	got, err := st.History("#go", chat.HistoryRange{After: goLines[99].At, Before: goLines[150].At, Limit: 1000})
	if err != nil || len(got) != 50 || got[0].Text != goLines[100].Text || !got[49].At.Equal(goLines[149].At) {
		t.Fatalf("History(#go) = %d lines, %v", len(got), err)
	}
	id, ok, err := st.Identity("alice")
	if err != nil || !ok || len(id.Keys) != 2 || len(id.Pending) != 1 || id.Pending[0].Fingerprint != "SHA256:alice3" ||
		!id.Created.Equal(src.base.Add(-24*time.Hour)) || !id.Keys[1].Added.Equal(src.base.Add(-23*time.Hour)) {
		t.Fatalf("alice = %+v, %v, %v", id, ok, err)
	}
	if names, err := st.NamesOfKey("SHA256:alice2"); err != nil || !slices.Equal(names, []string{"alice"}) {
		t.Fatalf("NamesOfKey = %v, %v", names, err)
	}
	rooms, err := st.Rooms()
	if err != nil || len(rooms) != 3 {
		t.Fatalf("rooms = %+v, %v", rooms, err)
	}
	if r := rooms[0]; r.Name != "#go" || r.Owner != "alice" || r.Topic != "gophers only" || !r.Private ||
		!slices.Equal(r.Invited, []string{"bob", "Carol"}) || !r.Created.Equal(src.base.Add(-23*time.Hour)) {
		t.Fatalf("#go = %+v", r)
	}
	for name, want := range map[string][]string{"alice": {"#go", "#lobby"}, "bob": {"#go", "#rust"}, "carol": {"#go", "#lobby"}} {
		if got, err := st.Memberships(name); err != nil || !slices.Equal(got, want) {
			t.Fatalf("memberships of %s = %v, %v; want %v", name, got, err, want)
		}
	}
	bans, err := st.Bans()
	if err != nil || len(bans) != 3 || bans[0].Value != "192.0.2.0/24" || bans[0].Reason != "flood" || bans[0].By != "alice" ||
		bans[0].Expires.IsZero() || bans[2].Kind != chat.BanName || bans[2].Value != "mallory" {
		t.Fatalf("bans = %+v, %v", bans, err)
	}
	if v, ok, err := st.Setting("motd"); err != nil || !ok || v != "be kind" {
		t.Fatalf("motd = %q, %v, %v", v, ok, err)
	}
	if tok, err := st.WebToken(chat.WebSession, hashHex("alice-browser")); err != nil || tok.Name != "alice" || tok.Label != "Firefox" {
		t.Fatalf("alice's session = %+v, %v", tok, err)
	}
	if tok, err := st.WebToken(chat.WebBot, hashHex("bob-bot")); err != nil || tok.Name != "bob" {
		t.Fatalf("bob's bot = %+v, %v", tok, err)
	}
	dms, err := st.TakeDMs("alice")
	if err != nil || len(dms) != 1 || dms[0].From != "bob" || dms[0].Text != "lunch?" || dms[0].FromAddr != "192.0.2.7" ||
		!dms[0].At.Equal(src.base.Add(-23*time.Hour)) {
		t.Fatalf("alice's messages = %+v, %v", dms, err)
	}

	// Again: nothing is copied twice, not even the message alice has had since.
	code, out, errOut = migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
	if code != 0 {
		t.Fatalf("second chatd migrate: exit %d\n%s\n%s", code, out, errOut)
	}
	wantCounts(t, out, map[string][3]int{
		"names": {0, 20, 0}, "rooms": {0, 3, 0}, "memberships": {0, 6, 0}, "history lines": {0, 3000, 0},
		"bans": {0, 3, 0}, "queued messages": {0, 2, 0}, "settings": {0, 1, 0}, "web tokens": {0, 2, 0},
	})
	if dms, _ := st.TakeDMs("alice"); len(dms) != 0 {
		t.Fatalf("the message alice had was queued again: %+v", dms)
	}
	sameHistory(t, st, "#lobby", src.history["#lobby"])

	// A node of the cluster serves what was copied, and the new lines go after it.
	node, _ := startNode(t, srv.URL(), "node-a")
	zed := joinOverTCP(t, node, "zed")
	last := src.history["#lobby"][len(src.history["#lobby"])-1]
	zed.out.WaitContains(t, last.From+": "+last.Text)
	zed.send(t, "hello cluster")
	ok = false
	for range 100 { // the node's line reaches the stream as it reaches zed: wait for it to be read back
		got, err := st.Recent("#lobby", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 2 && got[1].Text == "hello cluster" {
			if got[0].Text != last.Text || !got[1].At.After(got[0].At) {
				t.Fatalf("the newest lines of #lobby: %+v", got)
			}
			ok = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !ok {
		t.Fatal("the node's line is not in the cluster's history")
	}

	// With the node running, migrate refuses: the node would take copied lines as new ones.
	code, out, errOut = migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
	if code != 1 || !strings.Contains(errOut, "stop the cluster's nodes first") {
		t.Fatalf("chatd migrate beside a node: exit %d\n%s\n%s", code, out, errOut)
	}
}

// conflictWriter cancels a run once its output holds a text.
type conflictWriter struct {
	mu     sync.Mutex
	buf    strings.Builder
	when   string
	cancel func()
}

func (w *conflictWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.when) {
		w.cancel()
	}
	return len(p), nil
}

// TestMigrateResumes: a run stopped part way (its context cancelled during the history) is
// completed by the next run, and a run after the single node went on adds what it said since:
// each room's history in the cluster is the database's, each line once, in order.
func TestMigrateResumes(t *testing.T) {
	src := makeSingleNode(t, 4000)
	srv := natstest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &conflictWriter{when: "history #go:", cancel: cancel}
	var errOut strings.Builder
	code := run(ctx, []string{"migrate", "--from", src.dir, "--to", srv.URL()}, noEnv, w, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "run it again to go on") {
		t.Fatalf("interrupted chatd migrate: exit %d\n%s\n%s", code, w.buf.String(), errOut.String())
	}
	st := openCluster(t, srv.URL())
	before, _ := st.Recent("#lobby", 5000)
	t.Logf("interrupted with %d of %d lines of #lobby copied", len(before), len(src.history["#lobby"]))

	code, out, stderr := migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
	if code != 0 {
		t.Fatalf("chatd migrate again: exit %d\n%s\n%s", code, out, stderr)
	}
	if c := counts(t, out)["history lines"]; c[0]+c[1] != 4000 || c[2] != 0 {
		t.Fatalf("history lines: %v\n%s", c, out)
	}
	for room, h := range src.history {
		sameHistory(t, st, room, h)
	}

	// The single node ran again before the cluster started: its new lines follow.
	sn := src.reopen(t)
	src.append(sn, 200, time.Now().Add(-time.Hour).Truncate(time.Millisecond))
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
	if code != 0 {
		t.Fatalf("chatd migrate after more lines: exit %d\n%s\n%s", code, out, stderr)
	}
	wantCounts(t, out, map[string][3]int{"history lines": {200, 4000, 0}, "names": {0, 20, 0}})
	for room, h := range src.history {
		sameHistory(t, st, room, h)
	}
}

// TestMigrateConflicts: a name claimed in the cluster by another key is reported and kept
// as the cluster has it, and nothing of the database's person of that name goes to the
// cluster's: not its messages, web tokens, memberships or the ban on its name; a room it owned
// is copied without an owner. A room with a history of its own in the cluster keeps it.
func TestMigrateConflicts(t *testing.T) {
	src := makeSingleNode(t, 400)
	srv := natstest.Start(t)
	st := openCluster(t, srv.URL())
	if _, _, err := st.Claim("Bob", chat.Key{Fingerprint: "SHA256:someone-else"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveRoom(chat.Room{Name: "#lobby"}); err != nil {
		t.Fatal(err)
	}
	st.Append(chat.Message{Room: "#lobby", Kind: chat.KindMessage, From: "zed", Text: "the cluster's own"})
	if err := st.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		code, out, errOut := migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
		if code != 1 || !strings.Contains(errOut, "2 conflicts") {
			t.Fatalf("chatd migrate: exit %d\n%s\n%s", code, out, errOut)
		}
		for _, want := range []string{"name bob: claimed in the cluster by another key", "room #lobby: made in the cluster",
			"room #rust: its owner bob is someone else in the cluster: copied without an owner"} {
			if !strings.Contains(out, want) {
				t.Errorf("the report does not say %q:\n%s", want, out)
			}
		}
		t.Logf("chatd migrate:\n%s", out)
		c := counts(t, out)
		if c["names"][2] != 1 || c["queued messages"][2] != 1 || c["web tokens"][2] != 1 || c["memberships"][2] != 4 || c["rooms"][2] != 1 {
			t.Errorf("counts: %v\n%s", c, out)
		}
	}
	id, _, _ := st.Identity("bob")
	if id.Name != "Bob" || len(id.Keys) != 1 || id.Keys[0].Fingerprint != "SHA256:someone-else" {
		t.Fatalf("the cluster's Bob changed: %+v", id)
	}
	if dms, _ := st.TakeDMs("bob"); len(dms) != 0 {
		t.Fatalf("the database's bob's message went to the cluster's Bob: %+v", dms)
	}
	if _, err := st.WebToken(chat.WebBot, hashHex("bob-bot")); err == nil {
		t.Fatal("the database's bob's bot token signs in as the cluster's Bob")
	}
	if m, _ := st.Memberships("bob"); len(m) != 0 {
		t.Fatalf("the cluster's Bob got memberships: %v", m)
	}
	rooms, _ := st.Rooms()
	for _, r := range rooms {
		if r.Name == "#rust" && r.Owner != "" || r.Name == "#go" && slices.Contains(r.Invited, "bob") {
			t.Fatalf("room %+v", r)
		}
	}
	if got, _ := st.Recent("#lobby", 10); len(got) != 1 || got[0].Text != "the cluster's own" {
		t.Fatalf("#lobby = %+v", got)
	}
	sameHistory(t, st, "#go", src.history["#go"])
	if tok, err := st.WebToken(chat.WebSession, hashHex("alice-browser")); err != nil || tok.Name != "alice" {
		t.Fatalf("alice's session = %+v, %v", tok, err)
	}
}

// TestMigrateRefuses: without a cluster, beside a running single node, from a directory
// without a database.
func TestMigrateRefuses(t *testing.T) {
	src := makeSingleNode(t, 10)
	srv := natstest.Start(t)
	if code, _, errOut := migrateRun(t.Context(), "--from", src.dir); code != 2 || !strings.Contains(errOut, "give --to") {
		t.Fatalf("without --to: exit %d: %s", code, errOut)
	}
	if code, _, errOut := migrateRun(t.Context(), "--from", src.dir, "--to", "http://x"); code != 2 || !strings.Contains(errOut, "want nats://") {
		t.Fatalf("with --to http://: exit %d: %s", code, errOut)
	}
	empty := filepath.Join(t.TempDir(), "nothing")
	if code, _, errOut := migrateRun(t.Context(), "--from", empty, "--to", srv.URL()); code != 1 || !strings.Contains(errOut, "no database") {
		t.Fatalf("from a directory without a database: exit %d: %s", code, errOut)
	}
	lock, err := datadir.Acquire(src.dir) // as a running single node holds it
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := migrateRun(t.Context(), "--from", src.dir, "--to", srv.URL())
	lock.Unlock()
	if code != 1 || !strings.Contains(errOut, "needs the server stopped") {
		t.Fatalf("beside a running server: exit %d: %s", code, errOut)
	}
	// Nothing was written to the cluster.
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Stream(t.Context(), "chatd_rooms"); err == nil {
		t.Fatal("a refused migrate made the cluster's streams")
	}
	// --data-dir serves as --from, and --nats (CHAT_NATS) as --to.
	var out, stderr strings.Builder
	env := func(k string) (string, bool) {
		if k == "CHAT_NATS" {
			return srv.URL(), true
		}
		return "", false
	}
	if code := run(t.Context(), []string{"--data-dir", src.dir, "migrate"}, env, &out, &stderr); code != 0 {
		t.Fatalf("chatd migrate with CHAT_NATS: exit %d\n%s\n%s", code, out.String(), stderr.String())
	}
}

// BenchmarkMigrate copies a database of 100 000 lines in four rooms (and the other records of
// makeSingleNode) into an embedded NATS server, through chatd migrate: history lines/s is the
// figure, the whole run's.
func BenchmarkMigrate(b *testing.B) {
	src := makeSingleNode(b, 100_000)
	for b.Loop() {
		srv := natstest.Start(b)
		start := time.Now()
		code, out, errOut := migrateRun(b.Context(), "--from", src.dir, "--to", srv.URL())
		took := time.Since(start)
		if code != 0 {
			b.Fatalf("chatd migrate: exit %d\n%s\n%s", code, out, errOut)
		}
		if c := counts(b, out)["history lines"]; c[0] != 100_000 {
			b.Fatalf("history lines: %v", c)
		}
		b.ReportMetric(100_000/took.Seconds(), "lines/s")
		srv.Stop()
	}
}
