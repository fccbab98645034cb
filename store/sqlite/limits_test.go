package sqlite

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"chatd/chat"
)

// TestPendingKeys: a proposed key is listed apart, is not among the name's keys, lapses at its
// expiry by the store's clock, and becomes a key only through ConfirmKey before then.
func TestPendingKeys(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now})
	if _, _, err := s.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	expires := clk.Now().Add(time.Hour)
	if err := s.ProposeKey("alice", testKey(2), expires); err != nil {
		t.Fatal(err)
	}
	id, _, err := s.Identity("ALICE")
	if err != nil || !slices.Equal(fingerprints(id), keyFPs([]int{1})) || len(id.Pending) != 1 {
		t.Fatalf("Identity = %+v, %v", id, err)
	}
	if p := id.Pending[0]; p.Fingerprint != testKey(2).Fingerprint || p.Type != "ssh-ed25519" || p.AuthorizedKey != testKey(2).AuthorizedKey ||
		!p.Expires.Equal(expires.Truncate(time.Millisecond)) || !p.Added.Equal(clk.Now().Truncate(time.Millisecond)) {
		t.Fatalf("pending key = %+v", p)
	}
	if !id.Keys[0].Expires.IsZero() {
		t.Errorf("an active key has an expiry: %+v", id.Keys[0])
	}
	if names, err := s.NamesOfKey(testKey(2).Fingerprint); err != nil || len(names) != 0 {
		t.Errorf("NamesOfKey(pending) = %v, %v; a pending key is nobody's", names, err)
	}

	// At its expiry it is gone: not listed, not confirmable, not removable.
	clk.Advance(time.Hour)
	if id, _, _ := s.Identity("alice"); len(id.Pending) != 0 {
		t.Fatalf("expired key still pending: %+v", id.Pending)
	}
	if _, ok, err := s.ConfirmKey("alice", testKey(2).Fingerprint); ok || err != nil {
		t.Fatalf("ConfirmKey(expired) = %v, %v", ok, err)
	}
	if err := s.RemoveKey("alice", testKey(2).Fingerprint); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("RemoveKey(expired) = %v", err)
	}

	// Proposed again (an expired proposal is no obstacle) and confirmed in time: a key.
	if err := s.ProposeKey("alice", testKey(2), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour - time.Millisecond)
	id, ok, err := s.ConfirmKey("Alice", testKey(2).Fingerprint)
	if err != nil || !ok || !slices.Equal(fingerprints(id), keyFPs([]int{1, 2})) || len(id.Pending) != 0 {
		t.Fatalf("ConfirmKey = %+v, %v, %v", id, ok, err)
	}
	if !id.Keys[1].Added.Equal(clk.Now().Truncate(time.Millisecond)) || !id.Keys[1].Expires.IsZero() {
		t.Errorf("a confirmed key is active from its confirmation: %+v", id.Keys[1])
	}
	if names, err := s.NamesOfKey(testKey(2).Fingerprint); err != nil || !slices.Equal(names, []string{"alice"}) {
		t.Errorf("NamesOfKey(confirmed) = %v, %v", names, err)
	}
	if _, ok, err := s.ConfirmKey("nobody", testKey(2).Fingerprint); ok || err != nil {
		t.Errorf("ConfirmKey(unclaimed name) = %v, %v", ok, err)
	}
	if _, ok, err := s.ConfirmKey("not a name", testKey(2).Fingerprint); ok || err != nil {
		t.Errorf("ConfirmKey(invalid name) = %v, %v", ok, err)
	}
}

func TestNamesPerKey(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now, MaxNamesPerKey: 2})
	k := testKey(1)
	for _, name := range []string{"b", "A"} {
		if _, claimed, err := s.Claim(name, k); err != nil || !claimed {
			t.Fatalf("Claim(%s) = %v, %v", name, claimed, err)
		}
	}
	_, _, err := s.Claim("c", k)
	var le *chat.LimitError
	if !errors.Is(err, chat.ErrNameLimit) || !errors.As(err, &le) || le.Max != 2 || !slices.Equal(le.Names, []string{"A", "b"}) {
		t.Fatalf("a third name: %v (%+v)", err, le)
	}
	if _, ok, _ := s.Identity("c"); ok {
		t.Fatal("the refused claim created c")
	}
	// A name the key holds is no new claim.
	if _, claimed, err := s.Claim("a", k); err != nil || claimed {
		t.Fatalf("Claim(a) again = %v, %v", claimed, err)
	}
	// Pending does not count: proposing k elsewhere is fine, confirming it is not.
	if _, _, err := s.Claim("carol", testKey(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.ProposeKey("carol", k, clk.Now().Add(time.Hour)); err != nil {
		t.Fatalf("ProposeKey of a key at its cap: %v", err)
	}
	if _, ok, err := s.ConfirmKey("carol", k.Fingerprint); ok || !errors.Is(err, chat.ErrNameLimit) {
		t.Fatalf("ConfirmKey onto a third name = %v, %v", ok, err)
	}
	if id, _, _ := s.Identity("carol"); len(id.Keys) != 1 || len(id.Pending) != 1 {
		t.Fatalf("carol after the refused confirmation: %+v", id)
	}
	// Once the key leaves a name, it may take another.
	if err := s.ProposeKey("b", testKey(3), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ConfirmKey("b", testKey(3).Fingerprint); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.RemoveKey("b", k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ConfirmKey("carol", k.Fingerprint); !ok || err != nil {
		t.Fatalf("ConfirmKey with room again = %v, %v", ok, err)
	}
	if names, err := s.NamesOfKey(k.Fingerprint); err != nil || !slices.Equal(names, []string{"A", "carol"}) {
		t.Fatalf("NamesOfKey = %v, %v", names, err)
	}
}

func TestKeysPerName(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now, MaxKeysPerName: 3})
	if _, _, err := s.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	soon, later := clk.Now().Add(time.Minute), clk.Now().Add(time.Hour)
	if err := s.ProposeKey("alice", testKey(2), later); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ConfirmKey("alice", testKey(2).Fingerprint); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.ProposeKey("alice", testKey(3), soon); err != nil {
		t.Fatal(err)
	}
	// 2 active + 1 pending: full. Renewing the pending one is no new key.
	var le *chat.LimitError
	if err := s.ProposeKey("alice", testKey(4), later); !errors.Is(err, chat.ErrKeyLimit) || !errors.As(err, &le) || le.Max != 3 {
		t.Fatalf("a fourth key = %v", err)
	}
	if err := s.ProposeKey("alice", testKey(3), later); err != nil {
		t.Fatalf("renewing a pending key at the cap: %v", err)
	}
	// A lapsed proposal no longer counts.
	if err := s.ProposeKey("alice", testKey(3), soon); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := s.ProposeKey("alice", testKey(4), later); err != nil {
		t.Fatalf("a key in place of an expired one: %v", err)
	}
}

// TestDMCaps: the caps on one recipient's queue, per sender name, per sender address and in all,
// table-driven over one queue as it fills.
func TestDMCaps(t *testing.T) {
	s, _ := openTest(t, Config{MaxQueuedDMs: 6, MaxQueuedDMsPerSender: 2, MaxQueuedDMsPerAddr: 3})
	steps := []struct {
		from, addr, to string
		want           error
	}{
		{"bob", "192.0.2.1", "alice", nil},
		{"Bob", "192.0.2.2", "ALICE", nil},
		{"BOB", "192.0.2.3", "alice", chat.ErrSenderQueueFull}, // bob has 2 waiting, whatever the address
		{"bob", "192.0.2.1", "carol", nil},                     // another recipient: another queue
		{"x", "192.0.2.1", "alice", nil},
		{"y", "192.0.2.1", "alice", nil},
		{"z", "192.0.2.1", "alice", chat.ErrAddrQueueFull}, // 192.0.2.1 has 3 waiting for alice
		{"z", "", "alice", nil},                            // no address: not counted by address
		{"w", "", "alice", nil},
		{"v", "198.51.100.1", "alice", chat.ErrQueueFull}, // 6 in all
		{"bob", "198.51.100.1", "alice", chat.ErrSenderQueueFull},
	}
	for i, st := range steps {
		_, err := s.QueueDM(chat.DM{From: st.from, FromAddr: st.addr, To: st.to, Text: fmt.Sprint(i)})
		if !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Fatalf("step %d: QueueDM(%s from %q to %s) = %v, want %v", i, st.from, st.addr, st.to, err, st.want)
		}
		var le *chat.LimitError
		if err != nil && !errors.As(err, &le) {
			t.Fatalf("step %d: %v is no *LimitError", i, err)
		}
	}
	got, err := s.TakeDMs("alice")
	if err != nil || len(got) != 6 || got[0].FromAddr != "192.0.2.1" || got[0].From != "bob" {
		t.Fatalf("TakeDMs = %+v, %v", got, err)
	}
	// Taken: the caps start afresh.
	if _, err := s.QueueDM(chat.DM{From: "bob", FromAddr: "192.0.2.1", To: "alice", Text: "again"}); err != nil {
		t.Fatal(err)
	}
}
