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

// sameDM compares a private message as the store returned it with what it should be.
func sameDM(got, want chat.DM) bool {
	return got.ID == want.ID && got.At.Equal(want.At) && got.From == want.From && got.FromAddr == want.FromAddr &&
		got.To == want.To && got.Text == want.Text
}

func testDMs(t *testing.T, s Store) {
	var queued []chat.DM
	for i, to := range []string{"Bob", "bob", "BOB"} {
		nextMilli()
		before := time.Now()
		dm, err := s.QueueDM(chat.DM{From: "Alice", FromAddr: "192.0.2.7", To: to, Text: fmt.Sprint("dm", i)})
		after := time.Now()
		if err != nil {
			t.Fatalf("QueueDM %d: %v", i, err)
		}
		if dm.ID == 0 || dm.To != to || dm.From != "Alice" || dm.FromAddr != "192.0.2.7" || dm.Text != fmt.Sprint("dm", i) {
			t.Fatalf("QueueDM returned %+v", dm)
		}
		during(t, "a zero At", dm.At, before, after)
		queued = append(queued, dm)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6_789_000, time.UTC)
	carol, err := s.QueueDM(chat.DM{At: at, From: "alice", To: "carol", Text: "for carol"})
	if err != nil || !sameTime(carol.At, at) {
		t.Fatalf("QueueDM(carol) = %+v, %v; want its time kept", carol, err)
	}
	for _, to := range []string{"no one", "", "error"} {
		if _, err := s.QueueDM(chat.DM{From: "alice", To: to, Text: "x"}); err == nil {
			t.Errorf("QueueDM to %q succeeded", to)
		}
	}

	if got, err := s.TakeDMs("nobody"); err != nil || len(got) != 0 {
		t.Fatalf("TakeDMs(nobody) = %v, %v", got, err)
	}
	got, err := s.TakeDMs("BoB")
	if err != nil || !slices.EqualFunc(got, queued, sameDM) {
		t.Fatalf("TakeDMs(bob) = %+v, %v\nwant %+v", got, err, queued)
	}
	if got, err := s.TakeDMs("bob"); err != nil || len(got) != 0 {
		t.Fatalf("second TakeDMs(bob) = %v, %v; want none: each is taken once", got, err)
	}
	if got, err := s.TakeDMs("carol"); err != nil || !slices.EqualFunc(got, []chat.DM{carol}, sameDM) {
		t.Fatalf("TakeDMs(carol) = %v, %v; want [%+v]", got, err, carol)
	}

	// Concurrent takers: each message is taken exactly once, whoever takes it.
	var mu sync.Mutex
	seen := map[int64]int{}
	take := func() bool {
		dms, err := s.TakeDMs("dave")
		if err != nil {
			t.Error(err)
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		for _, dm := range dms {
			seen[dm.ID]++
		}
		return true
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range maxQueuedDMs {
			if _, err := s.QueueDM(chat.DM{From: fmt.Sprint("s", i%10), To: "dave", Text: fmt.Sprint(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 3 {
		wg.Go(func() {
			for range 50 {
				if !take() {
					return
				}
			}
		})
	}
	wg.Wait()
	take()
	if len(seen) != maxQueuedDMs {
		t.Fatalf("%d distinct messages taken, want %d", len(seen), maxQueuedDMs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %d taken %d times", id, n)
		}
	}
}

func sameBan(got, want chat.Ban) bool {
	return got.ID == want.ID && got.Kind == want.Kind && got.Value == want.Value && got.Reason == want.Reason && got.By == want.By &&
		sameTime(got.Created, want.Created) && sameTime(got.Expires, want.Expires)
}

func testBans(t *testing.T, s Store) {
	if bans, err := s.Bans(); err != nil || len(bans) != 0 {
		t.Fatalf("Bans of a new store = %v, %v", bans, err)
	}
	before := time.Now()
	forever, err := s.AddBan(chat.Ban{Kind: chat.BanKey, Value: "SHA256:abc", Reason: "spam", By: "op"})
	after := time.Now()
	if err != nil || forever.ID == 0 || !forever.Expires.IsZero() {
		t.Fatalf("AddBan = %+v, %v", forever, err)
	}
	during(t, "a zero Created", forever.Created, before, after)
	created := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	timed, err := s.AddBan(chat.Ban{Kind: chat.BanIP, Value: "192.0.2.0/24", By: "op", Created: created, Expires: time.Now().Add(time.Hour)})
	if err != nil || !sameTime(timed.Created, created) {
		t.Fatalf("AddBan(timed) = %+v, %v", timed, err)
	}
	expired, err := s.AddBan(chat.Ban{Kind: chat.BanName, Value: "mallory", By: "op", Expires: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []chat.Ban{{Kind: "bogus", Value: "x"}, {Kind: chat.BanName}} {
		if _, err := s.AddBan(b); err == nil {
			t.Errorf("AddBan(%+v) succeeded", b)
		}
	}
	bans, err := s.Bans()
	if err != nil || !slices.EqualFunc(bans, []chat.Ban{forever, timed}, sameBan) {
		t.Fatalf("Bans = %+v, %v\nwant %+v (not the expired one)", bans, err, []chat.Ban{forever, timed})
	}
	if _, err := s.RemoveBan(expired.ID); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("RemoveBan(expired) = %v, want ErrNotFound", err)
	}
	if _, err := s.RemoveBan(forever.ID + timed.ID + expired.ID + 1000); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("RemoveBan(no such ban) = %v, want ErrNotFound", err)
	}
	got, err := s.RemoveBan(forever.ID)
	if err != nil || !sameBan(got, forever) {
		t.Fatalf("RemoveBan = %+v, %v; want %+v", got, err, forever)
	}
	if _, err := s.RemoveBan(forever.ID); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("RemoveBan twice = %v, want ErrNotFound", err)
	}
	if bans, err := s.Bans(); err != nil || !slices.EqualFunc(bans, []chat.Ban{timed}, sameBan) {
		t.Errorf("Bans left = %+v, %v; want only the timed one", bans, err)
	}
}

func testSettings(t *testing.T, s Store) {
	if v, ok, err := s.Setting("motd"); v != "" || ok || err != nil {
		t.Fatalf("an unset setting = %q, %v, %v", v, ok, err)
	}
	steps := []struct{ key, value string }{{"motd", "first"}, {"motd", "second"}, {"other", ""}}
	for _, st := range steps {
		if err := s.SetSetting(st.key, st.value); err != nil {
			t.Fatalf("SetSetting(%q, %q): %v", st.key, st.value, err)
		}
	}
	for key, want := range map[string]string{"motd": "second", "other": ""} {
		if v, ok, err := s.Setting(key); v != want || !ok || err != nil {
			t.Errorf("Setting(%q) = %q, %v, %v; want %q, true", key, v, ok, err, want)
		}
	}
}
