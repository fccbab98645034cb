package sshd

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"chatd/room"
)

// startIn starts a session that runs command (such as "join '#go'"), with a PTY when pty is set.
func (ts *testServer) startIn(t *testing.T, user, command string, pty bool) *client {
	t.Helper()
	sess, err := ts.dial(t, user, false).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if pty {
		if err := sess.RequestPty("xterm-256color", 24, 80, nil); err != nil {
			t.Fatal(err)
		}
	}
	cl := newClient(t, sess)
	if err := sess.Start(command); err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestJoinCommandStartsTheShellInARoom(t *testing.T) {
	ts := startServer(t, room.Config{})
	bob := ts.joinAs(t, "bob", false)
	bob.send(t, "/join go")
	bob.stdout.WaitLine(t, "* bob joined #go (1 online)")

	alice := ts.startIn(t, "alice", "join '#go'", true)
	alice.stdout.WaitContains(t, "welcome to chatd, alice! you are in #go;")
	bob.stdout.WaitLine(t, "* alice joined #go (2 online)")
	if _, err := alice.stdin.Write([]byte("hello go\r")); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "alice: hello go")

	// Without a PTY, plain lines, in the room asked for.
	carol := ts.startIn(t, "carol", "JOIN go", false)
	carol.stdout.WaitLine(t, "* welcome to chatd, carol! you are in #go; /help lists the commands; bye leaves.")
	bob.stdout.WaitLine(t, "* carol joined #go (3 online)")
	carol.send(t, "bye")
	if got := carol.exitStatus(t); got != 0 {
		t.Errorf("exit status %d after bye, want 0", got)
	}

	for _, tt := range []struct{ command, stderr string }{
		{"join", "error: usage: join ROOM\n"},
		{"join a b", "error: usage: join ROOM\n"},
		{"join '#no room'", `error: room name "#no room" may only contain letters, digits, '_', '.' and '-' after the #` + "\n"},
	} {
		cl := ts.startIn(t, "dave", tt.command, false)
		if got := cl.exitStatus(t); got != 1 {
			t.Errorf("%s: exit status %d, want 1", tt.command, got)
		}
		cl.stderr.WaitClosed(t)
		if got := cl.stderr.Raw(); got != tt.stderr {
			t.Errorf("%s: stderr %q, want %q", tt.command, got, tt.stderr)
		}
	}
}

func TestTabCompletes(t *testing.T) {
	ts := startServer(t, room.Config{})
	bob := ts.joinAs(t, "bob", false)
	alice := ts.joinAs(t, "alice", true)
	bob.send(t, "/join gophers")
	bob.stdout.WaitLine(t, "* bob joined #gophers (1 online)")

	type step struct{ typed, bobSees string }
	for _, s := range []step{
		{"/jo\t#goph\t\r", "* alice joined #gophers (2 online)"}, // "/join #gophers "
		{"b\tyou there?\r", "alice: bob: you there?"},
		{"hi :pizz\t", ""}, // ":pizza:"
		{" :wav\t", ""},    // many: they are listed
		{"e:\r", "alice: hi 🍕 👋"},
		// A Tab in a paste is text, not a completion.
		{"\x1b[200~b\tpasted\x1b[201~\r", "alice: b pasted"},
	} {
		if _, err := alice.stdin.Write([]byte(s.typed)); err != nil {
			t.Fatal(err)
		}
		if s.bobSees != "" {
			bob.stdout.WaitLine(t, s.bobSees)
		}
	}
	// Two candidates: the first Tab completes what they share.
	if _, err := ts.room.Join("bobby", discardOutput{}, room.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	// bob, in alice's room, comes first; a second Tab lists both.
	if _, err := alice.stdin.Write([]byte("bo\t\t")); err != nil {
		t.Fatal(err)
	}
	alice.stdout.WaitContains(t, "* bob  bobby")
	alice.stdout.WaitContains(t, ":wave:  :wave_tone1:")
}

type discardOutput struct{}

func (discardOutput) Write(p []byte) (int, error) { return len(p), nil }
func (discardOutput) Close() error                { return nil }

func TestRoomsWithOpenSSH(t *testing.T) {
	ts := startServer(t, room.Config{})
	ssh := openSSH(t, ts)
	bob := ts.joinAs(t, "bob", false)
	bob.send(t, "/join go", "gophers unite")
	bob.stdout.WaitLine(t, "* bob joined #go (1 online)")

	t.Run("join", func(t *testing.T) {
		cmd := ssh("alice", "-tt", "join", "'#go'")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		bob.stdout.WaitLine(t, "* alice joined #go (2 online)")
		fmt.Fprint(stdin, "in go from openssh\r")
		bob.stdout.WaitLine(t, "alice: in go from openssh")
		fmt.Fprint(stdin, "/part\r")
		bob.stdout.WaitLine(t, "* alice left #go")
		fmt.Fprint(stdin, "bye\r")
		if err := cmd.Wait(); err != nil {
			t.Errorf("ssh -tt join: %v", err)
		}
		if !strings.Contains(out.String(), "bob: gophers unite") || !strings.Contains(out.String(), "you left #go; you are in #lobby now") {
			t.Errorf("alice's terminal:\n%s", out.String())
		}
	})
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rooms"}, "#go\t1\t\n#lobby\t1\t\n"}, // bob, in both
		{[]string{"who", "'#go'"}, "bob\n"},
		{[]string{"history", "'#go'", "50"}, "] bob: gophers unite\n[history "},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := ssh("carol", tt.args...).Output()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("exit %d: %s", ee.ExitCode(), ee.Stderr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("printed %q, want %q in it", out, tt.want)
			}
		})
	}
}
