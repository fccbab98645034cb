package natsjs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"chatd/chat"
	"chatd/store/natsjs/natstest"
)

func texts(msgs []chat.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

func saveRoom(t testing.TB, s *Store, name string) {
	t.Helper()
	if err := s.SaveRoom(chat.Room{Name: name}); err != nil {
		t.Fatal(err)
	}
}

// TestSparseRoom: a room whose lines are few among many other rooms' is read as a busy one is,
// by Recent and History in every direction, compared with what was appended.
func TestSparseRoom(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{MaxBacklog: 100_000})
	saveRoom(t, s, "#busy")
	saveRoom(t, s, "#sparse")
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	var sparse []chat.Message // as appended, in order
	for i := range 6000 {
		// Times grow, several lines to a millisecond at places.
		m := chat.Message{Room: "#busy", Kind: chat.KindMessage, From: "b", Text: fmt.Sprint("b", i), At: base.Add(time.Duration(i/3) * time.Millisecond)}
		if i%37 == 0 {
			m.Room, m.Text = "#sparse", fmt.Sprint("s", len(sparse))
			sparse = append(sparse, m)
		}
		s.Append(m)
	}
	flushOK(t, s)
	for _, n := range []int{1, 2, 10, 100, len(sparse) - 1, len(sparse), 1000} {
		got, err := s.Recent("#sparse", n)
		want := texts(sparse[max(0, len(sparse)-n):])
		if err != nil || !slices.Equal(texts(got), want) {
			t.Fatalf("Recent(#sparse, %d) = %v, %v; want %v", n, texts(got), err, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	span := sparse[len(sparse)-1].At.Sub(sparse[0].At)
	for i := range 200 {
		pick := func() time.Time {
			return sparse[0].At.Add(time.Duration(r.Int64N(int64(span+200*time.Millisecond))) - 100*time.Millisecond)
		}
		var hr chat.HistoryRange
		switch i % 3 {
		case 0:
			hr.After = pick()
		case 1:
			hr.Before = pick()
		default:
			hr.After, hr.Before = pick(), pick()
		}
		hr.Limit = 1 + r.IntN(60)
		got, err := s.History("#sparse", hr)
		if want := expectHistory(sparse, hr); err != nil || !slices.Equal(texts(got), want) {
			t.Fatalf("History(#sparse, %+v) = %v, %v; want %v", hr, texts(got), err, want)
		}
	}
}

// expectHistory is History's answer over msgs, the plain way.
func expectHistory(msgs []chat.Message, r chat.HistoryRange) []string {
	var in []chat.Message
	for _, m := range msgs {
		at := m.At.UnixMilli()
		if (r.After.IsZero() || at > floorMilli(r.After)) && (r.Before.IsZero() || at < floorMilli(r.Before)) {
			in = append(in, m)
		}
	}
	if r.After.IsZero() {
		return texts(in[max(0, len(in)-r.Limit):])
	}
	return texts(in[:min(len(in), r.Limit)])
}

// TestForeignLines: lines published on a room's subjects by others than Append (the relay to
// come) are read when they are a room's messages or actions of its generation, and skipped
// otherwise: a notice, another generation's line, something that is no line at all.
func TestForeignLines(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{})
	saveRoom(t, s, "#r.x")
	s.Append(chat.Message{Room: "#r.x", Kind: chat.KindMessage, From: "alice", Text: "appended"})
	flushOK(t, s)
	subj := s.msgSubject("#r.x")
	if subj != s.cfg.Prefix+".room.r=x.msg" {
		t.Fatalf("subject of #r.x = %q", subj)
	}
	before := time.Now()
	for _, p := range []struct{ subj, data string }{
		{subj, `{"k":1,"f":"bob","t":"relayed"}`}, // any generation, the stream's time
		{subj, `{"g":999999,"k":1,"f":"old","t":"another generation"}`},
		{subj, `not json`},
		{subj, `{"k":3,"f":"x","t":"no such kind"}`},
		{s.cfg.Prefix + ".room.r=x.notice", `{"k":3,"t":"a notice"}`},
		{subj, `{"k":2,"f":"bob","t":"acts","at":1767225600000}`},
	} {
		if _, err := s.js.Publish(t.Context(), p.subj, []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()
	got, err := s.Recent("#r.x", 10)
	if err != nil || !slices.Equal(texts(got), []string{"appended", "relayed", "acts"}) {
		t.Fatalf("Recent = %v, %v; want appended, relayed, acts", texts(got), err)
	}
	if at := got[1].At; at.Before(before.Truncate(time.Millisecond)) || at.After(after) || at.Location() != time.Local {
		t.Errorf("a line without its time has %v, want the stream's, within [%v, %v]", at, before, after)
	}
	if got[2].Kind != chat.KindAction || !got[2].At.Equal(time.UnixMilli(1767225600000)) || got[2].From != "bob" || got[2].Room != "#r.x" {
		t.Errorf("the relayed action = %+v", got[2])
	}
	if got, err := s.History("#r.x", chat.HistoryRange{Limit: 2}); err != nil || !slices.Equal(texts(got), []string{"relayed", "acts"}) {
		t.Errorf("History(limit 2) = %v, %v", texts(got), err)
	}
}

// TestRoomNames: every character a room name may hold maps to a subject and a key of its own.
func TestRoomNames(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{})
	names := []string{"#a", "#a.", "#.a", "#a..b", "#a=b", "#-_", "#..", "#x.y.z", "#A.B"}
	for _, n := range names {
		if n == "#a=b" {
			if err := s.SaveRoom(chat.Room{Name: n}); err == nil {
				t.Fatalf("SaveRoom(%q) succeeded", n)
			}
			continue
		}
		saveRoom(t, s, n)
		s.Append(chat.Message{Room: n, Kind: chat.KindMessage, From: "x", Text: n})
	}
	flushOK(t, s)
	for _, n := range names {
		room, err := chat.ParseRoom(n)
		if err != nil {
			continue
		}
		if got, err := s.Recent(room, 10); err != nil || len(got) != 1 || chat.Fold(got[0].Text) != room {
			t.Errorf("Recent(%s) = %v, %v", room, texts(got), err)
		}
	}
}
