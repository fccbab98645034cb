package natsjs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"chatd/chat"
	"chatd/store/natsjs/natstest"
)

// sliceHistory is a room's history as a database holds it: messages with increasing IDs.
type sliceHistory []chat.Message

func (h sliceHistory) After(_ context.Context, id int64, n int) ([]chat.Message, error) {
	i := sort.Search(len(h), func(i int) bool { return h[i].ID > id })
	return slices.Clone(h[i:min(len(h), i+n)]), nil
}

func (h sliceHistory) Message(_ context.Context, id int64) (chat.Message, bool, error) {
	i := sort.Search(len(h), func(i int) bool { return h[i].ID >= id })
	if i < len(h) && h[i].ID == id {
		return h[i], true, nil
	}
	return chat.Message{}, false, nil
}

func (h sliceHistory) Count(_ context.Context, upTo int64) (int, int64, error) {
	if upTo < 0 {
		upTo = 1<<63 - 1
	}
	i := sort.Search(len(h), func(i int) bool { return h[i].ID > upTo })
	if i == 0 {
		return 0, 0, nil
	}
	return i, h[i-1].ID, nil
}

// history makes n lines of room, with IDs from first on (every step), a second apart from at.
func history(room string, n int, first, step int64, at time.Time) sliceHistory {
	var h sliceHistory
	for i := range n {
		h = append(h, chat.Message{ID: first + int64(i)*step, Room: room, Kind: chat.Kind(1 + i%2), From: fmt.Sprint("u", i%7),
			Text: fmt.Sprintf("%s line %d", room, i), At: at.Add(time.Duration(i) * time.Second)})
	}
	return h
}

func importer(t testing.TB, s *Store) *Importer {
	t.Helper()
	im, err := s.Importer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func wantOutcome(t testing.TB, what string, r Result, err error, want Outcome) {
	t.Helper()
	if err != nil || r.Outcome != want {
		t.Fatalf("%s: %v (%s), %v; want %v", what, r.Outcome, r.Note, err, want)
	}
}

func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// sameLines compares messages as the store returns them with those imported: time to the
// millisecond, kind, sender, text, in order.
func sameLines(t testing.TB, what string, got []chat.Message, want []chat.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d lines, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.At.Equal(w.At.Truncate(time.Millisecond)) || g.Kind != w.Kind || g.From != w.From || g.Text != w.Text || g.Room != w.Room {
			t.Fatalf("%s: line %d is %+v, want %+v", what, i, g, w)
		}
	}
}

// TestImportRecords: every kind of record is copied as it was, with its own times; a second
// run copies nothing, and neither does one after the cluster delivered, lifted, revoked or
// deleted what was copied.
func TestImportRecords(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{})
	im := importer(t, s)
	ctx := t.Context()
	day := time.Date(2025, 3, 4, 5, 6, 7, 8_000_000, time.Local)
	alice := chat.Identity{Name: "Alice", Created: day,
		Keys: []chat.Key{
			{Fingerprint: "SHA256:a1", Type: "ssh-ed25519", AuthorizedKey: "ssh-ed25519 AAAA1", Added: day},
			{Fingerprint: "SHA256:a2", Type: "ssh-ed25519", AuthorizedKey: "ssh-ed25519 AAAA2", Added: day.Add(time.Hour)},
		},
		Pending: []chat.Key{{Fingerprint: "SHA256:a3", Type: "ssh-rsa", AuthorizedKey: "ssh-rsa AAAA3", Added: day, Expires: time.Now().Add(time.Hour)}},
	}
	room := chat.Room{Name: "#go", Owner: "Alice", Topic: "gophers", Private: true, Created: day, Invited: []string{"bob", "Carol"}}
	ban := chat.Ban{Kind: chat.BanIP, Value: "192.0.2.0/24", Reason: "spam", By: "Alice", Created: day, Expires: time.Now().Add(24 * time.Hour)}
	dm := chat.DM{At: day, From: "bob", FromAddr: "192.0.2.9", To: "alice", Text: "psst"}
	tok := chat.WebToken{Kind: chat.WebSession, Hash: hashOf("secret"), Name: "Alice", Label: "Firefox", Created: day}
	bot := chat.WebToken{Kind: chat.WebBot, Hash: hashOf("bot"), Name: "Alice", Label: "ci", Created: day}

	runAll := func(want Outcome) {
		t.Helper()
		r, err := im.Identity(ctx, alice)
		wantOutcome(t, "identity", r, err, want)
		r, err = im.Room(ctx, room)
		wantOutcome(t, "room", r, err, want)
		r, err = im.Membership(ctx, "alice", "#go", day)
		wantOutcome(t, "membership", r, err, want)
		r, err = im.Ban(ctx, ban)
		wantOutcome(t, "ban", r, err, want)
		r, err = im.DM(ctx, dm)
		wantOutcome(t, "dm", r, err, want)
		r, err = im.Setting(ctx, "motd", "welcome")
		wantOutcome(t, "setting", r, err, want)
		r, err = im.WebToken(ctx, tok)
		wantOutcome(t, "web token", r, err, want)
		r, err = im.WebToken(ctx, bot)
		wantOutcome(t, "bot token", r, err, want)
	}
	runAll(Copied)

	id, ok, err := s.Identity("alice")
	if err != nil || !ok || id.Name != "Alice" || !id.Created.Equal(day.Truncate(time.Millisecond)) || len(id.Keys) != 2 || len(id.Pending) != 1 {
		t.Fatalf("identity = %+v, %v, %v", id, ok, err)
	}
	if !id.Keys[1].Added.Equal(day.Add(time.Hour).Truncate(time.Millisecond)) || id.Keys[0].AuthorizedKey != "ssh-ed25519 AAAA1" {
		t.Fatalf("keys = %+v", id.Keys)
	}
	if names, err := s.NamesOfKey("SHA256:a2"); err != nil || !slices.Equal(names, []string{"Alice"}) {
		t.Fatalf("NamesOfKey = %v, %v", names, err)
	}
	rooms, err := s.Rooms()
	if err != nil || len(rooms) != 1 || rooms[0].Owner != "Alice" || rooms[0].Topic != "gophers" || !rooms[0].Private ||
		!rooms[0].Created.Equal(day.Truncate(time.Millisecond)) || !slices.Equal(rooms[0].Invited, []string{"bob", "Carol"}) {
		t.Fatalf("rooms = %+v, %v", rooms, err)
	}
	if m, err := s.Memberships("ALICE"); err != nil || !slices.Equal(m, []string{"#go"}) {
		t.Fatalf("memberships = %v, %v", m, err)
	}
	bans, err := s.Bans()
	if err != nil || len(bans) != 1 || bans[0].Value != ban.Value || bans[0].Reason != "spam" || bans[0].By != "Alice" ||
		!bans[0].Created.Equal(day.Truncate(time.Millisecond)) || !bans[0].Expires.Equal(ban.Expires.Truncate(time.Millisecond)) {
		t.Fatalf("bans = %+v, %v", bans, err)
	}
	if v, ok, err := s.Setting("motd"); err != nil || !ok || v != "welcome" {
		t.Fatalf("motd = %q, %v, %v", v, ok, err)
	}
	if got, err := s.WebToken(chat.WebSession, tok.Hash); err != nil || got.Name != "Alice" || got.Label != "Firefox" || !got.Created.Equal(day.Truncate(time.Millisecond)) {
		t.Fatalf("web token = %+v, %v", got, err)
	}

	runAll(Present) // a second run: everything there

	// The cluster lives on: the message delivered, the ban lifted, the session signed out, the
	// membership left. Another run brings none of it back.
	dms, err := s.TakeDMs("alice")
	if err != nil || len(dms) != 1 || dms[0].Text != "psst" || dms[0].FromAddr != "192.0.2.9" || !dms[0].At.Equal(day.Truncate(time.Millisecond)) {
		t.Fatalf("TakeDMs = %+v, %v", dms, err)
	}
	if _, err := s.RemoveBan(bans[0].ID); err != nil {
		t.Fatal(err)
	}
	web, _ := s.WebTokens("alice")
	for _, w := range web {
		if w.Kind == chat.WebSession {
			if _, err := s.RevokeWebTokens("alice", w.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.RemoveMembership("alice", "#go"); err != nil {
		t.Fatal(err)
	}
	runAll(Present)
	if dms, _ := s.TakeDMs("alice"); len(dms) != 0 {
		t.Fatalf("the delivered message was queued again: %+v", dms)
	}
	if bans, _ := s.Bans(); len(bans) != 0 {
		t.Fatalf("the lifted ban is back: %+v", bans)
	}
	if _, err := s.WebToken(chat.WebSession, tok.Hash); err == nil {
		t.Fatal("the revoked session works again")
	}
	if _, err := s.WebToken(chat.WebBot, bot.Hash); err != nil {
		t.Fatalf("the bot token: %v", err)
	}
	if m, _ := s.Memberships("alice"); len(m) != 0 {
		t.Fatalf("the membership left is back: %v", m)
	}

	// A room deleted in the cluster stays deleted.
	if err := s.DeleteRoom("#go"); err != nil {
		t.Fatal(err)
	}
	r, err := im.Room(ctx, room)
	wantOutcome(t, "deleted room", r, err, Gone)
	if rooms, _ := s.Rooms(); len(rooms) != 0 {
		t.Fatalf("rooms = %+v", rooms)
	}
}

// TestImportConflicts: a name claimed in the cluster by another key, a room made there with a
// topic or history of its own, a setting changed there: reported, and left as the cluster has
// them. The cluster's empty default room takes the database's settings.
func TestImportConflicts(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{})
	im := importer(t, s)
	ctx := t.Context()
	day := time.Date(2025, 3, 4, 5, 6, 7, 0, time.Local)

	if _, _, err := s.Claim("bob", chat.Key{Fingerprint: "SHA256:cluster-bob"}); err != nil {
		t.Fatal(err)
	}
	r, err := im.Identity(ctx, chat.Identity{Name: "Bob", Created: day, Keys: []chat.Key{{Fingerprint: "SHA256:db-bob", Added: day}}})
	wantOutcome(t, "bob", r, err, Conflict)
	if id, _, _ := s.Identity("bob"); len(id.Keys) != 1 || id.Keys[0].Fingerprint != "SHA256:cluster-bob" || id.Name != "bob" {
		t.Fatalf("the cluster's bob changed: %+v", id)
	}
	if names, _ := s.NamesOfKey("SHA256:db-bob"); len(names) != 0 {
		t.Fatalf("the conflicting key got names: %v", names)
	}
	// The same person: one key in common.
	r, err = im.Identity(ctx, chat.Identity{Name: "BOB", Created: day, Keys: []chat.Key{{Fingerprint: "SHA256:cluster-bob"}}})
	wantOutcome(t, "bob with the cluster's key", r, err, Present)

	// #lobby as a node makes it at its first start: empty. It takes the database's settings.
	if err := s.SaveRoom(chat.Room{Name: "#lobby"}); err != nil {
		t.Fatal(err)
	}
	r, err = im.Room(ctx, chat.Room{Name: "#lobby", Topic: "hello", Created: day, Invited: []string{"x"}})
	wantOutcome(t, "empty #lobby", r, err, Copied)
	if rooms, _ := s.Rooms(); len(rooms) != 1 || rooms[0].Topic != "hello" || !rooms[0].Created.Equal(day) || !slices.Equal(rooms[0].Invited, []string{"x"}) {
		t.Fatalf("rooms = %+v", rooms)
	}
	h := history("#lobby", 10, 1, 1, day)
	if hr, err := im.History(ctx, "#lobby", day, h, nil); err != nil || hr.Copied != 10 {
		t.Fatalf("history of #lobby: %+v, %v", hr, err)
	}

	// A room with a topic of its own, and one with a history of its own.
	if err := s.SaveRoom(chat.Room{Name: "#topic", Topic: "ours"}); err != nil {
		t.Fatal(err)
	}
	r, err = im.Room(ctx, chat.Room{Name: "#topic", Topic: "theirs", Created: day})
	wantOutcome(t, "#topic", r, err, Conflict)
	saveRoom(t, s, "#talk")
	s.Append(chat.Message{Room: "#talk", Kind: chat.KindMessage, From: "z", Text: "ours"})
	flushOK(t, s)
	r, err = im.Room(ctx, chat.Room{Name: "#talk", Created: day})
	wantOutcome(t, "#talk", r, err, Conflict)
	if hr, err := im.History(ctx, "#talk", day, history("#talk", 5, 100, 1, day), nil); err != nil || hr.Copied != 0 {
		t.Fatalf("history of a room in conflict: %+v, %v", hr, err)
	}
	if got, _ := s.Recent("#talk", 10); len(got) != 1 || got[0].Text != "ours" {
		t.Fatalf("#talk = %+v", got)
	}
	if rooms, _ := s.Rooms(); len(rooms) != 3 || rooms[2].Name != "#topic" || rooms[2].Topic != "ours" {
		t.Fatalf("rooms = %+v", rooms)
	}

	if err := s.SetSetting("motd", "the cluster's"); err != nil {
		t.Fatal(err)
	}
	r, err = im.Setting(ctx, "motd", "the database's")
	wantOutcome(t, "motd", r, err, Conflict)
	if v, _, _ := s.Setting("motd"); v != "the cluster's" {
		t.Fatalf("motd = %q", v)
	}
}

// TestImportHistory: rooms' lines arrive with their times, senders and kinds, in order, among
// other rooms' lines, and the cluster's own lines come after them; a second run copies none.
func TestImportHistory(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{})
	im := importer(t, s)
	ctx := t.Context()
	day := time.Date(2025, 3, 4, 5, 6, 7, 0, time.Local)
	// Two rooms whose IDs interleave, as in a database.
	go1 := history("#go", 1500, 1, 2, day)
	rust := history("#rust", 1200, 2, 2, day.Add(time.Millisecond))
	for _, r := range []struct {
		name string
		h    sliceHistory
	}{{"#go", go1}, {"#rust", rust}} {
		res, err := im.Room(ctx, chat.Room{Name: r.name, Created: day})
		wantOutcome(t, r.name, res, err, Copied)
		calls := 0
		hr, err := im.History(ctx, r.name, day, r.h, func(int) { calls++ })
		if err != nil || hr.Copied != len(r.h) || hr.Present != 0 || hr.Conflict != "" || calls != (len(r.h)+historyWindow-1)/historyWindow {
			t.Fatalf("history of %s: %+v, %v (%d progress calls)", r.name, hr, err, calls)
		}
	}
	got, err := s.Recent("#go", 2000)
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "Recent(#go)", got, go1)
	got, err = s.History("#rust", chat.HistoryRange{After: rust[99].At, Before: rust[200].At, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "History(#rust)", got, rust[100:200])

	// Said in the cluster afterwards: after them, with its own time.
	s.Append(chat.Message{Room: "#go", Kind: chat.KindMessage, From: "new", Text: "after"})
	flushOK(t, s)
	got, _ = s.Recent("#go", 2)
	if len(got) != 2 || got[0].Text != go1[len(go1)-1].Text || got[1].Text != "after" || !got[1].At.After(got[0].At) {
		t.Fatalf("Recent = %+v", got)
	}

	hr, err := im.History(ctx, "#go", day, go1, nil)
	if err != nil || hr.Copied != 0 || hr.Present != len(go1) || hr.Conflict != "" {
		t.Fatalf("second run: %+v, %v", hr, err)
	}
	// The database went on too (the single node ran again after the copy, and the cluster
	// has lines of its own since): the rest would be out of order.
	more := append(slices.Clone(go1), history("#go", 3, 10_000, 1, day.Add(time.Hour))...)
	hr, err = im.History(ctx, "#go", day, more, nil)
	if err != nil || hr.Copied != 0 || hr.Conflict == "" {
		t.Fatalf("a run with more lines after the cluster's: %+v, %v", hr, err)
	}
}

// TestImportHistoryResume: a copy stopped part way (a run with only the first lines, the mark
// of the last batch lost, lines of other rooms written meanwhile) goes on from the room's
// newest line, and the room's history is the database's, each line once.
func TestImportHistoryResume(t *testing.T) {
	srv := natstest.Start(t)
	s, logs := openStore(t, srv.URL(), Config{})
	im := importer(t, s)
	ctx := t.Context()
	day := time.Date(2025, 3, 4, 5, 6, 7, 0, time.Local)
	h := history("#go", 2000, 1, 1, day)
	res, err := im.Room(ctx, chat.Room{Name: "#go", Created: day})
	wantOutcome(t, "room", res, err, Copied)

	// Stopped after 700 lines, before noting the last batch.
	if hr, err := im.History(ctx, "#go", day, h[:700], nil); err != nil || hr.Copied != 700 {
		t.Fatalf("first part: %+v, %v", hr, err)
	}
	if err := im.ledger.Delete(ctx, "hist."+roomKey("#go", day)); err != nil {
		t.Fatal(err)
	}

	// Another writer on the stream meanwhile: lines of another room, while the copy goes on.
	other, _ := openStore(t, srv.URL(), Config{Prefix: s.cfg.Prefix, MaxBacklog: 100_000})
	saveRoom(t, other, "#busy")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			other.Append(chat.Message{Room: "#busy", Kind: chat.KindMessage, From: "b", Text: fmt.Sprint(i)})
			if i%50 == 49 {
				other.Flush(ctx)
			}
		}
	}()
	hr, err := im.History(ctx, "#go", day, h, nil)
	close(stop)
	<-done
	if err != nil || hr.Copied != 1300 || hr.Present != 700 {
		t.Fatalf("the rest: %+v, %v", hr, err)
	}
	got, err := s.Recent("#go", 5000)
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "Recent(#go)", got, h)
	t.Logf("retries: %d", strings.Count(logs.String(), "a line was not stored"))
}

// TestImportHistoryOldLines: lines older than the cluster keeps are not copied.
func TestImportHistoryOldLines(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{KeepFor: time.Hour})
	im := importer(t, s)
	ctx := t.Context()
	now := time.Now()
	h := append(history("#go", 5, 1, 1, now.Add(-2*time.Hour)), history("#go", 5, 6, 1, now.Add(-30*time.Minute))...)
	res, err := im.Room(ctx, chat.Room{Name: "#go", Created: now.Add(-3 * time.Hour)})
	wantOutcome(t, "room", res, err, Copied)
	hr, err := im.History(ctx, "#go", now.Add(-3*time.Hour), h, nil)
	if err != nil || hr.Copied != 5 || hr.Skipped != 5 {
		t.Fatalf("history: %+v, %v", hr, err)
	}
	got, _ := s.Recent("#go", 20)
	if len(got) != hr.Copied {
		t.Fatalf("Recent = %d lines, want %d", len(got), hr.Copied)
	}
}

// BenchmarkImportHistory copies a room's history of 100 000 lines into an embedded NATS
// server: lines/s is the figure.
func BenchmarkImportHistory(b *testing.B) {
	srv := natstest.Start(b)
	day := time.Now().Add(-24 * time.Hour)
	h := history("#go", 100_000, 1, 1, day)
	for b.Loop() {
		s, _ := openStore(b, srv.URL(), Config{})
		im := importer(b, s)
		if res, err := im.Room(b.Context(), chat.Room{Name: "#go", Created: day}); err != nil || res.Outcome != Copied {
			b.Fatal(res, err)
		}
		hr, err := im.History(b.Context(), "#go", day, h, nil)
		if err != nil || hr.Copied != len(h) {
			b.Fatal(hr, err)
		}
	}
	b.ReportMetric(float64(b.N*len(h))/b.Elapsed().Seconds(), "lines/s")
}

// TestImportHistoryCluster: on three NATS servers with every stream kept three times (where
// JetStream checks a line's expectations as its leader proposes it), a room's history is
// copied in order, and a run stopped part way is completed without a line twice.
func TestImportHistoryCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster takes seconds")
	}
	c := natstest.StartCluster(t, 3)
	s, logs := openStore(t, "", Config{URLs: c.URLs(), Replicas: 3})
	im := importer(t, s)
	ctx := t.Context()
	day := time.Date(2025, 3, 4, 5, 6, 7, 0, time.Local)
	h := history("#go", 3000, 1, 1, day)
	res, err := im.Room(ctx, chat.Room{Name: "#go", Created: day})
	wantOutcome(t, "room", res, err, Copied)
	if hr, err := im.History(ctx, "#go", day, h[:1234], nil); err != nil || hr.Copied != 1234 {
		t.Fatalf("first part: %+v, %v", hr, err)
	}
	if hr, err := im.History(ctx, "#go", day, h, nil); err != nil || hr.Copied != len(h)-1234 || hr.Present != 1234 {
		t.Fatalf("the rest: %+v, %v", hr, err)
	}
	got, err := s.Recent("#go", 5000)
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "Recent(#go)", got, h)
	if n := strings.Count(logs.String(), "a line was not stored"); n > 0 {
		t.Errorf("%d lines refused with nobody else writing:\n%s", n, logs.String())
	}
}
