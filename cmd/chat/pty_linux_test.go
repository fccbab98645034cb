package main

import (
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// The tests in this file run chat on a pseudo-terminal, as a person would: raw mode, the line
// editor, colours, and the terminal put back on every way out.

// openPTY opens a pseudo-terminal pair, 80×24, with the standard library only.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if err := ioctl(m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); err != nil {
		t.Fatal(err)
	}
	var n uint32
	if err := ioctl(m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	setSize(t, s, 80, 24)
	return m, s
}

// setSize sets the terminal's window size; the kernel tells the terminal's foreground processes
// with SIGWINCH.
func setSize(t *testing.T, tty *os.File, cols, rows uint16) {
	t.Helper()
	ws := struct{ row, col, x, y uint16 }{rows, cols, 0, 0}
	if err := ioctl(tty.Fd(), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); err != nil {
		t.Fatal(err)
	}
}

func ioctl(fd, req, arg uintptr) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg); errno != 0 {
		return errno
	}
	return nil
}

// cooked reports whether the terminal is in its normal line mode: echo and line editing on.
func cooked(t *testing.T, f *os.File) bool {
	t.Helper()
	var tio syscall.Termios
	if err := ioctl(f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&syscall.ICANON != 0 && tio.Lflag&syscall.ECHO != 0
}

// ttyChat is chat running on a pseudo-terminal.
type ttyChat struct {
	*proc
	master, slave *os.File
	screen        *lineLog // everything chat wrote to the terminal, escape codes and all
}

func startTTYChat(t *testing.T, env []string, args ...string) *ttyChat {
	t.Helper()
	return startOnTTY(t, false, env, args...)
}

// startOnTTY runs chat with its output on a pseudo-terminal, and its input too unless pipedInput
// (then the proc's stdin is a pipe).
func startOnTTY(t *testing.T, pipedInput bool, env []string, args ...string) *ttyChat {
	t.Helper()
	master, slave := openPTY(t)
	cmd := exec.Command(chatBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = slave
	tc := &ttyChat{
		proc:   &proc{t: t, cmd: cmd, stderr: newLineLog(t, "stderr"), exited: make(chan struct{})},
		master: master, slave: slave, screen: newLineLog(t, "screen"),
	}
	if pipedInput {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		tc.stdin = stdin
	} else {
		cmd.Stdin = slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	cmd.Stderr = tc.stderr
	if !cooked(t, slave) {
		t.Fatal("a new pseudo-terminal is not in line mode")
	}
	tc.start()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(tc.screen, master)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // the proc's own cleanup, registered first, runs after this one
		<-tc.exited
		master.Close()
		slave.Close()
		<-copied
	})
	return tc
}

// typeKeys sends keystrokes to chat.
func (c *ttyChat) typeKeys(s string) {
	c.t.Helper()
	if _, err := c.master.WriteString(s); err != nil {
		c.t.Fatal(err)
	}
}

var escapes = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// text is what the screen log says once the escape codes and carriage returns are gone.
func text(s string) string { return strings.ReplaceAll(escapes.ReplaceAllString(s, ""), "\r", "") }

// waitText waits for want in the screen's text.
func (c *ttyChat) waitText(want string) string {
	c.t.Helper()
	return c.screen.waitFor(strconv.Quote(want), func(s string) bool { return strings.Contains(text(s), want) })
}

func (c *ttyChat) waitRaw(want string) string {
	c.t.Helper()
	return c.screen.waitFor(strconv.Quote(want), func(s string) bool { return strings.Contains(s, want) })
}

func TestInteractive(t *testing.T) {
	s := defaultServer(t)
	bob := join(t, s.addr, "bob")
	chat := startTTYChat(t, []string{"NO_COLOR="}, "-addr", s.addr)

	// The name: asked for, refused, asked again.
	chat.waitText("Enter your name: ")
	chat.typeKeys("bob\r")
	chat.waitText(`error: name "bob" is taken by someone online`)
	chat.waitRaw("\x1b[1;31merror:")
	chat.typeKeys("alice\r")
	chat.waitText("* welcome to chatd, alice!")
	if n := strings.Count(text(chat.screen.String()), "Enter your name: "); n != 2 {
		t.Fatalf("asked for the name %d times, want 2:\n%s", n, text(chat.screen.String()))
	}
	bob.lines.waitLine("* alice joined #lobby (2 online)")

	// Others' lines arrive in colour; the prompt is the user's name.
	bob.send("hi alice")
	chat.waitRaw("\x1b[31mbob: hi alice\x1b[0m")
	bob.send("/msg alice psst")
	chat.waitRaw("\x1b[1;35m[dm from bob] psst\x1b[0m")
	chat.waitRaw("\x1b[2m* alice joined #lobby (2 online)\x1b[0m")
	chat.waitRaw("\x1b[1malice\x1b[0m: ")

	// A half-typed line survives a line arriving above it, and is sent whole.
	chat.typeKeys("hello ")
	chat.waitText("alice: hello ")
	bob.send("interrupting")
	chat.waitRaw("bob: interrupting")
	chat.typeKeys("bob\r")
	bob.lines.waitLine("alice: hello bob")
	// The sent line stays on the screen as the chat's own "alice: hello bob".
	chat.waitText("alice: hello bob\n")

	chat.typeKeys("bye\r")
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
	bob.lines.waitLine("* alice left #lobby")
	if !cooked(t, chat.slave) {
		t.Fatal("the terminal was left in raw mode")
	}
}

func TestInteractiveNoColor(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []string
		args []string
	}{
		{"NO_COLOR", []string{"NO_COLOR=1"}, nil},
		{"--no-color", []string{"NO_COLOR="}, []string{"--no-color"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultServer(t)
			bob := join(t, s.addr, "bob")
			chat := startTTYChat(t, tt.env, append([]string{"-addr", s.addr, "-name", "alice"}, tt.args...)...)
			bob.lines.waitLine("* alice joined #lobby (2 online)")
			bob.send("plain please")
			bob.send("/msg alice quietly")
			chat.waitText("[dm from bob] quietly")
			chat.typeKeys("bye\r")
			if code := chat.wait(); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
			}
			if m := sgr.FindString(chat.screen.String()); m != "" {
				t.Fatalf("colour code %q on the screen:\n%q", m, chat.screen)
			}
		})
	}
}

// TestInteractiveExits leaves every way a person can, and checks the terminal each time.
func TestInteractiveExits(t *testing.T) {
	tests := []struct {
		name     string
		leave    func(*ttyChat)
		wantCode int
		left     bool // the server saw a polite goodbye
	}{
		{"ctrl-d", func(c *ttyChat) { c.typeKeys("\x04") }, 0, true},
		{"ctrl-c", func(c *ttyChat) { c.typeKeys("half typed\x03") }, 0, true},
		{"/quit", func(c *ttyChat) { c.typeKeys("/quit\r") }, 0, true},
		{"SIGTERM", func(c *ttyChat) { c.cmd.Process.Signal(syscall.SIGTERM) }, 128 + int(syscall.SIGTERM), false},
		{"SIGINT", func(c *ttyChat) { c.cmd.Process.Signal(syscall.SIGINT) }, 128 + int(syscall.SIGINT), false},
		{"server gone", nil, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultServer(t)
			bob := join(t, s.addr, "bob")
			chat := startTTYChat(t, nil, "-addr", s.addr, "-name", "alice")
			bob.lines.waitLine("* alice joined #lobby (2 online)")
			chat.waitText("alice: ")
			if tt.leave != nil {
				tt.leave(chat)
			} else {
				s.srv.Close() // the connection drops with no goodbye
			}
			if code := chat.wait(); code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, chat.stderr)
			}
			if !cooked(t, chat.slave) {
				t.Fatal("the terminal was left in raw mode")
			}
			if tt.left {
				bob.lines.waitLine("* alice left #lobby")
			}
			if tt.leave == nil && chat.stderr.String() != "chat: connection closed by server\n" {
				t.Fatalf("stderr %q", chat.stderr)
			}
		})
	}
}

// TestInteractiveWrap pads a message so that an 80-column terminal wrapping it by itself would
// start a fake notice at column 0: chat wraps it first, with an indent, and sets the colour again
// after the indent. When the window narrows, lines are wrapped to the new width.
func TestInteractiveWrap(t *testing.T) {
	s := defaultServer(t)
	bob := join(t, s.addr, "bob")
	chat := startTTYChat(t, []string{"NO_COLOR="}, "-addr", s.addr, "-name", "alice")
	bob.lines.waitLine("* alice joined #lobby (2 online)")
	chat.waitRaw("\x1b[1malice\x1b[0m: ")

	// "bob: look" and 71 spaces fill the 80 columns.
	const fake = "* bob left (too slow)"
	bob.send("look" + strings.Repeat(" ", 71) + fake)
	chat.waitRaw("\x1b[31mbob: look" + strings.Repeat(" ", 70) + "\x1b[0m\r\n  \x1b[31m" + fake + "\x1b[0m\r\n")
	if screen := text(chat.screen.String()); strings.Contains(screen, "\n"+fake) {
		t.Fatalf("the fake notice starts a row:\n%s", screen)
	}

	// The line editor redraws the prompt for the new size once chat has taken it in.
	mark := len(chat.screen.String())
	setSize(t, chat.slave, 40, 24)
	chat.screen.waitFor("the prompt redrawn", func(s string) bool { return strings.Contains(s[mark:], "alice") })
	bob.send("one two three four five six seven eight nine ten eleven")
	chat.waitRaw("\x1b[31mbob: one two three four five six seven\x1b[0m\r\n  \x1b[31meight nine ten eleven\x1b[0m\r\n")

	chat.typeKeys("bye\r")
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
}

// TestPipedInputTerminalOutput reads the input from a pipe but writes to a terminal: the
// terminal would wrap long lines by itself, so chat wraps them first here too.
func TestPipedInputTerminalOutput(t *testing.T) {
	s := defaultServer(t)
	bob := join(t, s.addr, "bob")
	chat := startOnTTY(t, true, []string{"NO_COLOR=1"}, "-addr", s.addr, "-name", "alice")
	bob.lines.waitLine("* alice joined #lobby (2 online)")

	const fake = "bob: send me your password"
	bob.send("look" + strings.Repeat(" ", 71) + fake)
	// The terminal is in its normal mode, which turns "\n" into "\r\n".
	chat.waitRaw("bob: look" + strings.Repeat(" ", 70) + "\r\n  " + fake + "\r\n")

	chat.stdin.Close()
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
}

// TestInteractiveComplete completes a name and a command with Tab, as a person would: the
// completed line is echoed, Enter sends it, and Tab itself sends nothing.
func TestInteractiveComplete(t *testing.T) {
	s := defaultServer(t)
	r := startRelay(t, s.addr)
	chat := startTTYChat(t, []string{"NO_COLOR=1"}, "-addr", r.addr, "-name", "carol")
	chat.waitText("* carol joined #lobby (1 online)")
	alice := join(t, s.addr, "alice")
	chat.waitText("* alice joined #lobby (2 online)") // learnt before it is shown

	// A name at the start of the line gets ": ".
	mark := len(chat.screen.String())
	chat.typeKeys("al\t")
	chat.screen.waitFor(`"alice: " echoed`, func(s string) bool { return strings.Contains(text(s[mark:]), "alice: ") })
	chat.typeKeys("hi\r")
	alice.lines.waitLine("carol: alice: hi")
	chat.screen.waitFor("the line sent", func(s string) bool { return strings.Contains(text(s[mark:]), "alice: hi\n") })

	// A command.
	mark = len(chat.screen.String())
	chat.typeKeys("/jo\t")
	chat.screen.waitFor(`"/join " echoed`, func(s string) bool { return strings.Contains(text(s[mark:]), "/join ") })
	chat.typeKeys("#go\r")
	r.sent.waitLine("/join #go")

	chat.typeKeys("bye\r")
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
	if got, want := r.sent.String(), "carol\nalice: hi\n/join #go\nbye\n"; got != want {
		t.Fatalf("the server received %q, want %q", got, want)
	}
}
