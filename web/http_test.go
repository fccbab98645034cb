package web

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"chatd/connlimit"
	"chatd/room"
)

// checkHeaders checks the headers every response carries.
func checkHeaders(t *testing.T, what string, h http.Header, wantWS string) {
	t.Helper()
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' " + wantWS +
		"; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	for k, v := range map[string]string{
		"Content-Security-Policy": csp,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s is %q, want %q", what, k, got, v)
		}
	}
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		method, path string
		body         string
		status       int
		ctype        string // a prefix
		has          string
	}{
		{"GET", "/", "", 200, "text/html", "<title>"},
		{"HEAD", "/", "", 200, "text/html", ""},
		{"GET", "/app.css", "", 200, "text/css", ""},
		{"GET", "/no/such/thing", "", 404, "text/html", "nothing here"},
		{"GET", "/static/index.html", "", 404, "text/html", ""},
		{"POST", "/", "", 405, "", ""},
		{"GET", "/login", "", 400, "text/html", "whole link"},
		{"GET", "/login?t=" + strings.Repeat("A", 43), "", 410, "text/html", "not valid"}, // nobody made it
		{"GET", "/login?t=%3Cscript%3E", "", 410, "text/html", "not valid"},
		{"POST", "/login", "", 400, "text/html", "no sign-in link"},
		{"POST", "/login", "t=" + strings.Repeat("A", 43), 410, "text/html", "not valid"},
		{"POST", "/logout", "", 303, "", ""},
		{"GET", "/ws", "", 426, "", ""}, // not an upgrade
	} {
		var body io.Reader
		if tc.method == "POST" {
			body = strings.NewReader(tc.body)
		}
		resp, got := do(t, noRedirect, newRequest(t, tc.method, e.base+tc.path, body))
		what := tc.method + " " + tc.path
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d; body:\n%s", what, resp.StatusCode, tc.status, got)
		}
		checkHeaders(t, what, resp.Header, "ws://"+e.addr)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s: Content-Type %q, want %s...", what, ct, tc.ctype)
		}
		if !strings.Contains(strings.ToLower(got), strings.ToLower(tc.has)) {
			t.Errorf("%s: the body does not say %q:\n%s", what, tc.has, got)
		}
		if strings.Contains(got, "<script>") {
			t.Errorf("%s: the page echoes markup:\n%s", what, got)
		}
	}
}

func TestTheLoginPageNamesThePersonAndQuotesTheSecretAsText(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	secret := e.registered(t, "alice").webLink(t)
	resp, body := do(t, noRedirect, newRequest(t, "GET", e.base+"/login?t="+secret, nil))
	if resp.StatusCode != 200 || !strings.Contains(body, `name="t" value="`+secret+`"`) || !strings.Contains(body, "Sign in as alice") {
		t.Fatalf("status %d; the form does not hold the link's secret or name its person:\n%s", resp.StatusCode, body)
	}
	resp, _ = do(t, noRedirect, newRequest(t, "GET", e.base+"/login?t="+strings.Repeat("x", 43), nil))
	if resp.StatusCode != http.StatusGone {
		t.Errorf("a link nobody made: status %d, want 410", resp.StatusCode)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: a page with a secret must not be kept", cc)
	}
}

// login runs the browser's sign-in: opening the link (twice: previews must not use it up), then
// the button. It returns the session cookie.
func (e *env) login(t *testing.T, secret string) *http.Cookie {
	t.Helper()
	for range 2 {
		resp, body := do(t, noRedirect, newRequest(t, "GET", e.base+"/login?t="+secret, nil))
		if resp.StatusCode != 200 || !strings.Contains(body, `action="/login"`) {
			t.Fatalf("GET /login: status %d:\n%s", resp.StatusCode, body)
		}
	}
	req := newRequest(t, "POST", e.base+"/login", strings.NewReader(url.Values{"t": {secret}}.Encode()))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, body := do(t, noRedirect, req)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("POST /login: status %d, Location %q:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatalf("POST /login set no %s cookie: %v", CookieName, resp.Header["Set-Cookie"])
	return nil
}

func TestALinkSignsInOnceWithAStrictCookie(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	alice := e.registered(t, "alice")
	secret := alice.webLink(t)
	c := e.login(t, secret)

	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge != int(room.WebSessionTTL/time.Second) || c.Secure {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Max-Age 30 days, not Secure over http", c)
	}
	// The second use fails, and says so.
	resp, body := do(t, noRedirect, newRequest(t, "POST", e.base+"/login", strings.NewReader("t="+secret)))
	if resp.StatusCode != http.StatusGone || !strings.Contains(body, "not valid") {
		t.Errorf("second use: status %d:\n%s", resp.StatusCode, body)
	}
	// The cookie opens a WebSocket as alice, registered: one more of her sessions.
	wc, err := e.dial(t, e.wsURL(""), http.Header{"Cookie": {c.String()}})
	if err != nil {
		t.Fatal(err)
	}
	wc.name = "alice (browser)"
	wc.send(map[string]string{"type": "state"})
	st := wc.waitFor("the state", func(m msg) bool { return m.Type == "state" })
	if st.Name != "alice" || !st.Registered || st.Current != "#lobby" {
		t.Errorf("state %+v: want alice, registered, in #lobby", st)
	}
	wc.say("from the browser")
	alice.out.WaitContains(t, "alice: from the browser")
}

func TestAnExpiredLinkIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	secret := e.registered(t, "alice").webLink(t)
	e.clock.advance(room.WebLinkTTL + time.Second)
	resp, body := do(t, noRedirect, newRequest(t, "POST", e.base+"/login", strings.NewReader("t="+secret)))
	if resp.StatusCode != http.StatusGone || !strings.Contains(body, "not valid") {
		t.Errorf("expired link: status %d:\n%s", resp.StatusCode, body)
	}
}

func TestAnotherSiteCannotPostTheForms(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	secret := e.registered(t, "alice").webLink(t)
	for _, h := range []http.Header{
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Origin": {"http://evil.example"}},
	} {
		req := newRequest(t, "POST", e.base+"/login", strings.NewReader("t="+secret))
		for k, v := range h {
			req.Header[k] = v
		}
		resp, body := do(t, noRedirect, req)
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("POST /login with %v: status %d, cookies %v:\n%s", h, resp.StatusCode, resp.Cookies(), body)
		}
		checkHeaders(t, "refused POST", resp.Header, "ws://"+e.addr)
	}
	e.login(t, secret) // the link was not used up
}

func TestSigningOutEndsTheSession(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	c := e.login(t, e.registered(t, "alice").webLink(t))

	req := newRequest(t, "POST", e.base+"/logout", strings.NewReader(""))
	req.Header.Set("Cookie", c.String())
	resp, _ := do(t, noRedirect, req)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /logout: status %d", resp.StatusCode)
	}
	var cleared bool
	for _, rc := range resp.Cookies() {
		cleared = cleared || rc.Name == CookieName && rc.MaxAge < 0 && rc.Value == ""
	}
	if !cleared {
		t.Errorf("the cookie is not cleared: %v", resp.Header["Set-Cookie"])
	}
	// The old cookie opens nothing now.
	wc, err := e.dial(t, e.wsURL(""), http.Header{"Cookie": {c.String()}})
	if err != nil {
		t.Fatal(err)
	}
	wc.waitFor("the refusal", isError("not valid"))
	wantClose(t, wc.waitClosed(), 1008, closeRefused)
}

// rawConn is a TCP connection to the server that reports when the server has closed it.
func rawConn(t *testing.T, addr string) (net.Conn, <-chan struct{}) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, nc)
	}()
	return nc, closed
}

func waitClosed(t *testing.T, what string, closed <-chan struct{}) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(hangGuard):
		t.Fatalf("the server did not close %s", what)
	}
}

// waitOpen waits until the limiter counts want connections from addr.
func waitOpen(t *testing.T, l *connlimit.Limiter, addr net.Addr, want int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		if _, n := l.Open(addr); n == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d connections open from %s, want %d", n, addr, want)
		}
		time.Sleep(time.Millisecond)
	}
}

var loopback = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

func TestEveryIdleConnectionIsClosedAndItsSlotFreed(t *testing.T) {
	e := newEnv(t, envOptions{
		limit: &connlimit.Config{MaxPerIP: 100},
		web: func(c *Config) {
			c.ReadHeaderTimeout = 50 * time.Millisecond
			c.IdleTimeout = 50 * time.Millisecond
		},
	})
	// Slowloris: headers that never end.
	nc, closed := rawConn(t, e.addr)
	if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "a connection whose headers never end", closed)

	// A connection that never sends anything.
	_, closed = rawConn(t, e.addr)
	waitClosed(t, "a connection that sends nothing", closed)

	// A keep-alive connection that asks once, then idles.
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if _, err := io.WriteString(nc, "GET /app.css HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle keep-alive connection: read %v, want EOF", err)
	}
	waitOpen(t, e.gate.Limiter, loopback, 0)
}

func TestHugeHeadersAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{web: func(c *Config) { c.MaxHeaderBytes = 4 << 10 }})
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	status := make(chan string, 1)
	go func() {
		// Read while writing: the server answers before the headers end, and stops reading.
		line, _ := bufio.NewReader(nc).ReadString('\n')
		status <- line
	}()
	_, _ = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	select {
	case line := <-status:
		if !strings.HasPrefix(line, "HTTP/1.1 431") {
			t.Errorf("64 KiB of headers: %q, want 431", line)
		}
	case <-time.After(hangGuard):
		t.Fatal("no answer to 64 KiB of headers")
	}
}

func TestAFormIsReadWithinALimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	body := "t=" + strings.Repeat("A", 1<<20)
	resp, _ := do(t, noRedirect, newRequest(t, "POST", e.base+"/login", strings.NewReader(body)))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a 1 MiB form: status %d, want 400", resp.StatusCode)
	}
}

func TestThePerAddressLimitIsSharedWithTheOtherTransports(t *testing.T) {
	e := newEnv(t, envOptions{limit: &connlimit.Config{MaxPerIP: 2}})
	// An SSH session from the same address holds one slot of the shared gate.
	ssh := e.gate.Admit("ssh", loopback)
	if !ssh.Admitted() {
		t.Fatal("the gate refused the first connection")
	}
	wc := e.join(t, "first")
	waitOpen(t, e.gate.Limiter, loopback, 2)

	// The third connection from the address: a page gets a page saying why...
	resp, body := do(t, &http.Client{Timeout: hangGuard}, newRequest(t, "GET", e.base+"/", nil))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "too many connections from your address (at most 2 at once)") {
		t.Errorf("over the limit: status %d:\n%s", resp.StatusCode, body)
	}
	checkHeaders(t, "the refusal", resp.Header, "ws://"+e.addr)
	// ... and a WebSocket an error line it can show.
	over, err := e.dial(t, e.wsURL("name=second"), nil)
	if err != nil {
		t.Fatal(err)
	}
	over.waitFor("the refusal", isError("too many connections from your address"))
	wantClose(t, over.waitClosed(), 1008, closeRefused)

	ssh.Release()
	wc.say("still here")
	e.join(t, "second")
}

func TestForwardedAddressesAreBelievedOnlyFromTrustedProxies(t *testing.T) {
	client := &net.TCPAddr{IP: net.ParseIP("203.0.113.7")}
	for _, tc := range []struct {
		name    string
		trusted bool
	}{{"a trusted proxy", true}, {"anyone else", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{
				limit: &connlimit.Config{MaxPerIP: 100},
				web: func(c *Config) {
					if tc.trusted {
						c.TrustedProxies, _ = connlimit.ParsePrefixes("127.0.0.0/8")
					}
				},
			})
			wc, err := e.dial(t, e.wsURL("name=behind"), http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7"}})
			if err != nil {
				t.Fatal(err)
			}
			wc.name = "behind"
			wc.waitFor("the welcome", func(m msg) bool { return m.Type == "info" })
			if tc.trusted {
				// The gate counts the client, not the proxy, and the room knows its address.
				waitOpen(t, e.gate.Limiter, client, 1)
				waitOpen(t, e.gate.Limiter, loopback, 0)
				e.logs.waitFor(t, "remote=203.0.113.7:0")
			} else {
				waitOpen(t, e.gate.Limiter, loopback, 1)
				waitOpen(t, e.gate.Limiter, client, 0)
			}
			wc.c.CloseNow()
			<-wc.done
			waitOpen(t, e.gate.Limiter, client, 0)
			waitOpen(t, e.gate.Limiter, loopback, 0)
		})
	}
}
