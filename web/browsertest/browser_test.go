package browsertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	gossh "golang.org/x/crypto/ssh"

	"chatd/internal/roomtest"
	"chatd/room"
	"chatd/sshd"
	"chatd/store/sqlite"
	"chatd/web"
)

const chromium = "/usr/bin/chromium"

// docsEnv, set to 1, rewrites the README's screenshots (docs/web.png, docs/web-mobile.png).
const docsEnv = "CHATD_WEB_SCREENSHOTS"

// TestPage is one story, in order: a guest signs in, talks with a real OpenSSH user both ways,
// switches rooms (also 360 px wide, by keyboard), gets and sends a private message, sees hostile
// lines as text; the SSH user signs a browser in with /weblogin, once; a page from another origin
// cannot open the WebSocket; scrolling up brings a room's history back to its first line; a
// dropped connection comes back with what was said meanwhile. One Chromium serves every step,
// each person in a browser context of their own (cookies and storage apart). Each step saves
// screenshots, desktop and 360 px wide, in its temporary directory (go test -v names them).
func TestPage(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("the browser tests need Chromium (%s): apt-get install chromium", chromium)
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("the browser tests need the OpenSSH client: apt-get install openssh-client")
	}
	srv := startServer(t)
	b := startBrowser(t)

	amy := b.tab(t)
	bob := srv.openssh(t, "bob") // a key: bob is registered from here on
	bob.out.WaitContains(t, "bob joined #lobby")

	t.Run("sign in with a name", func(t *testing.T) {
		amy.navigate(t, srv.url)
		amy.wait(t, "the sign-in form", `!document.getElementById('signin').hidden`)
		amy.check(t, "the name field is labelled Name",
			`document.querySelector('label[for=signin-name]').textContent === 'Name'`)
		amy.keys(t, "#signin-name", "amy\r")
		amy.wait(t, "amy in #lobby", `document.getElementById('room-name').textContent === '#lobby'`)
		amy.wait(t, "both in the member list", memberList("amy (you)", "bob"))
		amy.check(t, "the conversation is a polite live log",
			`(l => l.getAttribute('role') === 'log' && l.getAttribute('aria-live') === 'polite')(document.getElementById('log'))`)
		amy.check(t, "the composer is labelled Message",
			`document.querySelector('label[for=message]').textContent === 'Message' && document.activeElement.id === 'message'`)
		amy.check(t, "a skip link leads to it", `document.querySelector('a.skip').getAttribute('href') === '#message'`)
		bob.out.WaitContains(t, "amy joined #lobby")
		amy.screenshots(t, "signed-in")
	})

	t.Run("a registered name is refused, with the reason", func(t *testing.T) {
		eve := b.tab(t)
		eve.navigate(t, srv.url)
		eve.wait(t, "the sign-in form", `!document.getElementById('signin').hidden`)
		eve.keys(t, "#signin-name", "bob\r")
		eve.wait(t, "the server's reason under the form", `!document.getElementById('signin').hidden &&
			document.getElementById('signin-error').textContent.includes('registered')`)
		eve.screenshots(t, "refused")
	})

	t.Run("the page and OpenSSH talk both ways", func(t *testing.T) {
		amy.keys(t, "#message", "hello from the browser\r")
		bob.out.WaitContains(t, "amy: hello from the browser")
		bob.say(t, "hello from ssh, amy")
		amy.wait(t, "bob's line", logHas("bob: hello from ssh, amy"))
		amy.check(t, "a mention of amy is highlighted",
			`[...document.querySelectorAll('#log .line.mention mark')].some(m => m.textContent === 'amy')`)
		amy.check(t, "names have their colour (set through the CSSOM, which the CSP allows)",
			`[...document.querySelectorAll('#log .from')].every(s => s.style.color !== '')`)
		amy.screenshots(t, "talk")
	})

	t.Run("switch rooms", func(t *testing.T) {
		amy.keys(t, "#message", "/join #go\r")
		amy.wait(t, "amy in #go", `document.getElementById('room-name').textContent === '#go'`)
		amy.wait(t, "both rooms listed", `document.querySelectorAll('#room-list button').length === 2`)
		bob.say(t, "while amy is in go")
		amy.wait(t, "an unread count on #lobby", `(u => !u.hidden && u.textContent === '1')(document.querySelector('#room-list button[data-room="#lobby"] .unread'))`)
		amy.check(t, "not shown in #go", `!document.getElementById('log').textContent.includes('while amy is in go')`)
		amy.click(t, `#room-list button[data-room="#lobby"]`)
		amy.wait(t, "back in #lobby", `document.getElementById('room-name').textContent === '#lobby'`)
		amy.wait(t, "the line missed", logHas("bob: while amy is in go"))
		amy.check(t, "the count is gone", `[...document.querySelectorAll('#room-list .unread')].every(u => u.hidden)`)
		amy.screenshots(t, "rooms")
	})

	t.Run("360 px wide, by keyboard", func(t *testing.T) {
		amy.do(t, "a phone's width", chromedp.EmulateViewport(360, 740))
		defer amy.do(t, "back to the desktop", chromedp.Func(clearViewport))
		amy.wait(t, "the side panels folded away", `getComputedStyle(document.getElementById('rooms')).display === 'none' &&
			getComputedStyle(document.getElementById('members')).display === 'none'`)
		amy.keys(t, "#toggle-rooms", "\r") // Enter on the focused button
		amy.wait(t, "the rooms open, focus in them", `getComputedStyle(document.getElementById('rooms')).display !== 'none' &&
			document.getElementById('toggle-rooms').getAttribute('aria-expanded') === 'true' &&
			document.getElementById('rooms').contains(document.activeElement)`)
		amy.keys(t, `#room-list button[data-room="#go"]`, "\r")
		amy.wait(t, "in #go, the panel closed, back in the message box", `document.getElementById('room-name').textContent === '#go' &&
			getComputedStyle(document.getElementById('rooms')).display === 'none' && document.activeElement.id === 'message'`)
		amy.keys(t, "#toggle-members", "\r")
		amy.wait(t, "the people open", `document.getElementById('members').contains(document.activeElement)`)
		amy.keys(t, "#members", kb.Escape)
		amy.wait(t, "Escape closes them, focus back on the button", `getComputedStyle(document.getElementById('members')).display === 'none' &&
			document.activeElement.id === 'toggle-members'`)
		amy.keys(t, "#message", "/join #lobby\r")
		amy.wait(t, "back in #lobby", `document.getElementById('room-name').textContent === '#lobby'`)
	})

	t.Run("a private message", func(t *testing.T) {
		bob.say(t, "/msg amy just between us")
		amy.wait(t, "the DM, marked", `[...document.querySelectorAll('#log .line.dm')].some(l =>
			l.textContent.includes('from bob: just between us') && l.querySelector('.tag')?.textContent === 'DM')`)
		amy.keys(t, "#message", "/msg bob and back\r")
		bob.out.WaitContains(t, "[dm from amy] and back")
		amy.wait(t, "amy's copy", `[...document.querySelectorAll('#log .line.dm')].some(l => l.textContent.includes('to bob: and back'))`)
		amy.screenshots(t, "dm")
	})

	// The README's pictures: the conversation so far, on a desktop and a phone.
	if os.Getenv(docsEnv) == "1" {
		amy.docsScreenshots(t)
	}

	t.Run("hostile lines are text", func(t *testing.T) {
		hostile := []string{
			`<script>window.pwned = 1</script><b>bold?</b>`,
			`<img src=x onerror="window.pwned = 2">`,
			`click javascript:window.pwned=3 or <a href="javascript:window.pwned=4">me</a> or https://example.com/ok.`,
		}
		for _, h := range hostile {
			bob.say(t, h)
		}
		for _, h := range hostile {
			amy.wait(t, "the line as text", logHas("bob: "+h))
		}
		amy.check(t, "no element came from the text", `document.querySelectorAll('#log img, #log script, #log b, #log iframe').length === 0`)
		amy.check(t, "nothing ran", `window.pwned === undefined`)
		links, err := run(amy, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#log a')].map(a => a.getAttribute('href') + ' ' + a.rel + ' ' + a.target)`))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"https://example.com/ok noopener noreferrer _blank"}; fmt.Sprint(links) != fmt.Sprint(want) {
			t.Errorf("links %q, want only %q", links, want)
		}
		amy.screenshots(t, "hostile")
	})

	t.Run("a one-time link signs in once", func(t *testing.T) {
		bob.say(t, "/weblogin")
		var link string
		linkRE := regexp.MustCompile(regexp.QuoteMeta(srv.url) + `/login\?t=[A-Za-z0-9_-]+`)
		bob.out.Wait(t, "a /weblogin link", func() bool { link = linkRE.FindString(bob.out.Text()); return link != "" })

		bobsBrowser := b.tab(t)
		bobsBrowser.navigate(t, link)
		bobsBrowser.wait(t, "the question", `document.querySelector('h1').textContent.startsWith('Sign in') && !!document.querySelector('main form button')`)
		if status := bobsBrowser.submit(t, "main form button"); status != http.StatusSeeOther && status != http.StatusOK {
			t.Fatalf("sign-in answered %d", status)
		}
		bobsBrowser.wait(t, "signed in as bob", `document.getElementById('me').textContent === 'Signed in as bob'`)
		bobsBrowser.wait(t, "bob's rooms", logHas("amy: hello from the browser"))
		bobsBrowser.screenshots(t, "weblogin")

		// Signing out ends the browser session: the page is back at the sign-in form, and stays
		// there on a reload (the cookie no longer opens anything).
		if status := bobsBrowser.submit(t, "#signout button"); status != http.StatusSeeOther && status != http.StatusOK {
			t.Fatalf("sign-out answered %d", status)
		}
		bobsBrowser.wait(t, "the sign-in form", `!document.getElementById('signin').hidden && document.getElementById('app').hidden`)
		bobsBrowser.navigate(t, srv.url)
		bobsBrowser.wait(t, "the sign-in form after a reload", `!document.getElementById('signin').hidden`)

		// The same link again, in another browser: used up.
		again := b.tab(t)
		status := again.navigate(t, link)
		if status == http.StatusOK {
			if _, err := run(again, chromedp.Poll[bool](`!!document.querySelector('main form button')`)); err == nil {
				status = again.submit(t, "main form button")
			}
		}
		if status != http.StatusGone {
			t.Errorf("the second use answered %d, want %d", status, http.StatusGone)
		}
		again.check(t, "it says so", `document.body.textContent.includes('not valid') && !document.getElementById('app')`)
		again.screenshots(t, "weblogin-again")
	})

	t.Run("another origin cannot open the WebSocket", func(t *testing.T) {
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<!doctype html><title>another site</title><p>another site</p>")
		}))
		t.Cleanup(other.Close)
		wsURL := "ws" + strings.TrimPrefix(srv.url, "http") + "/ws?name=mallory"
		open := `new Promise(resolve => {
			const ws = new WebSocket(` + jsString(wsURL) + `);
			ws.onopen = () => { ws.close(); resolve('open'); };
			ws.onclose = e => resolve('closed ' + e.code);
		})`

		mallory := b.tab(t)
		mallory.navigate(t, other.URL)
		got, err := run(mallory, chromedp.Evaluate[string](open, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if got != "closed 1006" { // refused before the upgrade: the page learns nothing more
			t.Errorf("a WebSocket from %s: %s, want refused", other.URL, got)
		}
		// The same script on the chat's own origin opens: the refusal was the origin's.
		got, err = run(amy, chromedp.Evaluate[string](open, chromedp.EvalAwaitPromise))
		if err != nil || got != "open" {
			t.Errorf("a WebSocket from the page's own origin: %q, %v", got, err)
		}
		mallory.screenshots(t, "other-origin")
	})

	t.Run("older history on scrolling up", func(t *testing.T) {
		// More lines than the join replays (20) and than one history request brings (50). They
		// go in fives, each acknowledged: history pages by time, to the millisecond, and a page
		// cannot end inside a millisecond that holds a whole page of lines.
		bob.say(t, "/join #old")
		for i := 1; i <= 90; i++ {
			bob.say(t, fmt.Sprintf("old line %d", i))
			if i%5 == 0 {
				bob.say(t, "/history 1")
				bob.out.WaitContains(t, fmt.Sprintf("bob: old line %d\n", i))
			}
		}
		amy.keys(t, "#message", "/join #old\r")
		amy.wait(t, "amy in #old", `document.getElementById('room-name').textContent === '#old'`)
		amy.wait(t, "the newest line", logHas("bob: old line 90"))
		for !amy.eval(t, `document.querySelector('#log .more') !== null`) {
			// Scrolling to the top asks for the lines before the oldest shown; wait for them
			// before scrolling again.
			n := amy.count(t, "#log .line")
			amy.check(t, "scroll to the top", `(document.getElementById('log').scrollTop = 0) === 0`)
			amy.wait(t, "older lines or the start", fmt.Sprintf(`document.querySelectorAll('#log .line').length > %d || !!document.querySelector('#log .more')`, n))
		}
		amy.check(t, "every line once, in order", `(() => {
			const got = [...document.querySelectorAll('#log .line.message .text')].map(e => e.textContent).filter(t => t.startsWith('old line '));
			return got.length === 90 && got.every((t, i) => t === 'old line ' + (i + 1));
		})()`)
		amy.screenshots(t, "older")
	})

	t.Run("reconnect and fetch what was missed", func(t *testing.T) {
		srv.restartWeb(t, func() {
			bob.out.WaitContains(t, "amy left #old")
			for i := 1; i <= 30; i++ { // more than the join replays
				bob.say(t, fmt.Sprintf("missed %d", i))
			}
			bob.say(t, "/history 1")
			bob.out.WaitContains(t, "bob: missed 30\n")
		})
		amy.wait(t, "every missed line", `(() => {
			const got = [...document.querySelectorAll('#log .line.message .text')].map(e => e.textContent).filter(t => t.startsWith('missed '));
			return got.length === 30 && got.every((t, i) => t === 'missed ' + (i + 1));
		})()`)
		amy.screenshots(t, "reconnected")
	})

	amy.check(t, "no Content-Security-Policy violation in the whole story", `window.cspViolations.length === 0`)
}

// ---- The server: a room with SQLite (for /weblogin), SSH and web on loopback ports. ----

type server struct {
	url     string // the page's origin, which is also the public URL
	sshPort string
	key     string // a private key file for the ssh client

	hub    *room.Hub
	webCfg web.Config
	web    *web.Server
	served chan error // what the web server's Serve returned
}

func startServer(t *testing.T) *server {
	t.Helper()
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sshLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{url: "http://" + webLn.Addr().String(), served: make(chan error, 1)}
	_, s.sshPort, _ = net.SplitHostPort(sshLn.Addr().String())

	stCfg := sqlite.DefaultConfig()
	stCfg.Path = filepath.Join(t.TempDir(), "chat.db")
	st, err := sqlite.Open(stCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.hub, err = room.New(room.Config{Store: st, PublicURL: s.url, MsgRate: -1, ParseKey: sshd.ParseAuthorizedKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sshCfg := sshd.DefaultConfig()
	sshCfg.HostSigners = []gossh.Signer{signer}
	sshSrv, err := sshd.New(sshCfg, s.hub, nil)
	if err != nil {
		t.Fatal(err)
	}
	sshServed := make(chan error, 1)
	go func() { sshServed <- sshSrv.Serve(sshLn) }()
	s.webCfg = web.DefaultConfig()
	s.webCfg.Addr = webLn.Addr().String()
	s.webCfg.PublicURL = s.url
	s.serveWeb(t, webLn)
	t.Cleanup(func() {
		// As chatd stops: the room first, which ends every session, then the servers.
		ctx, cancel := context.WithTimeout(context.Background(), roomtest.HangGuard)
		defer cancel()
		if err := s.hub.Shutdown(ctx); err != nil {
			t.Errorf("room shutdown: %v", err)
		}
		if err := s.web.Shutdown(ctx); err != nil {
			t.Errorf("web shutdown: %v", err)
		}
		if err := sshSrv.Shutdown(ctx); err != nil {
			t.Errorf("ssh shutdown: %v", err)
		}
		<-s.served
		<-sshServed
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	})

	s.key = filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return s
}

// serveWeb runs a web server for the hub on ln.
func (s *server) serveWeb(t *testing.T, ln net.Listener) {
	t.Helper()
	var err error
	if s.web, err = web.New(s.webCfg, s.hub, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	go func() { s.served <- s.web.Serve(ln) }()
}

// restartWeb drops every WebSocket at once (as a crash or a network cut would) and serves
// again on the same address once resume returns.
func (s *server) restartWeb(t *testing.T, resume func()) {
	t.Helper()
	if err := s.web.Close(); err != nil {
		t.Fatal(err)
	}
	<-s.served
	resume()
	ln, err := net.Listen("tcp", s.webCfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s.serveWeb(t, ln)
}

// sshUser is a real OpenSSH client in a session without a PTY: plain lines in and out.
type sshUser struct {
	stdin io.WriteCloser
	out   *roomtest.Stream
}

func (s *server) openssh(t *testing.T, name string) *sshUser {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-p", s.sshPort, "-i", s.key,
		"-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-T", name+"@127.0.0.1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u := &sshUser{stdin: stdin, out: roomtest.NewStream(stdout)}
	t.Cleanup(func() {
		cancel()
		<-u.out.Done()
		_ = cmd.Wait()
	})
	return u
}

func (u *sshUser) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(u.stdin, line+"\n"); err != nil {
		t.Fatalf("ssh: send %q: %v", line, err)
	}
}

// ---- The browser: one Chromium, a browser context (like a private window) per person. ----

type browser struct{ ctx context.Context }

func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 760),
		// Nothing but the test's own loopback servers: Chromium otherwise reaches for the
		// network (updates, sync, QUIC probes) on its own.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	// The first action starts the browser; it lives as long as ctx, so no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return &browser{ctx: ctx}
}

// tab is one person's page.
type tab struct {
	ctx context.Context
	dir string // where its screenshots go
}

// tab opens a tab in a fresh browser context: its own cookies and storage. Every document it loads
// records Content-Security-Policy violations in window.cspViolations, before the page's scripts.
func (b *browser) tab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `window.cspViolations = [];
				document.addEventListener('securitypolicyviolation', e =>
					window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`,
		})
		return err
	}))
	if err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return &tab{ctx: ctx, dir: t.TempDir()}
}

// run runs one action with the hang guard.
func run[T any](tb *tab, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, roomtest.HangGuard)
	defer cancel()
	return chromedp.Run(ctx, a)
}

func (tb *tab) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := run(tb, chromedp.Steps(steps...)); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// navigate loads url and returns the HTTP status of the document.
func (tb *tab) navigate(t *testing.T, url string) int64 {
	t.Helper()
	resp, err := run(tb, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	return resp.Status
}

// submit clicks a form's button and returns the HTTP status of the first response (a redirect's
// own status when there is one).
func (tb *tab) submit(t *testing.T, button string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, roomtest.HangGuard)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button)))
	if err != nil {
		t.Fatalf("submit %s: %v", button, err)
	}
	return resp.Status
}

func (tb *tab) keys(t *testing.T, sel, text string) {
	t.Helper()
	tb.do(t, "type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (tb *tab) click(t *testing.T, sel string) {
	t.Helper()
	tb.do(t, "click "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// wait waits until the JavaScript expression is true: a readiness wait, not a timed one.
func (tb *tab) wait(t *testing.T, what, expr string) {
	t.Helper()
	_, err := run(tb, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(0)))
	if err != nil {
		t.Fatalf("waiting for %s (%s): %v\nthe conversation:\n%s", what, expr, err, tb.logText())
	}
}

// check asserts that the JavaScript expression is true now.
func (tb *tab) check(t *testing.T, what, expr string) {
	t.Helper()
	ok, err := run(tb, chromedp.Evaluate[bool](expr))
	if err != nil || !ok {
		t.Errorf("%s (%s): %v, %v", what, expr, ok, err)
	}
}

func (tb *tab) eval(t *testing.T, expr string) bool {
	t.Helper()
	ok, err := run(tb, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return ok
}

func (tb *tab) count(t *testing.T, sel string) int {
	t.Helper()
	n, err := run(tb, chromedp.Evaluate[int](`document.querySelectorAll(`+jsString(sel)+`).length`))
	if err != nil {
		t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

func (tb *tab) logText() string {
	s, err := run(tb, chromedp.Evaluate[string](`document.getElementById('log')?.innerText ?? document.body?.innerText`))
	if err != nil {
		return err.Error()
	}
	return s
}

// screenshots saves the page as a desktop shows it and as a 360 px wide phone does.
func (tb *tab) screenshots(t *testing.T, name string) {
	t.Helper()
	for _, v := range []struct {
		suffix string
		w, h   int64
	}{{"desktop", 1200, 760}, {"mobile", 360, 740}} {
		b := tb.capture(t, v.w, v.h)
		path := filepath.Join(tb.dir, name+"-"+v.suffix+".png")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
}

// capture takes a PNG at the given viewport size, then gives the window its own size back.
func (tb *tab) capture(t *testing.T, w, h int64) []byte {
	t.Helper()
	tb.do(t, "emulate the viewport", chromedp.EmulateViewport(w, h))
	// The page reflows on resize; its ResizeObserver keeps the newest line in view. Wait for a
	// frame so the picture shows the new layout.
	if _, err := run(tb, chromedp.Evaluate[bool](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`,
		chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("wait for a frame: %v", err)
	}
	b, err := run(tb, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	tb.do(t, "restore the viewport", chromedp.Func(clearViewport))
	return b
}

// clearViewport gives the window its own size back after EmulateViewport.
func clearViewport(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
	return err
}

// docsScreenshots writes the README's pictures into docs/.
func (tb *tab) docsScreenshots(t *testing.T) {
	t.Helper()
	dir := filepath.Join("..", "..", "docs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string][2]int64{"web.png": {1100, 620}, "web-mobile.png": {360, 680}} {
		if err := os.WriteFile(filepath.Join(dir, name), tb.capture(t, size[0], size[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/%s", name)
	}
}

// ---- JavaScript expressions ----

func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always marshals
	}
	return string(b)
}

// logHas is true once a line of the conversation reads text (time stamp aside).
func logHas(text string) string {
	return `[...document.querySelectorAll('#log .line')].some(l =>
		l.textContent.slice(l.querySelector('time').textContent.length) === ` + jsString(text) + `)`
}

// memberList is true once the current room's people are exactly names, in order.
func memberList(names ...string) string {
	b, _ := json.Marshal(names)
	return `JSON.stringify([...document.querySelectorAll('#member-list li')].map(li => li.textContent)) === ` + jsString(string(b))
}
