package tcp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"chatd/connlimit"
	"chatd/room"
)

// The shared per-address cap: the connection over it is told why; the others carry on.
func TestPerAddressCap(t *testing.T) {
	rm := newRoom(t, room.Config{})
	cfg := testConfig()
	cfg.Gate = &connlimit.Gate{Limiter: connlimit.New(connlimit.Config{MaxPerIP: 2})}
	srv := startServer(t, cfg, rm)
	alice := joinRaw(t, srv.addr, "alice")
	bob := joinRaw(t, srv.addr, "bob")
	third := dialRaw(t, srv.addr)
	if got := third.waitClosed(); !slices.Equal(got, []string{"error: too many connections from your address (at most 2 at once)"}) {
		t.Fatalf("third connection got %q", got)
	}
	alice.send("still here")
	bob.waitLine("alice: still here")
}

func TestRefusedServer(t *testing.T) {
	rm := newRoom(t, room.Config{})
	cfg := testConfig()
	cfg.Refuse = "this server only admits SSH users with an invited key"
	srv := startServer(t, cfg, rm)
	p := dialRaw(t, srv.addr)
	if got := p.waitClosed(); !slices.Equal(got, []string{"error: " + cfg.Refuse}) {
		t.Fatalf("got %q", got)
	}
}

func TestBannedAddressIsRefusedAtAccept(t *testing.T) {
	rm := newRoom(t, room.Config{})
	cfg := testConfig()
	cfg.Gate = &connlimit.Gate{Banned: func(ip netip.Addr) error { return rm.Banned(ip, "", "") }}
	srv := startServer(t, cfg, rm)
	op, err := rm.Join("op", discardOutput{}, room.JoinOptions{Operator: true, Remote: "192.0.2.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	op.Handle("/ban 127.0.0.0/8 go away")
	p := dialRaw(t, srv.addr)
	got := p.waitClosed()
	if want := "error: you are banned from this server (go away)"; !slices.Equal(got, []string{want}) {
		t.Fatalf("got %q, want %q", got, fmt.Sprint(want))
	}
}

type discardOutput struct{}

func (discardOutput) Write(p []byte) (int, error) { return len(p), nil }
func (discardOutput) Close() error                { return nil }
