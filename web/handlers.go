package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/room"
)

// static is the page: hand-written HTML, CSS and JavaScript, served as they are.
//
//go:embed static
var static embed.FS

// CookieName is the browser session's cookie.
const CookieName = "chatd_session"

// maxFormBytes bounds a sign-in or sign-out form.
const maxFormBytes = 4 << 10

// maxSecretLen bounds a sign-in secret before anything looks it up; the room's are 43 bytes.
const maxSecretLen = 128

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// loadAssets reads the embedded files once: "/" is index.html, every other file its own path.
func loadAssets() (map[string]asset, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream" // with nosniff: never guessed into script or HTML
		}
		sum := sha256.Sum256(b)
		a := asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		name := strings.TrimPrefix(p, "static")
		if name == "/index.html" {
			name = "/"
		}
		assets[name] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: embedded page: %w", err)
	}
	if _, ok := assets["/"]; !ok {
		return nil, errors.New("web: embedded page: no index.html")
	}
	return assets, nil
}

// contentSecurityPolicy allows the page's own files and its WebSocket, and nothing else: no inline
// script or style, no framing, no other origin.
func contentSecurityPolicy(pub publicURL) string {
	ws := "ws://"
	if pub.secure {
		ws = "wss://"
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' " +
		ws + pub.host + "; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
}

// routes is every path the server answers, behind the headers every response carries.
func (s *Server) routes() http.Handler {
	// Sign-in and sign-out change state: only the page itself may post them (Sec-Fetch-Site, or
	// Origin against Host), not a form on another site.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.refused("origin")
		s.errorPage(w, http.StatusForbidden, "Forbidden", "This form may only be sent from chatd's own page.")
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.handleWS)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.Handle("POST /login", cop.Handler(http.HandlerFunc(s.login)))
	mux.Handle("POST /logout", cop.Handler(http.HandlerFunc(s.logout)))
	mux.HandleFunc("GET /", s.serveAsset)
	return s.secure(mux)
}

// secure sets the security headers on every response, error pages included, and turns away the
// connections the gate refused (the WebSocket tells its own way).
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", s.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY") // frame-ancestors, for browsers that predate it
		if _, gc := connOf(r); gc != nil && r.URL.Path != "/ws" {
			if refusal, reason := gc.refusal(); refusal != "" {
				h.Set("Connection", "close")
				s.errorPage(w, refusalStatus(reason), "Not now", refusal)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func refusalStatus(reason string) int {
	if reason == connlimit.ReasonBanned {
		return http.StatusForbidden
	}
	return http.StatusTooManyRequests
}

// serveAsset serves the page and its files.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := s.assets[r.URL.Path]
	if !ok {
		s.errorPage(w, http.StatusNotFound, "Not found", "There is nothing here.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache") // revalidated each time: a new binary serves a new page
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · {{.Server}}</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<main class="signin">
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- if .Secret}}
<form method="post" action="/login">
<input type="hidden" name="t" value="{{.Secret}}">
<button type="submit">{{.Button}}</button>
</form>
{{- end}}
<p><a href="/">Go to the chat</a></p>
</main>
</body>
</html>
`))

type pageData struct {
	Server, Title, Message, Secret, Button string
}

func (s *Server) page(w http.ResponseWriter, status int, d pageData) {
	d.Server = s.hub.Config().Name
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

func (s *Server) errorPage(w http.ResponseWriter, status int, title, msg string) {
	s.page(w, status, pageData{Title: title, Message: msg})
}

// loginPage is where a /weblogin link leads: a question and a button. Opening the link does not
// use it up, so that a chat client or a mail scanner fetching it to show a preview does not burn
// it; the button's POST does.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	secret := r.URL.Query().Get("t")
	if secret == "" {
		s.errorPage(w, http.StatusBadRequest, "No sign-in link", "This address needs the whole link /weblogin printed, with its ?t=... part.")
		return
	}
	if !plausibleSecret(secret) {
		s.errorPage(w, http.StatusGone, "Link not valid", room.ErrWebToken.Error()+". Type /weblogin in your SSH session for a new one.")
		return
	}
	if refusal := s.charge(r); refusal != "" {
		s.errorPage(w, http.StatusTooManyRequests, "Not now", refusal)
		return
	}
	name, err := s.hub.WebLinkName(secret)
	if err != nil {
		s.loginError(w, err)
		return
	}
	s.page(w, http.StatusOK, pageData{Title: "Sign in as " + name + "?", Secret: secret, Button: "Sign in as " + name,
		Message: "This link signs this browser in as " + name + ". It works once."})
}

// login uses a /weblogin link up and gives the browser its session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Bad request", "The sign-in form could not be read.")
		return
	}
	secret := r.PostForm.Get("t")
	if secret == "" {
		s.errorPage(w, http.StatusBadRequest, "No sign-in link", "The form holds no sign-in link. Open the link /weblogin printed.")
		return
	}
	if !plausibleSecret(secret) {
		s.loginError(w, room.ErrWebToken)
		return
	}
	// Each attempt costs a lookup: it counts toward the address's rate of new connections.
	if refusal := s.charge(r); refusal != "" {
		s.errorPage(w, http.StatusTooManyRequests, "Not now", refusal)
		return
	}
	session, name, err := s.hub.RedeemWebLink(secret, r.UserAgent())
	if err != nil {
		s.log.Info("web sign-in refused", "remote", s.clientAddr(r, peerAddr(r)).String(), "err", err)
		s.loginError(w, err)
		return
	}
	if old, err := r.Cookie(CookieName); err == nil && old.Value != "" && len(old.Value) <= maxSecretLen {
		_ = s.hub.EndWebSession(old.Value) // this browser's earlier session is replaced, not left behind
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: session, Path: "/",
		MaxAge:   int(room.WebSessionTTL / time.Second),
		HttpOnly: true, Secure: s.pub.secure, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("web sign-in", "user", name, "remote", s.clientAddr(r, peerAddr(r)).String())
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginError tells why a link did not sign in.
func (s *Server) loginError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, room.ErrWebToken):
		s.errorPage(w, http.StatusGone, "Link not valid", err.Error()+". Type /weblogin in your SSH session for a new one.")
	case errors.Is(err, room.ErrUnavailable):
		s.errorPage(w, http.StatusServiceUnavailable, "Try again", err.Error())
	default: // a ban, in words fit to show
		s.errorPage(w, http.StatusForbidden, "Not signed in", chat.Sanitize(err.Error()))
	}
}

// logout ends the browser's session: its secret no longer opens anything, and the cookie goes.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" && len(c.Value) <= maxSecretLen {
		if err := s.hub.EndWebSession(c.Value); err != nil {
			s.log.Warn("web sign-out", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.pub.secure, SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// plausibleSecret reports whether s could be a secret the room made (base64url, short), so that
// junk is refused without a lookup.
func plausibleSecret(s string) bool {
	if len(s) == 0 || len(s) > maxSecretLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// charge counts a request that costs a lookup toward its client's rate of new connections, and
// returns the refusal when the client is over it.
func (s *Server) charge(r *http.Request) string {
	t := s.gate.Session(transport, net.TCPAddrFromAddrPort(s.clientAddr(r, peerAddr(r))))
	if t == nil {
		return ""
	}
	return t.Refusal
}
