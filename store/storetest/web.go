package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"chatd/chat"
)

// maxWebTokensPerName is the cap on a name's unexpired web tokens, at its default.
const maxWebTokensPerName = 50

// testHistoryRange: History's time ranges, in both directions, against the messages' times
// as stored.
func testHistoryRange(t *testing.T, s Store) {
	for _, r := range []string{"#h", "#other", "#empty"} {
		mustSaveRoom(t, s, chat.Room{Name: r})
	}
	// h0..h19 a second apart, each 700µs into its millisecond (kept to the millisecond), with
	// another room's messages at the same times.
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) } // as stored
	for i := range 20 {
		s.Append(chat.Message{Room: "#h", At: at(i).Add(700 * time.Microsecond), Kind: chat.Kind(1 + i%2), From: "Alice", Text: fmt.Sprint("h", i)})
		s.Append(chat.Message{Room: "#other", At: at(i), Kind: chat.KindMessage, From: "bob", Text: fmt.Sprint("o", i)})
	}
	flush(t, s)

	const ms, us = time.Millisecond, time.Microsecond
	tests := []struct {
		name string
		r    chat.HistoryRange
		want []string
	}{
		{"open: the newest", chat.HistoryRange{Limit: 5}, seqTexts("h", 15, 20)},
		{"open: all", chat.HistoryRange{Limit: 1000}, seqTexts("h", 0, 20)},
		{"no limit", chat.HistoryRange{}, nil},
		{"negative limit", chat.HistoryRange{After: at(3), Limit: -1}, nil},
		{"before", chat.HistoryRange{Before: at(10), Limit: 5}, seqTexts("h", 5, 10)},
		{"before, fewer than the limit", chat.HistoryRange{Before: at(3), Limit: 10}, seqTexts("h", 0, 3)},
		{"before, within the bound's millisecond", chat.HistoryRange{Before: at(10).Add(999 * us), Limit: 5}, seqTexts("h", 5, 10)},
		{"before the next millisecond", chat.HistoryRange{Before: at(10).Add(ms), Limit: 5}, seqTexts("h", 6, 11)},
		{"before the first", chat.HistoryRange{Before: at(0), Limit: 5}, nil},
		{"after", chat.HistoryRange{After: at(10), Limit: 5}, seqTexts("h", 11, 16)},
		{"after, fewer than the limit", chat.HistoryRange{After: at(17), Limit: 10}, seqTexts("h", 18, 20)},
		{"after, within the bound's millisecond", chat.HistoryRange{After: at(10).Add(999 * us), Limit: 3}, seqTexts("h", 11, 14)},
		{"after the millisecond before", chat.HistoryRange{After: at(10).Add(-ms), Limit: 3}, seqTexts("h", 10, 13)},
		{"after the last", chat.HistoryRange{After: at(19), Limit: 5}, nil},
		{"after, in another zone", chat.HistoryRange{After: at(15).In(time.FixedZone("X", 5*3600)), Limit: 10}, seqTexts("h", 16, 20)},
		{"between", chat.HistoryRange{After: at(4), Before: at(9), Limit: 10}, seqTexts("h", 5, 9)},
		{"between, the oldest within the limit", chat.HistoryRange{After: at(4), Before: at(15), Limit: 3}, seqTexts("h", 5, 8)},
		{"between neighbours", chat.HistoryRange{After: at(4), Before: at(5), Limit: 10}, nil},
		{"between, crossed", chat.HistoryRange{After: at(9), Before: at(4), Limit: 10}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.History("#h", tt.r)
			if err != nil || !slices.Equal(texts(got), tt.want) {
				t.Errorf("History(#h, %+v) = %v, %v; want %v", tt.r, texts(got), err, tt.want)
			}
		})
	}

	// Each message as Recent returns it: the same IDs, times to the millisecond, room as
	// ParseRoom returns it, whatever form it was asked for in.
	all := recent(t, s, "#h", 100)
	for _, form := range []string{"#h", "#H", "h"} {
		got, err := s.History(form, chat.HistoryRange{After: at(0).Add(-time.Hour), Limit: 100})
		if err != nil || len(got) != len(all) {
			t.Fatalf("History(%s) = %v, %v; want the %d messages", form, texts(got), err, len(all))
		}
		for i, m := range got {
			w := all[i]
			if m.ID != w.ID || m.Room != "#h" || m.Kind != chat.Kind(1+i%2) || m.From != "Alice" || m.Text != w.Text || !sameTime(m.At, at(i)) {
				t.Fatalf("History(%s)[%d] = %+v, want %+v at %v", form, i, m, w, at(i))
			}
		}
	}

	if got, err := s.History("#empty", chat.HistoryRange{Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("History of an empty room = %v, %v; want none", texts(got), err)
	}
	if got, err := s.History("#empty", chat.HistoryRange{After: at(3), Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("History of an empty room after a time = %v, %v; want none", texts(got), err)
	}
	for _, r := range []chat.HistoryRange{{Limit: 10}, {Before: at(3), Limit: 10}, {After: at(3), Limit: 10}} {
		if _, err := s.History("#nowhere", r); !errors.Is(err, chat.ErrNotFound) {
			t.Errorf("History(#nowhere, %+v) = %v, want ErrNotFound", r, err)
		}
	}
	if _, err := s.History("#not a room", chat.HistoryRange{Limit: 10}); !errors.Is(err, chat.ErrRoomInvalid) {
		t.Errorf("History of an invalid room name = %v, want ErrRoomInvalid", err)
	}

	// A deleted room's messages are gone from History too, even from a new room of its name.
	if err := s.DeleteRoom("#h"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.History("#h", chat.HistoryRange{Limit: 10}); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("History of a deleted room = %v, want ErrNotFound", err)
	}
	mustSaveRoom(t, s, chat.Room{Name: "#h"})
	for _, r := range []chat.HistoryRange{{Limit: 10}, {After: at(3), Limit: 10}} {
		if got, err := s.History("#h", r); err != nil || len(got) != 0 {
			t.Errorf("History(%+v) of a room made again = %v, %v; want none", r, texts(got), err)
		}
	}
	if got, err := s.History("#other", chat.HistoryRange{Before: at(2), Limit: 10}); err != nil || !slices.Equal(texts(got), seqTexts("o", 0, 2)) {
		t.Errorf("History(#other) = %v, %v; want o0 o1", texts(got), err)
	}
}

// tokenHash is the hash of test secret n, as chat.WebToken keeps it: hex SHA-256.
func tokenHash(n int) string {
	sum := sha256.Sum256(fmt.Append(nil, "storetest secret ", n))
	return hex.EncodeToString(sum[:])
}

// sameToken compares a token as the store returned it with what it should be.
func sameToken(got, want chat.WebToken) bool {
	return got.ID == want.ID && got.Kind == want.Kind && got.Hash == want.Hash && got.Name == want.Name &&
		got.Label == want.Label && sameTime(got.Created, want.Created) && sameTime(got.Expires, want.Expires)
}

func mustAddToken(t *testing.T, s Store, tok chat.WebToken) chat.WebToken {
	t.Helper()
	got, err := s.AddWebToken(tok)
	if err != nil {
		t.Fatalf("AddWebToken(%+v): %v", tok, err)
	}
	return got
}

// tokenIDs are the IDs of tokens, in order.
func tokenIDs(tokens []chat.WebToken) []int64 {
	var out []int64
	for _, tok := range tokens {
		out = append(out, tok.ID)
	}
	return out
}

func webTokens(t *testing.T, s Store, name string) []int64 {
	t.Helper()
	tokens, err := s.WebTokens(name)
	if err != nil {
		t.Fatalf("WebTokens(%s): %v", name, err)
	}
	return tokenIDs(tokens)
}

func testWebTokens(t *testing.T, s Store) {
	mustClaim(t, s, "Alice", testKey(1))
	mustClaim(t, s, "bob", testKey(2))
	now := time.Now()
	hour := time.Hour

	// Added: its ID assigned (the one given ignored), a zero Created is now, a zero Expires is
	// never; Name and Label as given.
	before := time.Now()
	session := mustAddToken(t, s, chat.WebToken{ID: 42, Kind: chat.WebSession, Hash: tokenHash(1), Name: "ALICE", Label: "Firefox 140 on Linux"})
	after := time.Now()
	if session.ID <= 0 || session.ID == 42 || session.Kind != chat.WebSession || session.Hash != tokenHash(1) || session.Name != "ALICE" ||
		session.Label != "Firefox 140 on Linux" || !session.Expires.IsZero() {
		t.Fatalf("AddWebToken returned %+v", session)
	}
	during(t, "a zero Created", session.Created, before, after)

	created := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	bot := mustAddToken(t, s, chat.WebToken{Kind: chat.WebBot, Hash: tokenHash(2), Name: "alice", Label: "alice's bot",
		Created: created, Expires: now.Add(24 * hour)})
	if !sameTime(bot.Created, created) || !sameTime(bot.Expires, now.Add(24*hour)) || bot.ID == session.ID {
		t.Fatalf("AddWebToken(bot) = %+v; want its times kept, to the ms, and an ID of its own", bot)
	}
	link := mustAddToken(t, s, chat.WebToken{Kind: chat.WebLink, Hash: tokenHash(3), Name: "Alice", Expires: now.Add(hour)})
	expired := mustAddToken(t, s, chat.WebToken{Kind: chat.WebSession, Hash: tokenHash(4), Name: "Alice", Label: "old", Expires: now.Add(-hour)})
	bobs := mustAddToken(t, s, chat.WebToken{Kind: chat.WebSession, Hash: tokenHash(5), Name: "Bob", Label: "bob's browser"})

	// Refused: an unknown kind, a hash that is none, a name that is not registered (or not a
	// name), a hash stored already (whatever its kind).
	refused := []struct {
		name    string
		tok     chat.WebToken
		wantErr error // nil: any error
	}{
		{"no kind", chat.WebToken{Hash: tokenHash(10), Name: "alice"}, nil},
		{"unknown kind", chat.WebToken{Kind: "cookie", Hash: tokenHash(11), Name: "alice"}, nil},
		{"no hash", chat.WebToken{Kind: chat.WebSession, Name: "alice"}, nil},
		{"a secret, not its hash", chat.WebToken{Kind: chat.WebSession, Hash: "my secret", Name: "alice"}, nil},
		{"unregistered name", chat.WebToken{Kind: chat.WebSession, Hash: tokenHash(12), Name: "carol"}, chat.ErrNotFound},
		{"invalid name", chat.WebToken{Kind: chat.WebSession, Hash: tokenHash(13), Name: "no one"}, chat.ErrNotFound},
		{"no name", chat.WebToken{Kind: chat.WebBot, Hash: tokenHash(14)}, chat.ErrNotFound},
		{"hash stored already", chat.WebToken{Kind: chat.WebSession, Hash: tokenHash(1), Name: "alice"}, nil},
		{"hash stored already, as another kind", chat.WebToken{Kind: chat.WebLink, Hash: tokenHash(2), Name: "alice"}, nil},
		{"hash of another name's token", chat.WebToken{Kind: chat.WebSession, Hash: tokenHash(5), Name: "alice"}, nil},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			_, err := s.AddWebToken(tt.tok)
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("AddWebToken(%+v) = %v, want an error (%v)", tt.tok, err, tt.wantErr)
			}
		})
	}
	if got, err := s.WebToken(chat.WebSession, tokenHash(1)); err != nil || !sameToken(got, session) {
		t.Fatalf("the refused duplicate changed the token: %+v, %v; want %+v", got, err, session)
	}

	// Looked up by kind and hash: another kind, an unknown hash or an expiry past is not found;
	// looking up uses nothing up.
	lookups := []struct {
		name string
		kind chat.WebTokenKind
		hash string
		want *chat.WebToken // nil: chat.ErrNotFound
	}{
		{"session", chat.WebSession, tokenHash(1), &session},
		{"session again", chat.WebSession, tokenHash(1), &session},
		{"bot", chat.WebBot, tokenHash(2), &bot},
		{"link", chat.WebLink, tokenHash(3), &link},
		{"another name's", chat.WebSession, tokenHash(5), &bobs},
		{"session as a bot", chat.WebBot, tokenHash(1), nil},
		{"bot as a session", chat.WebSession, tokenHash(2), nil},
		{"link as a session", chat.WebSession, tokenHash(3), nil},
		{"expired", chat.WebSession, tokenHash(4), nil},
		{"unknown hash", chat.WebSession, tokenHash(99), nil},
		{"empty hash", chat.WebSession, "", nil},
	}
	for _, tt := range lookups {
		t.Run("lookup/"+tt.name, func(t *testing.T) {
			got, err := s.WebToken(tt.kind, tt.hash)
			switch {
			case tt.want == nil && !errors.Is(err, chat.ErrNotFound):
				t.Errorf("WebToken(%s, %.8s) = %+v, %v; want ErrNotFound", tt.kind, tt.hash, got, err)
			case tt.want != nil && (err != nil || !sameToken(got, *tt.want)):
				t.Errorf("WebToken(%s, %.8s) = %+v, %v; want %+v", tt.kind, tt.hash, got, err, *tt.want)
			}
		})
	}

	// Listed: a name's sessions and bot tokens, folded, oldest first (by Created); not its links,
	// not expired ones, not another name's.
	if got := webTokens(t, s, "aLiCe"); !slices.Equal(got, []int64{bot.ID, session.ID}) {
		t.Fatalf("WebTokens(alice) = %v, want the bot's %d then the session's %d", got, bot.ID, session.ID)
	}
	if tokens, err := s.WebTokens("alice"); err != nil || len(tokens) != 2 || !sameToken(tokens[0], bot) || !sameToken(tokens[1], session) {
		t.Fatalf("WebTokens(alice) = %+v, %v; want [%+v %+v]", tokens, err, bot, session)
	}
	for _, name := range []string{"nobody", "no one", ""} {
		if got := webTokens(t, s, name); len(got) != 0 {
			t.Errorf("WebTokens(%q) = %v, want none", name, got)
		}
	}

	// Taken: by kind and hash, once.
	if _, err := s.TakeWebToken(chat.WebSession, tokenHash(3)); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("TakeWebToken of a link as a session = %v, want ErrNotFound", err)
	}
	if got, err := s.TakeWebToken(chat.WebLink, tokenHash(3)); err != nil || !sameToken(got, link) {
		t.Fatalf("TakeWebToken(link) = %+v, %v; want %+v", got, err, link)
	}
	for _, lookup := range []func(chat.WebTokenKind, string) (chat.WebToken, error){s.TakeWebToken, s.WebToken} {
		if _, err := lookup(chat.WebLink, tokenHash(3)); !errors.Is(err, chat.ErrNotFound) {
			t.Fatalf("a taken link is still there: %v", err)
		}
	}
	if _, err := s.TakeWebToken(chat.WebSession, tokenHash(4)); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("TakeWebToken of an expired token = %v, want ErrNotFound", err)
	}
	expiredLink := mustAddToken(t, s, chat.WebToken{Kind: chat.WebLink, Hash: tokenHash(6), Name: "alice", Expires: now.Add(-time.Second)})
	if _, err := s.TakeWebToken(chat.WebLink, tokenHash(6)); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("TakeWebToken of an expired link = %v, want ErrNotFound", err)
	}

	// Revoked one by one: only the name's own unexpired sessions and bot tokens, by ID.
	link2 := mustAddToken(t, s, chat.WebToken{Kind: chat.WebLink, Hash: tokenHash(7), Name: "alice", Expires: now.Add(hour)})
	notFound := []struct {
		name string
		who  string
		id   int64
	}{
		{"another name's", "bob", session.ID},
		{"of another name", "alice", bobs.ID},
		{"a link", "alice", link2.ID},
		{"expired", "alice", expired.ID},
		{"expired link", "alice", expiredLink.ID},
		{"taken", "alice", link.ID},
		{"no such ID", "alice", 1 << 40},
		{"negative", "alice", -1},
		{"of nobody", "nobody", session.ID},
	}
	for _, tt := range notFound {
		t.Run("revoke/"+tt.name, func(t *testing.T) {
			if n, err := s.RevokeWebTokens(tt.who, tt.id); n != 0 || !errors.Is(err, chat.ErrNotFound) {
				t.Errorf("RevokeWebTokens(%s, %d) = %d, %v; want 0, ErrNotFound", tt.who, tt.id, n, err)
			}
		})
	}
	if got := webTokens(t, s, "alice"); !slices.Equal(got, []int64{bot.ID, session.ID}) {
		t.Fatalf("WebTokens(alice) after refused revocations = %v", got)
	}
	if n, err := s.RevokeWebTokens("ALICE", session.ID); n != 1 || err != nil {
		t.Fatalf("RevokeWebTokens(alice, session) = %d, %v; want 1", n, err)
	}
	if _, err := s.WebToken(chat.WebSession, tokenHash(1)); !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("a revoked session is still there: %v", err)
	}
	if n, err := s.RevokeWebTokens("alice", session.ID); n != 0 || !errors.Is(err, chat.ErrNotFound) {
		t.Fatalf("revoking it again = %d, %v; want 0, ErrNotFound", n, err)
	}
	if got := webTokens(t, s, "alice"); !slices.Equal(got, []int64{bot.ID}) {
		t.Fatalf("WebTokens(alice) = %v, want only the bot's", got)
	}

	// Revoked all at once: every one of the name's tokens, links included, counted (the expired
	// ones were gone already); nobody else's.
	if n, err := s.RevokeWebTokens("Alice", 0); n != 2 || err != nil {
		t.Fatalf("RevokeWebTokens(alice, 0) = %d, %v; want 2 (the bot and a link)", n, err)
	}
	for _, k := range []struct {
		kind chat.WebTokenKind
		n    int
	}{{chat.WebBot, 2}, {chat.WebLink, 7}} {
		if _, err := s.WebToken(k.kind, tokenHash(k.n)); !errors.Is(err, chat.ErrNotFound) {
			t.Errorf("%s %d survived RevokeWebTokens(alice, 0): %v", k.kind, k.n, err)
		}
	}
	if got := webTokens(t, s, "alice"); len(got) != 0 {
		t.Errorf("WebTokens(alice) after revoking all = %v", got)
	}
	for _, who := range []string{"alice", "nobody"} {
		if n, err := s.RevokeWebTokens(who, 0); n != 0 || err != nil {
			t.Errorf("RevokeWebTokens(%s, 0) with nothing to revoke = %d, %v; want 0, nil", who, n, err)
		}
	}
	if got, err := s.WebToken(chat.WebSession, tokenHash(5)); err != nil || !sameToken(got, bobs) {
		t.Errorf("bob's session after alice's revocations = %+v, %v", got, err)
	}
}

// testWebTokenTakeRace: many take one sign-in link at once; exactly one gets it.
func testWebTokenTakeRace(t *testing.T, s Store) {
	mustClaim(t, s, "alice", testKey(1))
	const takers = 16
	for round := range 3 {
		link := mustAddToken(t, s, chat.WebToken{Kind: chat.WebLink, Hash: tokenHash(round), Name: "alice", Expires: time.Now().Add(time.Hour)})
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		start := make(chan struct{})
		for range takers {
			wg.Go(func() {
				<-start
				got, err := s.TakeWebToken(chat.WebLink, link.Hash)
				switch {
				case err == nil && sameToken(got, link):
					mu.Lock()
					winners++
					mu.Unlock()
				case err == nil:
					t.Errorf("TakeWebToken = %+v, want %+v", got, link)
				case !errors.Is(err, chat.ErrNotFound):
					t.Errorf("TakeWebToken = %v, want the link or ErrNotFound", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if winners != 1 {
			t.Fatalf("round %d: %d of %d concurrent takers got the link, want exactly 1", round, winners, takers)
		}
	}
}

// testWebTokenCap: a name holds at most maxWebTokensPerName unexpired tokens, of all kinds
// together; expired, taken and revoked ones make room.
func testWebTokenCap(t *testing.T, s Store) {
	mustClaim(t, s, "Alice", testKey(1))
	mustClaim(t, s, "bob", testKey(2))
	now := time.Now()
	n := 0
	add := func(name string, kind chat.WebTokenKind, expires time.Time) (chat.WebToken, error) {
		n++
		return s.AddWebToken(chat.WebToken{Kind: kind, Hash: tokenHash(n), Name: name, Label: fmt.Sprint("t", n), Expires: expires})
	}
	if _, err := add("alice", chat.WebSession, now.Add(-time.Hour)); err != nil { // expired: not counted
		t.Fatal(err)
	}
	kinds := []chat.WebTokenKind{chat.WebSession, chat.WebBot, chat.WebLink}
	var links []chat.WebToken
	for i := range maxWebTokensPerName {
		tok, err := add([]string{"alice", "ALICE", "Alice"}[i%3], kinds[i%3], time.Time{})
		if err != nil {
			t.Fatalf("token %d of %d: %v", i+1, maxWebTokensPerName, err)
		}
		if tok.Kind == chat.WebLink {
			links = append(links, tok)
		}
	}
	full := func(what string) {
		t.Helper()
		for _, kind := range kinds {
			var le *chat.LimitError
			_, err := add("aLICE", kind, time.Time{})
			if !errors.Is(err, chat.ErrWebTokenLimit) || !errors.As(err, &le) || le.Max != maxWebTokensPerName {
				t.Fatalf("%s: one %s more = %v; want a *LimitError, ErrWebTokenLimit, at most %d", what, kind, err, maxWebTokensPerName)
			}
		}
	}
	full("at the cap")
	if _, err := add("bob", chat.WebSession, time.Time{}); err != nil {
		t.Fatalf("another name at alice's cap: %v", err)
	}

	if _, err := s.TakeWebToken(chat.WebLink, links[0].Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := add("alice", chat.WebBot, time.Time{}); err != nil {
		t.Fatalf("after a link was taken: %v", err)
	}
	full("full again")
	sessions, err := s.WebTokens("alice")
	if err != nil || len(sessions) == 0 {
		t.Fatal(sessions, err)
	}
	if _, err := s.RevokeWebTokens("alice", sessions[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := add("alice", chat.WebSession, now.Add(time.Hour)); err != nil {
		t.Fatalf("after a session was revoked: %v", err)
	}
	full("full once more")
	if got, err := s.RevokeWebTokens("alice", 0); got != maxWebTokensPerName || err != nil {
		t.Fatalf("RevokeWebTokens(alice, 0) = %d, %v; want %d", got, err, maxWebTokensPerName)
	}
	if _, err := add("alice", chat.WebLink, now.Add(time.Hour)); err != nil {
		t.Fatalf("after revoking everything: %v", err)
	}
}
