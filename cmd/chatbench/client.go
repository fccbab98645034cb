package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

const (
	readBufSize = 8 << 10 // each client's read buffer
	tailSize    = 256     // how much of the end of its stream a client keeps, for its last line
	maxGapTrack = 1 << 16 // a gap in one sender's sequence longer than this is not remembered
)

// transport is how a client reaches the server.
type transport uint8

const (
	overSSH transport = iota
	overTCP
	overWS
	nTransports = iota
)

func (t transport) String() string {
	switch t {
	case overTCP:
		return "tcp"
	case overWS:
		return "ws"
	}
	return "ssh"
}

// client is one simulated person.
type client struct {
	id        int
	name      string
	transport transport
	pty       bool // an SSH session with a PTY
	echo      bool // its own messages come back: a PTY session's, a WebSocket's
	signer    gossh.Signer
	joinPats  [][]byte // any of them shows it is in: ", NAME! " (the welcome) or its join notice
	room      int32    // its room's index: 0 without -rooms (the default room)
	node      int32    // the node it connects to: the index of addr in its transport's address list
	addr      string   // the address it dials: its node's for its transport
	roomName  string   // with -rooms, the room it joins: "#RUN-rK"
	roomPat   []byte   // with -rooms, " joined #RUN-rK (": the room's join notices

	// Set once connected, before its reader starts.
	closer   io.Closer // the SSH client or the TCP connection
	r        io.Reader
	w        io.Writer
	netConn  net.Conn
	stderr   *tailWriter
	buf      []byte
	joinedAt time.Duration // since the first dial
	observer bool          // watches the stream for the room's "left" notices

	senderIdx atomic.Int32 // its index as a sender, -1 if it does not send
	sent      atomic.Int64 // messages written, when a sender
	dropped   atomic.Bool  // the server ended the connection during the run
	done      chan struct{}

	// Owned by the reader goroutine (read by others only after done is closed, or atomically).
	pairs    []pairState // per sender index
	echoNext atomic.Int32
	gaps     map[uint64]struct{} // (sender, seq) found missing, in case they arrive late
	tail     [tailSize]byte
	tailLen  int
	dropAt   time.Duration
	dropErr  string
}

// pairState is what a receiver got from one sender. Only the receiver's reader writes it.
type pairState struct {
	next  atomic.Int32 // one more than the highest sequence number received
	count atomic.Int32 // distinct messages received
}

// connectSSH logs in with the client's own key, opens a shell (with a PTY if asked) and waits for
// the client's join notice. It returns how many bytes that followed the notice are in c.buf.
func (b *bench) connectSSH(ctx context.Context, c *client) (int, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	// The deadline bounds everything up to the join notice: every read goes through nc.
	_ = nc.SetDeadline(time.Now().Add(b.cfg.ConnectTimeout))
	var banner string
	conf := &gossh.ClientConfig{
		User: c.name,
		Auth: []gossh.AuthMethod{gossh.PublicKeys(c.signer)},
		// A load generator, pointed by its operator at their own server: the host key is
		// deliberately not verified (the -h text says so).
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		BannerCallback:  func(m string) error { banner = m; return nil },
	}
	sc, chans, reqs, err := gossh.NewClientConn(nc, c.addr, conf)
	if err != nil {
		stop()
		nc.Close()
		if banner = strings.TrimSpace(banner); banner != "" {
			return 0, fmt.Errorf("%s (%w)", banner, err)
		}
		return 0, err
	}
	cl := gossh.NewClient(sc, chans, reqs)
	fail := func(err error) (int, error) {
		stop()
		cl.Close()
		return 0, err
	}
	sess, err := cl.NewSession()
	if err != nil {
		return fail(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	c.stderr = &tailWriter{}
	sess.Stderr = c.stderr
	if c.pty {
		if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
			return fail(fmt.Errorf("pty: %w", err))
		}
	}
	if err := sess.Shell(); err != nil {
		return fail(fmt.Errorf("shell: %w", err))
	}
	c.buf = make([]byte, readBufSize)
	// why is err, or what the server said on stderr if it ended the session.
	why := func(err error) error {
		if ctx.Err() == nil && !errors.As(err, new(*serverError)) {
			waitSession(sess, time.Second)
			if msg := c.stderr.String(); msg != "" {
				return errors.New(firstLine(msg))
			}
		}
		return err
	}
	keep, err := awaitJoin(stdout, c.buf, 0, c.joinPats)
	if err != nil {
		return fail(fmt.Errorf("waiting to join: %w", why(err)))
	}
	if keep, err = c.joinRoom(stdout, stdin, keep); err != nil {
		return fail(fmt.Errorf("joining %s: %w", c.roomName, why(err)))
	}
	if !stop() {
		return fail(context.Cause(ctx))
	}
	_ = nc.SetDeadline(time.Time{})
	c.closer, c.r, c.w, c.netConn = cl, stdout, stdin, nc
	return keep, nil
}

// waitSession waits, at most d, for a session to end and its output to be copied.
func waitSession(sess *gossh.Session, d time.Duration) {
	done := make(chan struct{})
	go func() { _ = sess.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// connectTCP speaks the TCP protocol's greeting: read the question, send the name, and wait for
// the client's join notice. It returns how many bytes that followed the notice are in c.buf.
func (b *bench) connectTCP(ctx context.Context, c *client) (int, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	fail := func(err error) (int, error) {
		stop()
		nc.Close()
		return 0, err
	}
	_ = nc.SetDeadline(time.Now().Add(b.cfg.ConnectTimeout))
	c.buf = make([]byte, readBufSize)
	greeting, keep, err := readLine(nc, c.buf, 0)
	if err != nil {
		return fail(fmt.Errorf("reading the greeting: %w", err))
	}
	if strings.HasPrefix(greeting, "error:") {
		return fail(errors.New(greeting))
	}
	if _, err := io.WriteString(nc, c.name+"\n"); err != nil {
		return fail(err)
	}
	answer, keep, err := readLine(nc, c.buf, keep)
	if err != nil {
		return fail(fmt.Errorf("waiting for the welcome: %w", err))
	}
	if strings.HasPrefix(answer, "error:") {
		return fail(errors.New(answer))
	}
	if !slices.ContainsFunc(c.joinPats, func(p []byte) bool { return strings.Contains(answer, string(p)) }) {
		// The answer is normally the welcome itself.
		if keep, err = awaitJoin(nc, c.buf, keep, c.joinPats); err != nil {
			return fail(fmt.Errorf("waiting to join: %w", err))
		}
	}
	if keep, err = c.joinRoom(nc, nc, keep); err != nil {
		return fail(fmt.Errorf("joining %s: %w", c.roomName, err))
	}
	if !stop() {
		return fail(context.Cause(ctx))
	}
	_ = nc.SetDeadline(time.Time{})
	c.closer, c.r, c.w, c.netConn = nc, nc, nc, nc
	return keep, nil
}

// readLine reads up to a line feed, given buf[:keep] already read, and returns the line (without
// CR LF) and how many bytes after it are now at the front of buf.
func readLine(r io.Reader, buf []byte, keep int) (string, int, error) {
	for {
		if i := bytes.IndexByte(buf[:keep], '\n'); i >= 0 {
			line := string(bytes.TrimRight(buf[:i], "\r"))
			return line, copy(buf, buf[i+1:keep]), nil
		}
		if keep == len(buf) {
			return "", 0, errors.New("line too long")
		}
		n, err := r.Read(buf[keep:])
		keep += n
		if err != nil && n == 0 {
			return "", 0, err
		}
	}
}

// awaitJoin reads until one of pats, given buf[:keep] already read, and returns how many bytes
// after it are now at the front of buf.
func awaitJoin(r io.Reader, buf []byte, keep int, pats [][]byte) (int, error) {
	longest := 0
	for _, p := range pats {
		longest = max(longest, len(p))
	}
	for {
		at, end := -1, 0
		for _, p := range pats {
			if i := bytes.Index(buf[:keep], p); i >= 0 && (at < 0 || i < at) {
				at, end = i, i+len(p)
			}
		}
		if at >= 0 {
			return copy(buf, buf[end:keep]), nil
		}
		if k := longest - 1; keep > k {
			keep = copy(buf, buf[keep-k:keep])
		}
		n, err := r.Read(buf[keep:])
		keep += n
		if err != nil && n == 0 {
			return 0, err
		}
	}
}

// joinRoom, with -rooms, sends "/join #RUN-rK" and waits for the room's join notice, given
// buf[:keep] already read; it returns how many bytes after the notice are at the front of c.buf.
// Any join notice of the room will do: the server sends a room's notices only to its members,
// and in a join storm it gathers them ("* a, b, c, d, e and 5 others joined #r (10 online)"),
// which may leave the client's own name out. An error line (an older server does not know
// /join) fails the client at once.
func (c *client) joinRoom(r io.Reader, w io.Writer, keep int) (int, error) {
	if c.roomName == "" {
		return keep, nil
	}
	eol := "\n"
	if c.pty {
		eol = "\r" // a terminal sends CR for Enter
	}
	if _, err := io.WriteString(w, "/join "+c.roomName+eol); err != nil {
		return 0, err
	}
	return awaitRoom(r, c.buf, keep, c.roomPat)
}

// serverError is an error line the server sent ("error: ..."), as the client's error.
type serverError struct{ line string }

func (e *serverError) Error() string { return e.line }

// awaitRoom reads, given buf[:keep] already read, until the text of complete lines holds pat,
// or a line is an error; it returns how many bytes after the line that completed pat are now at
// the front of buf. The text is what a terminal shows, rows joined by a space: a terminal gets
// a notice wider than it wrapped into indented rows, which may break it anywhere pat has a space.
func awaitRoom(r io.Reader, buf []byte, keep int, pat []byte) (int, error) {
	var text []byte // the text of the lines so far, its end kept
	var vis [readBufSize]byte
	for {
		start := 0
		for {
			nl := bytes.IndexByte(buf[start:keep], '\n')
			if nl < 0 && (start > 0 || keep < len(buf)) {
				break
			}
			end := keep // a full buffer without a line feed counts as a line
			if nl >= 0 {
				end = start + nl + 1
			}
			line := visibleText(vis[:0], bytes.TrimRight(buf[start:end], "\r\n"))
			if e := errorLine(line); e != "" {
				return 0, &serverError{line: e}
			}
			if len(text) > 4*len(pat) {
				text = append(text[:0], text[len(text)-len(pat):]...)
			}
			text = append(append(text, ' '), bytes.TrimSpace(line)...)
			start = end
			if bytes.Contains(text, pat) {
				return copy(buf, buf[start:keep]), nil
			}
		}
		keep = copy(buf, buf[start:keep])
		n, err := r.Read(buf[keep:])
		keep += n
		if err != nil && n == 0 {
			return 0, err
		}
	}
}

// errorLine returns the visible text of a line if it is an error from the server
// ("[HH:MM ]error: ..."), "" if not.
func errorLine(vis []byte) string {
	f := bytes.TrimSpace(vis)
	if len(f) > 6 && isClock(f[:5]) && f[5] == ' ' {
		f = f[6:]
	}
	if bytes.HasPrefix(f, []byte("error:")) {
		return string(f)
	}
	return ""
}

// read is a client's reader: it reads everything the server sends until the connection ends,
// finds the tokens and accounts for them. buf[:keep] holds what arrived with the join notice.
func (b *bench) read(c *client, keep int) {
	defer close(c.done)
	buf := c.buf
	toks := make([]token, 0, 64)
	data, now := buf[:keep], time.Now().UnixNano()
	for {
		if len(data) > 0 {
			var k int
			toks, k = b.scanner.scan(data, toks[:0])
			if len(toks) > 0 {
				b.record(c, toks, now)
			}
			if c.observer {
				b.watchNotices(data)
			}
			if c.senderIdx.Load() >= 0 {
				b.watchSlowDown(data)
			}
			keep = copy(buf, data[len(data)-k:])
		}
		n, err := c.r.Read(buf[keep:])
		now = time.Now().UnixNano()
		c.keepTail(buf[keep : keep+n])
		data = buf[:keep+n]
		if err != nil {
			toks, _ = b.scanner.scan(data, toks[:0])
			if len(toks) > 0 {
				b.record(c, toks, now)
			}
			b.ended(c, err)
			return
		}
	}
}

// record accounts for the tokens found in one read, received at now. A token counts for the
// client's room only: one tagged with another room is ignored (the client is in the default
// room too), unless that room is another of the run's, which never sends its lines here:
// foreign. So is an untagged one from a sender in another room.
func (b *bench) record(c *client, toks []token, now int64) {
	me := c.senderIdx.Load()
	sh := b.shardOf(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, t := range toks {
		if t.sender < 0 || int(t.sender) >= len(c.pairs) || t.seq < 0 {
			continue // not one of ours
		}
		switch {
		case t.room == roomUntagged || t.room == c.room && b.roomNames != nil:
			// The client's current room, which is its room of the run.
		case t.room == roomElsewhere || int(t.room) >= len(b.roomNames):
			continue // a room that is not one of the run's, like the default room
		default:
			sh.foreign++
			continue
		}
		if b.senderRoom[t.sender].Load() != c.room {
			sh.foreign++
			continue
		}
		if t.sender == me {
			if t.seq >= c.echoNext.Load() {
				c.echoNext.Store(t.seq + 1)
				sh.echoes++
			}
			continue
		}
		p := &c.pairs[t.sender]
		switch next := p.next.Load(); {
		case t.seq >= next:
			if t.seq > next {
				c.noteGap(t.sender, next, t.seq)
			}
			p.next.Store(t.seq + 1)
		case c.fillGap(t.sender, t.seq):
			sh.outOfOrder++
		default:
			sh.duplicates++
			continue
		}
		p.count.Add(1)
		sh.delivered++
		sh.hist[b.whereReceived(c, int(t.sender))].record((now - t.nanos) / 1000)
	}
}

// noteGap remembers that sender's messages [from, to) were skipped, in case they come late.
func (c *client) noteGap(sender, from, to int32) {
	if to-from > maxGapTrack {
		return
	}
	if c.gaps == nil {
		c.gaps = make(map[uint64]struct{})
	}
	for s := from; s < to; s++ {
		c.gaps[gapKey(sender, s)] = struct{}{}
	}
}

// fillGap reports whether sender's message seq was missing, and is no longer.
func (c *client) fillGap(sender, seq int32) bool {
	k := gapKey(sender, seq)
	if _, ok := c.gaps[k]; ok {
		delete(c.gaps, k)
		return true
	}
	return false
}

func gapKey(sender, seq int32) uint64 { return uint64(sender)<<32 | uint64(uint32(seq)) }

// keepTail keeps the last tailSize bytes of the stream.
func (c *client) keepTail(p []byte) {
	if len(p) >= tailSize {
		c.tailLen = copy(c.tail[:], p[len(p)-tailSize:])
		return
	}
	old := min(c.tailLen, tailSize-len(p))
	copy(c.tail[:], c.tail[c.tailLen-old:c.tailLen])
	c.tailLen = old + copy(c.tail[old:], p)
}

// lastLine is the last complete line the client received, without escape codes. (A PTY
// session's stream ends with the line editor's prompt, which is not a complete line.)
func (c *client) lastLine() string {
	s := stripANSI(string(c.tail[:c.tailLen]))
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return ""
	}
	s = strings.TrimRight(s[:i], "\r\n")
	if j := strings.LastIndexByte(s, '\n'); j >= 0 {
		s = s[j+1:]
	}
	return strings.TrimSpace(strings.ReplaceAll(s, "\r", ""))
}

// ended is called by the reader when the connection ends. Before the teardown, that is a drop.
func (b *bench) ended(c *client, err error) {
	if b.closing.Load() {
		return
	}
	c.dropAt = time.Since(b.t0)
	c.dropErr = describeReadErr(err)
	c.dropped.Store(true)
	b.droppedN.Add(1)
}

func describeReadErr(err error) string {
	if s, ok := describeWSClose(err); ok {
		return s
	}
	if errors.Is(err, io.EOF) {
		return "connection closed by the server"
	}
	return cleanErr(err)
}

// watchNotices records the room's "* NAME left..." notices about this run's clients. Only a few
// clients (observers) do this, so a dropped client's report can say what the room said about it.
func (b *bench) watchNotices(data []byte) {
	pat := b.noticePat // "* PREFIX-"
	for {
		i := bytes.Index(data, pat)
		if i < 0 {
			return
		}
		data = data[i+2:] // at the name
		end := bytes.IndexAny(data, "\r\n\x1b")
		if end < 0 {
			return
		}
		line := string(data[:end])
		name, rest, ok := strings.Cut(line, " ")
		if ok && strings.HasPrefix(rest, "left") {
			b.noticeMu.Lock()
			if _, seen := b.notices[name]; !seen {
				b.notices[name] = line
			}
			b.noticeMu.Unlock()
		}
		data = data[end:]
	}
}

// slowDown starts the lines chatd's rate limiter sends a sender: "* slow down: ... your lines
// are delayed" (once) and "error: slow down: this line was not sent: ..." (per refused line).
var slowDown = []byte("slow down: ")

// watchSlowDown counts the rate limiter's lines in a sender's stream, so that the report can
// tell latency and losses caused by the server's --msg-rate from those caused by load.
func (b *bench) watchSlowDown(data []byte) {
	if n := bytes.Count(data, slowDown); n > 0 {
		b.slowDowns.Add(int64(n))
	}
}

// tailWriter keeps the first line written to it (a session's stderr: the server's refusal).
type tailWriter struct {
	mu sync.Mutex
	b  []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := 512 - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(stripANSI(string(w.b)))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// stripANSI removes CSI escape sequences and other control characters but line feeds.
func stripANSI(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0x1b:
			if i+1 < len(s) && s[i+1] == '[' {
				i += 2
				for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
					i++
				}
			}
		case c == '\n' || c >= 0x20 && c != 0x7f:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
