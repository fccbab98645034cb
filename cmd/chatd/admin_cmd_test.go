package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chatd/chat"
	"chatd/internal/roomtest"
	"chatd/store/sqlite"
)

// adminRun runs the chatd binary with args (an admin command) and returns its exit code and
// output.
func adminRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), roomtest.HangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, chatdBin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	cmd.Dir = t.TempDir()
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("chatd %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// exportLines runs chatd export on dataDir and decodes its lines.
func exportLines(t *testing.T, dataDir string, args ...string) []exported {
	t.Helper()
	code, out, errOut := adminRun(t, append([]string{"--data-dir", dataDir, "export"}, args...)...)
	if code != 0 {
		t.Fatalf("chatd export: exit %d: %s", code, errOut)
	}
	var lines []exported
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e exported
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines = append(lines, e)
	}
	return lines
}

// pacedChatter is a TCP client that says a line and then waits until the server has taken
// it: each line is followed by /topic, whose answer (to this client alone) comes once the line
// before it has gone to the room.
type pacedChatter struct {
	conn net.Conn
	acks chan struct{}
}

func joinPaced(t *testing.T, srv *chatd, name string) *pacedChatter {
	t.Helper()
	conn, err := net.Dial("tcp", srv.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &pacedChatter{conn: conn, acks: make(chan struct{}, 16)}
	go func() {
		defer close(c.acks)
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			if strings.HasSuffix(sc.Text(), "has no topic") {
				c.acks <- struct{}{}
			}
		}
	}()
	if err := c.say(name); err != nil { // the first line is the name
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func (c *pacedChatter) say(line string) error {
	if _, err := fmt.Fprintf(c.conn, "%s\n/topic\n", line); err != nil {
		return err
	}
	select {
	case _, ok := <-c.acks:
		if !ok {
			return errors.New("connection closed")
		}
		return nil
	case <-time.After(roomtest.HangGuard):
		return errors.New("no answer to /topic")
	}
}

// TestBackupWhileChatting: chatd backup while 20 clients chat. The copy opens, passes chatd
// check, and holds every message committed before the backup started; restore is refused while
// the server runs, and once it is stopped the server starts on the restored data with its
// history.
func TestBackupWhileChatting(t *testing.T) {
	dataDir := t.TempDir()
	srv := startChatd(t, "--data-dir", dataDir, "--msg-rate", "0", "--max-conns-per-ip", "0", "--conn-rate-per-ip", "0")
	const clients, before = 20, 20
	chatters := make([]*pacedChatter, clients)
	for i := range chatters {
		chatters[i] = joinPaced(t, srv, fmt.Sprintf("c%02d", i))
	}
	var wg sync.WaitGroup
	for i, c := range chatters {
		wg.Go(func() {
			for j := range before {
				if err := c.say(fmt.Sprintf("before %03d", j)); err != nil {
					t.Errorf("c%02d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The store commits within its flush interval; export reads what is committed.
	settle(t, "the first lines committed", func() bool {
		return len(exportLines(t, dataDir)) == clients*before
	})

	// Everyone keeps talking through the backup.
	var stop atomic.Bool
	var during atomic.Int64
	for i, c := range chatters {
		wg.Go(func() {
			for j := 0; !stop.Load(); j++ {
				if err := c.say(fmt.Sprintf("during %04d", j)); err != nil {
					t.Errorf("c%02d: %v", i, err)
					return
				}
				during.Add(1)
			}
		})
	}
	settle(t, "the chat going on", func() bool { return during.Load() >= 2*clients })
	committed := exportLines(t, dataDir) // everything committed before the backup starts
	backup := filepath.Join(t.TempDir(), "chat-backup.db")
	code, out, errOut := adminRun(t, "--data-dir", dataDir, "backup", backup)
	atBackup := during.Load()
	settle(t, "the chat going on after the backup", func() bool { return during.Load() >= atBackup+clients })
	stop.Store(true)
	wg.Wait()
	if code != 0 {
		t.Fatalf("chatd backup: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("chatd backup:\n%s", out)
	if !strings.Contains(out, "integrity check: ok") || !strings.Contains(out, "host keys are not in the backup") {
		t.Errorf("backup output:\n%s", out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v", fi, err)
	}

	// The copy, as a data directory of its own, passes the check and holds what was committed.
	copyDir := t.TempDir()
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(copyDir, "chat.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := adminRun(t, "--data-dir", copyDir, "check"); code != 0 || !strings.Contains(out, "ok    database") {
		t.Errorf("chatd check of the backup: exit %d\n%s%s", code, out, errOut)
	}
	inBackup := map[int64]exported{}
	backedUp := exportLines(t, copyDir)
	for _, e := range backedUp {
		inBackup[e.ID] = e
	}
	for _, e := range committed {
		if got, ok := inBackup[e.ID]; !ok || got != e {
			t.Fatalf("message %+v, committed before the backup, is not in it (%+v)", e, got)
		}
	}
	t.Logf("%d messages committed before the backup, %d in it, %d said during the test", len(committed), len(backedUp), during.Load())

	// Restore refuses while the server runs.
	code, out, errOut = adminRun(t, "--data-dir", dataDir, "restore", backup)
	want := fmt.Sprintf("is in use by another chatd (pid %d)", srv.cmd.Process.Pid)
	if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "needs the server stopped") {
		t.Errorf("restore beside a running server: exit %d, want 1 saying %q\n%s%s", code, want, out, errOut)
	}
	if code, _ := srv.stop(t); code != 0 {
		t.Fatalf("chatd exited %d", code)
	}
	code, out, errOut = adminRun(t, "--data-dir", dataDir, "restore", backup)
	if code != 0 || !strings.Contains(out, "restored "+backup) || !strings.Contains(out, "kept as "+filepath.Join(dataDir, "chat.db.before-restore-")) {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("chatd restore:\n%s", out)

	// The server starts on the restored data: its history ends where the backup does.
	srv = startChatd(t, "--data-dir", dataDir)
	if got := exportLines(t, dataDir); len(got) != len(backedUp) {
		t.Errorf("after the restore the database has %d messages, the backup %d", len(got), len(backedUp))
	}
	newest := backedUp[len(backedUp)-1]
	hist, err := sshAs(t, srv, clientKey(t), "reader", "history", "5")
	if err != nil || !strings.Contains(hist, "] "+newest.From+": "+newest.Text+"\n") {
		t.Errorf("history after the restore: %v, want %s: %s last\n%s", err, newest.From, newest.Text, hist)
	}
}

// TestNamesRelease: names list and show run beside the server; release is refused until it is
// stopped, then frees the name for a new key, and the old lines keep their name.
func TestNamesRelease(t *testing.T) {
	dataDir := t.TempDir()
	oldKey, newKey := clientKey(t), clientKey(t)
	srv := startChatd(t, "--data-dir", dataDir)
	alice := startProc(t, "ssh", opensshArgs(srv.sshPort(), oldKey, "", "-T", "alice@127.0.0.1")...)
	alice.stdout.WaitLine(t, "* alice joined #lobby (1 online)")
	alice.send(t, "/join #garden")
	alice.stdout.WaitContains(t, "* alice joined #garden (1 online)")
	alice.send(t, "my last words before losing my key")
	alice.send(t, "/quit")
	alice.wait(t)

	code, out, errOut := adminRun(t, "--data-dir", dataDir, "names", "list")
	if code != 0 || !strings.Contains(out, "NAME") || !strings.Contains(out, "alice") || !strings.Contains(out, "#garden") {
		t.Errorf("names list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = adminRun(t, "--data-dir", dataDir, "names", "show", "ALICE")
	if code != 0 || !strings.Contains(out, "ssh-ed25519 "+keyFingerprint(t, oldKey)+"  added ") || !strings.Contains(out, "owns:        #garden") {
		t.Errorf("names show: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("names show alice:\n%s", out)
	if code, _, errOut := adminRun(t, "--data-dir", dataDir, "names", "show", "nobody"); code != 1 || !strings.Contains(errOut, `nobody has registered "nobody"`) {
		t.Errorf("names show of an unknown name: exit %d: %s", code, errOut)
	}
	code, _, errOut = adminRun(t, "--data-dir", dataDir, "names", "release", "alice")
	if code != 1 || !strings.Contains(errOut, "in use by another chatd") || !strings.Contains(errOut, "would not see the release") {
		t.Errorf("release beside a running server: exit %d: %s", code, errOut)
	}

	srv.stop(t)
	code, out, errOut = adminRun(t, "--data-dir", dataDir, "names", "release", "alice")
	if code != 0 || !strings.Contains(out, "released alice: deleted 1 key") || !strings.Contains(out, "rooms now without an owner: #garden") ||
		!strings.Contains(out, "the history keeps 1 message under the name alice") {
		t.Fatalf("names release: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("names release alice:\n%s", out)

	srv = startChatd(t, "--data-dir", dataDir)
	hist, err := sshAs(t, srv, newKey, "alice", "history", "#garden")
	if err != nil || !strings.Contains(hist, "] alice: my last words before losing my key") {
		t.Errorf("the new alice's history of #garden: %v\n%s", err, hist)
	}
	if out, err := sshAs(t, srv, oldKey, "alice", "who"); err == nil {
		t.Errorf("the old key after the new one claimed alice: %v\n%s", err, out)
	}
	code, out, _ = adminRun(t, "--data-dir", dataDir, "names", "show", "alice")
	if code != 0 || !strings.Contains(out, keyFingerprint(t, newKey)) || strings.Contains(out, keyFingerprint(t, oldKey)) {
		t.Errorf("names show after the new claim: exit %d\n%s", code, out)
	}
}

// TestExportFilters: chatd export writes JSON lines, oldest first, of a room and from a time.
func TestExportFilters(t *testing.T) {
	dataDir := t.TempDir()
	st, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dataDir, "chat.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"#lobby", "#go"} {
		if err := st.SaveRoom(chat.Room{Name: r}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	for i := range 10 {
		room, kind := "#lobby", chat.KindMessage
		if i%2 == 1 {
			room = "#go"
		}
		if i == 9 {
			kind = chat.KindAction
		}
		st.Append(chat.Message{At: start.Add(time.Duration(i) * time.Hour), Kind: kind, Room: room, From: "alice", Text: fmt.Sprintf("line %d <3", i)})
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	all := exportLines(t, dataDir)
	if len(all) != 10 {
		t.Fatalf("export: %d lines, want 10", len(all))
	}
	first := exported{ID: all[0].ID, Time: start.Local().Format("2006-01-02T15:04:05.000Z07:00"), Room: "#lobby", From: "alice", Kind: "message", Text: "line 0 <3"}
	if all[0] != first || all[9].Kind != "action" || all[9].Room != "#go" {
		t.Errorf("export: first %+v (want %+v), last %+v", all[0], first, all[9])
	}
	_, raw, _ := adminRun(t, "--data-dir", dataDir, "export", "--room", "lobby")
	if line, _, _ := strings.Cut(raw, "\n"); !strings.HasPrefix(line, fmt.Sprintf(`{"id":%d,"time":"`, all[0].ID)) || !strings.HasSuffix(line, `"text":"line 0 <3"}`) {
		t.Errorf("a raw line: %s", line)
	}
	goOnly := exportLines(t, dataDir, "--room", "go")
	if len(goOnly) != 5 || goOnly[0].Text != "line 1 <3" {
		t.Errorf("--room go: %+v", goOnly)
	}
	since := exportLines(t, dataDir, "--room", "#go", "--since", start.Add(4*time.Hour).Format(time.RFC3339))
	if len(since) != 3 || since[0].Text != "line 5 <3" {
		t.Errorf("--room #go --since +4h: %+v", since)
	}
	if got := exportLines(t, dataDir, "--since", "1h"); len(got) != 0 { // the messages are of 2026-01-02
		if time.Now().Before(start) {
			t.Skip("this machine's clock is before the test's messages")
		}
		t.Errorf("--since 1h: %d lines", len(got))
	}
	if code, _, errOut := adminRun(t, "--data-dir", dataDir, "export", "--room", "#nowhere"); code != 1 || !strings.Contains(errOut, "no room #nowhere") {
		t.Errorf("export of a room that does not exist: exit %d: %s", code, errOut)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-02T03:04:05Z":      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02T03:04:05+01:00": time.Date(2026, 1, 2, 2, 4, 5, 0, time.UTC),
		"2026-01-02":                time.Date(2026, 1, 2, 0, 0, 0, 0, time.Local),
		"2026-01-02 15:04":          time.Date(2026, 1, 2, 15, 4, 0, 0, time.Local),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.AddDate(0, 0, -7),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5h", "2026-13-01", "7days"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) succeeded", bad)
		}
	}
}

// TestCheck: chatd check passes on a server's data directory, and names what is wrong with a
// damaged database and bad host key files.
func TestCheck(t *testing.T) {
	dataDir := t.TempDir()
	startChatd(t, "--data-dir", dataDir).stop(t)
	code, out, errOut := adminRun(t, "--data-dir", dataDir, "check")
	if code != 0 || strings.Contains(out, "FAIL") || !strings.Contains(out, "ok    database") || !strings.Contains(out, "ok    host key") {
		t.Fatalf("check of a good data directory: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("chatd check:\n%s", out)

	// Host keys: one others may read, one that is not a key, a .pub of another key.
	keyDir := filepath.Join(dataDir, "hostkeys")
	good := filepath.Join(keyDir, "ssh_host_ed25519_key")
	if err := os.Chmod(good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keyDir, "ssh_host_rsa_key"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ecdsa := filepath.Join(keyDir, "ssh_host_ecdsa_key")
	sshKeygen(t, "-q", "-t", "ecdsa", "-N", "", "-f", ecdsa)
	other := clientKey(t)
	pub, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ecdsa+".pub", pub, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = adminRun(t, "--data-dir", dataDir, "check")
	for _, want := range []string{
		"FAIL  host key " + good + " is accessible by others (mode 0644): run chmod 600 " + good,
		"FAIL  host key " + filepath.Join(keyDir, "ssh_host_rsa_key") + ": not a valid private key",
		"FAIL  host key " + ecdsa + ": " + ecdsa + ".pub is not this key's public half",
		"ok    database",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q", want)
		}
	}
	if code != 1 || !strings.Contains(errOut, "chatd check: 3 problems") {
		t.Errorf("check with bad host keys: exit %d\n%s%s", code, out, errOut)
	}

	// A damaged database.
	damagedDir := t.TempDir()
	db := filepath.Join(damagedDir, "chat.db")
	st, err := sqlite.Open(sqlite.Config{Path: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveRoom(chat.Room{Name: "#lobby"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		st.Append(chat.Message{Kind: chat.KindMessage, Room: "#lobby", From: "a", Text: fmt.Sprintf("%d %s", i, strings.Repeat("z", 200))})
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+4096; i++ {
		b[i] = 0x5A
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = adminRun(t, "--data-dir", damagedDir, "check")
	if code != 1 || !strings.Contains(out, "FAIL  database "+db) {
		t.Errorf("check of a damaged database: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("chatd check of a damaged database:\n%s", out)

	// No database at all.
	code, out, _ = adminRun(t, "--data-dir", t.TempDir(), "check")
	if code != 1 || !strings.Contains(out, "FAIL  database: no database at") {
		t.Errorf("check without a database: exit %d\n%s", code, out)
	}
}

// TestAdminUsage: usage mistakes exit 2 with the command's usage; -h exits 0.
func TestAdminUsage(t *testing.T) {
	dataDir := t.TempDir()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backup"}, 2, "usage: chatd backup FILE"},
		{[]string{"backup", "a", "b"}, 2, `unexpected argument "b"`},
		{[]string{"backup", "-h"}, 0, "host keys are not in the backup"},
		{[]string{"restore"}, 2, "usage: chatd restore FILE"},
		{[]string{"names"}, 2, "usage: chatd names list | show NAME | release [--keep-rooms] NAME"},
		{[]string{"names", "forget", "x"}, 2, `unknown command "forget"`},
		{[]string{"names", "show"}, 2, "missing argument"},
		{[]string{"names", "release", "--bogus", "x"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"export", "--since", "soon"}, 2, `"soon" is not a time`},
		{[]string{"export", "--room", "#no way"}, 2, "--room"},
		{[]string{"export", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"check", "-h"}, 0, "usage: chatd check"},
		{[]string{"backup", filepath.Join(t.TempDir(), "b.db")}, 1, "no database at " + filepath.Join(dataDir, "chat.db")},
		{[]string{"names", "list"}, 1, "chatd creates it on first start"},
	} {
		code, _, errOut := adminRun(t, append([]string{"--data-dir", dataDir}, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("chatd %s: exit %d, want %d saying %q:\n%s", strings.Join(tt.args, " "), code, tt.code, tt.want, errOut)
		}
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("the commands left files in the data directory: %v", entries)
	}
}
