package main

import (
	"errors"
	"fmt"
	"net"

	"chatd/connlimit"
	"chatd/web"
)

// validateWeb checks the web settings: the public URL always (the room's /weblogin links use it),
// the rest when the web is on.
func (c *config) validateWeb() error {
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("--http-addr %q: %w", c.HTTPAddr, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if _, err := connlimit.ParsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	return c.webConfig().Validate() // the public URL: the rest is checked above
}

// webConfig is the web server's configuration: chatd's settings over the package's defaults.
func (c *config) webConfig() web.Config {
	w := web.DefaultConfig()
	w.Addr = c.HTTPAddr
	w.PublicURL = c.PublicURL
	w.TLSCert, w.TLSKey = c.TLSCert, c.TLSKey
	w.TrustedProxies, _ = connlimit.ParsePrefixes(c.TrustedProxies) // checked by validateWeb
	if c.Allow != "" && !c.AllowKeyless {
		// Invitation only: a browser comes in only as someone registered, with a /weblogin link
		// made in an SSH session with an invited key.
		w.RefuseGuests = "this server only admits invited people: sign in with a link from /weblogin in your SSH session"
	}
	return w
}
