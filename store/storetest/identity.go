package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"chatd/chat"
)

// testKey is key number n: a fingerprint, a type and an authorized key of its own.
func testKey(n int) chat.Key {
	return chat.Key{
		Fingerprint:   fmt.Sprintf("SHA256:storetest%03d", n),
		Type:          "ssh-ed25519",
		AuthorizedKey: fmt.Sprintf("ssh-ed25519 AAAAstoretest%03d", n),
	}
}

func fingerprints(keys []chat.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Fingerprint)
	}
	return out
}

// keyFPs are the fingerprints of the test keys numbered ns.
func keyFPs(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, testKey(n).Fingerprint)
	}
	return out
}

func mustClaim(t *testing.T, s Store, name string, k chat.Key) chat.Identity {
	t.Helper()
	id, claimed, err := s.Claim(name, k)
	if err != nil || !claimed {
		t.Fatalf("Claim(%q) = %v, %v; want a new identity", name, claimed, err)
	}
	return id
}

func mustIdentity(t *testing.T, s Store, name string) chat.Identity {
	t.Helper()
	id, ok, err := s.Identity(name)
	if err != nil || !ok {
		t.Fatalf("Identity(%q) = %v, %v", name, ok, err)
	}
	return id
}

func testIdentities(t *testing.T, s Store) {
	k1, k2 := testKey(1), testKey(2)
	if id, ok, err := s.Identity("Alice"); err != nil || ok || id.Name != "" {
		t.Fatalf("Identity(unclaimed) = %+v, %v, %v", id, ok, err)
	}
	before := time.Now()
	id := mustClaim(t, s, "Alice", k1)
	after := time.Now()
	if id.Name != "Alice" || !slices.Equal(fingerprints(id.Keys), keyFPs(1)) || len(id.Pending) != 0 {
		t.Fatalf("claimed identity = %+v", id)
	}
	during(t, "Created", id.Created, before, after)
	during(t, "the key's Added", id.Keys[0].Added, before, after)
	if k := id.Keys[0]; k.Type != k1.Type || k.AuthorizedKey != k1.AuthorizedKey || !k.Expires.IsZero() {
		t.Errorf("claimed key = %+v, want %+v", k, k1)
	}

	nextMilli()
	// Another claim, whatever the case and the key, finds the first one unchanged.
	for _, name := range []string{"Alice", "alice", "ALICE", "aLiCe"} {
		got, claimed, err := s.Claim(name, k2)
		if err != nil || claimed || got.Name != "Alice" || !got.Created.Equal(id.Created) || !slices.Equal(fingerprints(got.Keys), keyFPs(1)) {
			t.Fatalf("Claim(%q) = %+v, %v, %v; want the existing identity", name, got, claimed, err)
		}
		got = mustIdentity(t, s, name)
		if got.Name != "Alice" || !got.Created.Equal(id.Created) || len(got.Keys) != 1 ||
			got.Keys[0].AuthorizedKey != k1.AuthorizedKey || got.Keys[0].Type != k1.Type || !got.Keys[0].Added.Equal(id.Keys[0].Added) {
			t.Fatalf("Identity(%q) = %+v", name, got)
		}
	}

	// A key with its own Added keeps it; one key may own several names.
	k1.Added = time.Date(2020, 1, 2, 3, 4, 5, 6_789_123, time.UTC)
	bob := mustClaim(t, s, "bob", k1)
	if bob.Name != "bob" || !sameTime(bob.Keys[0].Added, k1.Added) || !sameTime(mustIdentity(t, s, "BOB").Keys[0].Added, k1.Added) {
		t.Fatalf("Claim(bob) with a dated key = %+v", bob)
	}
	if names, err := s.NamesOfKey(k1.Fingerprint); err != nil || !slices.Equal(names, []string{"Alice", "bob"}) {
		t.Errorf("NamesOfKey = %v, %v; want [Alice bob]", names, err)
	}
	if names, err := s.NamesOfKey("SHA256:nobody"); err != nil || len(names) != 0 {
		t.Errorf("NamesOfKey(unknown key) = %v, %v", names, err)
	}

	for _, name := range []string{"", "al ice", "ålice", "a:b", "x\x00", "-dash", "error"} {
		if _, _, err := s.Claim(name, testKey(3)); err == nil {
			t.Errorf("Claim(%q) succeeded", name)
		}
		if _, ok, err := s.Identity(name); err != nil || ok {
			t.Errorf("Identity(%q) = %v, %v; want false, nil", name, ok, err)
		}
	}
	if _, _, err := s.Claim("carol", chat.Key{}); err == nil {
		t.Error("Claim with a key without a fingerprint succeeded")
	}
	if _, ok, _ := s.Identity("carol"); ok {
		t.Error("a refused claim created carol")
	}
}

// testClaimRace claims one free name from many goroutines at once: exactly one claim wins, and
// every claimant is told the winner's identity.
func testClaimRace(t *testing.T, s Store) {
	for round := range 5 {
		name := fmt.Sprintf("Racer%d", round)
		const n = 16
		type result struct {
			id      chat.Identity
			claimed bool
			err     error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				id, claimed, err := s.Claim(name, testKey(100*round+i))
				results[i] = result{id, claimed, err}
			})
		}
		close(start)
		wg.Wait()
		var winners []int
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("round %d: claim %d: %v", round, i, r.err)
			}
			if r.claimed {
				winners = append(winners, i)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: claims %v won, want exactly one", round, winners)
		}
		want := keyFPs(100*round + winners[0])
		for i, r := range results {
			if got := fingerprints(r.id.Keys); r.id.Name != name || !slices.Equal(got, want) {
				t.Fatalf("round %d: claim %d saw %s with keys %v, want %s with %v", round, i, r.id.Name, got, name, want)
			}
		}
		if got := fingerprints(mustIdentity(t, s, name).Keys); !slices.Equal(got, want) {
			t.Fatalf("round %d: %s has keys %v, want %v", round, name, got, want)
		}
	}
}

// testKeys walks one identity's keys through proposals, confirmations and removals.
func testKeys(t *testing.T, s Store) {
	mustClaim(t, s, "Alice", testKey(1))
	type step struct {
		op      string // "propose", "confirm" or "remove"
		name    string
		key     int
		wantErr error
		wantOK  bool  // confirm: the key is active afterwards
		keys    []int // Alice's active keys after the step
		pending []int // and her pending ones
	}
	steps := []step{
		{op: "remove", name: "alice", key: 1, wantErr: chat.ErrLastKey, keys: []int{1}},
		{op: "propose", name: "ALICE", key: 1, wantErr: chat.ErrKeyExists, keys: []int{1}},
		{op: "confirm", name: "alice", key: 2, keys: []int{1}}, // never proposed: nothing to confirm
		{op: "propose", name: "alice", key: 2, keys: []int{1}, pending: []int{2}},
		{op: "propose", name: "Alice", key: 3, keys: []int{1}, pending: []int{2, 3}},
		{op: "propose", name: "Alice", key: 2, keys: []int{1}, pending: []int{2, 3}}, // again: renewed
		{op: "propose", name: "nobody", key: 4, wantErr: chat.ErrNotFound, keys: []int{1}, pending: []int{2, 3}},
		{op: "confirm", name: "nobody", key: 2, keys: []int{1}, pending: []int{2, 3}},
		{op: "confirm", name: "ALICE", key: 2, wantOK: true, keys: []int{1, 2}, pending: []int{3}},
		{op: "confirm", name: "alice", key: 2, wantOK: true, keys: []int{1, 2}, pending: []int{3}}, // twice: still active
		{op: "remove", name: "nobody", key: 1, wantErr: chat.ErrNotFound, keys: []int{1, 2}, pending: []int{3}},
		{op: "remove", name: "alice", key: 9, wantErr: chat.ErrNotFound, keys: []int{1, 2}, pending: []int{3}},
		{op: "remove", name: "alice", key: 3, keys: []int{1, 2}},                        // a pending key may go
		{op: "confirm", name: "alice", key: 3, keys: []int{1, 2}},                       // and is gone
		{op: "remove", name: "alice", key: 1, keys: []int{2}},                           // the first key may go while others remain
		{op: "remove", name: "Alice", key: 2, wantErr: chat.ErrLastKey, keys: []int{2}}, // but not the last
		{op: "propose", name: "alice", key: 1, keys: []int{2}, pending: []int{1}},
		{op: "remove", name: "Alice", key: 2, wantErr: chat.ErrLastKey, keys: []int{2}, pending: []int{1}}, // a pending key does not count
		{op: "confirm", name: "alice", key: 1, wantOK: true, keys: []int{2, 1}},                            // oldest first: key 1 is now the newest
	}
	for i, st := range steps {
		nextMilli()
		var err error
		switch st.op {
		case "propose":
			err = s.ProposeKey(st.name, testKey(st.key), time.Now().Add(time.Hour))
		case "confirm":
			var ok bool
			_, ok, err = s.ConfirmKey(st.name, testKey(st.key).Fingerprint)
			if ok != st.wantOK {
				t.Fatalf("step %d: ConfirmKey(%s, key %d) = %v, want %v", i, st.name, st.key, ok, st.wantOK)
			}
		case "remove":
			err = s.RemoveKey(st.name, testKey(st.key).Fingerprint)
		}
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("step %d: %s(%s, key %d) = %v, want %v", i, st.op, st.name, st.key, err, st.wantErr)
		}
		id := mustIdentity(t, s, "alice")
		if got, want := fingerprints(id.Keys), keyFPs(st.keys...); !slices.Equal(got, want) {
			t.Fatalf("step %d: keys %v, want %v", i, got, want)
		}
		if got, want := fingerprints(id.Pending), keyFPs(st.pending...); !slices.Equal(got, want) {
			t.Fatalf("step %d: pending %v, want %v", i, got, want)
		}
	}
	if err := s.ProposeKey("alice", chat.Key{}, time.Now().Add(time.Hour)); err == nil {
		t.Error("ProposeKey without a fingerprint succeeded")
	}
	if err := s.ProposeKey("alice", testKey(5), time.Time{}); err == nil {
		t.Error("ProposeKey without an expiry succeeded: the key would never lapse")
	}
}

// testPendingKeys: a proposed key is listed apart, is not among the name's keys, lapses at its
// expiry, and becomes a key only through ConfirmKey before then.
func testPendingKeys(t *testing.T, s Store) {
	mustClaim(t, s, "alice", testKey(1))
	mustClaim(t, s, "bob", testKey(9))
	expires := time.Now().Add(time.Hour)
	before := time.Now()
	if err := s.ProposeKey("alice", testKey(2), expires); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	id := mustIdentity(t, s, "ALICE")
	if !slices.Equal(fingerprints(id.Keys), keyFPs(1)) || len(id.Pending) != 1 {
		t.Fatalf("Identity = %+v", id)
	}
	p := id.Pending[0]
	if p.Fingerprint != testKey(2).Fingerprint || p.Type != "ssh-ed25519" || p.AuthorizedKey != testKey(2).AuthorizedKey || !sameTime(p.Expires, expires) {
		t.Fatalf("pending key = %+v", p)
	}
	during(t, "the pending key's Added", p.Added, before, after)
	if !id.Keys[0].Expires.IsZero() {
		t.Errorf("an active key has an expiry: %+v", id.Keys[0])
	}
	if names, err := s.NamesOfKey(testKey(2).Fingerprint); err != nil || len(names) != 0 {
		t.Errorf("NamesOfKey(pending) = %v, %v; a pending key is nobody's", names, err)
	}
	// Pending for alice is nothing for bob.
	if _, ok, err := s.ConfirmKey("bob", testKey(2).Fingerprint); ok || err != nil {
		t.Errorf("ConfirmKey(bob, alice's pending key) = %v, %v", ok, err)
	}

	// Renewed: the new expiry holds.
	later := time.Now().Add(2 * time.Hour)
	if err := s.ProposeKey("Alice", testKey(2), later); err != nil {
		t.Fatal(err)
	}
	if p := mustIdentity(t, s, "alice").Pending; len(p) != 1 || !sameTime(p[0].Expires, later) {
		t.Fatalf("renewed proposal = %+v, want expiry %v", p, later)
	}

	// A proposal whose time has passed has lapsed: not listed, not confirmable, not removable.
	if err := s.ProposeKey("alice", testKey(3), time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("ProposeKey with an expiry passed: %v", err)
	}
	if got := fingerprints(mustIdentity(t, s, "alice").Pending); !slices.Equal(got, keyFPs(2)) {
		t.Fatalf("pending %v, want only key 2: key 3 has lapsed", got)
	}
	if _, ok, err := s.ConfirmKey("alice", testKey(3).Fingerprint); ok || err != nil {
		t.Fatalf("ConfirmKey(lapsed) = %v, %v", ok, err)
	}
	if err := s.RemoveKey("alice", testKey(3).Fingerprint); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("RemoveKey(lapsed) = %v, want ErrNotFound", err)
	}

	// Proposed again (a lapsed proposal is no obstacle) and confirmed in time: a key, active
	// from its confirmation.
	if err := s.ProposeKey("alice", testKey(3), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	nextMilli()
	before = time.Now()
	id, ok, err := s.ConfirmKey("Alice", testKey(3).Fingerprint)
	after = time.Now()
	if err != nil || !ok || !slices.Equal(fingerprints(id.Keys), keyFPs(1, 3)) || !slices.Equal(fingerprints(id.Pending), keyFPs(2)) {
		t.Fatalf("ConfirmKey = %+v, %v, %v", id, ok, err)
	}
	during(t, "a confirmed key's Added", id.Keys[1].Added, before, after)
	if !id.Keys[1].Expires.IsZero() {
		t.Errorf("a confirmed key has an expiry: %+v", id.Keys[1])
	}
	if names, err := s.NamesOfKey(testKey(3).Fingerprint); err != nil || !slices.Equal(names, []string{"alice"}) {
		t.Errorf("NamesOfKey(confirmed) = %v, %v", names, err)
	}
	for _, name := range []string{"nobody", "not a name"} {
		if _, ok, err := s.ConfirmKey(name, testKey(2).Fingerprint); ok || err != nil {
			t.Errorf("ConfirmKey(%q) = %v, %v; want false, nil", name, ok, err)
		}
	}
}

// testCaps: the caps at their defaults, as each fills.
func testCaps(t *testing.T, s Store) {
	t.Run("names per key", func(t *testing.T) { testNamesPerKey(t, s) })
	t.Run("keys per name", func(t *testing.T) { testKeysPerName(t, s) })
	t.Run("queued DMs", func(t *testing.T) { testDMCaps(t, s) })
}

// Default caps: part of the contract (see the package comment).
const (
	maxNamesPerKey        = 5
	maxKeysPerName        = 20
	maxQueuedDMs          = 100
	maxQueuedDMsPerSender = 10
	maxQueuedDMsPerAddr   = 20
)

func testNamesPerKey(t *testing.T, s Store) {
	k := testKey(200)
	names := []string{"n4", "N2", "n0", "n3", "N1"}
	for _, name := range names {
		mustClaim(t, s, name, k)
	}
	held := []string{"n0", "N1", "N2", "n3", "n4"} // in chat.Fold order
	_, _, err := s.Claim("n5", k)
	var le *chat.LimitError
	if !errors.Is(err, chat.ErrNameLimit) || !errors.As(err, &le) || le.Max != maxNamesPerKey || !slices.Equal(le.Names, held) {
		t.Fatalf("a sixth name: %v (%+v); want ErrNameLimit, at most %d: %v", err, le, maxNamesPerKey, held)
	}
	if _, ok, _ := s.Identity("n5"); ok {
		t.Fatal("the refused claim created n5")
	}
	// A name the key holds is no new claim.
	if _, claimed, err := s.Claim("N0", k); err != nil || claimed {
		t.Fatalf("Claim(N0) again = %v, %v", claimed, err)
	}
	// Pending does not count: proposing k for another name is fine, confirming it is not.
	mustClaim(t, s, "carol", testKey(201))
	if err := s.ProposeKey("carol", k, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("ProposeKey of a key at its cap: %v", err)
	}
	if _, ok, err := s.ConfirmKey("carol", k.Fingerprint); ok || !errors.Is(err, chat.ErrNameLimit) {
		t.Fatalf("ConfirmKey onto a sixth name = %v, %v; want ErrNameLimit", ok, err)
	}
	if id := mustIdentity(t, s, "carol"); len(id.Keys) != 1 || len(id.Pending) != 1 {
		t.Fatalf("carol after the refused confirmation: %+v", id)
	}
	// Once the key leaves a name, it may take another.
	if err := s.ProposeKey("n3", testKey(202), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ConfirmKey("n3", testKey(202).Fingerprint); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.RemoveKey("N3", k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ConfirmKey("carol", k.Fingerprint); !ok || err != nil {
		t.Fatalf("ConfirmKey with room again = %v, %v", ok, err)
	}
	if names, err := s.NamesOfKey(k.Fingerprint); err != nil || !slices.Equal(names, []string{"carol", "n0", "N1", "N2", "n4"}) {
		t.Fatalf("NamesOfKey = %v, %v", names, err)
	}
}

func testKeysPerName(t *testing.T, s Store) {
	mustClaim(t, s, "dave", testKey(300))
	later := time.Now().Add(time.Hour)
	// 1 active; 4 more confirmed; 15 pending: 20.
	for i := 1; i < maxKeysPerName; i++ {
		if err := s.ProposeKey("dave", testKey(300+i), later); err != nil {
			t.Fatalf("key %d of %d: %v", i+1, maxKeysPerName, err)
		}
		if i < 5 {
			if _, ok, err := s.ConfirmKey("dave", testKey(300+i).Fingerprint); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
	}
	var le *chat.LimitError
	if err := s.ProposeKey("dave", testKey(350), later); !errors.Is(err, chat.ErrKeyLimit) || !errors.As(err, &le) || le.Max != maxKeysPerName {
		t.Fatalf("key %d = %v; want ErrKeyLimit, at most %d", maxKeysPerName+1, err, maxKeysPerName)
	}
	// Renewing a pending key is no new key.
	if err := s.ProposeKey("dave", testKey(319), later.Add(time.Hour)); err != nil {
		t.Fatalf("renewing a pending key at the cap: %v", err)
	}
	// A lapsed proposal does not count.
	if err := s.RemoveKey("dave", testKey(319).Fingerprint); err != nil {
		t.Fatal(err)
	}
	if err := s.ProposeKey("dave", testKey(351), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.ProposeKey("dave", testKey(352), later); err != nil {
		t.Fatalf("a key in place of one whose proposal lapsed: %v", err)
	}
	if err := s.ProposeKey("dave", testKey(353), later); !errors.Is(err, chat.ErrKeyLimit) {
		t.Fatalf("full again: %v, want ErrKeyLimit", err)
	}
	if id := mustIdentity(t, s, "dave"); len(id.Keys)+len(id.Pending) != maxKeysPerName {
		t.Fatalf("dave has %d keys and %d pending, want %d in all", len(id.Keys), len(id.Pending), maxKeysPerName)
	}
}

func testDMCaps(t *testing.T, s Store) {
	type step struct {
		from, addr, to string
		count          int   // how many times
		want           error // for the last
		max            int   // the *LimitError's Max
	}
	steps := []step{
		{"bob", "198.51.100.1", "alice", maxQueuedDMsPerSender, nil, 0},
		{"BOB", "203.0.113.9", "ALICE", 1, chat.ErrSenderQueueFull, maxQueuedDMsPerSender}, // bob has 10 waiting, whatever the address
		{"bob", "198.51.100.1", "carol", 1, nil, 0},                                        // another recipient: another queue
	}
	// 20 from one address, under as many names: the address is full.
	for i := range maxQueuedDMsPerAddr {
		steps = append(steps, step{fmt.Sprintf("a%d", i), "192.0.2.1", "alice", 1, nil, 0})
	}
	steps = append(steps, step{"z", "192.0.2.1", "alice", 1, chat.ErrAddrQueueFull, maxQueuedDMsPerAddr})
	// No address: not counted by address. 10 + 20 + 70 = 100: the queue is full.
	for i := range 7 {
		steps = append(steps, step{fmt.Sprintf("e%d", i), "", "alice", maxQueuedDMsPerSender, nil, 0})
	}
	steps = append(steps,
		step{"v", "198.51.100.2", "alice", 1, chat.ErrQueueFull, maxQueuedDMs},
		step{"bob", "198.51.100.2", "alice", 1, chat.ErrSenderQueueFull, maxQueuedDMsPerSender}, // the sender's cap first
		step{"z", "192.0.2.1", "alice", 1, chat.ErrAddrQueueFull, maxQueuedDMsPerAddr},          // the address's, then the queue's
	)
	for i, st := range steps {
		for j := range st.count {
			_, err := s.QueueDM(chat.DM{From: st.from, FromAddr: st.addr, To: st.to, Text: fmt.Sprintf("%d.%d", i, j)})
			want := error(nil)
			if j == st.count-1 {
				want = st.want
			}
			if !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Fatalf("step %d, message %d: QueueDM(from %s at %q to %s) = %v, want %v", i, j, st.from, st.addr, st.to, err, want)
			}
			var le *chat.LimitError
			if err != nil && (!errors.As(err, &le) || le.Max != st.max) {
				t.Fatalf("step %d: %v is no *LimitError with Max %d", i, err, st.max)
			}
		}
	}
	got, err := s.TakeDMs("alice")
	if err != nil || len(got) != maxQueuedDMs || got[0].From != "bob" || got[0].FromAddr != "198.51.100.1" {
		t.Fatalf("TakeDMs = %d messages (%v), %v; want %d, bob's first", len(got), got[:min(1, len(got))], err, maxQueuedDMs)
	}
	// Taken: the caps start afresh.
	if _, err := s.QueueDM(chat.DM{From: "bob", FromAddr: "192.0.2.1", To: "alice", Text: "again"}); err != nil {
		t.Fatal(err)
	}
}
