package web

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Config configures the web server.
type Config struct {
	// Addr is the address ListenAndServe listens on, e.g. ":8080".
	Addr string
	// PublicURL is where people reach the page, e.g. "https://chat.example.org": its origin is
	// the only one whose pages may open the WebSocket, and an https URL makes the session cookie
	// Secure. No path: the page is served at the root.
	PublicURL string
	// TLSCert and TLSKey are PEM files: with both set the server speaks HTTPS itself.
	TLSCert, TLSKey string
	// TrustedProxies are the peers whose X-Forwarded-For and Forwarded headers are believed. A
	// connection from anywhere else is the client itself, whatever its headers say.
	TrustedProxies []netip.Prefix
	// RefuseGuests, when set, turns away every WebSocket that signs in with a name rather than a
	// session or bot token, with this reason (a server for invited people only).
	RefuseGuests string

	// ReadLimit is the largest WebSocket message a client may send, in bytes; a larger one closes
	// the connection with status 1009.
	ReadLimit int64
	// RequestRate and RequestBurst bound the state and history requests of one connection: so
	// many a second, so many at once. Each is a database read and a reply the server writes.
	RequestRate  float64
	RequestBurst int
	// PingInterval is how often an open WebSocket is pinged; a peer that has not answered within
	// PingTimeout is gone and is disconnected.
	PingInterval time.Duration
	PingTimeout  time.Duration

	// ReadHeaderTimeout bounds reading a request's headers (and the TLS handshake); ReadTimeout
	// the whole request, body included; WriteTimeout writing a response; IdleTimeout how long a
	// keep-alive connection may wait for its next request. None applies to a WebSocket once it
	// is open: the room's slow-consumer rules and the pings take over.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr:      ":8080",
		PublicURL: "http://localhost:8080",
		// A say request holds one line (the room reads at most 4 KiB of one), JSON-escaped.
		ReadLimit:         32 << 10,
		RequestRate:       2,
		RequestBurst:      60, // a reconnecting page catches up on each of its rooms at once
		PingInterval:      30 * time.Second,
		PingTimeout:       15 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("address %q: %w", c.Addr, err)
		}
	}
	if _, err := parsePublicURL(c.PublicURL); err != nil {
		return err
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("tls: give both a certificate and a key, or neither")
	case c.ReadLimit < 1024:
		return fmt.Errorf("read limit must be at least 1024 bytes, got %d", c.ReadLimit)
	case c.RequestRate <= 0 || c.RequestBurst < 1:
		return fmt.Errorf("request rate must be positive with a burst of at least 1, got %g and %d", c.RequestRate, c.RequestBurst)
	case c.PingInterval <= 0 || c.PingTimeout <= 0:
		return fmt.Errorf("ping interval and timeout must be positive, got %s and %s", c.PingInterval, c.PingTimeout)
	case c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return fmt.Errorf("http timeouts must be positive")
	case c.MaxHeaderBytes < 1024:
		return fmt.Errorf("max header bytes must be at least 1024, got %d", c.MaxHeaderBytes)
	}
	return nil
}

// publicURL is the parsed PublicURL.
type publicURL struct {
	origin string // scheme://host[:port], lower case: what a browser sends as Origin
	host   string // host[:port]
	secure bool   // https
}

func parsePublicURL(s string) (publicURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return publicURL{}, fmt.Errorf("public url %q: %w", s, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return publicURL{}, fmt.Errorf("public url %q: want http:// or https://", s)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return publicURL{}, fmt.Errorf("public url %q: want scheme://host[:port], with no path", s)
	}
	host := strings.ToLower(u.Host)
	// A browser leaves the default port out of Origin.
	if h, port, err := net.SplitHostPort(host); err == nil && (scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	return publicURL{origin: scheme + "://" + host, host: host, secure: scheme == "https"}, nil
}
