package natsjs

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"chatd/chat"
	"chatd/store/natsjs/natstest"

	"github.com/nats-io/nuid"
)

// twoNodes opens two stores on one prefix, as two chatd nodes share a cluster's state.
func twoNodes(t *testing.T, url string) (*Store, *Store) {
	t.Helper()
	prefix := "t" + nuid.Next()
	a, _ := openStore(t, url, Config{Prefix: prefix})
	b, _ := openStore(t, url, Config{Prefix: prefix})
	return a, b
}

func testKey(n int) chat.Key {
	return chat.Key{Fingerprint: fmt.Sprintf("SHA256:natsjs%03d", n), Type: "ssh-ed25519", AuthorizedKey: fmt.Sprintf("ssh-ed25519 AAAAnatsjs%03d", n)}
}

// TestTwoNodes: what one node writes, the other reads, and the single-winner rules and caps hold
// between them as between goroutines.
func TestTwoNodes(t *testing.T) {
	srv := natstest.Start(t)

	t.Run("rooms", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		if err := a.SaveRoom(chat.Room{Name: "#x", Owner: "alice", Topic: "made on a"}); err != nil {
			t.Fatal(err)
		}
		// b reads it at once, though its watcher may not have delivered it yet.
		if got, err := b.Recent("#x", 10); err != nil || len(got) != 0 {
			t.Fatalf("b: Recent(#x) = %v, %v", got, err)
		}
		rooms, err := b.Rooms()
		if err != nil || !slices.ContainsFunc(rooms, func(r chat.Room) bool { return r.Name == "#x" && r.Topic == "made on a" }) {
			t.Fatalf("b: Rooms = %+v, %v; want #x", rooms, err)
		}
		if err := b.Invite("#x", "Carol"); err != nil {
			t.Fatal(err)
		}
		a.Append(chat.Message{Room: "#x", Kind: chat.KindMessage, From: "alice", Text: "from a"})
		flushOK(t, a)
		if got, err := b.Recent("#x", 10); err != nil || len(got) != 1 || got[0].Text != "from a" {
			t.Fatalf("b: Recent(#x) = %v, %v; want a's line", got, err)
		}
		rooms, _ = a.Rooms()
		if i := slices.IndexFunc(rooms, func(r chat.Room) bool { return r.Name == "#x" }); i < 0 || !slices.Equal(rooms[i].Invited, []string{"Carol"}) {
			t.Fatalf("a: Rooms = %+v; want #x with b's invitation", rooms)
		}
		if err := b.DeleteRoom("#x"); err != nil {
			t.Fatal(err)
		}
		if rooms, _ := a.Rooms(); slices.ContainsFunc(rooms, func(r chat.Room) bool { return r.Name == "#x" }) {
			t.Fatalf("a: Rooms = %+v after b deleted #x", rooms)
		}
		// Made again on a: a new room, without the old line.
		if err := a.SaveRoom(chat.Room{Name: "#x"}); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Recent("#x", 10); err != nil || len(got) != 0 {
			t.Fatalf("b: Recent(#x) of the room made again = %v, %v", got, err)
		}
	})

	t.Run("claim race", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		for round := range 3 {
			name := fmt.Sprintf("racer%d", round)
			var wg sync.WaitGroup
			var mu sync.Mutex
			winners := 0
			start := make(chan struct{})
			for i := range 16 {
				s := []*Store{a, b}[i%2]
				wg.Go(func() {
					<-start
					_, claimed, err := s.Claim(name, testKey(100*round+i))
					if err != nil {
						t.Error(err)
					}
					if claimed {
						mu.Lock()
						winners++
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if winners != 1 {
				t.Fatalf("round %d: %d claims won, want 1", round, winners)
			}
		}
	})

	t.Run("names per key", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		// One key claims ten names at once on both nodes: five win.
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, limited := 0, 0
		for i := range 10 {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				_, claimed, err := s.Claim(fmt.Sprintf("n%d", i), testKey(1))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case claimed:
					won++
				case errors.Is(err, chat.ErrNameLimit):
					limited++
				default:
					t.Errorf("claim n%d: %v, %v", i, claimed, err)
				}
			})
		}
		wg.Wait()
		names, err := b.NamesOfKey(testKey(1).Fingerprint)
		if won != 5 || limited != 5 || err != nil || len(names) != 5 {
			t.Fatalf("%d claims won, %d refused; NamesOfKey = %v, %v; want 5 and 5", won, limited, names, err)
		}
	})

	t.Run("DMs", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		var wg sync.WaitGroup
		for i := range 20 {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				if _, err := s.QueueDM(chat.DM{From: fmt.Sprint("s", i), To: "dave", Text: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		got, err := b.TakeDMs("Dave")
		if err != nil || len(got) != 20 {
			t.Fatalf("b: TakeDMs = %d messages, %v; want the 20 queued on both", len(got), err)
		}
		ids := map[int64]bool{}
		for _, dm := range got {
			ids[dm.ID] = true
		}
		if len(ids) != 20 {
			t.Fatalf("IDs %v are not distinct", ids)
		}
	})

	t.Run("web token take race", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		if _, claimed, err := a.Claim("alice", testKey(1)); !claimed || err != nil {
			t.Fatal(claimed, err)
		}
		hash := fmt.Sprintf("%064x", 42)
		if _, err := a.AddWebToken(chat.WebToken{Kind: chat.WebLink, Hash: hash, Name: "alice", Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 16 {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				_, err := s.TakeWebToken(chat.WebLink, hash)
				if err == nil {
					mu.Lock()
					winners++
					mu.Unlock()
				} else if !errors.Is(err, chat.ErrNotFound) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d takers got the link, want 1", winners)
		}
	})

	t.Run("bans and settings", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		ban, err := a.AddBan(chat.Ban{Kind: chat.BanName, Value: "mallory", By: "op"})
		if err != nil {
			t.Fatal(err)
		}
		if bans, err := b.Bans(); err != nil || len(bans) != 1 || bans[0].ID != ban.ID {
			t.Fatalf("b: Bans = %+v, %v; want a's", bans, err)
		}
		if _, err := b.RemoveBan(ban.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.RemoveBan(ban.ID); !errors.Is(err, chat.ErrNotFound) {
			t.Fatalf("a: RemoveBan after b's = %v, want ErrNotFound", err)
		}
		if err := a.SetSetting("motd", "hello"); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := b.Setting("motd"); v != "hello" || !ok || err != nil {
			t.Fatalf("b: Setting(motd) = %q, %v, %v", v, ok, err)
		}
	})

	t.Run("memberships", func(t *testing.T) {
		a, b := twoNodes(t, srv.URL())
		if _, _, err := a.Claim("alice", testKey(1)); err != nil {
			t.Fatal(err)
		}
		if err := a.SaveRoom(chat.Room{Name: "#m"}); err != nil {
			t.Fatal(err)
		}
		if err := b.AddMembership("alice", "#m"); err != nil {
			t.Fatalf("b: AddMembership to a room a made: %v", err)
		}
		if got, err := a.Memberships("ALICE"); err != nil || !slices.Equal(got, []string{"#m"}) {
			t.Fatalf("a: Memberships = %v, %v", got, err)
		}
	})
}

func flushOK(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}
