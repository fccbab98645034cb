package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"chatd/chat"
)

func mustSaveRoom(t *testing.T, s Store, r chat.Room) {
	t.Helper()
	if err := s.SaveRoom(r); err != nil {
		t.Fatalf("SaveRoom(%s): %v", r.Name, err)
	}
}

func recent(t *testing.T, s Store, room string, n int) []chat.Message {
	t.Helper()
	msgs, err := s.Recent(room, n)
	if err != nil {
		t.Fatalf("Recent(%s, %d): %v", room, n, err)
	}
	return msgs
}

func texts(msgs []chat.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

// seqTexts is prefix+"0", ... for from <= i < to.
func seqTexts(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprint(prefix, i))
	}
	return out
}

// increasingIDs fails unless msgs have store-assigned ids increasing in their order.
func increasingIDs(t *testing.T, what string, msgs []chat.Message) {
	t.Helper()
	for i, m := range msgs {
		if m.ID <= 0 || i > 0 && m.ID <= msgs[i-1].ID {
			t.Fatalf("%s: message %d has id %d after %d; want ids assigned, increasing", what, i, m.ID, msgs[max(i-1, 0)].ID)
		}
	}
}

func testHistory(t *testing.T, s Store) {
	mustSaveRoom(t, s, chat.Room{Name: "#a"})
	mustSaveRoom(t, s, chat.Room{Name: "#b"})
	if got := recent(t, s, "#a", 10); len(got) != 0 {
		t.Fatalf("Recent of a new room = %v", got)
	}
	if _, err := s.Recent("#nowhere", 10); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("Recent of a room that does not exist = %v, want ErrNotFound", err)
	}
	if _, err := s.Recent("#not a room", 10); !errors.Is(err, chat.ErrRoomInvalid) {
		t.Fatalf("Recent of an invalid room name = %v, want ErrRoomInvalid", err)
	}

	// Two rooms' messages interleaved, the room named as people type it; each room keeps its
	// own, in append order.
	base := time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC)
	var sent []chat.Message
	forms := []string{"#a", "#A", "a", "A"}
	for i, a, b := 0, 0, 0; i < 100; i++ {
		m := chat.Message{ID: 42, At: base.Add(time.Duration(i)*1001*time.Millisecond + 999_999), Kind: chat.KindMessage, From: "Alice"}
		if i%3 == 0 {
			m.Kind, m.From = chat.KindAction, "BOB"
		}
		if i%5 < 3 {
			m.Room, m.Text = forms[a%len(forms)], fmt.Sprint("a", a)
			a++
			sent = append(sent, m)
		} else {
			m.Room, m.Text = "#b", fmt.Sprint("b", b)
			b++
		}
		s.Append(m)
	}
	flush(t, s)
	got := recent(t, s, "#a", 1000)
	if len(got) != len(sent) {
		t.Fatalf("#a has %d messages, want %d: %v", len(got), len(sent), texts(got))
	}
	for i, m := range got {
		w := sent[i]
		if m.Room != "#a" || m.Text != w.Text || m.Kind != w.Kind || m.From != w.From || !sameTime(m.At, w.At) {
			t.Fatalf("message %d = %+v (%v), want %+v, in #a, at %v (to the ms, in time.Local)", i, m, m.At.Location(), w, w.At.Truncate(time.Millisecond))
		}
	}
	increasingIDs(t, "#a", got)
	increasingIDs(t, "#b", recent(t, s, "#B", 1000))

	tests := []struct {
		room string
		n    int
		want []string
	}{
		{"#a", -1, nil},
		{"#a", 0, nil},
		{"#a", 1, seqTexts("a", 59, 60)},
		{"#A", 10, seqTexts("a", 50, 60)},
		{"a", 60, seqTexts("a", 0, 60)},
		{"#a", 1000, seqTexts("a", 0, 60)},
		{"#b", 5, seqTexts("b", 35, 40)},
		{"#b", 40, seqTexts("b", 0, 40)},
	}
	for _, tt := range tests {
		if got := texts(recent(t, s, tt.room, tt.n)); !slices.Equal(got, tt.want) {
			t.Errorf("Recent(%s, %d) = %v, want %v", tt.room, tt.n, got, tt.want)
		}
	}

	// A zero time is the time of the Append.
	before := time.Now()
	s.Append(chat.Message{Room: "#b", Kind: chat.KindMessage, From: "carol", Text: "now"})
	after := time.Now()
	flush(t, s)
	last := recent(t, s, "#b", 1)
	if len(last) != 1 || last[0].Text != "now" {
		t.Fatalf("Recent(#b, 1) = %+v", last)
	}
	during(t, "a zero At", last[0].At, before, after)

	// Dropped: a message without a valid room, and one to a room that does not exist (even once
	// it does).
	for _, room := range []string{"", "#", "#not a room", "lobby!"} {
		s.Append(chat.Message{Room: room, Kind: chat.KindMessage, From: "x", Text: "lost"})
	}
	s.Append(chat.Message{Room: "#later", Kind: chat.KindMessage, From: "x", Text: "too early"})
	flush(t, s)
	mustSaveRoom(t, s, chat.Room{Name: "#later"})
	s.Append(chat.Message{Room: "#later", Kind: chat.KindMessage, From: "x", Text: "in time"})
	flush(t, s)
	if got := texts(recent(t, s, "#later", 10)); !slices.Equal(got, []string{"in time"}) {
		t.Errorf("#later = %v, want only the message appended once it existed", got)
	}
	for _, room := range []string{"#a", "#b"} {
		if got := texts(recent(t, s, room, 1000)); slices.Contains(got, "lost") || slices.Contains(got, "too early") {
			t.Errorf("%s received a message of no room: %v", room, got)
		}
	}

	testFlush(t, s)
}

// testFlush: concurrent appenders and flushers, each Flush covering what its goroutine appended
// before it, in order.
func testFlush(t *testing.T, s Store) {
	var wg sync.WaitGroup
	for g := range 4 {
		room := fmt.Sprintf("#g%d", g)
		mustSaveRoom(t, s, chat.Room{Name: room})
		wg.Go(func() {
			for i := range 30 {
				s.Append(chat.Message{Room: room, Kind: chat.KindMessage, From: "a", Text: fmt.Sprint("m", i)})
				if i%10 == 9 {
					if err := s.Flush(context.Background()); err != nil {
						t.Errorf("Flush: %v", err)
						return
					}
					msgs, err := s.Recent(room, 100)
					if err != nil || !slices.Equal(texts(msgs), seqTexts("m", 0, i+1)) {
						t.Errorf("%s after Flush = %v, %v; want m0..m%d", room, texts(msgs), err, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Append(chat.Message{Room: "#g0", Kind: chat.KindMessage, From: "a", Text: "late"})
	if err := s.Flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush(cancelled) = %v, want nil or context.Canceled", err)
	}
	flush(t, s)
}
