package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pubLine is the authorized_keys line of the key pair made by clientKey.
func pubLine(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// keyFingerprint is the key's SHA256 fingerprint, as ssh-keygen -l prints it.
func keyFingerprint(t *testing.T, key string) string {
	t.Helper()
	return strings.Fields(sshKeygen(t, "-l", "-f", key+".pub"))[1]
}

// writeOpsFile writes an --ops file that names the keys.
func writeOpsFile(t *testing.T, keys ...string) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(pubLine(t, k) + "\n")
	}
	path := filepath.Join(t.TempDir(), "ops")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sshShowingBanners is sshAs at a log level that prints the server's banners, where a refused
// login is told why.
func sshShowingBanners(t *testing.T, srv *chatd, key, user string, args ...string) (string, error) {
	t.Helper()
	all := opensshArgs(srv.sshPort(), key, "", append([]string{user + "@127.0.0.1"}, args...)...)
	for i, a := range all {
		if a == "LogLevel=ERROR" {
			all[i] = "LogLevel=INFO" // ssh prints banners from INFO up
		}
	}
	out, err := exec.Command("ssh", all...).CombinedOutput()
	return string(out), err
}

// TestKeysAddOfSomeoneElsesKeyIsHarmless is the attacker review's finding 5: mallory pastes bob's
// public key into /keys add, and an operator then bans mallory. The key only ever becomes
// pending (bob never logs in as mallory): /whois mallory does not show it, the ban covers
// mallory's own key and not bob's, and bob logs in as before.
func TestKeysAddOfSomeoneElsesKeyIsHarmless(t *testing.T) {
	opKey, malloryKey, bobKey := clientKey(t), clientKey(t), clientKey(t)
	malloryFP, bobFP := keyFingerprint(t, malloryKey), keyFingerprint(t, bobKey)
	srv := startChatd(t, "--data-dir", t.TempDir(), "--ops", writeOpsFile(t, opKey))
	if out, err := sshAs(t, srv, bobKey, "bob", "who"); err != nil { // bob registers his name
		t.Fatalf("bob: %v\n%s", err, out)
	}

	mallory := startProc(t, "ssh", opensshArgs(srv.sshPort(), malloryKey, "", "-T", "mallory@127.0.0.1")...)
	mallory.stdout.WaitLine(t, "* mallory joined #lobby (1 online)")
	mallory.send(t, "/keys add "+pubLine(t, bobKey))
	mallory.stdout.WaitContains(t, "* ssh-ed25519 "+bobFP+" is pending: it becomes one of mallory's keys once it has logged in as mallory, before ")
	mallory.stdout.WaitContains(t, "* to confirm it, log in once as mallory with that key: ssh -i KEYFILE -p PORT mallory@HOST")
	srv.logs.WaitContains(t, "key proposed")

	op := startProc(t, "ssh", opensshArgs(srv.sshPort(), opKey, "", "-T", "op@127.0.0.1")...)
	op.stdout.WaitLine(t, "* op joined #lobby (2 online)")
	op.send(t, "/whois mallory")
	op.stdout.WaitLine(t, "*   ssh-ed25519 "+malloryFP)
	op.send(t, "/ban mallory spam")
	op.stdout.WaitLine(t, "* banned #1 name mallory by op, for ever: spam")
	op.stdout.WaitLine(t, "* banned #2 key "+malloryFP+" by op, for ever: spam")
	mallory.stdout.WaitLine(t, "error: you were banned by op: spam")
	mallory.wait(t)
	op.send(t, "/bans")
	op.stdout.WaitLine(t, "*   #2 key "+malloryFP+" by op, for ever: spam")
	op.send(t, "/whois mallory")
	op.stdout.WaitLine(t, "* mallory: offline")
	op.send(t, "/motd") // a marker: everything before it has been answered
	op.stdout.WaitLine(t, "* (no message of the day)")
	if text := op.stdout.Text(); strings.Contains(text, bobFP) {
		t.Fatalf("the operator saw bob's key as mallory's, or banned it:\n%s", text)
	}

	out, err := sshAs(t, srv, bobKey, "bob", "who")
	if err != nil || !strings.Contains(out, "op") {
		t.Fatalf("bob after the ban of mallory: %v\n%s", err, out)
	}
	if strings.Contains(srv.logs.Text(), "key confirmed") {
		t.Error("bob's key was confirmed for mallory")
	}
	op.stdin.Close()
	op.wait(t)
}

// TestKeysAddIsConfirmedByItsFirstLogin: a key added with /keys add is pending until it logs in
// as the name, which the real ssh client does with the private key: that login confirms it.
func TestKeysAddIsConfirmedByItsFirstLogin(t *testing.T) {
	desktop, laptop := clientKey(t), clientKey(t)
	laptopFP := keyFingerprint(t, laptop)
	srv := startChatd(t, "--data-dir", t.TempDir())
	alice := startProc(t, "ssh", opensshArgs(srv.sshPort(), desktop, "", "-T", "alice@127.0.0.1")...)
	alice.stdout.WaitLine(t, "* alice joined #lobby (1 online)")
	alice.send(t, "/keys add "+pubLine(t, laptop)+" laptop")
	alice.stdout.WaitLine(t, "* pending, not usable until each logs in once as alice to confirm it (ssh -i KEYFILE -p PORT alice@HOST):")
	alice.stdout.WaitContains(t, "*   ssh-ed25519 "+laptopFP+" added ")

	if out, err := sshAs(t, srv, laptop, "alice", "who"); err != nil {
		t.Fatalf("the laptop's first login as alice: %v\n%s", err, out)
	}
	srv.logs.WaitContains(t, "key confirmed")
	alice.send(t, "/keys")
	alice.stdout.Wait(t, "a listing with both keys active", func() bool {
		text := alice.stdout.Text()
		i := strings.LastIndex(text, "* keys of alice:")
		return i >= 0 && strings.Count(text[i:], "\n*   ssh-ed25519 ") == 2 && !strings.Contains(text[i:], "pending")
	})
	alice.stdin.Close()
	alice.wait(t)
}

// TestOneKeyCannotClaimASixthName: a key holds at most 5 names; the 6th login is refused, and
// the ssh user is told why, and which names the key holds.
func TestOneKeyCannotClaimASixthName(t *testing.T) {
	key := clientKey(t)
	srv := startChatd(t, "--data-dir", t.TempDir())
	for i := 1; i <= 5; i++ {
		if out, err := sshAs(t, srv, key, fmt.Sprintf("nick%d", i), "who"); err != nil {
			t.Fatalf("name %d: %v\n%s", i, err, out)
		}
	}
	out, err := sshShowingBanners(t, srv, key, "nick6", "who")
	want := "chatd: this key holds too many names: it is the key of nick1, nick2, nick3, nick4, nick5 already, and a key may hold at most 5; log in as one of them"
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("a 6th name: %v\n%s\nwant the banner %q", err, out, want)
	}
	if out, err := sshAs(t, srv, key, "nick3", "who"); err != nil {
		t.Errorf("a name the key holds: %v\n%s", err, out)
	}
}
