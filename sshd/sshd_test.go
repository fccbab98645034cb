package sshd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/room"
)

func TestPlainSessionsChat(t *testing.T) {
	ts := startServer(t, room.Config{})
	alice := ts.joinAs(t, "alice", false)
	alice.stdout.WaitLine(t, "* alice joined #lobby (1 online)")
	bob := ts.joinAs(t, "bob", false)
	alice.stdout.WaitLine(t, "* bob joined #lobby (2 online)")

	alice.send(t, "hi bob")
	bob.stdout.WaitLine(t, "alice: hi bob")
	bob.send(t, "hi alice", "/me waves", "/who")
	alice.stdout.WaitLine(t, "bob: hi alice")
	alice.stdout.WaitLine(t, "** bob waves")
	bob.stdout.WaitLine(t, "* 2 online in #lobby: alice, bob")
	if strings.Contains(alice.stdout.Raw(), "\x1b") {
		t.Errorf("a session without a PTY got escape codes: %q", alice.stdout.Raw())
	}
	if strings.Contains(bob.stdout.Text(), "bob: hi alice") {
		t.Error("a plain session got its own message echoed")
	}

	// EOF on stdin leaves, and the session ends with status 0.
	alice.stdin.Close()
	bob.stdout.WaitLine(t, "* alice left #lobby")
	if got := alice.exitStatus(t); got != 0 {
		t.Errorf("exit status %d after EOF, want 0", got)
	}
	bob.send(t, "bye")
	bob.stdout.WaitLine(t, "* goodbye, bob!")
	if got := bob.exitStatus(t); got != 0 {
		t.Errorf("exit status %d after bye, want 0", got)
	}
}

func TestKeylessUsersGetIn(t *testing.T) {
	ts := startServer(t, room.Config{})
	carol := open(t, ts.dial(t, "carol", true), false)
	carol.stdout.WaitLine(t, "* carol joined #lobby (1 online)")
}

func TestInteractiveSession(t *testing.T) {
	ts := startServer(t, room.Config{})
	alice := ts.joinAs(t, "alice", true)
	bob := ts.joinAs(t, "bob", false)
	alice.stdout.WaitContains(t, "* bob joined #lobby (2 online)")

	// What alice types reaches bob; her own line comes back to her in the room's order.
	if _, err := alice.stdin.Write([]byte("hello bob\r")); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "alice: hello bob")
	alice.stdout.WaitContains(t, "alice: hello bob")

	// A mention rings alice's bell and is coloured; bob's name has its colour.
	bob.send(t, "hey alice")
	alice.stdout.WaitContains(t, "bob: hey alice")
	raw := alice.stdout.Raw()
	if !strings.Contains(raw, "\a") {
		t.Error("a mention did not ring the bell")
	}
	if !strings.Contains(raw, fmt.Sprintf("\x1b[1;38;5;%sm", colourOf(t, raw, "bob"))) {
		t.Error("bob's name is not coloured")
	}

	// Window changes are always drained: many of them must not stall the session.
	for i := range 20 {
		if err := alice.sess.WindowChange(30+i%5, 60+i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.stdin.Write([]byte("after resizes\r")); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "alice: after resizes")

	// A bracketed paste of several lines sends each line.
	if _, err := alice.stdin.Write([]byte("\x1b[200~pasted one\rpasted two\r\x1b[201~")); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "alice: pasted one")
	bob.stdout.WaitLine(t, "alice: pasted two")

	// ^C leaves.
	if _, err := alice.stdin.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "* alice left #lobby")
	alice.stdout.WaitContains(t, "goodbye, alice!")
	if got := alice.exitStatus(t); got != 0 {
		t.Errorf("exit status %d after ^C, want 0", got)
	}
}

// colourOf finds the 256-colour code the server used for name in raw output.
func colourOf(t *testing.T, raw, name string) string {
	t.Helper()
	i := strings.Index(raw, "m"+name+"\x1b[0m")
	j := strings.LastIndex(raw[:max(i, 0)], "\x1b[1;38;5;")
	if i < 0 || j < 0 {
		t.Fatalf("no coloured %q in %q", name, raw)
	}
	return raw[j+len("\x1b[1;38;5;") : i]
}

func TestCtrlDLeaves(t *testing.T) {
	ts := startServer(t, room.Config{})
	bob := ts.joinAs(t, "bob", false)
	alice := ts.joinAs(t, "alice", true)
	if _, err := alice.stdin.Write([]byte{4}); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "* alice left #lobby")
	if got := alice.exitStatus(t); got != 0 {
		t.Errorf("exit status %d after ^D, want 0", got)
	}
}

func TestNamesRefused(t *testing.T) {
	ts := startServer(t, room.Config{})
	ts.joinAs(t, "Alice", false)
	tests := []struct {
		user, want string
	}{
		{"alice", `error: name "alice" is taken by someone online`},
		{"ALICE", `error: name "ALICE" is taken by someone online`},
		{"bad name", `error: name "bad name" may only contain letters, digits, '_', '.' and '-'`},
		{"-dash", `error: name "-dash" must start with a letter or a digit`},
		{strings.Repeat("x", 33), "is too long (at most 32 characters)"},
		{"evil\x1b[2J", `error: name "evil" may only contain`},
	}
	for _, tt := range tests {
		for _, pty := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pty=%v", tt.user, pty), func(t *testing.T) {
				cl := open(t, ts.dial(t, tt.user, false), pty)
				if got := cl.exitStatus(t); got != 1 {
					t.Errorf("exit status %d, want 1", got)
				}
				cl.stdout.WaitClosed(t)
				cl.stderr.WaitClosed(t)
				// With a PTY, stderr is merged, and long lines are wrapped with a hanging indent.
				out := strings.ReplaceAll(cl.stderr.Text()+cl.stdout.Text(), "\n  ", " ")
				if !strings.Contains(out, tt.want) {
					t.Errorf("got %q, want it to contain %q", out, tt.want)
				}
				if strings.Contains(cl.stderr.Raw()+cl.stdout.Raw(), "\x1b[2J") {
					t.Error("the refused name's escape code was echoed")
				}
			})
		}
	}
	if got := ts.room.Names(); len(got) != 1 {
		t.Errorf("online %v, want only Alice", got)
	}
}

func TestExec(t *testing.T) {
	ts := startServer(t, room.Config{})
	ts.joinAs(t, "bob", false)
	ts.joinAs(t, "Alice", false)
	tests := []struct {
		cmd        string
		status     int
		stdout     string
		stderrPart string
	}{
		{"who", 0, "Alice\nbob\n", ""},
		{"names", 0, "Alice\nbob\n", ""},
		{"rm -rf /", 1, "", `error: unknown command "rm" (try: help)`},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			sess, err := ts.dial(t, "carol", false).NewSession()
			if err != nil {
				t.Fatal(err)
			}
			cl := newClient(t, sess)
			if err := sess.Start(tt.cmd); err != nil {
				t.Fatal(err)
			}
			if got := cl.exitStatus(t); got != tt.status {
				t.Errorf("exit status %d, want %d", got, tt.status)
			}
			cl.stdout.WaitClosed(t)
			cl.stderr.WaitClosed(t)
			if got := cl.stdout.Raw(); got != tt.stdout {
				t.Errorf("stdout %q, want %q", got, tt.stdout)
			}
			if !strings.Contains(cl.stderr.Raw(), tt.stderrPart) {
				t.Errorf("stderr %q, want %q", cl.stderr.Raw(), tt.stderrPart)
			}
		})
	}
	if names := ts.room.Names(); len(names) != 2 {
		t.Errorf("exec joined the room: %v", names)
	}
}

// TestOpenSSH drives the server with the real OpenSSH client.
func TestOpenSSH(t *testing.T) {
	ts := startServer(t, room.Config{})
	ssh := openSSH(t, ts)

	observer := ts.joinAs(t, "observer", false)

	t.Run("piped input", func(t *testing.T) {
		cmd := ssh("alice", "-T")
		cmd.Stdin = strings.NewReader("hello from openssh\n/me waves\n\x1b]0;x\x07title\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ssh -T: %v\n%s", err, out)
		}
		observer.stdout.WaitLine(t, "* alice joined #lobby (2 online)")
		observer.stdout.WaitLine(t, "alice: hello from openssh")
		observer.stdout.WaitLine(t, "** alice waves")
		observer.stdout.WaitLine(t, "alice: title")
		observer.stdout.WaitLine(t, "* alice left #lobby")
		if !strings.Contains(string(out), "* welcome to chatd, alice!") || strings.Contains(string(out), "\x1b") {
			t.Errorf("ssh -T output %q: want the welcome and no escape codes", out)
		}
	})
	t.Run("who", func(t *testing.T) {
		out, err := ssh("alice", "who").Output()
		if err != nil {
			t.Fatalf("ssh host who: %v", err)
		}
		if string(out) != "observer\n" {
			t.Errorf("who printed %q", out)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		cmd := ssh("alice", "frobnicate")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v, want status 1", err)
		}
		if !strings.Contains(stderr.String(), `error: unknown command "frobnicate"`) {
			t.Errorf("stderr %q", stderr.String())
		}
	})
	t.Run("pty", func(t *testing.T) {
		// -tt with piped stdin: the line editor with a 0x0 window, which means 80x24.
		cmd := ssh("carol", "-tt")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		observer.stdout.WaitLine(t, "* carol joined #lobby (2 online)")
		fmt.Fprint(stdin, "typed in a terminal\r")
		observer.stdout.WaitLine(t, "carol: typed in a terminal")
		fmt.Fprint(stdin, "bye\r")
		observer.stdout.WaitLine(t, "* carol left #lobby")
		if err := cmd.Wait(); err != nil {
			t.Errorf("ssh -tt: %v", err)
		}
	})
}

// openSSH returns a maker of OpenSSH client commands logging in to ts with a fresh key,
// checking the host key.
func openSSH(t *testing.T, ts *testServer) func(user string, args ...string) *exec.Cmd {
	t.Helper()
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatal("the OpenSSH client is required (apt-get install openssh-client)")
	}
	key := writeKeyFile(t, t.TempDir())
	knownHosts := ts.writeKnownHosts(t)
	host, port, _ := strings.Cut(ts.addr, ":")
	return func(user string, args ...string) *exec.Cmd {
		base := []string{"-F", "/dev/null", "-p", port, "-i", key, "-o", "IdentitiesOnly=yes",
			"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", user + "@" + host}
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		t.Cleanup(cancel)
		return exec.CommandContext(ctx, sshBin, append(base, args...)...)
	}
}

func TestEscapesNeverReachOthers(t *testing.T) {
	ts := startServer(t, room.Config{})
	plain := ts.joinAs(t, "plain", false)
	term := ts.joinAs(t, "term", true)
	mallory := ts.joinAs(t, "mallory", false)
	mallory.send(t, "\x1b]0;x\x07retitled", "\x1b[2Jcleared", "bell\a\a", "\u009b2Jc1", "done")
	plain.stdout.WaitLine(t, "mallory: done")
	term.stdout.WaitContains(t, "mallory: done")
	for name, raw := range map[string]string{"plain": plain.stdout.Raw(), "term": term.stdout.Raw()} {
		for _, bad := range []string{"\x1b]0;x", "\x1b]", "\x1b[2J", "\u009b", "bell\a"} {
			if strings.Contains(raw, bad) {
				t.Errorf("%s received %q", name, bad)
			}
		}
	}
	for _, want := range []string{"mallory: retitled", "mallory: cleared", "mallory: bell", "mallory: c1"} {
		if !plain.stdout.HasLine(want) {
			t.Errorf("plain did not get %q", want)
		}
	}
}

func TestSlowClientIsDroppedOthersKeepReceiving(t *testing.T) {
	ts := startServer(t, room.Config{WriteTimeout: 2 * time.Second})
	observer := ts.joinAs(t, "observer", false)
	// slow opens a session and never reads from it: once the SSH window (2 MB) is used up, its
	// writer blocks.
	sess, err := ts.dial(t, "slow", false).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.StdoutPipe(); err != nil { // never read
		t.Fatal(err)
	}
	if _, err := sess.StdinPipe(); err != nil { // kept open: EOF would mean leaving
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	observer.stdout.WaitLine(t, "* slow joined #lobby (2 online)")
	sender := ts.joinAs(t, "sender", false)

	msg := strings.Repeat("x", 990)
	var dropped bool
	for i := 0; i < 20000 && !dropped; i++ {
		sender.send(t, fmt.Sprintf("%05d %s", i, msg))
		if i%100 == 99 {
			// Pace the sender by the observer, who keeps up and must get every line.
			observer.stdout.WaitLine(t, fmt.Sprintf("sender: %05d %s", i, msg))
			dropped = observer.stdout.HasLine("* slow left #lobby (too slow)")
		}
	}
	if !dropped {
		observer.stdout.WaitLine(t, "* slow left #lobby (too slow)")
	}
	sender.send(t, "after")
	observer.stdout.WaitLine(t, "sender: after")
	for i := 0; ; i++ {
		if !observer.stdout.HasLine(fmt.Sprintf("sender: %05d %s", i, msg)) {
			if i < 1000 {
				t.Fatalf("observer got only %d lines", i)
			}
			break
		}
	}
	if observer.stdout.HasLine("* observer left #lobby") {
		t.Error("the observer, who keeps up, was dropped")
	}
}

func TestGoroutinesReturnToBaseline(t *testing.T) {
	ts := startServer(t, room.Config{NoticeBurst: -1}) // every leave notice at once: the test waits for them
	observer := ts.joinAs(t, "observer", false)
	cycle := func(i int) {
		c := ts.dial(t, fmt.Sprintf("user%d", i), false)
		cl := open(t, c, i%2 == 0)
		cl.stdout.WaitContains(t, "joined #lobby (")
		cl.stdin.Close()
		if i%2 == 0 {
			cl.sess.Close()
		}
		c.Close()
		observer.stdout.WaitLine(t, fmt.Sprintf("* user%d left #lobby", i))
	}
	cycle(-1) // warm up: first-use goroutines (timers, pools) are not leaks
	baseline := runtime.NumGoroutine()
	for i := range 200 {
		cycle(i)
	}
	deadline := time.Now().Add(hangGuard)
	var n int
	for {
		if n = runtime.NumGoroutine(); n <= baseline+2 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after 200 cycles, baseline %d\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, not waiting for an event
	}
}

func TestShutdownTellsEveryone(t *testing.T) {
	ts := startServer(t, room.Config{})
	plain := ts.joinAs(t, "plain", false)
	term := ts.joinAs(t, "term", true)
	ts.stop(t)
	plain.stdout.WaitLine(t, "* server is shutting down, goodbye")
	term.stdout.WaitContains(t, "* server is shutting down, goodbye")
	plain.stdout.WaitClosed(t)
	term.stdout.WaitClosed(t)
	if _, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{User: "late", HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: time.Second}); err == nil {
		t.Error("a connection was accepted after shutdown")
	}
}
