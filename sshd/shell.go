package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rivo/uniseg"
	"golang.org/x/term"

	"chatd/chat"
	"chatd/internal/linereader"
	"chatd/room"
)

// shell is a session in the chat: its member, and for a terminal, the line editor.
type shell struct {
	ss     *session
	member *room.Member

	// Interactive (PTY) sessions only.
	term   *term.Terminal
	gate   *enterGate
	prompt string
}

// startShell joins the session's user to the room, with a line editor when the session has a
// PTY and plain lines otherwise. It returns nil when the room refuses them, having told them why
// and ended the session.
func (s *Server) startShell(ss *session) *shell {
	sh := &shell{ss: ss}
	var out room.Output
	opts := room.JoinOptions{Format: room.Plain}
	if ss.pty != nil {
		// The room wraps the lines to the terminal's width (SetWidth follows window changes).
		out, opts = sh.newTerminal(), room.JoinOptions{Format: room.ANSI, Echo: true, Width: ss.wid.get()}
	} else {
		out = &plainOutput{w: ss.ch, conn: ss.sc}
	}
	opts.Transport = "ssh"
	opts.Room = ss.startRoom
	opts.Remote = ss.sc.RemoteAddr().String()
	if pk := ss.publicKey(); pk != nil {
		k := StoreKey(pk)
		opts.Key = &k
		opts.Operator = s.cfg.Operators[k.Fingerprint]
	}
	m, err := s.room.Join(ss.sc.User(), out, opts)
	if err != nil {
		if sh.term != nil {
			sh.term.SetBracketedPasteMode(false)
		}
		msg := err.Error()
		var ne *chat.NameError
		if errors.As(err, &ne) {
			msg += "\nconnect with another name: ssh -p PORT othername@HOST"
		}
		stop := ss.deadline(s.writeTimeout(), closeTooSlow, "the client did not read why it was refused")
		defer stop()
		ss.fail(msg)
		return nil
	}
	sh.member = m
	if sh.term != nil {
		sh.prompt = promptFor(m.Name())
		sh.term.SetPrompt(sh.prompt)
		ss.mu.Lock()
		ss.member = m
		m.SetWidth(ss.win.cols) // the window may have changed while the member joined
		ss.mu.Unlock()
	}
	return sh
}

// newTerminal sets up the line editor for a PTY session and returns the room's end of it.
func (sh *shell) newTerminal() room.Output {
	ss := sh.ss
	screen := new(sync.Mutex)
	sw := &screenWriter{w: ss.ch, max: maxPendingOutput, stall: ss.srv.writeTimeout(), onStall: func() {
		ss.abort(closeTooSlow, "too slow: output not read for "+ss.srv.writeTimeout().String())
	}}
	sh.gate = &enterGate{screen: screen}
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{sh.gate, sw}, "")
	ss.mu.Lock()
	ss.wid = &width{}
	ss.wid.set(ss.win.cols)
	_ = t.SetSize(ss.win.cols, ss.win.rows)
	ss.term = t // from here on, window changes reach the editor at once
	ss.mu.Unlock()
	sh.term = t
	t.SetBracketedPasteMode(true)
	return &termOutput{t: t, sw: sw, screen: screen, conn: ss.sc}
}

// serve reads the member's input from r until it ends or the member leaves, then ends the
// session. Nothing here waits on the client's reading: lines held back by the rate limit are
// queued in the room, and the line editor's own output only queues.
func (sh *shell) serve(r io.Reader) {
	ss, m := sh.ss, sh.member
	reason := room.ReasonQuit
	if sh.term != nil {
		reason = sh.interactive(r)
	} else {
		reason = sh.plain(r)
	}
	m.Leave(reason)
	code := 0
	if r := m.Reason(); r != room.ReasonQuit && r != room.ReasonEOF && r != room.ReasonShutdown {
		code = 1
	}
	ss.end(code, m.Reason().String())
}

// plain serves a session without a PTY (bots, "ssh -T host < file"): each LF-terminated line is
// a message, output is plain lines, and EOF leaves.
func (sh *shell) plain(r io.Reader) room.Reason {
	m := sh.member
	max := sh.ss.srv.room.Config().MaxLineBytes()
	lr := linereader.New(r, max)
	for {
		line, err := lr.ReadLine()
		if errors.Is(err, linereader.ErrTooLong) {
			m.Errorf("line too long (over %d bytes); it was discarded", max)
			continue
		}
		if err != nil {
			return room.ReasonEOF
		}
		if m.Handle(line) == room.Quit {
			return room.ReasonQuit
		}
	}
}

// interactive serves a session with a PTY: a line editor whose half-typed line survives the
// lines arriving above it.
func (sh *shell) interactive(r io.Reader) room.Reason {
	t, m, in := sh.term, sh.member, sh.gate
	in.r, in.term, in.complete = r, t, m.Complete
	defer in.release()
	wid := sh.ss.wid
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
		rows := (visualLen(sh.prompt)+uniseg.StringWidth(line))/wid.get() + 1
		_, _ = t.Write(fmt.Appendf(nil, "\x1b[%dA\r\x1b[J", rows))
		if m.Handle(line) == room.Quit {
			break
		}
	}
	in.release()
	t.SetPrompt("")
	if reason == room.ReasonQuit {
		// Leave the user's terminal as we found it (through t: the room's writer may still run).
		_, _ = t.Write([]byte("\x1b[?2004l"))
	}
	return reason
}

// enterGate holds the screen lock from the moment a read brings in an Enter until the shell has
// erased the submitted line (the next read releases it). Without it, a line arriving between the
// Enter and the erase would be printed where the erase then lands. The lock is never held while
// anything is written to the client (see termOutput), so it never makes input wait on output.
//
// It also hands each Tab to the line editor in a read of its own, and arms the editor's
// completion for that read alone: x/term calls its completion hook with a copy of the whole line
// on every key, which for a long line of pasted or typed text would cost a copy per byte.
type enterGate struct {
	r        io.Reader
	screen   *sync.Mutex
	held     bool           // only touched by the input goroutine
	err      error          // the first read error: the connection, not a key, ended the input
	pending  []byte         // read from r after a Tab, not yet handed on
	term     *term.Terminal // whose completion hook is armed for a Tab
	complete func(line string, pos int) (string, int)
}

func (g *enterGate) Read(p []byte) (int, error) {
	g.release()
	var n int
	switch {
	case len(g.pending) > 0:
		n = copy(p, g.pending)
		g.pending = g.pending[n:]
	case g.err != nil:
		return 0, g.err
	default:
		var err error
		if n, err = g.r.Read(p); err != nil {
			g.err = err // returned once what was read with it is handed on
			if n == 0 {
				return 0, err
			}
		}
	}
	// A Tab goes on its own: what precedes it now, the Tab next, the rest after.
	if i := bytes.IndexByte(p[:n], '\t'); i >= 0 && n > 1 {
		if i == 0 {
			i = 1
		}
		g.pending = append(append([]byte(nil), p[i:n]...), g.pending...)
		n = i
	}
	if g.term != nil && g.complete != nil {
		if string(p[:n]) == "\t" {
			g.term.AutoCompleteCallback = g.onTab
		} else {
			g.term.AutoCompleteCallback = nil
		}
	}
	if bytes.ContainsAny(p[:n], "\r\n") {
		g.screen.Lock()
		g.held = true
	}
	return n, nil
}

// onTab is the line editor's completion hook while a Tab is being read. The editor calls it on
// the input goroutine, the one that armed it.
func (g *enterGate) onTab(line string, pos int, key rune) (string, int, bool) {
	if key != '\t' {
		return "", 0, false
	}
	line, pos = g.complete(line, pos)
	return line, pos, true
}

func (g *enterGate) release() {
	if g.held {
		g.held = false
		g.screen.Unlock()
	}
}

// maxPendingOutput bounds what may wait to be written to one terminal beyond the room's outbox:
// the line editor's echo and redraws, and a batch of room lines rendered while an earlier write
// is stuck. A client that lets more pile up is not reading: its connection is closed.
const maxPendingOutput = 1 << 20

// termOutput writes the room's lines (wrapped by the room to the window's width) through the
// line editor, above the prompt.
type termOutput struct {
	t      *term.Terminal
	sw     *screenWriter
	screen *sync.Mutex
	conn   io.Closer
}

// Write hands the room's lines to the line editor, which erases the prompt, writes them and
// draws the prompt again; all of it goes out in one write to the channel, made after the screen
// is unlocked, on the room's writer goroutine (whose stalls the room watches).
func (o *termOutput) Write(p []byte) (int, error) {
	o.screen.Lock()
	o.sw.begin()
	_, err := o.t.Write(p)
	o.sw.end()
	o.screen.Unlock()
	if err != nil {
		return 0, err
	}
	if err := o.sw.flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close drops the whole connection: closing just the channel would need the client to read.
func (o *termOutput) Close() error { return o.conn.Close() }

// screenWriter sits between the line editor and the channel. Every write only queues; what is
// queued goes out in one channel write, on the room's writer goroutine for room lines (flush),
// or on a short-lived goroutine for what typing produces (echo, redraws). So the goroutine that
// reads the client's input never writes to the channel itself and can never be stalled by a
// client that does not read: its input keeps being read, never piles up unread in the SSH
// library. x/term also writes a line's text and its ending separately: queueing makes a batch of
// lines one SSH packet instead of two a line.
type screenWriter struct {
	w       io.Writer
	max     int           // queued bytes beyond which the client is too slow
	stall   time.Duration // how long a write for typing may block
	onStall func()        // closes the connection

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	batching bool // the room's writer is rendering: it flushes afterwards
	writing  bool // a goroutine is writing buf out
	err      error

	tooSlow atomic.Bool
}

var errTooSlow = errors.New("output not read")

func (b *screenWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return 0, b.err
	}
	if len(b.buf)+len(p) > b.max {
		b.err = errTooSlow
		b.mu.Unlock()
		if b.tooSlow.CompareAndSwap(false, true) {
			b.onStall()
		}
		return 0, errTooSlow
	}
	b.buf = append(b.buf, p...)
	if !b.batching && !b.writing {
		b.writing = true
		go b.writeOut(true)
	}
	b.mu.Unlock()
	return len(p), nil
}

func (b *screenWriter) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

func (b *screenWriter) end() {
	b.mu.Lock()
	b.batching = false
	b.mu.Unlock()
}

// flush writes what is queued, on the caller's goroutine; if another goroutine is writing, that
// one writes it.
func (b *screenWriter) flush() error {
	b.mu.Lock()
	if b.writing || len(b.buf) == 0 {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.writing = true
	b.mu.Unlock()
	return b.writeOut(false)
}

// writeOut writes the queue out until it is empty; b.writing must be set by the caller. For
// typing (guard set) each write is under a deadline: nothing else watches that goroutine.
func (b *screenWriter) writeOut(guard bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) > 0 && b.err == nil {
		out := b.buf
		b.buf, b.spare = b.spare[:0], nil
		b.mu.Unlock()
		var t *time.Timer
		if guard {
			t = time.AfterFunc(b.stall, func() {
				if b.tooSlow.CompareAndSwap(false, true) {
					b.onStall()
				}
			})
		}
		_, err := b.w.Write(out)
		if t != nil {
			t.Stop()
		}
		b.mu.Lock()
		if err != nil {
			b.err = err
		}
		if cap(out) <= 4<<10 {
			b.spare = out[:0] // idle sessions are many: only a small buffer is kept
		}
	}
	if len(b.buf) == 0 && cap(b.buf) > 4<<10 {
		b.buf = nil
	}
	b.writing = false
	return b.err
}

// plainOutput writes the room's lines straight to the channel.
type plainOutput struct {
	w    io.Writer
	conn io.Closer
}

func (o *plainOutput) Write(p []byte) (int, error) { return o.w.Write(p) }
func (o *plainOutput) Close() error                { return o.conn.Close() }

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

// width is the terminal's width, shared by the request loop and the input goroutine.
type width struct {
	mu sync.Mutex
	w  int
}

func (x *width) set(cols int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.w = max(cols, 1)
}

func (x *width) get() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.w
}

// execOptions says who runs a one-shot command, for the room's login checks.
func (ss *session) execOptions() room.ExecOptions {
	opts := room.ExecOptions{Name: ss.sc.User(), Remote: ss.sc.RemoteAddr().String()}
	if pk := ss.publicKey(); pk != nil {
		k := StoreKey(pk)
		opts.Key = &k
	}
	return opts
}

func stack() string { return strings.TrimSpace(string(debug.Stack())) }
