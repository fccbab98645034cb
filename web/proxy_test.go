package web

import (
	"net/http"
	"net/netip"
	"testing"

	"chatd/connlimit"
)

func TestClientAddr(t *testing.T) {
	trusted, err := connlimit.ParsePrefixes("10.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{TrustedProxies: trusted}}
	proxy := netip.MustParseAddrPort("10.0.0.2:5555")
	stranger := netip.MustParseAddrPort("192.0.2.9:4444")
	for _, tc := range []struct {
		name   string
		peer   netip.AddrPort
		header http.Header
		want   string
	}{
		{"a direct client's headers are not believed", stranger, http.Header{"X-Forwarded-For": {"203.0.113.7"}}, "192.0.2.9:4444"},
		{"a proxy with no header", proxy, nil, "10.0.0.2:5555"},
		{"X-Forwarded-For", proxy, http.Header{"X-Forwarded-For": {"203.0.113.7"}}, "203.0.113.7:0"},
		{"a client's own claim left of the real one", proxy, http.Header{"X-Forwarded-For": {"1.2.3.4, 203.0.113.7"}}, "203.0.113.7:0"},
		{"a chain of trusted proxies", proxy, http.Header{"X-Forwarded-For": {"203.0.113.7, 10.1.1.1", "10.2.2.2"}}, "203.0.113.7:0"},
		{"every hop trusted", proxy, http.Header{"X-Forwarded-For": {"10.9.9.9, 10.1.1.1"}}, "10.9.9.9:0"},
		{"an IPv6 client", proxy, http.Header{"X-Forwarded-For": {"2001:db8::7"}}, "[2001:db8::7]:0"},
		{"an IPv4-mapped client", proxy, http.Header{"X-Forwarded-For": {"::ffff:203.0.113.7"}}, "203.0.113.7:0"},
		{"a hop with a port", proxy, http.Header{"X-Forwarded-For": {"203.0.113.7:1234"}}, "203.0.113.7:1234"},
		{"junk", proxy, http.Header{"X-Forwarded-For": {"203.0.113.7, <script>"}}, "10.0.0.2:5555"},
		{"an empty hop", proxy, http.Header{"X-Forwarded-For": {"203.0.113.7,"}}, "10.0.0.2:5555"},
		{"Forwarded", proxy, http.Header{"Forwarded": {`for=203.0.113.7;proto=https;by=10.0.0.2`}}, "203.0.113.7:0"},
		{"Forwarded, IPv6 with a port", proxy, http.Header{"Forwarded": {`for="[2001:db8::7]:4711"`}}, "[2001:db8::7]:4711"},
		{"Forwarded, several hops", proxy, http.Header{"Forwarded": {`for=1.2.3.4, For=203.0.113.7;proto=http`}}, "203.0.113.7:0"},
		{"Forwarded, unknown", proxy, http.Header{"Forwarded": {`for=unknown`}}, "10.0.0.2:5555"},
		{"Forwarded, a hop without for", proxy, http.Header{"Forwarded": {`for=203.0.113.7, proto=https`}}, "10.0.0.2:5555"},
		{"X-Forwarded-For wins over Forwarded", proxy, http.Header{"X-Forwarded-For": {"203.0.113.7"}, "Forwarded": {"for=1.2.3.4"}}, "203.0.113.7:0"},
		{"a trusted IPv6 proxy", netip.MustParseAddrPort("[::1]:80"), http.Header{"X-Forwarded-For": {"203.0.113.7"}}, "203.0.113.7:0"},
	} {
		r := &http.Request{Header: tc.header}
		if got := s.clientAddr(r, tc.peer).String(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestPublicURL(t *testing.T) {
	for _, tc := range []struct {
		in, origin string
		secure     bool
		bad        bool
	}{
		{in: "http://localhost:8080", origin: "http://localhost:8080"},
		{in: "https://Chat.Example.org/", origin: "https://chat.example.org", secure: true},
		{in: "https://chat.example.org:443", origin: "https://chat.example.org", secure: true},
		{in: "http://[2001:db8::1]:80", origin: "http://[2001:db8::1]"},
		{in: "http://chat.example.org:8443", origin: "http://chat.example.org:8443"},
		{in: "ftp://chat.example.org", bad: true},
		{in: "chat.example.org", bad: true},
		{in: "https://chat.example.org/chat", bad: true},
		{in: "https://user@chat.example.org", bad: true},
		{in: "https://", bad: true},
	} {
		p, err := parsePublicURL(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted", tc.in)
			}
			continue
		}
		if err != nil || p.origin != tc.origin || p.secure != tc.secure {
			t.Errorf("%q: %+v, %v; want origin %s, secure %v", tc.in, p, err, tc.origin, tc.secure)
		}
	}
}
