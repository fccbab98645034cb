package sqlite

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"chatd/chat"
)

// TestHistoryOfDeletedRoom: what is left of a deleted room's history, its deletion interrupted,
// is invisible to History at once, even in a room of the same name made since.
func TestHistoryOfDeletedRoom(t *testing.T) {
	passes := make(chan pruneResult, 10)
	path := t.TempDir() + "/chat.db"
	s, _ := openAt(t, path, Config{}, options{prune: pruneOptions{interval: 1 << 62, done: func(n int, err error) { passes <- pruneResult{n, err} }}})
	<-passes
	if err := s.SaveRoom(chat.Room{Name: "#x"}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.Local)
	for i := range 20 {
		s.Append(chat.Message{Room: "#x", At: base.Add(time.Duration(i) * time.Second), Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("old%d", i)})
	}
	flush(t, s)
	// What DeleteRoom's first transaction leaves, had the process stopped right after it.
	execRaw(t, path, `DELETE FROM rooms WHERE name = '#x'`,
		`INSERT INTO room_deletions(room, up_to) SELECT '#x', max(id) FROM messages WHERE room = '#x'`)
	if err := s.SaveRoom(chat.Room{Name: "#x"}); err != nil {
		t.Fatal(err)
	}
	s.Append(chat.Message{Room: "#x", At: base.Add(10*time.Second + time.Millisecond), Kind: chat.KindMessage, From: "a", Text: "new"})
	flush(t, s)
	for _, r := range []chat.HistoryRange{{Limit: 100}, {Before: base.Add(time.Minute), Limit: 100}, {After: base.Add(-time.Minute), Limit: 100}} {
		got, err := s.History("#x", r)
		if err != nil || !slices.Equal(texts(got), []string{"new"}) {
			t.Errorf("History(#x, %+v) = %v, %v; want only the new room's message", r, texts(got), err)
		}
	}
}

// BenchmarkHistory reads 100 messages of a room of 100,000 (a second apart): the newest, the
// oldest after a point near the end (a web client catching up after a reconnection), and the
// newest before a point in the middle (scrolling back). Each is a walk of messages_room_at from
// its bound, whatever the room's size.
func BenchmarkHistory(b *testing.B) {
	s, _ := openTest(b, Config{})
	const n = 100_000
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.Local)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	for i := range n {
		s.Append(chat.Message{Room: lobby, At: at(i), Kind: chat.KindMessage, From: "alice", Text: fmt.Sprintf("message %d of a typical length, give or take a few words", i)})
	}
	flush(b, s)
	for _, bb := range []struct {
		name string
		r    chat.HistoryRange
	}{
		{"newest", chat.HistoryRange{Limit: 100}},
		{"catch up", chat.HistoryRange{After: at(n - 150), Limit: 100}},
		{"scroll back", chat.HistoryRange{Before: at(n / 2), Limit: 100}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if msgs, err := s.History(lobby, bb.r); err != nil || len(msgs) != 100 {
					b.Fatalf("History = %d, %v", len(msgs), err)
				}
			}
		})
	}
}
