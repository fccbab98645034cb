// Package storetest is the conformance suite of room.Store: Run checks, against a real instance of
// a storage backend, the behaviour the room relies on, so that every backend (SQLite, NATS
// JetStream, ...) keeps the same contract. Its doc comments are that contract, where room.Store's
// own comments leave off.
//
// # The store under test
//
// open returns a new, empty store for each subtest, and closes it when the subtest ends
// (t.Cleanup). The store uses the wall clock (time.Now): the suite steers time only by the
// expiry times it chooses, hours in the past or the future, never by waiting for a deadline.
// Where two events must have different times, it waits for the clock to reach the next
// millisecond. A new store may hold rooms already (a backend may create a default room); the
// suite asserts only on the rooms it creates.
//
// # The contract
//
// Names (identities, invitations, memberships, private messages) are compared by chat.Fold and
// returned in the display form they were first stored in. Room names are read as chat.ParseRoom
// reads them ("#Go", "#go" and "go" are one room) and returned as it returns them ("#go"); a room
// name ParseRoom refuses is refused with an error wrapping chat.ErrRoomInvalid. Times are kept to
// the millisecond and returned in time.Local; a zero time given to a store means now. Errors a
// caller can cause are chat's sentinels, wrapped (errors.Is) or as a *chat.LimitError.
//
// Identities: Identity of a name nobody claimed, or of an invalid one, is false with no error.
// Claim of a free name creates it with its key and reports true; of a claimed name it returns the
// identity unchanged and false. Of many concurrent claims of one name exactly one reports true,
// and all return the winner's identity. A key's Added is kept when given. NamesOfKey lists the
// names a key is active for, in chat.Fold order.
//
// Keys: an identity's active keys are listed oldest first, by the time they became active.
// ProposeKey returns chat.ErrNotFound for an unclaimed name and chat.ErrKeyExists for a key
// active for the name; proposing a pending key again renews its expiry. RemoveKey removes an
// active or pending key, with chat.ErrNotFound for a name or key that is not there and
// chat.ErrLastKey for the only active key.
//
// Pending keys: a proposed key is listed in Identity.Pending, never in Keys nor NamesOfKey, until
// ConfirmKey, which makes it active from then (Added is the confirmation's time). A proposal
// lapses at its expiry (ProposeKey takes any non-zero expiry, even a past one): it is then
// neither listed, nor confirmable (ConfirmKey reports false, with no error), nor removable
// (chat.ErrNotFound), nor counted towards a cap.
//
// Caps, at their defaults: a key may be active for 5 names (a Claim or ConfirmKey beyond fails
// with chat.ErrNameLimit, Max 5, Names the names it holds in NamesOfKey order); a name may have
// 20 keys, active and pending together (chat.ErrKeyLimit); a recipient may have 100 private
// messages waiting (chat.ErrQueueFull), of which 10 from one sender name (chat.ErrSenderQueueFull)
// and 20 from one sender address (chat.ErrAddrQueueFull; an empty address is not counted). The
// sender's caps are checked first, the name's before the address's. A name may hold 50 unexpired
// web tokens, sessions, bot tokens and sign-in links together (chat.ErrWebTokenLimit).
//
// History: Append never waits. Recent(room, n) returns the room's newest n committed messages,
// oldest first: none for n <= 0, chat.ErrNotFound for a room that does not exist. Each message
// comes back as appended (Room as ParseRoom returns it, Kind, From, Text; a zero At is the
// time of the Append) with an ID the store assigns (the one given is ignored), increasing in
// append order within a room. Flush returns once every message appended before it is committed,
// so that Recent returns it. A message whose room is not a room name, or does not exist when the
// store commits it, is dropped: a room created later does not inherit it.
//
// History ranges: History(room, r) returns the room's committed messages between r's bounds,
// oldest first, each as Recent returns it: with r.After set, the oldest r.Limit after it;
// otherwise the newest r.Limit before r.Before, or of all. A zero bound is open. Both bounds are
// exclusive and taken to the millisecond, as times are kept: a message at 12:00:00.123 is neither
// before nor after 12:00:00.123999, so a bound taken from a message's At leaves it out. None for
// r.Limit <= 0; chat.ErrNotFound for a room that does not exist, chat.ErrRoomInvalid for a name
// that is not a room's. A deleted room's messages are gone from History as from Recent.
//
// Rooms: Rooms lists every room in name order, each with the names invited to it in the order
// they were invited. SaveRoom creates a room (a zero Created is now) or updates its owner, topic
// and private flag, keeping its Created and its invitations (Room.Invited is ignored); an owner
// is a valid name or empty. DeleteRoom returns chat.ErrNotFound for a room that does not exist;
// otherwise it removes the room, its invitations, its memberships and every message appended to
// it before the call (committed or not), and nothing of any other room. The name may be used
// again at once, for a room that starts empty.
//
// Invitations: Invite records a valid name, registered or not, as given; inviting it again, in
// any case, changes nothing. It returns chat.ErrNotFound for a room that does not exist and a
// *chat.NameError (chat.ErrNameInvalid) for an invalid name.
//
// Memberships: only registered people have them. Memberships lists a name's rooms in name order
// (none for a name with no identity). AddMembership returns chat.ErrNotFound for a name that is
// not registered or a room that does not exist, and changes nothing when repeated;
// RemoveMembership of a membership that does not exist is no error.
//
// Private messages: QueueDM returns the message with its ID and its time (a zero At is now),
// and refuses an invalid recipient. TakeDMs returns a recipient's messages oldest first and
// forgets them: of concurrent takers, each message goes to exactly one.
//
// Bans: AddBan returns the ban with its ID (a zero Created is now) and refuses an unknown kind or
// an empty value. Bans lists the bans that have not expired, oldest first. RemoveBan returns the
// removed ban, or chat.ErrNotFound when there is no such ban or it has expired.
//
// Settings: Setting reports whether a key is set (an empty value is set); SetSetting replaces.
//
// Web tokens: AddWebToken stores a token of one of the three kinds (chat.WebLink, chat.WebSession,
// chat.WebBot) for a registered name, and returns it with its ID (the one given is ignored) and
// its times (a zero Created is now; a zero Expires never expires); Name and Label are kept as
// given. It refuses an unknown kind, a Hash that is not a hex SHA-256 (the secret itself, by
// mistake), a hash stored already, of any kind, and, with chat.ErrNotFound, a name that is not
// registered: a token signs in as a registered name only. It takes an expiry already past, and
// such a token is as good as gone, as every token is once its expiry passes: WebToken and
// TakeWebToken do not find it, WebTokens does not list it, RevokeWebTokens neither finds nor
// counts it, and it does not count towards the cap. WebToken and TakeWebToken find a token by its
// kind and hash (another kind is chat.ErrNotFound); TakeWebToken deletes it, and of many
// concurrent takers of one token exactly one gets it, the others chat.ErrNotFound. WebTokens
// lists a name's (chat.Fold) sessions and bot tokens oldest first, by Created, without its links.
// RevokeWebTokens(name, id) deletes the name's session or bot token id and returns 1, or
// chat.ErrNotFound when the name has no such token (another name's, a link, an expired one);
// RevokeWebTokens(name, 0) deletes every token of the name, links included, and returns how many
// there were (0 for none, with no error).
package storetest

import (
	"context"
	"testing"
	"time"

	"chatd/room"
)

// Store is what the suite tests: a room.Store, and Flush, which returns once every message
// appended before the call is committed (so that Recent returns it), or ctx is done.
type Store interface {
	room.Store
	Flush(ctx context.Context) error
}

// Run runs the suite, each area in a subtest of its own with a new store from open.
func Run(t *testing.T, open func(t *testing.T) Store) {
	areas := []struct {
		name string
		test func(t *testing.T, s Store)
	}{
		{"identities", testIdentities},
		{"claim race", testClaimRace},
		{"keys", testKeys},
		{"pending keys", testPendingKeys},
		{"caps", testCaps},
		{"history", testHistory},
		{"history ranges", testHistoryRange},
		{"rooms", testRooms},
		{"delete room", testDeleteRoom},
		{"memberships", testMemberships},
		{"invitations", testInvitations},
		{"DMs", testDMs},
		{"bans", testBans},
		{"settings", testSettings},
		{"web tokens", testWebTokens},
		{"web token take race", testWebTokenTakeRace},
		{"web token cap", testWebTokenCap},
	}
	for _, a := range areas {
		t.Run(a.name, func(t *testing.T) { a.test(t, open(t)) })
	}
}

// nextMilli waits until the wall clock is in a new millisecond, so that what the store does next
// has a later time than what it did before (times are kept to the millisecond).
func nextMilli() {
	ms := time.Now().UnixMilli()
	for time.Now().UnixMilli() == ms {
		time.Sleep(50 * time.Microsecond)
	}
}

// during checks that got is a time the store took between before and after: to the
// millisecond, in time.Local.
func during(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.Before(before.Truncate(time.Millisecond)) || got.After(after) || !got.Equal(got.Truncate(time.Millisecond)) {
		t.Errorf("%s = %v, want a time to the millisecond within [%v, %v]", what, got, before, after)
	}
	if got.Location() != time.Local {
		t.Errorf("%s is in %v, want time.Local", what, got.Location())
	}
}

// sameTime reports whether got is want as a store returns it: to the millisecond, in time.Local.
func sameTime(got, want time.Time) bool {
	return got.Equal(want.Truncate(time.Millisecond)) && (got.IsZero() || got.Location() == time.Local)
}

func flush(t *testing.T, s Store) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}
