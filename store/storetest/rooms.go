package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"chatd/chat"
)

// rooms returns the rooms named, from Rooms, failing the test unless Rooms lists every room in
// name order.
func rooms(t *testing.T, s Store, names ...string) map[string]chat.Room {
	t.Helper()
	all, err := s.Rooms()
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	if !slices.IsSortedFunc(all, func(a, b chat.Room) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatalf("Rooms are not in name order: %v", roomNames(all))
	}
	out := map[string]chat.Room{}
	for _, r := range all {
		if slices.Contains(names, r.Name) {
			out[r.Name] = r
		}
	}
	return out
}

func roomNames(rs []chat.Room) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// sameRoom compares a room from Rooms with what it should be.
func sameRoom(got, want chat.Room) bool {
	return got.Name == want.Name && got.Owner == want.Owner && got.Topic == want.Topic && got.Private == want.Private &&
		sameTime(got.Created, want.Created) && slices.Equal(got.Invited, want.Invited)
}

func testRooms(t *testing.T, s Store) {
	created := time.Date(2026, 5, 6, 7, 8, 9, 123_456_789, time.UTC)
	goRoom := chat.Room{Name: "#Go", Owner: "Alice", Topic: "gophers", Created: created, Invited: []string{"ignored"}}
	mustSaveRoom(t, s, goRoom)
	want := chat.Room{Name: "#go", Owner: "Alice", Topic: "gophers", Created: created}
	if got := rooms(t, s, "#go")["#go"]; !sameRoom(got, want) {
		t.Fatalf("saved room = %+v, want %+v (Invited is not SaveRoom's)", got, want)
	}

	// An update changes the owner, topic and private flag, not the creation time.
	mustSaveRoom(t, s, chat.Room{Name: "go", Owner: "bob", Topic: "Go, privately", Private: true, Created: created.Add(time.Hour)})
	want = chat.Room{Name: "#go", Owner: "bob", Topic: "Go, privately", Private: true, Created: created}
	if got := rooms(t, s, "#go")["#go"]; !sameRoom(got, want) {
		t.Fatalf("updated room = %+v, want %+v", got, want)
	}
	mustSaveRoom(t, s, chat.Room{Name: "#GO", Created: created})
	want = chat.Room{Name: "#go", Created: created}
	if got := rooms(t, s, "#go")["#go"]; !sameRoom(got, want) {
		t.Fatalf("room with its owner, topic and flag cleared = %+v, want %+v", got, want)
	}

	// A zero Created is now; Rooms are in name order.
	before := time.Now()
	for _, name := range []string{"#zz", "#b.c", "#a_b", "#0-9"} {
		mustSaveRoom(t, s, chat.Room{Name: name})
	}
	after := time.Now()
	got := rooms(t, s, "#zz", "#b.c", "#a_b", "#0-9", "#go")
	if len(got) != 5 {
		t.Fatalf("Rooms = %v, want #0-9, #a_b, #b.c, #go, #zz among them", got)
	}
	during(t, "a new room's Created", got["#zz"].Created, before, after)

	for _, name := range []string{"", "#", "##go", "#go go", "#göteborg", "#" + strings.Repeat("x", chat.MaxRoomLen+1)} {
		if err := s.SaveRoom(chat.Room{Name: name}); !errors.Is(err, chat.ErrRoomInvalid) {
			t.Errorf("SaveRoom(%q) = %v, want ErrRoomInvalid", name, err)
		}
	}
	if err := s.SaveRoom(chat.Room{Name: "#owned", Owner: "not a name"}); err == nil {
		t.Error("SaveRoom with an invalid owner succeeded")
	}
	if _, ok := rooms(t, s, "#owned")["#owned"]; ok {
		t.Error("a refused SaveRoom created its room")
	}
}

// testDeleteRoom: everything of the room goes, committed or not, and nothing else.
func testDeleteRoom(t *testing.T, s Store) {
	mustClaim(t, s, "Alice", testKey(1))
	mustClaim(t, s, "bob", testKey(2))
	for _, r := range []string{"#gone", "#kept"} {
		mustSaveRoom(t, s, chat.Room{Name: r, Owner: "Alice", Private: true})
		for _, name := range []string{"Alice", "bob"} {
			if err := s.Invite(r, name); err != nil {
				t.Fatal(err)
			}
			if err := s.AddMembership(name, r); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 30 {
			s.Append(chat.Message{Room: r, Kind: chat.KindMessage, From: "Alice", Text: fmt.Sprintf("%s m%d", r, i)})
		}
	}
	flush(t, s)
	// Some not committed yet: they go too.
	for i := 30; i < 40; i++ {
		s.Append(chat.Message{Room: "#gone", Kind: chat.KindMessage, From: "Alice", Text: fmt.Sprintf("#gone m%d", i)})
	}
	keptBefore := recent(t, s, "#kept", 100)

	if err := s.DeleteRoom("#GONE"); err != nil {
		t.Fatalf("DeleteRoom: %v", err)
	}
	flush(t, s)
	if _, ok := rooms(t, s, "#gone")["#gone"]; ok {
		t.Fatal("Rooms still lists #gone")
	}
	if _, err := s.Recent("#gone", 100); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("Recent of a deleted room = %v, want ErrNotFound", err)
	}
	for _, name := range []string{"alice", "BOB"} {
		if got, err := s.Memberships(name); err != nil || !slices.Equal(got, []string{"#kept"}) {
			t.Fatalf("Memberships(%s) = %v, %v; want [#kept]", name, got, err)
		}
	}
	if err := s.Invite("#gone", "carol"); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("Invite to a deleted room = %v, want ErrNotFound", err)
	}
	if err := s.AddMembership("alice", "#gone"); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("AddMembership to a deleted room = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRoom("#gone"); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("DeleteRoom twice = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRoom("#never"); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("DeleteRoom of a room that never was = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRoom("#no such room!"); !errors.Is(err, chat.ErrRoomInvalid) {
		t.Errorf("DeleteRoom of an invalid name = %v, want ErrRoomInvalid", err)
	}

	// Nothing of #kept changed.
	kept := rooms(t, s, "#kept")["#kept"]
	if kept.Owner != "Alice" || !kept.Private || !slices.Equal(kept.Invited, []string{"Alice", "bob"}) {
		t.Errorf("#kept after deleting #gone = %+v", kept)
	}
	if got := recent(t, s, "#kept", 100); !slices.EqualFunc(got, keptBefore, func(a, b chat.Message) bool {
		return a.ID == b.ID && a.Text == b.Text && a.At.Equal(b.At)
	}) {
		t.Errorf("#kept's history changed: %v, was %v", texts(got), texts(keptBefore))
	}

	// The name is free again, for a room that starts empty.
	mustSaveRoom(t, s, chat.Room{Name: "#gone"})
	if got := rooms(t, s, "#gone")["#gone"]; got.Owner != "" || got.Private || len(got.Invited) != 0 {
		t.Errorf("#gone created again = %+v, want a new room", got)
	}
	if got := recent(t, s, "#gone", 100); len(got) != 0 {
		t.Errorf("#gone created again has the old history: %v", texts(got))
	}
	s.Append(chat.Message{Room: "#gone", Kind: chat.KindMessage, From: "bob", Text: "new"})
	flush(t, s)
	if got := texts(recent(t, s, "#gone", 100)); !slices.Equal(got, []string{"new"}) {
		t.Errorf("#gone created again = %v, want [new]", got)
	}
	if got, _ := s.Memberships("alice"); !slices.Equal(got, []string{"#kept"}) {
		t.Errorf("Memberships(alice) = %v after #gone came back: memberships went with the old room", got)
	}
}

func testMemberships(t *testing.T, s Store) {
	mustClaim(t, s, "Alice", testKey(1))
	mustClaim(t, s, "carol", testKey(2))
	for _, r := range []string{"#a", "#b", "#c"} {
		mustSaveRoom(t, s, chat.Room{Name: r})
	}
	if got, err := s.Memberships("alice"); err != nil || len(got) != 0 {
		t.Fatalf("Memberships of someone in no room = %v, %v", got, err)
	}
	steps := []struct {
		op      string // "add" or "remove"
		name    string
		room    string
		wantErr error
		want    []string // alice's rooms afterwards
	}{
		{"add", "ALICE", "#B", nil, []string{"#b"}},
		{"add", "alice", "#c", nil, []string{"#b", "#c"}},
		{"add", "Alice", "a", nil, []string{"#a", "#b", "#c"}},
		{"add", "alice", "#a", nil, []string{"#a", "#b", "#c"}},                    // again: no change
		{"add", "bob", "#a", chat.ErrNotFound, []string{"#a", "#b", "#c"}},         // not registered
		{"add", "not a name", "#a", chat.ErrNotFound, []string{"#a", "#b", "#c"}},  // never registered
		{"add", "alice", "#nowhere", chat.ErrNotFound, []string{"#a", "#b", "#c"}}, // no such room
		{"add", "alice", "#a b", chat.ErrRoomInvalid, []string{"#a", "#b", "#c"}},  // no room name
		{"add", "carol", "#c", nil, []string{"#a", "#b", "#c"}},                    // carol's are hers
		{"remove", "aLiCe", "#B", nil, []string{"#a", "#c"}},
		{"remove", "alice", "#b", nil, []string{"#a", "#c"}},       // again: no error
		{"remove", "alice", "#nowhere", nil, []string{"#a", "#c"}}, // never was
		{"remove", "alice", "#a b", chat.ErrRoomInvalid, []string{"#a", "#c"}},
		{"remove", "carol", "#a", nil, []string{"#a", "#c"}}, // carol's removal is not alice's
	}
	for i, st := range steps {
		var err error
		if st.op == "add" {
			err = s.AddMembership(st.name, st.room)
		} else {
			err = s.RemoveMembership(st.name, st.room)
		}
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("step %d: %s(%s, %s) = %v, want %v", i, st.op, st.name, st.room, err, st.wantErr)
		}
		if got, err := s.Memberships("Alice"); err != nil || !slices.Equal(got, st.want) {
			t.Fatalf("step %d: Memberships(Alice) = %v, %v; want %v", i, got, err, st.want)
		}
	}
	if got, err := s.Memberships("CAROL"); err != nil || !slices.Equal(got, []string{"#c"}) {
		t.Errorf("Memberships(carol) = %v, %v; want [#c]", got, err)
	}
	for _, name := range []string{"bob", "not a name", ""} {
		if got, err := s.Memberships(name); err != nil || len(got) != 0 {
			t.Errorf("Memberships(%q) = %v, %v; want none", name, got, err)
		}
	}
}

func testInvitations(t *testing.T, s Store) {
	mustSaveRoom(t, s, chat.Room{Name: "#priv", Owner: "Alice", Private: true})
	mustSaveRoom(t, s, chat.Room{Name: "#other"})
	for _, inv := range [][2]string{{"#priv", "Bob"}, {"priv", "carol"}, {"#PRIV", "BOB"}, {"#priv", "Dave.2"}, {"#priv", "dave.2"}} {
		if err := s.Invite(inv[0], inv[1]); err != nil {
			t.Fatalf("Invite(%s, %s): %v", inv[0], inv[1], err)
		}
	}
	want := []string{"Bob", "carol", "Dave.2"} // as first invited, in order; registered or not
	if got := rooms(t, s, "#priv")["#priv"].Invited; !slices.Equal(got, want) {
		t.Fatalf("#priv's invitations = %v, want %v", got, want)
	}
	if got := rooms(t, s, "#other")["#other"].Invited; len(got) != 0 {
		t.Fatalf("#other's invitations = %v, want none", got)
	}
	if err := s.Invite("#nowhere", "bob"); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("Invite to a room that does not exist = %v, want ErrNotFound", err)
	}
	if err := s.Invite("#no where", "bob"); !errors.Is(err, chat.ErrRoomInvalid) {
		t.Errorf("Invite to an invalid room name = %v, want ErrRoomInvalid", err)
	}
	var ne *chat.NameError
	if err := s.Invite("#priv", "no one"); !errors.Is(err, chat.ErrNameInvalid) || !errors.As(err, &ne) {
		t.Errorf("Invite of an invalid name = %v, want a *chat.NameError", err)
	}
	// SaveRoom leaves the invitations alone.
	mustSaveRoom(t, s, chat.Room{Name: "#priv", Owner: "Alice", Topic: "secret", Private: true, Invited: []string{"mallory"}})
	if got := rooms(t, s, "#priv")["#priv"]; !slices.Equal(got.Invited, want) || got.Topic != "secret" {
		t.Fatalf("#priv after SaveRoom = %+v, want the invitations %v", got, want)
	}
}
