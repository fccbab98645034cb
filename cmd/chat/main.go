// Command chat is a small client for chatd's plain TCP line protocol: it joins the chat under a
// name, shows what is said (in colour on a terminal) and sends what you type.
//
// Usage:
//
//	chat [-addr host:port] [-name NAME] [--no-color]
//
// On a terminal, chat asks for a name when -name is not given (again when the server refuses
// one) and edits the line being typed while others' lines arrive above it; the typed line stays
// on screen after the prompt, which is your name, so it reads like everyone else's lines. When
// stdin is not a terminal (pipes, scripts, bots), the first line is the name unless -name is
// given, every further line is sent as it is read, and at the end of the input chat says bye and
// exits once the server has closed the connection; a refused name then ends chat with status 1.
// Colour is off when stdout is not a terminal, with --no-color, or when NO_COLOR is set. On a
// terminal, lines wider than it are wrapped with an indent, so that no padded message can make
// the terminal start part of it at column 0 as if it were a line of its own; otherwise lines are
// printed as they came. In the line editor, Tab completes commands, room names and people's
// names, learnt from what the server sends (see complete.go); it never sends anything.
//
// Exit status: 0 after bye (or the end of the input), 1 when the server cannot be reached,
// refuses the name or closes the connection, 2 for bad usage, 128+n after signal n.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/term"

	"chatd/chat"
	"chatd/internal/buildinfo"
	"chatd/internal/linereader"
	"chatd/internal/termwrap"
	"chatd/tcp/client"
)

const (
	defaultAddr = "localhost:2323"
	defaultPort = "2323"
	// dialTimeout bounds connecting and reading the server's greeting.
	dialTimeout = 10 * time.Second
	// byeTimeout bounds the wait for the server to close the connection after bye.
	byeTimeout = 10 * time.Second
	// maxInputLine is the longest line read from stdin; the server refuses far shorter ones.
	maxInputLine = 64 << 10
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// outcome is how a session ended: the exit status, and what to tell the user on stderr once
// the terminal is back to normal.
type outcome struct {
	code int
	msg  string
}

// run is main without the process: it returns the exit status. The terminal is restored before
// it returns, whatever the path.
func run(args []string, stdin, stdout *os.File, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr, "chatd's TCP address, host:port")
	name := fs.String("name", "", "your name in the chat (asked for when not given)")
	noColor := fs.Bool("no-color", false, "no colours (so does a non-empty NO_COLOR, or output that is not a terminal)")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "chat joins a chatd chat over its plain TCP protocol.\n\nUsage:\n  chat [-addr host:port] [-name NAME] [--no-color]\n  chat --version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Line("chat"))
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chat: unexpected argument %q (chat -h shows the usage)\n", fs.Arg(0))
		return 2
	}
	target := withDefaultPort(*addr)

	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	c, err := client.Dial(ctx, target)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, dialMessage(target, err))
		return 1
	}
	defer c.Close()

	// Signals are caught before the terminal goes raw, so that none can leave it that way.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ui, err := newUI(stdin, stdout, stderr, *noColor || getenv("NO_COLOR") != "")
	if err != nil {
		fmt.Fprintf(stderr, "chat: %v\n", err)
		return 1
	}
	defer ui.restore()

	s := &session{c: c, ui: ui, done: make(chan outcome, 4)}
	go s.guard(func() { s.run(*name) })

	var res outcome
	select {
	case res = <-s.done:
	case sig := <-sigs:
		// Closing the connection is leaving: the room tells the others just as for bye.
		res = outcome{code: 128 + signalNumber(sig)}
	}
	ui.restore()
	if res.msg != "" {
		fmt.Fprintln(stderr, res.msg)
	}
	return res.code
}

// withDefaultPort adds chatd's port to an address given without one ("host", "[::1]").
func withDefaultPort(addr string) string {
	if !strings.Contains(addr, ":") || strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		return net.JoinHostPort(strings.Trim(addr, "[]"), defaultPort)
	}
	return addr
}

// dialMessage says why the server could not be reached, in one line.
func dialMessage(addr string, err error) string {
	var se *client.ServerError
	if errors.As(err, &se) {
		return fmt.Sprintf("chat: %s refused the connection: %s", addr, chat.Sanitize(se.Reason))
	}
	reason := err.Error()
	hint := ""
	var errno syscall.Errno
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dnsErr):
		reason = dnsErr.Err
		hint = " (is the host name right?)"
	case errors.As(err, &errno):
		reason = errno.Error()
		switch errno {
		case syscall.ECONNREFUSED, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
			hint = " (is chatd running?)"
		}
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		reason = "timed out"
		hint = " (is chatd running?)"
	case errors.Is(err, client.ErrConnClosed):
		reason = "the connection was closed before the greeting"
		hint = " (is that chatd's TCP port?)"
	}
	return fmt.Sprintf("chat: cannot connect to %s: %s%s", addr, reason, hint)
}

func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 1
}

// session is one connection's life: the name, then lines both ways.
type session struct {
	c    *client.Client
	ui   *ui
	name string
	done chan outcome // the first outcome ends the program

	quitting  atomic.Bool // the user said bye (or the input ended): a close is expected
	goodbye   atomic.Bool // the server said goodbye to us
	lastWords atomic.Pointer[string]
}

// guard runs f, and on a panic puts the terminal back before the program dies.
func (s *session) guard(f func()) {
	defer func() {
		if v := recover(); v != nil {
			s.ui.restore()
			panic(v)
		}
	}()
	f()
}

func (s *session) finish(code int, msg string) {
	select {
	case s.done <- outcome{code, msg}:
	default: // an outcome is already on its way
	}
}

// run chooses the name, then receives in the background and sends in the foreground.
func (s *session) run(name string) {
	if !s.join(name) {
		return
	}
	s.ui.setPrompt(s.name)
	s.ui.startCompletion(s.name)
	go s.guard(s.receive)
	s.send()
}

// join gets the session into the chat: with the -name flag's name, or the names the user gives
// until the server accepts one. It reports false when the program is to end.
func (s *session) join(name string) bool {
	if name != "" {
		joined, _ := s.tryName(name, false)
		return joined
	}
	for {
		line, err := s.ui.askName()
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.finish(1, "chat: no name given")
			} else {
				s.finish(1, "chat: reading the name: "+err.Error())
			}
			return false
		}
		name = strings.TrimSpace(line)
		if name == "" {
			continue
		}
		joined, again := s.tryName(name, s.ui.interactiveInput)
		if joined || !again {
			return joined
		}
	}
}

// tryName asks the server for name. A refusal that may be retried, when retry is set, is shown
// as an error line and reported with again; any other failure ends the session.
func (s *session) tryName(name string, retry bool) (joined, again bool) {
	err := s.c.Join(name)
	if err == nil {
		s.name = name
		return true, false
	}
	var se *client.ServerError
	switch {
	case errors.As(err, &se) && retry && !se.Final:
		s.ui.show("error: " + chat.Sanitize(se.Reason))
		return false, true
	case errors.As(err, &se):
		s.finish(1, "chat: "+chat.Sanitize(se.Reason))
	case errors.Is(err, client.ErrConnClosed):
		s.finish(1, "chat: connection closed by server")
	default:
		s.finish(1, "chat: "+err.Error())
	}
	return false, false
}

// receive shows every line from the server until it closes the connection.
func (s *session) receive() {
	for {
		line, err := s.c.ReadLine()
		if errors.Is(err, linereader.ErrTooLong) {
			s.ui.show(fmt.Sprintf("* (chat skipped a line over %d bytes from the server)", client.MaxClientLine))
			continue
		}
		if err != nil {
			s.closed()
			return
		}
		// Defence in depth: the server sanitises, but no peer's bytes reach the terminal raw.
		line = chat.Sanitize(line)
		s.ui.learn(line) // before it shows: what is on screen can be completed
		l := client.Parse(line)
		switch {
		case l.Kind == client.Error, l.Kind == client.Notice && strings.Contains(l.Text, "goodbye"):
			s.lastWords.Store(&l.Text)
		}
		if l.Kind == client.Notice && l.Text == "goodbye, "+s.name+"!" {
			s.goodbye.Store(true)
		}
		s.ui.show(line)
	}
}

// closed ends the session once the server has closed the connection.
func (s *session) closed() {
	if s.quitting.Load() || s.goodbye.Load() {
		s.finish(0, "")
		return
	}
	msg := "chat: connection closed by server"
	if w := s.lastWords.Load(); w != nil {
		msg += ": " + *w
	}
	s.finish(1, msg)
}

// send sends every line read from the input until bye or the end of the input.
func (s *session) send() {
	for {
		line, err := s.ui.readLine()
		if errors.Is(err, linereader.ErrTooLong) {
			s.ui.warn(fmt.Sprintf("chat: line too long (over %d bytes); it was not sent", maxInputLine))
			continue
		}
		if err != nil {
			// The end of the input (^D or ^C on a terminal): leave as if bye had been typed.
			s.leave("bye")
			return
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if isQuit(line) {
			s.leave(line)
			return
		}
		if err := s.c.Send(line); err != nil {
			return // the receiver sees the connection end and reports it
		}
	}
}

// leave sends a line that ends the session and waits, within reason, for the server to close.
func (s *session) leave(line string) {
	s.quitting.Store(true)
	if err := s.c.Send(line); err != nil {
		s.finish(0, "")
		return
	}
	time.AfterFunc(byeTimeout, func() {
		s.finish(1, "chat: the server did not close the connection after bye")
	})
}

// isQuit reports a line the server takes as leaving: "bye", /quit, /exit.
func isQuit(line string) bool {
	s := strings.TrimSpace(chat.Sanitize(line))
	if s == "bye" {
		return true
	}
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return false
	}
	cmd, _, _ := strings.Cut(s[1:], " ")
	cmd = strings.ToLower(cmd)
	return cmd == "quit" || cmd == "exit"
}

// ui is the terminal, or the pipes, chat talks through.
type ui struct {
	stdout, stderr io.Writer
	colour         bool
	// interactiveInput: stdin is a terminal, so a refused name may be asked again.
	interactiveInput bool

	// With a terminal on both sides: raw mode and a line editor.
	t        *term.Terminal
	fd       int
	oldState *term.State
	restored sync.Once
	done     atomic.Bool // restored: lines still arriving are not shown
	stopSize func()
	// comp completes on Tab; set once the user has a name, before lines are received.
	comp *completer

	// Otherwise: plain lines.
	in    *linereader.Reader
	outMu sync.Mutex

	// width is the terminal's width, which incoming lines are wrapped to; 0 when stdout is not
	// a terminal, and lines go out as they came.
	width atomic.Int32
}

func newUI(stdin, stdout *os.File, stderr io.Writer, noColor bool) (*ui, error) {
	inTTY := term.IsTerminal(int(stdin.Fd()))
	outTTY := term.IsTerminal(int(stdout.Fd()))
	u := &ui{stdout: stdout, stderr: stderr, colour: outTTY && !noColor, interactiveInput: inTTY}
	if inTTY && outTTY {
		u.fd = int(stdin.Fd())
		old, err := term.MakeRaw(u.fd)
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		u.oldState = old
		u.t = term.NewTerminal(struct {
			io.Reader
			io.Writer
		}{stdin, stdout}, "Enter your name: ")
	} else {
		u.in = linereader.New(stdin, maxInputLine)
	}
	if outTTY {
		u.width.Store(80) // until the terminal says otherwise
		u.stopSize = watchSize(int(stdout.Fd()), func(w, h int) {
			// The width first: once the line editor redraws for the new size, lines are
			// wrapped to it.
			u.width.Store(int32(w))
			if u.t != nil {
				_ = u.t.SetSize(w, h)
			}
		})
	}
	return u, nil
}

// restore puts the terminal back as it was. It is safe to call more than once.
func (u *ui) restore() {
	u.restored.Do(func() {
		if u.stopSize != nil {
			u.stopSize()
		}
		if u.t == nil {
			return
		}
		u.done.Store(true)
		// Clear the prompt line, so that the shell's prompt starts on a clean one.
		_, _ = io.WriteString(u.stdout, "\r\x1b[K")
		_ = term.Restore(u.fd, u.oldState)
	})
}

// askName reads a name: at the prompt on a terminal, or the next input line otherwise.
func (u *ui) askName() (string, error) {
	if u.t != nil {
		return u.t.ReadLine()
	}
	if u.interactiveInput { // typing on a terminal whose output goes elsewhere
		fmt.Fprint(u.stderr, "Enter your name: ")
	}
	return u.in.ReadLine()
}

// setPrompt makes the prompt the user's name, so that a typed line left on screen reads like
// a line of the chat.
func (u *ui) setPrompt(name string) {
	if u.t == nil {
		return
	}
	if u.colour {
		u.t.SetPrompt(sgrBold + name + sgrReset + ": ")
	} else {
		u.t.SetPrompt(name + ": ")
	}
}

// startCompletion turns Tab completion on in the line editor, for a user called self. Pipes
// get none: scripts' lines go out as they are.
func (u *ui) startCompletion(self string) {
	if u.t == nil {
		return
	}
	u.comp = newCompleter(self, time.Now)
	u.t.AutoCompleteCallback = u.comp.complete
}

// learn teaches the completion a line from the server.
func (u *ui) learn(line string) {
	if u.comp != nil {
		u.comp.learn(line)
	}
}

// readLine reads the next line to send.
func (u *ui) readLine() (string, error) {
	if u.t != nil {
		if u.comp != nil {
			u.comp.reset() // a new line: no Tab cycle carries over from the last one
		}
		line, err := u.t.ReadLine()
		if errors.Is(err, term.ErrPasteIndicator) {
			err = nil
		}
		return line, err
	}
	return u.in.ReadLine()
}

// show prints a sanitised line from the server, styled by its kind, and wrapped on a terminal.
func (u *ui) show(line string) {
	if u.colour {
		line = style(line)
	}
	out := append([]byte(line), '\n')
	if w := int(u.width.Load()); w > 0 {
		out = termwrap.WrapLines(make([]byte, 0, len(out)+len(out)/8+16), out, w)
	}
	if u.t != nil {
		if !u.done.Load() {
			_, _ = u.t.Write(out)
		}
		return
	}
	u.outMu.Lock()
	defer u.outMu.Unlock()
	_, _ = u.stdout.Write(out)
}

// warn tells the user about something chat itself did.
func (u *ui) warn(msg string) {
	if u.t != nil {
		u.show("* " + msg)
		return
	}
	fmt.Fprintln(u.stderr, msg)
}

const (
	sgrReset   = "\x1b[0m"
	sgrBold    = "\x1b[1m"
	sgrDim     = "\x1b[2m"
	sgrRed     = "\x1b[31m"
	sgrBoldRed = "\x1b[1;31m"
	sgrDM      = "\x1b[1;35m"
)

// style colours a line by its kind: others' messages red, the server's notices dim, private
// messages bold magenta, errors bold red.
func style(line string) string {
	var sgr string
	switch client.Classify(line) {
	case client.Message, client.Action:
		sgr = sgrRed
	case client.Notice:
		sgr = sgrDim
	case client.DMIn, client.DMOut:
		sgr = sgrDM
	case client.Error:
		sgr = sgrBoldRed
	default:
		return line
	}
	return sgr + line + sgrReset
}
