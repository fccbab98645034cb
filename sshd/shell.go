package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"chatd/room"
)

// chat is the session handler: exec commands, an interactive shell with a PTY, or plain lines.
func (s *Server) chat(ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		if args := sess.Command(); len(args) > 0 || sess.RawCommand() != "" {
			s.exec(sess, args)
			return
		}
		if ptyReq, winCh, isPty := sessionPty(sess); isPty {
			s.interactive(sess, ptyReq, winCh)
			return
		}
		s.plain(sess)
	}
}

// exec runs a one-shot command such as "ssh host who".
func (s *Server) exec(sess ssh.Session, args []string) {
	opts := room.ExecOptions{Name: sess.User(), Remote: sess.RemoteAddr().String()}
	if pk := sess.PublicKey(); pk != nil {
		k := StoreKey(pk)
		opts.Key = &k
	}
	if err := s.room.Exec(args, ttyWriter(sess, sess), opts); err != nil {
		fmt.Fprintf(ttyWriter(sess, sess.Stderr()), "error: %s\n", err)
		setEndReason(sess, "exec failed")
		_ = sess.Exit(1)
		return
	}
	setEndReason(sess, "exec")
	_ = sess.Exit(0)
}

// join puts the session's user in the room, or tells them why not and ends the session.
func (s *Server) join(sess ssh.Session, out room.Output, opts room.JoinOptions) *room.Member {
	opts.Transport = "ssh"
	opts.Remote = sess.RemoteAddr().String()
	if pk := sess.PublicKey(); pk != nil {
		k := StoreKey(pk)
		opts.Key = &k
		opts.Operator = s.cfg.Operators[k.Fingerprint]
	}
	m, err := s.room.Join(sess.User(), out, opts)
	if err == nil {
		return m
	}
	msg := "error: " + err.Error()
	var ne *room.NameError
	if errors.As(err, &ne) {
		msg += "\nconnect with another name: ssh -p PORT othername@HOST"
	}
	fmt.Fprintln(ttyWriter(sess, sess.Stderr()), msg)
	setEndReason(sess, "refused: "+err.Error())
	_ = sess.Exit(1)
	return nil
}

// plain serves a session without a PTY (bots, "ssh -T host < file"): each LF-terminated line is
// a message, output is plain lines, and EOF leaves.
func (s *Server) plain(sess ssh.Session) {
	out := &plainOutput{w: sess, conn: serverConn(sess)}
	m := s.join(sess, out, room.JoinOptions{Format: room.Plain})
	if m == nil {
		return
	}
	lr := room.NewLineReader(sess, s.room.Config().MaxLineBytes())
	for {
		line, err := lr.ReadLine()
		if errors.Is(err, room.ErrLineTooLong) {
			m.Errorf("line too long (over %d bytes); it was discarded", s.room.Config().MaxLineBytes())
			continue
		}
		if err != nil {
			s.leave(sess, m, room.ReasonEOF)
			return
		}
		if m.Handle(line) == room.Quit {
			s.leave(sess, m, room.ReasonQuit)
			return
		}
	}
}

// leave takes the member out of the room and records why the session ended.
func (s *Server) leave(sess ssh.Session, m *room.Member, reason room.Reason) {
	m.Leave(reason)
	setEndReason(sess, m.Reason().String())
}

// interactive serves a session with a PTY: a line editor whose half-typed line survives the
// lines arriving above it.
func (s *Server) interactive(sess ssh.Session, ptyReq ssh.Pty, winCh <-chan ssh.Window) {
	screen := new(sync.Mutex)
	in := &enterGate{r: sess, screen: screen}
	defer in.release()
	bw := &batchWriter{w: sess}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, bw}, "")
	width := newWidth(ptyReq.Window)
	_ = t.SetSize(width.get(), windowHeight(ptyReq.Window))
	// The window channel must always be drained: a second resize would otherwise block the
	// session's request loop. It is closed after the handler returns, so don't wait for it.
	go func() {
		for w := range winCh {
			width.set(w)
			_ = t.SetSize(width.get(), windowHeight(w))
		}
	}()

	// Every write to the channel goes through the terminal (or the screen lock): the SSH channel
	// must not be written from two goroutines at once. Nothing else writes yet here.
	t.SetBracketedPasteMode(true)
	out := &termOutput{t: t, bw: bw, screen: screen, conn: serverConn(sess)}
	// A line held back by the rate limit must not hold the screen: incoming lines go on.
	m := s.join(sess, out, room.JoinOptions{Format: room.ANSI, Echo: true})
	if m == nil {
		t.SetBracketedPasteMode(false)
		return
	}
	prompt := promptFor(m.Name())
	t.SetPrompt(prompt)
	reason := room.ReasonQuit
	for {
		line, err := t.ReadLine()
		if err != nil && !errors.Is(err, term.ErrPasteIndicator) {
			if in.err != nil {
				reason = room.ReasonEOF // the connection, not ^C or ^D, ended the input
			} else {
				m.Handle("/quit")
			}
			break
		}
		// Erase what was typed: the room echoes the line back in its place in the order of the
		// room, timestamped and coloured like everyone else's.
		rows := (visualLen(prompt)+utf8.RuneCountInString(line))/width.get() + 1
		_, _ = t.Write([]byte(fmt.Sprintf("\x1b[%dA\r\x1b[J", rows)))
		if m.Handle(line) == room.Quit {
			break
		}
	}
	// Leave waits for the member's last lines to be written, which needs the screen.
	in.release()
	t.SetPrompt("")
	s.leave(sess, m, reason)
	if reason == room.ReasonQuit {
		// Leave the user's terminal as we found it (through t: the writer may still be running).
		_, _ = t.Write([]byte("\x1b[?2004l"))
	}
}

// enterGate holds the screen lock from the moment a read brings in an Enter until the shell has
// erased the submitted line (the next read releases it). Without it, a line arriving between the
// Enter and the erase would be printed where the erase then lands.
type enterGate struct {
	r      io.Reader
	screen *sync.Mutex
	held   bool  // only touched by the session goroutine
	err    error // the first read error: the connection, not a key, ended the input
}

func (g *enterGate) Read(p []byte) (int, error) {
	g.release()
	n, err := g.r.Read(p)
	if err != nil && g.err == nil {
		g.err = err
	}
	if bytes.ContainsAny(p[:n], "\r\n") {
		g.screen.Lock()
		g.held = true
	}
	return n, err
}

func (g *enterGate) release() {
	if g.held {
		g.held = false
		g.screen.Unlock()
	}
}

// termOutput writes the room's lines through the line editor, above the prompt.
type termOutput struct {
	t      *term.Terminal
	bw     *batchWriter
	screen *sync.Mutex
	conn   io.Closer
}

// Write hands the room's lines to the line editor, which erases the prompt, writes them and
// draws the prompt again: all of it goes out in one write to the channel.
func (o *termOutput) Write(p []byte) (int, error) {
	o.screen.Lock()
	defer o.screen.Unlock()
	o.bw.begin()
	n, err := o.t.Write(p)
	if ferr := o.bw.end(); err == nil {
		err = ferr
	}
	return n, err
}

// batchWriter sits between the line editor and the channel. x/term writes a line's text and its
// line ending separately, so a batch of lines would become two SSH packets (two syscalls) a line;
// between begin and end, writes are gathered and go out as one.
type batchWriter struct {
	w io.Writer

	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.w.Write(p)
}

func (b *batchWriter) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end writes what was gathered since begin.
func (b *batchWriter) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if cap(b.buf) > 1<<10 {
		b.buf = nil // idle sessions are many: only a small buffer is kept between batches
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// Close drops the whole connection: closing just the channel would need the client to read.
func (o *termOutput) Close() error { return o.conn.Close() }

// plainOutput writes the room's lines straight to the channel.
type plainOutput struct {
	w    io.Writer
	conn io.Closer
}

func (o *plainOutput) Write(p []byte) (int, error) { return o.w.Write(p) }
func (o *plainOutput) Close() error                { return o.conn.Close() }

func serverConn(sess ssh.Session) io.Closer {
	if c, ok := sess.Context().Value(ssh.ContextKeyConn).(*gossh.ServerConn); ok {
		return c
	}
	return sess // not reached with charmbracelet/ssh; closing the channel is the fallback
}

// ttyWriter is w for a session without a PTY, and w with \n written as \r\n for one with a PTY
// (the client's terminal is in raw mode: nothing else returns the cursor to the left).
func ttyWriter(sess ssh.Session, w io.Writer) io.Writer {
	if _, _, isPty := sessionPty(sess); isPty {
		return crlfWriter{w}
	}
	return w
}

type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// promptFor is the line editor's prompt: the user's name, like the lines they send.
func promptFor(name string) string {
	return "\x1b[1m" + name + "\x1b[0m> "
}

// visualLen is the prompt's width on screen: its escape codes take none.
func visualLen(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case esc:
			esc = !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		case r == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}

// width is the terminal's width, shared with the window-change goroutine.
type width struct {
	mu sync.Mutex
	w  int
}

func newWidth(w ssh.Window) *width {
	x := &width{}
	x.set(w)
	return x
}

// set records a window's width; "ssh -tt" with piped stdin reports 0, which means 80.
func (x *width) set(w ssh.Window) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.w = w.Width
	if x.w <= 0 {
		x.w = 80
	}
}

func (x *width) get() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.w
}

func windowHeight(w ssh.Window) int {
	if w.Height <= 0 {
		return 24
	}
	return w.Height
}

func stack() string { return strings.TrimSpace(string(debug.Stack())) }
