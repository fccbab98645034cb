package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"chatd/chat"
)

// count returns the rows of a table matching where (SQL), read directly.
func count(t *testing.T, s *SQLite, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM `+table+` WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteRoomInChunks: a room's history is deleted a chunk at a time, and between two chunks
// the writer commits: a Flush made while the deletion is under way returns before it ends.
func TestDeleteRoomInChunks(t *testing.T) {
	between := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	passes := make(chan pruneResult, 10)
	s, _ := openAt(t, t.TempDir()+"/chat.db", Config{}, options{prune: pruneOptions{
		chunk:    10,
		interval: 1 << 62, // only the pass at start, which has nothing to do: DeleteRoom deletes alone
		done:     func(n int, err error) { passes <- pruneResult{n, err} },
		betweenChunks: func() {
			once.Do(func() {
				close(between)
				<-proceed
			})
		},
	}})
	<-passes
	for _, r := range []string{"#big", "#other"} {
		if err := s.SaveRoom(chat.Room{Name: r}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 95 {
		s.Append(chat.Message{Room: "#big", Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("m%d", i)})
	}
	s.Append(chat.Message{Room: "#other", Kind: chat.KindMessage, From: "a", Text: "before"})
	flush(t, s)

	done := make(chan error, 1)
	go func() { done <- s.DeleteRoom("#big") }()
	<-between // one chunk deleted, the room gone already
	if _, err := s.Recent("#big", 10); err == nil {
		t.Error("Recent of a room being deleted succeeded")
	}
	s.Append(chat.Message{Room: "#other", Kind: chat.KindMessage, From: "a", Text: "during"})
	flush(t, s) // a hang here is the failure: the deletion holds the writer
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "messages", "room = '#big'"); n != 0 {
		t.Errorf("%d messages of #big left", n)
	}
	if n := count(t, s, "room_deletions", "1"); n != 0 {
		t.Errorf("%d pending deletions left", n)
	}
	if got := texts(recentIn(t, s, "#other", 10)); !slices.Equal(got, []string{"before", "during"}) {
		t.Errorf("#other = %v", got)
	}
}

// TestRoomDeletionResumes: the history of a room deleted by a process that stopped before it
// was done is invisible at once, even to a room of the same name made since, and the pruner
// deletes it.
func TestRoomDeletionResumes(t *testing.T) {
	passes := make(chan pruneResult, 10)
	path := t.TempDir() + "/chat.db"
	s, _ := openAt(t, path, Config{}, options{prune: pruneOptions{chunk: 7, interval: 1 << 62, done: func(n int, err error) { passes <- pruneResult{n, err} }}})
	<-passes
	if err := s.SaveRoom(chat.Room{Name: "#x"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		s.Append(chat.Message{Room: "#x", Kind: chat.KindMessage, From: "a", Text: fmt.Sprintf("old%d", i)})
	}
	flush(t, s)
	// What DeleteRoom's first transaction leaves, had the process stopped right after it.
	execRaw(t, path, `DELETE FROM rooms WHERE name = '#x'`,
		`INSERT INTO room_deletions(room, up_to) SELECT '#x', max(id) FROM messages WHERE room = '#x'`)
	if err := s.SaveRoom(chat.Room{Name: "#X"}); err != nil {
		t.Fatal(err)
	}
	s.Append(chat.Message{Room: "#x", Kind: chat.KindMessage, From: "a", Text: "new"})
	flush(t, s)
	if got := texts(recentIn(t, s, "#x", 100)); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("#x = %v, want only the new room's message", got)
	}
	s.p.request()
	if r := <-passes; r.err != nil || r.deleted != 50 {
		t.Fatalf("the pass deleted %d, %v; want the 50 old messages", r.deleted, r.err)
	}
	if n := count(t, s, "messages", "room = '#x'"); n != 1 {
		t.Errorf("%d messages of #x left, want 1", n)
	}
	if n := count(t, s, "room_deletions", "1"); n != 0 {
		t.Errorf("%d pending deletions left", n)
	}
}

// TestDroppedMessagesLogged: a message without a valid room, and one to a room that does not
// exist, are dropped and logged once each, and Flush reports no failure for them.
func TestDroppedMessagesLogged(t *testing.T) {
	s, logs := openAt(t, t.TempDir()+"/chat.db", Config{}, options{})
	for range 3 {
		s.Append(chat.Message{Room: "no room", Kind: chat.KindMessage, From: "a", Text: "x"})
		s.Append(chat.Message{Kind: chat.KindMessage, From: "a", Text: "x"})
		s.Append(chat.Message{Room: "#ghost", Kind: chat.KindMessage, From: "a", Text: "x"})
		if err := s.Flush(context.Background()); err != nil {
			t.Fatalf("Flush = %v, want nil: the store did not fail", err)
		}
	}
	for _, want := range []string{"without a valid room", "room that does not exist"} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, logs)
		}
	}
	if n := count(t, s, "messages", "1"); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}
