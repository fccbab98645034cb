package sqlite

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"chatd/chat"
)

// hashOf is the hash of test secret n, as chat.WebToken keeps it.
func hashOf(n int) string {
	sum := sha256.Sum256(fmt.Append(nil, "secret ", n))
	return hex.EncodeToString(sum[:])
}

// TestExpiredWebTokensAreDeleted: the background pass deletes the tokens past their expiry, and
// keeps the others, those that never expire included.
func TestExpiredWebTokensAreDeleted(t *testing.T) {
	clk := newClock()
	passes := make(chan error, 10)
	s, _ := openAt(t, t.TempDir()+"/chat.db", Config{Now: clk.Now}, options{prune: pruneOptions{
		interval: time.Hour,
		done:     func(_ int, err error) { passes <- err },
	}})
	<-passes // the pass at start
	if _, _, err := s.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	for i, ttl := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour, 0} {
		tok := chat.WebToken{Kind: chat.WebSession, Hash: hashOf(i), Name: "alice"}
		if ttl != 0 {
			tok.Expires = clk.Now().Add(ttl)
		}
		if _, err := s.AddWebToken(tok); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Minute)
	s.p.request()
	if err := <-passes; err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "web_tokens", "1"); n != 2 {
		t.Fatalf("%d tokens after the pass, want 2", n)
	}
	for i, want := range []bool{false, false, true, true} {
		if _, err := s.WebToken(chat.WebSession, hashOf(i)); (err == nil) != want {
			t.Errorf("token %d: %v, want found %v", i, err, want)
		}
	}
}

// TestTakeWebTokenTwoStores takes one sign-in link from many goroutines through two stores on
// the same file (as two chatd processes would): exactly one gets it. (The suite races takers
// within one store.)
func TestTakeWebTokenTwoStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	a, _ := openAt(t, path, Config{}, options{})
	b, _ := openAt(t, path, Config{}, options{})
	if _, _, err := a.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		if _, err := a.AddWebToken(chat.WebToken{Kind: chat.WebLink, Hash: hashOf(round), Name: "alice", Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		const n = 16
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				<-start
				_, errs[i] = s.TakeWebToken(chat.WebLink, hashOf(round))
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
			case !errors.Is(err, chat.ErrNotFound):
				t.Fatalf("round %d: taker %d: %v", round, i, err)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d takers got the link, want exactly 1", round, winners)
		}
	}
}

// TestWebTokenCapConfig: MaxWebTokensPerName sets the cap.
func TestWebTokenCapConfig(t *testing.T) {
	s, _ := openTest(t, Config{StoreLimits: chat.StoreLimits{MaxWebTokensPerName: 2}})
	if _, _, err := s.Claim("alice", testKey(1)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := s.AddWebToken(chat.WebToken{Kind: chat.WebBot, Hash: hashOf(i), Name: "alice"})
		var le *chat.LimitError
		switch {
		case i < 2 && err != nil:
			t.Fatalf("token %d: %v", i, err)
		case i == 2 && (!errors.As(err, &le) || le.Err != chat.ErrWebTokenLimit || le.Max != 2):
			t.Fatalf("token 3 = %v, want a *LimitError for ErrWebTokenLimit, at most 2", err)
		}
	}
}

// BenchmarkWebToken is what a signed-in browser's request costs the store: one look-up of its
// session by hash, among 10,000 names' sessions.
func BenchmarkWebToken(b *testing.B) {
	s, _ := openTest(b, Config{})
	const n = 10_000
	for i := range n {
		name := fmt.Sprintf("user%d", i)
		if _, _, err := s.Claim(name, testKey(i)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.AddWebToken(chat.WebToken{Kind: chat.WebSession, Hash: hashOf(i), Name: name, Expires: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.WebToken(chat.WebSession, hashOf(i%n)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
