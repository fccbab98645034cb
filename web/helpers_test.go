package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/log"
	"github.com/coder/websocket"
	gossh "golang.org/x/crypto/ssh"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/internal/roomtest"
	"chatd/room"
	"chatd/store/sqlite"
)

const hangGuard = roomtest.HangGuard

// clock is a test's time, shared by the room and the store: moving it on expires links.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time            { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration)   { c.offset.Add(int64(d)) }
func (c *clock) nowFunc() func() time.Time { return c.now }

// env is a running web server on a loopback port in front of a real room (with a real SQLite
// store when asked), all torn down when the test ends.
type env struct {
	t     *testing.T
	hub   *room.Hub
	srv   *Server
	base  string // http://127.0.0.1:PORT, also the public URL unless the test chose another
	addr  string
	gate  *connlimit.Gate
	clock *clock
	logs  *syncBuffer
}

type envOptions struct {
	store bool                // a SQLite store: registered names, /weblogin
	room  func(*room.Config)  // adjusts the room's config
	web   func(*Config)       // adjusts the server's config (PublicURL is set before)
	limit *connlimit.Config   // the gate's limits; nil: no gate
	ln    func() net.Listener // the listener; nil: 127.0.0.1:0
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	var ln net.Listener
	var err error
	if o.ln != nil {
		ln = o.ln()
	} else if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, addr: ln.Addr().String(), clock: &clock{}, logs: &syncBuffer{}}
	e.base = "http://" + e.addr
	logger := log.NewWithOptions(e.logs, log.Options{Level: log.DebugLevel})

	rcfg := room.Config{MsgRate: -1, PublicURL: e.base, Now: e.clock.nowFunc(), ParseKey: parseKey}
	if o.store {
		scfg := sqlite.DefaultConfig()
		scfg.Path = filepath.Join(t.TempDir(), "chat.db")
		scfg.Now = e.clock.nowFunc()
		st, err := sqlite.Open(scfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("store close: %v", err)
			}
		})
		rcfg.Store = st
	}
	if o.room != nil {
		o.room(&rcfg)
	}
	e.hub, err = room.New(rcfg, logger.WithPrefix("room"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the server's cleanup (registered later, run earlier)
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := e.hub.Shutdown(ctx); err != nil {
			t.Errorf("room shutdown: %v", err)
		}
	})

	cfg := DefaultConfig()
	cfg.Addr = e.addr
	cfg.PublicURL = e.base
	if o.web != nil {
		o.web(&cfg)
	}
	if o.limit != nil {
		e.gate = &connlimit.Gate{Limiter: connlimit.New(*o.limit)}
	}
	e.srv, err = New(cfg, e.hub, e.gate, logger.WithPrefix("web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		select {
		case err := <-served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(hangGuard):
			t.Errorf("Serve did not return after Close")
		}
		e.srv.mu.Lock()
		n := len(e.srv.sessions)
		e.srv.mu.Unlock()
		if n != 0 {
			t.Errorf("%d sessions still tracked after Close", n)
		}
	})
	return e
}

// wsURL is the WebSocket's address, with a query if given.
func (e *env) wsURL(query string) string {
	u := "ws://" + e.addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// msg is any line the server sends: an event, a state or a history reply.
type msg struct {
	room.Event
	Name       string           `json:"name"`
	Registered bool             `json:"registered"`
	Current    string           `json:"current"`
	Rooms      []room.RoomState `json:"rooms"`
	Events     []room.Event     `json:"events"`
	Before     string           `json:"before"`
	After      string           `json:"after"`
	raw        string
}

// wsClient is a WebSocket client whose every line is kept.
type wsClient struct {
	t    *testing.T
	name string
	c    *websocket.Conn
	resp *http.Response

	mu       sync.Mutex
	msgs     []msg
	messages int   // WebSocket messages received
	err      error // what ended the reading
	changed  chan struct{}
	done     chan struct{}
}

// dial opens a WebSocket with header, and reads everything that arrives (unless noRead).
func (e *env) dial(t *testing.T, url string, header http.Header) (*wsClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return &wsClient{resp: resp}, err
	}
	c.SetReadLimit(-1)
	wc := &wsClient{t: t, c: c, resp: resp, changed: make(chan struct{}), done: make(chan struct{})}
	go wc.read()
	t.Cleanup(func() {
		c.CloseNow()
		<-wc.done
	})
	return wc, nil
}

// join opens a WebSocket as a guest called name and waits for the welcome.
func (e *env) join(t *testing.T, name string) *wsClient {
	t.Helper()
	wc, err := e.dial(t, e.wsURL("name="+name), nil)
	if err != nil {
		t.Fatalf("dial as %s: %v", name, err)
	}
	wc.name = name
	wc.waitFor("the welcome", func(m msg) bool { return m.Type == "info" && strings.Contains(m.Text, "welcome") })
	return wc
}

func (wc *wsClient) read() {
	defer close(wc.done)
	for {
		_, b, err := wc.c.Read(context.Background())
		wc.mu.Lock()
		if err == nil {
			wc.messages++
			for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				var m msg
				if jerr := json.Unmarshal([]byte(l), &m); jerr != nil {
					m = msg{Event: room.Event{Type: "unparsable"}}
				}
				m.raw = l
				wc.msgs = append(wc.msgs, m)
			}
		} else {
			wc.err = err
		}
		close(wc.changed)
		wc.changed = make(chan struct{})
		wc.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// send writes v as one JSON text message.
func (wc *wsClient) send(v any) {
	wc.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		wc.t.Fatal(err)
	}
	wc.sendRaw(websocket.MessageText, b)
}

func (wc *wsClient) say(text string) {
	wc.t.Helper()
	wc.send(map[string]string{"type": "say", "text": text})
}

func (wc *wsClient) sendRaw(typ websocket.MessageType, b []byte) {
	wc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := wc.c.Write(ctx, typ, b); err != nil {
		wc.t.Fatalf("%s: write: %v", wc.name, err)
	}
}

// count is how many lines have arrived.
func (wc *wsClient) count() int {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return len(wc.msgs)
}

// waitFor waits for a line, from the start, that match accepts, and returns it.
func (wc *wsClient) waitFor(what string, match func(msg) bool) msg {
	wc.t.Helper()
	return wc.waitFrom(0, what, match)
}

// waitFrom waits for a line after the first from that match accepts.
func (wc *wsClient) waitFrom(from int, what string, match func(msg) bool) msg {
	wc.t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		wc.mu.Lock()
		ch, msgs, err := wc.changed, wc.msgs, wc.err
		wc.mu.Unlock()
		for _, m := range msgs[min(from, len(msgs)):] {
			if match(m) {
				return m
			}
		}
		if err != nil {
			wc.t.Fatalf("%s: the connection ended (%v) before %s; got:\n%s", wc.name, err, what, tail(msgs))
		}
		select {
		case <-ch:
		case <-deadline.C:
			wc.t.Fatalf("%s: timed out waiting for %s; got:\n%s", wc.name, what, tail(msgs))
		}
	}
}

// waitClosed waits for the server to close the connection and returns the close error.
func (wc *wsClient) waitClosed() error {
	wc.t.Helper()
	select {
	case <-wc.done:
	case <-time.After(hangGuard):
		wc.t.Fatalf("%s: the server did not close the connection; got:\n%s", wc.name, tail(wc.all()))
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.err
}

func (wc *wsClient) all() []msg {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return append([]msg(nil), wc.msgs...)
}

func tail(ms []msg) string {
	if len(ms) > 20 {
		ms = ms[len(ms)-20:]
	}
	var b strings.Builder
	for _, m := range ms {
		r := m.raw
		if len(r) > 300 {
			r = r[:300] + "..."
		}
		b.WriteString(r + "\n")
	}
	return b.String()
}

// wantClose checks that err is a close with code, and reason when it is not "".
func wantClose(t *testing.T, err error, code websocket.StatusCode, reason string) {
	t.Helper()
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("connection ended with %v, want close status %d", err, code)
	}
	if ce.Code != code || reason != "" && ce.Reason != reason {
		t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
	}
}

// isError matches an error line containing sub.
func isError(sub string) func(msg) bool {
	return func(m msg) bool { return m.Type == "error" && strings.Contains(m.Text, sub) }
}

// member is an in-process session (as an SSH or TCP session would be), whose plain lines are
// kept.
type member struct {
	*room.Member
	out *roomtest.Stream
}

// pipeOutput is a room.Output feeding a Stream.
type pipeOutput struct{ w *io.PipeWriter }

func (p pipeOutput) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeOutput) Close() error                { return p.w.Close() }

// joinLocal joins name to the hub in-process, with opts (a Key makes it registered, on a store).
func (e *env) joinLocal(t *testing.T, name string, opts room.JoinOptions) *member {
	t.Helper()
	pr, pw := io.Pipe()
	st := roomtest.NewStream(pr)
	if opts.Transport == "" {
		opts.Transport = "ssh"
	}
	m, err := e.hub.Join(name, pipeOutput{pw}, opts)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	t.Cleanup(func() {
		m.Leave(room.ReasonEOF)
		pw.Close()
		<-st.Done()
	})
	return &member{Member: m, out: st}
}

// registered joins name with a fresh key: on a store, the name is then registered to it.
func (e *env) registered(t *testing.T, name string) *member {
	t.Helper()
	k := newKey(t)
	return e.joinLocal(t, name, room.JoinOptions{Key: &k})
}

var linkRE = regexp.MustCompile(`https?://\S+/login\?t=([A-Za-z0-9_-]+)`)

// webLink has m type /weblogin and returns the link's secret.
func (m *member) webLink(t *testing.T) string {
	t.Helper()
	before := len(linkRE.FindAllString(m.out.Text(), -1))
	m.Handle("/weblogin")
	var secret string
	m.out.Wait(t, "a /weblogin link", func() bool {
		all := linkRE.FindAllStringSubmatch(m.out.Text(), -1)
		if len(all) > before {
			secret = all[len(all)-1][1]
			return true
		}
		return false
	})
	return secret
}

var tokenRE = regexp.MustCompile(`(?m)^\* ([A-Za-z0-9_-]{40,})$`)

// botToken has m type /weblogin token LABEL and returns the token.
func (m *member) botToken(t *testing.T, label string) string {
	t.Helper()
	before := len(tokenRE.FindAllString(m.out.Text(), -1))
	m.Handle("/weblogin token " + label)
	var tok string
	m.out.Wait(t, "a bot token", func() bool {
		all := tokenRE.FindAllStringSubmatch(m.out.Text(), -1)
		if len(all) > before {
			tok = all[len(all)-1][1]
			return true
		}
		return false
	})
	return tok
}

func newKey(t testing.TB) chat.Key {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := parseKey(string(gossh.MarshalAuthorizedKey(pk)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func parseKey(line string) (chat.Key, error) {
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return chat.Key{}, err
	}
	return chat.Key{Fingerprint: gossh.FingerprintSHA256(pk), Type: pk.Type(), AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))}, nil
}

// noRedirect is an HTTP client that shows redirects rather than following them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       hangGuard,
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls the log until it holds s: log lines are written by other goroutines, with
// nothing to wait on.
func (b *syncBuffer) waitFor(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
