package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"chatd/internal/termwrap"
	"chatd/room"
)

// What a session channel may ask for, and how much it may cost before it has started. The SSH
// library accepts far more by default (any number of env requests and channels, data buffered
// without reading): every request and byte a client sends is admitted here by policy.
const (
	// maxEarlyRequests is how many requests (window changes aside) a channel may send before its
	// shell or command starts: a PTY, a few refused env variables and the start need far fewer.
	maxEarlyRequests = 32
	// maxEarlyInput is how much input a channel may send before its session starts. The SSH
	// library buffers what nobody reads, and a stream of one-byte packets costs it about fifty
	// times its size: so input is read from the moment the channel opens, kept up to this bound,
	// and a channel that sends more without starting is closed.
	maxEarlyInput = 64 << 10
	// maxPtyRequest bounds a pty-req's payload: a terminal name and its modes (OpenSSH sends a
	// few hundred bytes).
	maxPtyRequest = 1 << 10
	// maxCommand bounds an exec request's command line.
	maxCommand = 1 << 10
	// maxWindow bounds a terminal's size as a client reports it.
	maxWindow = 1000
	// closeTimeout is how long a client has to acknowledge the end of a session (its exit status
	// and the channel's close) before the connection is closed.
	closeTimeout = 2 * time.Second
)

// errAborted ends the reads of a session whose connection was closed for breaking a rule.
var errAborted = errors.New("session aborted")

// Why a connection is closed for breaking the session policy: the reasons of the
// chatd_ssh_closed_total metric.
const (
	closeStartTimeout = "start-timeout" // no shell or command in time
	closeRequests     = "early-requests"
	closeInput        = "early-input"
	closeExecTimeout  = "exec-timeout"
	closeNoAck        = "close-timeout" // the client did not acknowledge its session's end
	closeTooSlow      = "too-slow"      // the line editor's output was not read
	closePanic        = "panic"
)

// sessionChannel handles every "session" channel a client opens, in place of charmbracelet/ssh's
// default: it caps the sessions of a connection, and runs each session's requests by the policy
// above. It runs the channel's request loop until the channel is gone.
func (s *Server) sessionChannel(_ *ssh.Server, sc *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	cs := connOf(ctx)
	if cs == nil {
		_ = nc.Reject(gossh.ConnectionFailed, "not admitted") // not reached: every connection is
		return
	}
	if why, drop := s.openSession(cs); why != "" {
		s.log.Info("session refused", "user", cleanUser(sc.User()), "remote", sc.RemoteAddr().String(), "reason", why)
		_ = nc.Reject(gossh.ResourceShortage, why)
		if drop {
			_ = sc.Close()
		}
		return
	}
	defer s.closeSession(cs)
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	ss := &session{
		srv:      s,
		cs:       cs,
		sc:       sc,
		ctx:      ctx,
		ch:       ch,
		reqs:     reqs,
		opened:   time.Now(),
		started:  make(chan struct{}),
		ready:    make(chan struct{}),
		gone:     make(chan struct{}),
		overflow: make(chan struct{}, 1),
		verdict:  make(chan bool, 1),
	}
	ss.serve()
}

// openSession counts a new session channel on cs, or says why it is refused; drop is set when
// the address is flooding and the whole connection should go. Every session after a
// connection's first counts toward the address's rate of new connections, refused ones too.
func (s *Server) openSession(cs *connState) (why string, drop bool) {
	cs.mu.Lock()
	further := cs.opened > 0
	cs.opened++
	cs.mu.Unlock()
	if further {
		if t := s.cfg.Gate.Session("ssh", cs.conn.RemoteAddr()); t != nil {
			return t.Refusal, t.Drop
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.open >= s.cfg.MaxSessions {
		return fmt.Sprintf("at most %d sessions at once on one connection", s.cfg.MaxSessions), false
	}
	cs.open++
	return "", false
}

func (s *Server) closeSession(cs *connState) {
	cs.mu.Lock()
	cs.open--
	cs.mu.Unlock()
}

// session is one session channel: a chat shell, a one-shot command, or nothing yet.
//
// Its goroutines: the request loop (serve), which never writes channel data and never waits on
// the client; the input reader (input), which reads from the moment the channel opens until it
// is gone, so nothing the client sends is left unread; a reader that discards the client's
// stderr stream, which the SSH library would otherwise buffer for the channel's whole life; and,
// once the session starts, a short-lived one that sets it up (run).
type session struct {
	srv    *Server
	cs     *connState
	sc     *gossh.ServerConn
	ctx    ssh.Context
	ch     gossh.Channel
	reqs   <-chan *gossh.Request
	opened time.Time

	// Set by the request loop before started is closed, read-only afterwards.
	kind       string // "shell" or "exec"
	pty        *ptyRequest
	args       []string // an exec request's command line, split into words
	commandErr string   // why the command cannot run (too long)
	startRoom  string   // the room a shell starts in ("join ROOM"); "" for the usual ones

	started  chan struct{} // closed when a shell or a command starts
	ready    chan struct{} // closed when run has set the session up (shell is then final)
	gone     chan struct{} // closed when the channel is closed for good
	overflow chan struct{} // the input reader asks the request loop whether a start is queued
	verdict  chan bool     // the request loop's answer: started or not

	shell *shell // set by run before ready is closed; nil for commands and refused joins

	mu     sync.Mutex
	win    window         // the latest window size
	term   *term.Terminal // the line editor, once an interactive shell is set up
	wid    *width
	member *room.Member // once an interactive shell has joined: the room wraps its lines

	endOnce sync.Once
}

// ptyRequest is a pty-req's payload (RFC 4254, 6.2).
type ptyRequest struct {
	Term          string
	Columns, Rows uint32
	Width, Height uint32
	Modes         string
}

// window is a terminal's size in characters.
type window struct{ cols, rows int }

// windowOf clamps a size a client reported: 0 (sent by "ssh -tt" with piped input) means the
// usual 80×24, and nothing is larger than maxWindow.
func windowOf(cols, rows uint32) window {
	w := window{cols: int(min(cols, maxWindow)), rows: int(min(rows, maxWindow))}
	if w.cols <= 0 {
		w.cols = 80
	}
	if w.rows <= 0 {
		w.rows = 24
	}
	return w
}

func (ss *session) isStarted() bool {
	select {
	case <-ss.started:
		return true
	default:
		return false
	}
}

func (ss *session) isGone() bool {
	select {
	case <-ss.gone:
		return true
	default:
		return false
	}
}

// serve is the request loop: it answers every request by the policy and returns when the
// channel is gone.
func (ss *session) serve() {
	s := ss.srv
	stop := ss.deadline(s.cfg.StartTimeout, closeStartTimeout, fmt.Sprintf("no shell or command within %s", s.cfg.StartTimeout))
	go ss.discardStderr()
	go ss.input()
	early := 0
	checking := false
	for open := true; open; {
		select {
		case req, ok := <-ss.reqs:
			if !ok {
				open = false
				continue
			}
			if !ss.isStarted() && req.Type != "window-change" { // resizes cost nothing: only the last is kept
				if early++; early > maxEarlyRequests {
					ss.abort(closeRequests, fmt.Sprintf("more than %d requests before a shell or command", maxEarlyRequests))
				}
			}
			ss.request(req, stop)
		case <-ss.overflow:
			checking = true
		}
		// The input reader saw too much input before a start. A start request that arrived
		// before that input is already in the queue (the SSH library delivers a channel's
		// requests and data in order): answer once the queue is empty.
		if checking && len(ss.reqs) == 0 {
			checking = false
			ss.verdict <- ss.isStarted()
		}
	}
	close(ss.gone)
	stop()
	if ss.isStarted() {
		s.sessionGone(ss.cs)
	}
}

// request answers one request. Anything not listed is refused: env (nothing here reads it, and
// the SSH library would keep every one), subsystems, agent and X11 forwarding, signals, breaks.
func (ss *session) request(req *gossh.Request, stopStartDeadline func() bool) {
	switch req.Type {
	case "pty-req":
		var p ptyRequest
		if ss.isStarted() || ss.pty != nil || len(req.Payload) > maxPtyRequest || gossh.Unmarshal(req.Payload, &p) != nil {
			_ = req.Reply(false, nil)
			return
		}
		ss.pty = &p
		ss.mu.Lock()
		ss.win = windowOf(p.Columns, p.Rows)
		ss.mu.Unlock()
		_ = req.Reply(true, nil)
	case "window-change":
		var w struct{ Columns, Rows, Width, Height uint32 }
		if ss.pty == nil || gossh.Unmarshal(req.Payload, &w) != nil {
			_ = req.Reply(false, nil)
			return
		}
		ss.resize(windowOf(w.Columns, w.Rows))
		_ = req.Reply(true, nil)
	case "shell", "exec":
		if ss.isStarted() {
			_ = req.Reply(false, nil)
			return
		}
		if req.Type == "exec" {
			var c struct{ Command string }
			if gossh.Unmarshal(req.Payload, &c) != nil {
				_ = req.Reply(false, nil)
				return
			}
			if len(c.Command) > maxCommand {
				ss.commandErr = fmt.Sprintf("command too long (at most %d bytes)", maxCommand)
			} else {
				ss.args = splitCommand(c.Command)
			}
		}
		ss.kind = req.Type
		if args := ss.args; len(args) > 0 && strings.EqualFold(args[0], "join") {
			// "ssh -t host join '#go'": the shell, started in that room.
			if len(args) == 2 {
				ss.kind, ss.startRoom = "shell", args[1]
			} else {
				ss.commandErr = "usage: join ROOM"
			}
		}
		close(ss.started)
		stopStartDeadline()
		ss.srv.sessionStarted(ss.cs)
		_ = req.Reply(true, nil)
		go ss.run()
	default:
		_ = req.Reply(false, nil)
	}
}

// resize records a new window size and applies it to the line editor, if there is one yet. It
// never waits on the client: the editor's writes only queue (see screenWriter).
func (ss *session) resize(w window) {
	ss.mu.Lock()
	ss.win = w
	t, wid, m := ss.term, ss.wid, ss.member
	ss.mu.Unlock()
	if t != nil {
		wid.set(w.cols)
		_ = t.SetSize(w.cols, w.rows)
	}
	if m != nil {
		m.SetWidth(w.cols)
	}
}

// deadline closes the connection for reason (why, in words) unless stop is called within d,
// or the channel is gone by then.
func (ss *session) deadline(d time.Duration, reason, why string) (stop func() bool) {
	t := time.AfterFunc(d, func() {
		if !ss.isGone() {
			ss.abort(reason, why)
		}
	})
	return t.Stop
}

// abort closes the whole connection: the client broke a rule or stopped responding. Closing
// only the channel would need the client's cooperation.
func (ss *session) abort(reason, why string) {
	ss.srv.cfg.Metrics.Closed(reason)
	ss.srv.log.Warn("connection closed", "user", cleanUser(ss.sc.User()), "remote", ss.sc.RemoteAddr().String(), "reason", why)
	_ = ss.sc.Close()
}

// input reads the client's input from the moment the channel opens. Until the session starts it
// keeps what arrives (within maxEarlyInput); then a shell gets it all, in order, and a command's
// input is discarded. It reads until the channel is gone.
func (ss *session) input() {
	defer ss.recoverPanic()
	early, err := ss.readEarly()
	if errors.Is(err, errAborted) {
		return
	}
	select {
	case <-ss.started:
	case <-ss.gone:
	}
	if !ss.isStarted() {
		return // the channel went before asking for anything
	}
	// run always finishes (its writes are under deadlines), and a member it joined must be led
	// out by the shell's loop even when the channel is already gone: its reads then end at once.
	<-ss.ready
	if ss.shell != nil {
		rest := io.Reader(ss.ch)
		if err != nil {
			rest = errReader{err}
		}
		ss.shell.serve(io.MultiReader(bytes.NewReader(early), rest))
	}
	ss.drain(ss.ch)
}

// readEarly reads until the session has started (and the first read after it has returned), the
// input ends, or the channel is gone.
func (ss *session) readEarly() ([]byte, error) {
	buf := make([]byte, 256) // most sessions sit here, idle, until the first key: keep it small
	var early []byte
	for {
		n, err := ss.ch.Read(buf)
		early = append(early, buf[:n]...)
		if err != nil || ss.isStarted() {
			return early, err
		}
		if len(early) > maxEarlyInput {
			select {
			case ss.overflow <- struct{}{}:
			default:
			}
			select {
			case started := <-ss.verdict:
				if !started {
					ss.abort(closeInput, fmt.Sprintf("more than %d bytes of input before a shell or command", maxEarlyInput))
					return nil, errAborted
				}
				return early, nil
			case <-ss.gone:
				return early, io.EOF
			}
		}
	}
}

// discardStderr reads and drops what the client sends on its stderr stream: nothing reads it,
// and the SSH library would buffer it for the channel's whole life.
func (ss *session) discardStderr() { ss.drain(ss.ch.Stderr()) }

// drain discards r's data until the channel is gone. After the client's EOF the SSH library
// still buffers data a misbehaving client sends, while a read returns at once: it polls then.
func (ss *session) drain(r io.Reader) {
	buf := make([]byte, 256) // held for the session's life by the stderr reader
	for {
		n, err := r.Read(buf)
		if n > 0 || err == nil {
			continue
		}
		select {
		case <-ss.gone:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// run sets a started session up: a one-shot command runs here to its end; a shell joins the
// room, and the input reader carries on from there.
func (ss *session) run() {
	defer close(ss.ready)
	defer ss.recoverPanic()
	ss.logConnect()
	if ss.kind == "exec" {
		ss.exec()
		return
	}
	ss.shell = ss.srv.startShell(ss)
}

// exec runs a one-shot command such as "ssh host who", within the exec timeout.
func (ss *session) exec() {
	s := ss.srv
	stop := ss.deadline(s.cfg.ExecTimeout, closeExecTimeout, fmt.Sprintf("command still running after %s", s.cfg.ExecTimeout))
	defer stop()
	if ss.commandErr != "" {
		ss.fail(ss.commandErr)
		return
	}
	if err := s.room.Exec(ss.args, ss.ttyWriter(ss.ch), ss.execOptions()); err != nil {
		ss.fail(err.Error())
		return
	}
	ss.end(0, "exec")
}

// fail tells the client why on stderr and ends the session with status 1.
func (ss *session) fail(why string) {
	fmt.Fprintf(ss.ttyWriter(ss.ch.Stderr()), "error: %s\n", why)
	ss.end(1, "refused: "+why)
}

// end sends the exit status, closes the channel and logs the session's end. A client that does
// not acknowledge the close within closeTimeout loses its connection. Only the first call counts.
func (ss *session) end(code int, reason string) {
	ss.endOnce.Do(func() {
		ss.srv.log.Info("disconnect",
			"user", cleanUser(ss.sc.User()),
			"remote", ss.sc.RemoteAddr().String(),
			"reason", reason,
			"duration", time.Since(ss.opened).Round(time.Millisecond).String())
		ss.deadline(closeTimeout, closeNoAck, "the client did not close its session")
		status := struct{ Status uint32 }{uint32(code)}
		_, _ = ss.ch.SendRequest("exit-status", false, gossh.Marshal(&status))
		_ = ss.ch.Close()
	})
}

// recoverPanic keeps a panic in one session from taking the server down. The stack goes to the
// log; the user only learns that something went wrong.
func (ss *session) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	ss.srv.log.Error("panic in session", "user", cleanUser(ss.sc.User()), "remote", ss.sc.RemoteAddr().String(), "panic", fmt.Sprint(v), "stack", stack())
	if sh := ss.shell; sh != nil && sh.member != nil {
		sh.member.Leave(room.ReasonFailed)
	}
	ss.deadline(ss.srv.writeTimeout(), closePanic, "panic")
	ss.fail("internal server error; please reconnect")
}

func (ss *session) logConnect() {
	mode := "plain"
	switch {
	case ss.kind == "exec":
		mode = "exec"
	case ss.pty != nil:
		mode = "pty"
	}
	ss.srv.log.Info("connect",
		"user", cleanUser(ss.sc.User()),
		"remote", ss.sc.RemoteAddr().String(),
		"key", fingerprint(ss.publicKey()),
		"client", cleanPeerString(string(ss.sc.ClientVersion())),
		"mode", mode)
}

// publicKey is the key the client authenticated with, or nil.
func (ss *session) publicKey() gossh.PublicKey {
	pk, _ := ss.ctx.Value(ssh.ContextKeyPublicKey).(gossh.PublicKey)
	return pk
}

// ttyWriter is w for a session without a PTY. For one with a PTY it writes \n as \r\n (the
// client's terminal is in raw mode: nothing else returns the cursor to the left), and wraps long
// lines with a hanging indent, as the shell does: "ssh -t host history" prints others' lines.
func (ss *session) ttyWriter(w io.Writer) io.Writer {
	if ss.pty != nil {
		ss.mu.Lock()
		cols := ss.win.cols
		ss.mu.Unlock()
		return &ttyLines{w: w, width: cols}
	}
	return w
}

type ttyLines struct {
	w     io.Writer
	width int
	buf   []byte
}

func (c *ttyLines) Write(p []byte) (int, error) {
	c.buf = termwrap.WrapLines(c.buf[:0], p, c.width)
	if _, err := c.w.Write(bytes.ReplaceAll(c.buf, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// splitCommand splits an exec command line at spaces; single or double quotes group words. It
// is deliberately not a shell: no comments, escapes or expansions.
func splitCommand(s string) []string {
	var args []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args
}
