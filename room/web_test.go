package room

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"chatd/chat"
)

// events decodes a JSON member's output, line by line.
func events(t *testing.T, ls []string) []Event {
	t.Helper()
	var evs []Event
	for _, l := range ls {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q is not an event: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// waitEvent waits for an event of a JSON member that match says is the one.
func waitEvent(t *testing.T, out *recorder, what string, match func(Event) bool) Event {
	t.Helper()
	var found Event
	out.waitFor(t, what, func(ls []string) bool {
		for _, e := range events(t, ls) {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func TestJSONMembersGetStructuredEvents(t *testing.T) {
	r := newTestRoom(t, Config{})
	web, webOut := join(t, r, "webby", JoinOptions{Format: JSON, Transport: "web", Echo: true, Operator: true})
	alice, _ := join(t, r, "alice", JoinOptions{})

	joined := waitEvent(t, webOut, "alice's join notice", func(e Event) bool { return e.Type == "notice" && len(e.Joined) > 0 && e.Joined[0] == "alice" })
	if joined.Room != "#lobby" || joined.Joined[0] != "alice" || !strings.Contains(joined.Text, "alice joined #lobby") {
		t.Errorf("join notice: %+v", joined)
	}
	alice.Handle("hello <script>alert(1)</script> @webby")
	msg := waitEvent(t, webOut, "alice's message", func(e Event) bool { return e.Type == "message" })
	want := Event{Type: "message", Room: "#lobby", From: "alice", Text: "hello <script>alert(1)</script> @webby",
		Colour: int(nameColour("alice")), Time: msg.Time}
	if msg.Time.IsZero() || msg.Time.Nanosecond()%int(time.Millisecond) != 0 {
		t.Errorf("time %v: want a time to the millisecond", msg.Time)
	}
	if msg.Type != want.Type || msg.Room != want.Room || msg.From != want.From || msg.Text != want.Text || msg.Colour != want.Colour {
		t.Errorf("message: got %+v, want %+v", msg, want)
	}
	alice.Handle("/me waves")
	waitEvent(t, webOut, "the action", func(e Event) bool { return e.Type == "action" && e.From == "alice" && e.Text == "waves" })
	alice.Handle("/msg webby psst")
	dm := waitEvent(t, webOut, "the DM", func(e Event) bool { return e.Type == "dm" })
	if dm.From != "alice" || dm.To != "webby" || dm.Text != "psst" || dm.Room != "" {
		t.Errorf("dm in: %+v", dm)
	}
	web.Handle("/msg alice hi back")
	waitEvent(t, webOut, "the DM's copy", func(e Event) bool { return e.Type == "dm" && e.From == "webby" && e.To == "alice" })
	web.Handle("/nosuchcommand")
	waitEvent(t, webOut, "the error", func(e Event) bool { return e.Type == "error" && strings.Contains(e.Text, "nosuchcommand") })
	web.Handle("/join #mine")
	web.Handle("/topic fresh topic")
	topic := waitEvent(t, webOut, "the topic notice", func(e Event) bool { return e.Type == "notice" && e.Topic != nil })
	if *topic.Topic != "fresh topic" || topic.Room != "#mine" {
		t.Errorf("topic notice: %+v", topic)
	}
	web.Handle("/join #lobby")
	alice.Handle("/quit")
	alice.Leave(ReasonQuit)
	left := waitEvent(t, webOut, "alice's leave notice", func(e Event) bool { return len(e.Left) > 0 })
	if left.Left[0] != "alice" {
		t.Errorf("leave notice: %+v", left)
	}

	// A newcomer's replay is flagged as history, and carries its room.
	_, lateOut := join(t, r, "late", JoinOptions{Format: JSON})
	old := waitEvent(t, lateOut, "the replay", func(e Event) bool { return e.History && e.Type == "message" })
	if old.Room != "#lobby" || old.From != "alice" {
		t.Errorf("replayed line: %+v", old)
	}
}

func TestStateAndHistory(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)
	clock := now
	r := newTestRoom(t, Config{Now: func() time.Time { return clock }})
	web, _ := join(t, r, "webby", JoinOptions{Format: JSON})
	bob, _ := join(t, r, "bob", JoinOptions{})
	bob.Handle("/join #go")
	web.Handle("/join #go")
	for i := range 5 {
		clock = now.Add(time.Duration(i) * time.Second)
		bob.Handle("line " + string(rune('a'+i)))
	}
	s := web.State()
	if s.Type != "state" || s.Name != "webby" || s.Registered || s.Current != "#go" || len(s.Rooms) != 2 {
		t.Fatalf("state: %+v", s)
	}
	for _, rs := range s.Rooms {
		if strings.Join(rs.Members, ",") != "bob,webby" {
			t.Errorf("%s members: %v", rs.Name, rs.Members)
		}
	}
	texts := func(evs []Event) string {
		var s []string
		for _, e := range evs {
			if !e.History {
				t.Errorf("%+v: not marked as history", e)
			}
			s = append(s, e.Text)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name string
		r    chat.HistoryRange
		want string
	}{
		{"newest", chat.HistoryRange{Limit: 2}, "line d,line e"},
		{"before, its own millisecond included", chat.HistoryRange{Before: now.Add(2 * time.Second), Limit: 10}, "line a,line b,line c"},
		{"after, its own millisecond included", chat.HistoryRange{After: now.Add(2 * time.Second), Limit: 1}, "line c"},
		{"between", chat.HistoryRange{After: now.Add(time.Second + time.Millisecond), Before: now.Add(3*time.Second - time.Millisecond), Limit: 10}, "line c"},
		{"no limit is nothing", chat.HistoryRange{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := web.History("#go", tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if got := texts(evs); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	bob.Handle("/join #secret")
	if _, err := web.History("#secret", chat.HistoryRange{Limit: 5}); err == nil || !strings.Contains(err.Error(), "not in #secret") {
		t.Errorf("history of a room webby is not in: %v", err)
	}
}

func TestWebLoginSignsInAsTheRegisteredPerson(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := storedRoom(t, st)
	key := newKey(t)
	alice, aliceOut := join(t, r, "alice", JoinOptions{Key: &key})

	// Only a session that proved a key may make links.
	guest, guestOut := join(t, r, "guest", JoinOptions{})
	guest.Handle("/weblogin")
	guestOut.waitFor(t, "the refusal", hasSuffixLine("error: /weblogin needs a registered name, in a session that logged in with its key (ssh with your key)"))

	alice.Handle("/weblogin")
	ls := aliceOut.waitFor(t, "the link", func(ls []string) bool {
		return strings.Contains(strings.Join(ls, "\n"), "http://localhost:8080/login?t=")
	})
	all := strings.Join(ls, "\n")
	secret := all[strings.Index(all, "/login?t=")+len("/login?t="):]
	secret, _, _ = strings.Cut(secret, "\n")

	if _, err := r.Join("", newRecorder(), JoinOptions{Format: JSON, WebToken: secret}); !errors.Is(err, ErrWebToken) {
		t.Errorf("a link is no session: %v", err)
	}
	session, name, err := r.RedeemWebLink(secret, "Firefox <b>")
	if err != nil || name != "alice" {
		t.Fatalf("redeem: %q, %v", name, err)
	}
	if _, _, err := r.RedeemWebLink(secret, "again"); !errors.Is(err, ErrWebToken) {
		t.Errorf("a link works once: %v", err)
	}
	if _, err := r.Join("mallory", newRecorder(), JoinOptions{WebToken: session}); err == nil {
		t.Error("a session signs in as its own name only")
	}
	web, webOut := join(t, r, "", JoinOptions{Format: JSON, Transport: "web", WebToken: session})
	if web.Name() != "alice" || !web.State().Registered {
		t.Fatalf("signed in as %q, registered %v", web.Name(), web.State().Registered)
	}
	waitEvent(t, webOut, "the second session's welcome", func(e Event) bool {
		return e.Type == "info" && strings.Contains(e.Text, "session #2")
	})

	alice.Handle("/weblogin list")
	aliceOut.waitFor(t, "the list", func(ls []string) bool { return strings.Contains(strings.Join(ls, "\n"), "session  Firefox <b>") })
	alice.Handle("/weblogin token my bot")
	ls = aliceOut.waitFor(t, "the bot token", func(ls []string) bool { return strings.Contains(strings.Join(ls, "\n"), "* bot token ") })
	bot := strings.TrimPrefix(ls[len(ls)-1], "* ")
	_, botOut := join(t, r, "", JoinOptions{Format: JSON, WebToken: bot})

	// Revoking every token ends the web sessions, and the session no longer opens anything.
	alice.Handle("/weblogin revoke all")
	webOut.waitClosed(t)
	botOut.waitClosed(t)
	if _, err := r.Join("", newRecorder(), JoinOptions{WebToken: session}); !errors.Is(err, ErrWebToken) {
		t.Errorf("a revoked session: %v", err)
	}
	aliceOut.waitFor(t, "alice is still here", hasSuffixLine("* revoked 2"))
}

func TestSendJSONKeepsItsPlaceAndLinkNames(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := storedRoom(t, st)
	key := newKey(t)
	alice, aliceOut := join(t, r, "alice", JoinOptions{Key: &key})
	web, webOut := join(t, r, "watcher", JoinOptions{Format: JSON})
	if err := alice.SendJSON(map[string]string{"type": "x"}); err == nil {
		t.Error("a terminal member took a JSON line")
	}
	alice.Handle("first")
	if err := web.SendJSON(web.State()); err != nil {
		t.Fatal(err)
	}
	alice.Handle("second")
	ls := webOut.waitFor(t, "the second line", func(ls []string) bool { return strings.Contains(strings.Join(ls, "\n"), `"second"`) })
	var order []string
	for _, l := range ls {
		switch {
		case strings.Contains(l, `"first"`):
			order = append(order, "first")
		case strings.Contains(l, `"type":"state"`):
			order = append(order, "state")
		case strings.Contains(l, `"second"`):
			order = append(order, "second")
		}
	}
	if strings.Join(order, ",") != "first,state,second" {
		t.Errorf("order %v: the state must keep its place among the room's lines", order)
	}

	alice.Handle("/weblogin")
	ls = aliceOut.waitFor(t, "the link", func(ls []string) bool { return strings.Contains(strings.Join(ls, "\n"), "/login?t=") })
	all := strings.Join(ls, "\n")
	secret, _, _ := strings.Cut(all[strings.Index(all, "/login?t=")+len("/login?t="):], "\n")
	for range 2 { // naming it does not use it up
		if name, err := r.WebLinkName(secret); err != nil || name != "alice" {
			t.Fatalf("link name: %q, %v", name, err)
		}
	}
	session, _, err := r.RedeemWebLink(secret, "browser")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WebLinkName(secret); !errors.Is(err, ErrWebToken) {
		t.Errorf("a used link still has a name: %v", err)
	}
	_, browserOut := join(t, r, "", JoinOptions{Format: JSON, WebToken: session})
	if err := r.EndWebSession(session); err != nil {
		t.Fatal(err)
	}
	browserOut.waitClosed(t) // signing out ends the sessions it opened
	if _, err := r.Join("", newRecorder(), JoinOptions{WebToken: session}); !errors.Is(err, ErrWebToken) {
		t.Errorf("a session signed out still opens: %v", err)
	}
}

func TestEventTimesAreUTC(t *testing.T) {
	zone := time.FixedZone("UTC+5", 5*3600)
	r := newTestRoom(t, Config{Location: zone})
	_, out := join(t, r, "webby", JoinOptions{Format: JSON})
	ls := out.waitFor(t, "the welcome", func(ls []string) bool { return len(ls) > 0 })
	if !strings.Contains(ls[0], `"time":"2026-11-25T09:41:00Z"`) {
		t.Errorf("welcome %s: want the time in UTC", ls[0])
	}
}

func TestAGatheredNoticeNamesAFew(t *testing.T) {
	r := newTestRoom(t, Config{NoticeBurst: 1})
	_, out := join(t, r, "webby", JoinOptions{Format: JSON})
	for i := range 30 {
		join(t, r, fmt.Sprintf("p%02d", i), JoinOptions{})
	}
	e := waitEvent(t, out, "the gathered notice", func(e Event) bool { return len(e.Joined) > 1 })
	// webby's own join went out alone; the 30 after it are gathered.
	if len(e.Joined) != MaxNoticeNames || e.Others != 30-MaxNoticeNames || e.Joined[0] != "p00" {
		t.Errorf("gathered notice: %d names from %s, %d others; want %d, p00, %d", len(e.Joined), e.Joined[0], e.Others, MaxNoticeNames, 30-MaxNoticeNames)
	}
}
