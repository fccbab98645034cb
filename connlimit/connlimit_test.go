package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func addr(s string) net.Addr {
	ap := netip.MustParseAddrPort(s)
	return net.TCPAddrFromAddrPort(ap)
}

func TestCaps(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	l := New(Config{MaxConns: 5, MaxPerIP: 2, RatePerIP: 3, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Now: func() time.Time { return now }})

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
	// Closing one makes room again, but the rate (3 a minute) still counts the earlier ones.
	a1()
	a1() // release is idempotent
	if _, err := l.Admit(addr("192.0.2.1:1003")); err != nil {
		t.Fatalf("after a close: %v", err)
	}
	a2()
	_, err = l.Admit(addr("192.0.2.1:1004"))
	if !errors.As(err, &ref) || ref.Reason != "too many new connections from your address (at most 3 a minute); try again in a minute" || ref.Hard {
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
