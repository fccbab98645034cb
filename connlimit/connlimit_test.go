package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func addr(s string) net.Addr {
	ap := netip.MustParseAddrPort(s)
	return net.TCPAddrFromAddrPort(ap)
}

func TestCaps(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	l := New(Config{MaxConns: 5, MaxPerIP: 2, RatePerIP: 4, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Now: func() time.Time { return now }})

	a1, err := l.Admit(addr("192.0.2.1:1000"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := l.Admit(addr("192.0.2.1:1001"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Admit(addr("192.0.2.1:1002"))
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Reason != "too many connections from your address (at most 2 at once)" {
		t.Fatalf("third from one address: %v", err)
	}
	// Another address is not affected.
	if _, err := l.Admit(addr("[2001:db8::1]:1000")); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// Closing one makes room again, but the rate (4 a minute) still counts the earlier ones,
	// the refused one included.
	a1()
	a1() // release is idempotent
	if _, err := l.Admit(addr("192.0.2.1:1003")); err != nil {
		t.Fatalf("after a close: %v", err)
	}
	a2()
	_, err = l.Admit(addr("192.0.2.1:1004"))
	if !errors.As(err, &ref) || ref.Reason != "too many new connections from your address (at most 4 a minute); try again in a minute" || ref.Hard {
		t.Fatalf("over the rate: %v", err)
	}
	// Exempt addresses have no per-IP caps, but count towards the total.
	var exempt []func()
	for i := range 3 {
		rel, err := l.Admit(addr("10.1.2.3:1000"))
		if err != nil {
			t.Fatalf("exempt %d: %v", i, err)
		}
		exempt = append(exempt, rel)
	}
	if total, _ := l.Open(addr("10.1.2.3:1")); total != 5 {
		t.Fatalf("total %d, want 5", total)
	}
	_, err = l.Admit(addr("10.1.2.3:1000"))
	if !errors.As(err, &ref) || ref.Reason != "server is full (5 connections); try again later" {
		t.Fatalf("over the total: %v", err)
	}

	// A flood turns hard; a minute later the address may come back.
	for range 10 {
		_, err = l.Admit(addr("192.0.2.1:2000"))
	}
	if !errors.As(err, &ref) || !ref.Hard {
		t.Fatalf("flood: %v, want a hard refusal", err)
	}
	now = now.Add(61 * time.Second)
	exempt[0]()
	rel, err := l.Admit(addr("192.0.2.1:2001"))
	if err != nil {
		t.Fatalf("a minute later: %v", err)
	}
	rel()
}

func TestDisabledCapsAdmitEverything(t *testing.T) {
	l := New(Config{})
	for range 1000 {
		if _, err := l.Admit(addr("192.0.2.1:1")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForgetsIdleAddresses(t *testing.T) {
	now := time.Now()
	l := New(Config{RatePerIP: 10, Now: func() time.Time { return now }})
	for i := range 100 {
		rel, err := l.Admit(net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 1)))
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	now = now.Add(2 * time.Minute)
	l.Sweep()
	if n := len(l.ips); n != 0 {
		t.Errorf("%d addresses remembered after they went quiet", n)
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, false},
		{" 192.0.2.7 , ::1 ,10.1.2.3/8", []string{"192.0.2.7/32", "::1/128", "10.0.0.0/8"}, false},
		{"::ffff:192.0.2.7", []string{"192.0.2.7/32"}, false},
		{"example.com", nil, true},
		{"10.0.0.0/33", nil, true},
	}
	for _, tt := range tests {
		got, err := ParsePrefixes(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePrefixes(%q) error %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("ParsePrefixes(%q) = %v, want %v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i].String() != tt.want[i] {
				t.Errorf("ParsePrefixes(%q)[%d] = %v, want %v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

// TestRefusalsCount: an address that keeps knocking while it holds its allowed connections is
// soon refused hard, before anything is spent on it, and so is one that keeps opening sessions
// on connections it already has.
func TestRefusalsCount(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	l := New(Config{MaxPerIP: 2, RatePerIP: 10, Now: func() time.Time { return now }})
	a := addr("192.0.2.1:1000")
	for range 2 {
		if _, err := l.Admit(a); err != nil {
			t.Fatal(err)
		}
	}
	var hardAt int
	for i := 3; i <= 100 && hardAt == 0; i++ {
		_, err := l.Admit(a)
		var ref *Refusal
		if !errors.As(err, &ref) {
			t.Fatalf("attempt %d at the cap was admitted", i)
		}
		if ref.Hard {
			hardAt = i
		}
	}
	if hardAt != 21 {
		t.Errorf("refused hard from attempt %d, want 21 (twice the rate of 10)", hardAt)
	}

	// Sessions count like connections, and refusals of them too.
	b := addr("192.0.2.2:1000")
	if _, err := l.Admit(b); err != nil {
		t.Fatal(err)
	}
	var err error
	n := 1
	for ; n < 100; n++ {
		if err = l.Charge(b); err != nil {
			break
		}
	}
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Hard || n != 10 || ref.Reason != "too many new sessions from your address (at most 10 a minute); try again in a minute" {
		t.Fatalf("session %d: %v", n+1, err)
	}
	for range 10 {
		err = l.Charge(b)
	}
	if !errors.As(err, &ref) || !ref.Hard {
		t.Fatalf("a session flood: %v, want a hard refusal", err)
	}
	// Exempt addresses are never charged.
	l = New(Config{RatePerIP: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Now: func() time.Time { return now }})
	for range 5 {
		if err := l.Charge(b); err != nil {
			t.Fatalf("exempt: %v", err)
		}
	}
}

func TestGate(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	banned := netip.MustParseAddr("198.51.100.7")
	var counted []string
	g := &Gate{
		Limiter: New(Config{MaxPerIP: 1, RatePerIP: 3, Now: func() time.Time { return now }}),
		Banned: func(ip netip.Addr) error {
			if ip == banned {
				return errors.New("you are banned from this server")
			}
			return nil
		},
		Refused: func(transport, reason string) { counted = append(counted, transport+" "+reason) },
	}
	tk := g.Admit("ssh", addr("192.0.2.1:1"))
	if !tk.Admitted() {
		t.Fatalf("first: %+v", tk)
	}
	if tk2 := g.Admit("tcp", addr("192.0.2.1:2")); tk2.Admitted() || tk2.Drop || tk2.Reason != ReasonLimit {
		t.Fatalf("over the cap: %+v", tk2)
	}
	tk.Release()
	tk.Release()
	if b := g.Admit("tcp", addr("198.51.100.7:1")); b.Admitted() || b.Reason != ReasonBanned || b.Refusal != "you are banned from this server" {
		t.Fatalf("banned: %+v", b)
	}
	// The banned connection gave its slot back: the limiter holds nothing for it.
	if _, n := g.Limiter.Open(addr("198.51.100.7:1")); n != 0 {
		t.Fatalf("a banned connection holds %d slots", n)
	}
	for range 6 {
		tk = g.Admit("ssh", addr("192.0.2.1:3"))
	}
	if !tk.Drop || tk.Reason != ReasonFlood {
		t.Fatalf("a flood: %+v", tk)
	}
	if s := g.Session("ssh", addr("192.0.2.1:3")); s == nil || !s.Drop {
		t.Fatalf("a session from a flooding address: %+v", s)
	}
	want := []string{"tcp limit", "tcp banned", "ssh limit", "ssh limit", "ssh limit", "ssh flood", "ssh flood", "ssh flood"}
	if strings.Join(counted, ",") != strings.Join(want, ",") {
		t.Errorf("counted %v, want %v", counted, want)
	}
	var nilGate *Gate
	if !nilGate.Admit("ssh", addr("192.0.2.9:1")).Admitted() || nilGate.Session("ssh", addr("192.0.2.9:1")) != nil {
		t.Error("a nil gate refuses")
	}
}
