package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"chatd/chat"
	"chatd/room"
)

// closeGrace bounds the WebSocket closing handshake: the close frame out and the peer's back.
const closeGrace = time.Second

// defaultHistoryLimit is how many lines a history request without a limit gets.
const defaultHistoryLimit = 50

// Close reasons, for the page to tell what happened (the status code says whether to reconnect).
const (
	closeSignIn  = "sign in"  // 1008: no name and no session: show the sign-in form
	closeRefused = "refused"  // 1008: the room or the gate turned the session away (the error line says why)
	closeBye     = "bye"      // 1000: the user left (bye, /quit)
	closeIdle    = "idle"     // 1000: the room's idle timeout
	closeKicked  = "kicked"   // 1008
	closeBanned  = "banned"   // 1008
	closeGoing   = "shutdown" // 1001: the server is going down; reconnect later
	closeFailed  = "internal error"
)

// request is one client message. Fields a type does not use are ignored.
type request struct {
	Type   string `json:"type"`
	Text   string `json:"text"`
	Room   string `json:"room"`
	Before string `json:"before"`
	After  string `json:"after"`
	Limit  int    `json:"limit"`
}

// historyReply answers a history request.
type historyReply struct {
	Type   string       `json:"type"` // "history"
	Room   string       `json:"room"`
	Events []room.Event `json:"events"`
	Before string       `json:"before,omitempty"`
	After  string       `json:"after,omitempty"`
}

// handleWS opens a WebSocket and runs its session. What is refused before the upgrade (a page
// from another origin, a malformed Authorization) is an HTTP error; once upgraded, a refusal is
// one error line and a close with status 1008, which a page can show.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	nc, gc := connOf(r)
	if nc == nil || gc == nil {
		s.errorPage(w, http.StatusInternalServerError, "Error", "This connection cannot carry a WebSocket.")
		return
	}
	client := s.clientAddr(r, peerAddr(r))
	remote := client.String()

	// A browser says which page opens the socket. Only the public URL's own page may: a page on
	// another site would otherwise ride on the visitor's cookie (cross-site WebSocket hijacking),
	// and comparing with the public URL rather than the Host header also defeats DNS rebinding.
	// Bots send no Origin at all.
	if origin := r.Header.Get("Origin"); origin != "" && !strings.EqualFold(origin, s.pub.origin) {
		s.refused("origin")
		s.log.Warn("websocket refused", "remote", remote, "reason", "origin", "origin", cleanPeerString(origin), "want", s.pub.origin)
		s.errorPage(w, http.StatusForbidden, "Forbidden", "Only chatd's own page ("+s.pub.origin+") may open this WebSocket.")
		return
	}
	var token string
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, _ := strings.Cut(auth, " ")
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(scheme, "Bearer") || !plausibleSecret(tok) {
			s.errorPage(w, http.StatusUnauthorized, "Unauthorized", "Authorization must be: Bearer TOKEN (a token from /weblogin token).")
			return
		}
		token = tok
	} else if c, err := r.Cookie(CookieName); err == nil && plausibleSecret(c.Value) {
		token = c.Value
	}
	name := r.URL.Query().Get("name")

	// The admission: a client's own connection went through the gate when it was accepted; a
	// client behind a trusted proxy is admitted here by the address the proxy names, and holds its
	// slot for as long as the WebSocket is open.
	refusal, _ := gc.refusal()
	release := func() {}
	if gc.proxy {
		t := s.gate.Admit(transport, net.TCPAddrFromAddrPort(client))
		if t.Drop {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		refusal, release = t.Refusal, t.Release
	}

	if !s.enter() {
		release()
		s.errorPage(w, http.StatusServiceUnavailable, "Shutting down", "The server is shutting down; try again in a moment.")
		return
	}
	c, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{
		// The Origin was checked above, against the public URL: stricter than the library's
		// comparison with the Host header.
		InsecureSkipVerify: true,
	})
	if err != nil {
		release()
		s.active.Done()
		return // Accept has answered
	}
	// The request's deadlines stay on a hijacked connection: from here on the room's write
	// timeout, the pings and the idle timeout watch the session.
	_ = nc.SetDeadline(time.Time{})
	c.SetReadLimit(s.cfg.ReadLimit)

	ss := &session{s: s, c: c, nc: nc, raw: gc, remote: remote, start: start}
	ss.ctx, ss.cancel = context.WithCancel(s.base)
	ss.tokens, ss.refilled = float64(s.cfg.RequestBurst), time.Now()
	s.track(ss)
	end := func() {
		ss.abort()
		ss.bg.Wait()
		s.untrack(ss)
		release()
		s.active.Done()
	}
	handedOff := false
	defer func() {
		if !handedOff { // refused, or a panic (net/http recovers it): the session ends here
			end()
		}
	}()
	m := ss.join(name, token, refusal)
	if m == nil {
		return
	}
	// The session goes on in a goroutine of its own, and this one ends: its stack has grown on
	// the HTTP request and the join, and an idle session should not keep that.
	handedOff = true
	go func() {
		defer end()
		ss.serve(m)
	}()
}

// session is one open WebSocket: the member's Output, and the goroutine reading the client.
type session struct {
	s      *Server
	c      *websocket.Conn
	nc     net.Conn // the connection under the WebSocket (TLS, if any)
	raw    net.Conn // the TCP connection under everything (closing it gives its gate slot back)
	remote string
	start  time.Time

	ctx    context.Context // cancelled: every read and write on c fails at once
	cancel context.CancelFunc

	m       atomic.Pointer[room.Member]
	writing atomic.Int32 // writes in progress

	closeOnce sync.Once
	bg        sync.WaitGroup // the closing handshake and the pings

	// The state and history requests' bucket; only the reading goroutine touches it.
	tokens   float64
	refilled time.Time
	warned   bool // told it is over the rate since the bucket was last not empty

	pingMu      sync.Mutex
	pingTimer   *time.Timer
	pingStopped bool
}

// join signs the client in and joins it to the room, or tells it why not and returns nil.
func (ss *session) join(name, token, refusal string) *room.Member {
	s := ss.s
	if refusal != "" {
		s.log.Warn("refused", "remote", ss.remote, "reason", refusal)
		ss.refuse(refusal, closeRefused)
		return nil
	}
	if token == "" && s.cfg.RefuseGuests != "" {
		ss.refuse(s.cfg.RefuseGuests, closeRefused)
		return nil
	}
	if name == "" && token == "" {
		ss.refuse("sign in: choose a name (connect with ?name=NAME), or open a link from /weblogin", closeSignIn)
		return nil
	}
	m, err := s.hub.Join(name, ss, room.JoinOptions{Format: room.JSON, Echo: true, Transport: transport, Remote: ss.remote, WebToken: token})
	if err != nil {
		why := err.Error()
		if errors.Is(err, room.ErrClosed) {
			why = "the server is shutting down; goodbye"
		}
		s.log.Info("join refused", "remote", ss.remote, "name", cleanPeerString(name), "token", token != "", "reason", why)
		ss.refuse(chat.Sanitize(why), closeRefused)
		return nil
	}
	ss.m.Store(m)
	s.log.Info("connect", "remote", ss.remote, "user", m.Name(), "token", token != "")
	return m
}

// serve reads the client until the session ends. A panic (a bug) ends the member, logged, not
// the process: this goroutine is not net/http's, which would recover it.
func (ss *session) serve(m *room.Member) {
	s := ss.s
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic serving a web session", "user", m.Name(), "panic", p, "stack", string(debug.Stack()))
			m.Leave(room.ReasonFailed)
		}
	}()
	ss.startPings()
	defer ss.stopPings()

	reason := ss.read(m)
	// When the room ended the member first, this only waits as its end did; otherwise it waits a
	// moment for the last lines (the goodbye) to go out.
	m.Leave(reason)
	if reason == room.ReasonQuit {
		ss.goodbye(websocket.StatusNormalClosure, closeBye)
	}
	s.log.Info("disconnect", "remote", ss.remote, "user", m.Name(), "reason", m.Reason().String(), "duration", since(ss.start))
}

// read hands the client's messages to the member until the client goes, and says why it ended.
func (ss *session) read(m *room.Member) room.Reason {
	for {
		typ, data, err := ss.c.Read(ss.ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
				ss.s.log.Info("message too big", "remote", ss.remote, "user", m.Name(), "limit", ss.s.cfg.ReadLimit)
			}
			return room.ReasonEOF
		}
		if typ != websocket.MessageText {
			ss.junk(m, "binary messages are not understood: send JSON text, such as {\"type\":\"say\",\"text\":\"hello\"}")
			continue
		}
		var req request
		if err := json.Unmarshal(data, &req); err != nil {
			ss.junk(m, "each message must be one JSON object, such as {\"type\":\"say\",\"text\":\"hello\"}")
			continue
		}
		switch req.Type {
		case "say":
			if ss.say(m, req.Text) == room.Quit {
				return room.ReasonQuit
			}
		case "state":
			if ss.take(m) {
				ss.reply(m, m.State())
			}
		case "history":
			if ss.take(m) {
				ss.history(m, req)
			}
		default:
			ss.junk(m, fmt.Sprintf("unknown message type %q: send say, state or history", chat.Excerpt(req.Type, 32)))
		}
	}
}

// say hands each line of text to the room as if typed in an SSH session: a paste of several lines
// is several lines, as there.
func (ss *session) say(m *room.Member, text string) room.Action {
	for line := range strings.SplitSeq(text, "\n") {
		if m.Handle(strings.TrimSuffix(line, "\r")) == room.Quit {
			return room.Quit
		}
	}
	return room.Continue
}

// history answers a history request with a page of a room's lines.
func (ss *session) history(m *room.Member, req request) {
	var r chat.HistoryRange
	for _, b := range []struct {
		field string
		in    string
		out   *time.Time
	}{{"before", req.Before, &r.Before}, {"after", req.After, &r.After}} {
		if b.in == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, b.in)
		if err != nil {
			m.Errorf("history: %s must be a time like 2026-12-01T17:40:00.123Z", b.field)
			return
		}
		*b.out = t
	}
	switch {
	case req.Room == "":
		m.Errorf("history: which room? (\"room\":\"#go\")")
		return
	case req.Limit < 0:
		m.Errorf("history: limit must be 1 to %d", room.MaxHistoryPage)
		return
	case req.Limit == 0:
		req.Limit = defaultHistoryLimit
	}
	r.Limit = min(req.Limit, room.MaxHistoryPage)
	evs, err := m.History(req.Room, r)
	if err != nil {
		m.Errorf("history: %s", err.Error())
		return
	}
	if evs == nil {
		evs = []room.Event{}
	}
	name, _ := chat.ParseRoom(req.Room) // History accepted it
	ss.reply(m, historyReply{Type: "history", Room: name, Events: evs, Before: req.Before, After: req.After})
}

// take spends one of the connection's request tokens. Over the rate the request is refused,
// with an error line the first time.
func (ss *session) take(m *room.Member) bool {
	cfg := ss.s.cfg
	now := time.Now()
	ss.tokens = min(ss.tokens+now.Sub(ss.refilled).Seconds()*cfg.RequestRate, float64(cfg.RequestBurst))
	ss.refilled = now
	if ss.tokens >= 1 {
		ss.tokens--
		ss.warned = false
		return true
	}
	if !ss.warned {
		ss.warned = true
		m.Errorf("too many requests: at most %g a second (%d at once); this one and those until then are not answered", cfg.RequestRate, cfg.RequestBurst)
	}
	return false
}

// junk answers a message that is not one: an error line, within the request rate, so that a
// flood of junk costs the client what it costs the server.
func (ss *session) junk(m *room.Member, msg string) {
	if ss.take(m) {
		m.Errorf("%s", msg)
	}
}

// reply queues a JSON answer (state, history) behind the lines already queued for the member,
// so that it keeps its place among them; a client that does not read its answers is too slow and
// goes, as with any line.
func (ss *session) reply(m *room.Member, v any) {
	if err := m.SendJSON(v); err != nil {
		ss.s.log.Error("reply", "err", err)
	}
}

// refuse tells a client that could not join why, and closes with 1008.
func (ss *session) refuse(why, reason string) {
	line, _ := json.Marshal(room.Event{Type: "error", Text: why, Time: time.Now().UTC().Truncate(time.Millisecond)})
	ctx, cancel := context.WithTimeout(ss.ctx, closeGrace)
	err := ss.c.Write(ctx, websocket.MessageText, append(line, '\n'))
	cancel()
	if err == nil {
		ss.goodbye(websocket.StatusPolicyViolation, reason)
	}
}

// Write is room.Output's: one WebSocket text message of one or more JSON lines. It blocks while
// the client is slow; the room decides how long it may.
func (ss *session) Write(p []byte) (int, error) {
	ss.writing.Add(1)
	defer ss.writing.Add(-1)
	if err := ss.c.Write(ss.ctx, websocket.MessageText, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close is room.Output's: the room ends the session. It does not block. A member that is too slow
// or whose write is still in progress is cut off at once; any other (kicked, banned, idle, the
// server going down) gets a closing handshake saying why, in the background, within closeGrace.
func (ss *session) Close() error {
	m := ss.m.Load()
	if m == nil || ss.writing.Load() > 0 {
		ss.s.log.Debug("cut off", "remote", ss.remote, "writing", ss.writing.Load() > 0)
		ss.abort()
		return nil
	}
	code, reason := websocket.StatusPolicyViolation, ""
	switch m.Reason() {
	case room.ReasonShutdown:
		code, reason = websocket.StatusGoingAway, closeGoing
	case room.ReasonKicked:
		reason = closeKicked
	case room.ReasonBanned:
		reason = closeBanned
	case room.ReasonIdle:
		code, reason = websocket.StatusNormalClosure, closeIdle
	case room.ReasonFailed:
		code, reason = websocket.StatusInternalError, closeFailed
	default: // too slow, a failed write: nothing more can be said
		ss.abort()
		return nil
	}
	ss.bg.Add(1)
	go func() {
		defer ss.bg.Done()
		ss.goodbye(code, reason)
	}()
	return nil
}

// goodbye runs the closing handshake within closeGrace, then closes the connection.
func (ss *session) goodbye(code websocket.StatusCode, reason string) {
	ss.closeOnce.Do(func() {
		_ = ss.nc.SetDeadline(time.Now().Add(closeGrace))
		_ = ss.c.Close(code, reason)
	})
	ss.abort()
}

// abort closes the connection at once: every read and write on it returns. It does not block.
func (ss *session) abort() {
	ss.cancel()
	_ = ss.raw.Close()
}

// startPings pings the client every PingInterval; one that does not answer within PingTimeout is
// gone. A timer, not a goroutine, waits between pings: an idle session holds no goroutine for it.
func (ss *session) startPings() {
	ss.pingMu.Lock()
	defer ss.pingMu.Unlock()
	ss.pingTimer = time.AfterFunc(ss.s.cfg.PingInterval, ss.ping)
}

func (ss *session) ping() {
	ss.pingMu.Lock()
	if ss.pingStopped {
		ss.pingMu.Unlock()
		return
	}
	ss.bg.Add(1)
	ss.pingMu.Unlock()
	defer ss.bg.Done()

	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.PingTimeout)
	err := ss.c.Ping(ctx)
	cancel()
	if err != nil {
		if ss.ctx.Err() == nil {
			ss.s.log.Info("no pong", "remote", ss.remote, "err", err)
		}
		ss.abort()
		return
	}
	ss.pingMu.Lock()
	if !ss.pingStopped {
		ss.pingTimer.Reset(ss.s.cfg.PingInterval)
	}
	ss.pingMu.Unlock()
}

func (ss *session) stopPings() {
	ss.pingMu.Lock()
	defer ss.pingMu.Unlock()
	ss.pingStopped = true
	if ss.pingTimer != nil {
		ss.pingTimer.Stop()
	}
}

var _ room.Output = (*session)(nil)
