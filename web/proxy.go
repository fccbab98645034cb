package web

import (
	"net/http"
	"net/netip"
	"strings"
)

// trusted reports whether ip is one of the proxies whose forwarding headers are believed.
func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientAddr is the address of the client behind a request: the peer itself, unless the peer is a
// trusted proxy, whose forwarding headers then name it. Each proxy appends the address it got the
// request from, so the list is read from the right, past the trusted proxies, and the first
// address that is not one is the client: anything left of it was written by the client and may be
// made up. X-Forwarded-For is read when present (what Caddy, nginx and HAProxy set), else
// Forwarded; a list that cannot be read leaves the peer as the client.
func (s *Server) clientAddr(r *http.Request, peer netip.AddrPort) netip.AddrPort {
	if !s.trusted(peer.Addr()) {
		return peer
	}
	var hops []netip.AddrPort
	var ok bool
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops, ok = parseXForwardedFor(xff)
	} else if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		hops, ok = parseForwarded(fwd)
	} else {
		return peer
	}
	if !ok || len(hops) == 0 {
		return peer
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if !s.trusted(hops[i].Addr()) {
			return hops[i]
		}
	}
	return hops[0] // every hop is one of ours: the first is as far as we can see
}

// parseXForwardedFor reads "client, proxy1, proxy2" from every X-Forwarded-For header, in order.
func parseXForwardedFor(values []string) ([]netip.AddrPort, bool) {
	var hops []netip.AddrPort
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			ap, ok := parseHop(strings.TrimSpace(f))
			if !ok {
				return nil, false
			}
			hops = append(hops, ap)
		}
	}
	return hops, true
}

// parseForwarded reads the for= parameters of every Forwarded header (RFC 7239), in order:
// `for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`.
func parseForwarded(values []string) ([]netip.AddrPort, bool) {
	var hops []netip.AddrPort
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			found := false
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if !strings.EqualFold(k, "for") {
					continue
				}
				ap, ok := parseHop(strings.Trim(val, `"`))
				if !ok {
					return nil, false
				}
				hops, found = append(hops, ap), true
			}
			if !found {
				return nil, false // a hop that does not say who it came from
			}
		}
	}
	return hops, true
}

// parseHop reads one address: "192.0.2.7", "192.0.2.7:4711", "2001:db8::1", "[2001:db8::1]:4711".
// "unknown" and obfuscated identifiers are not addresses.
func parseHop(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), 0), true
}
