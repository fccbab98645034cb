package room

import (
	"context"
	"time"

	"chatd/chat"
)

// Store is what the room keeps beyond the life of the process: which keys own which names, the
// rooms and who belongs to them, each room's history, private messages for people who are
// offline, bans and settings. Package store/sqlite implements it; package store/storetest is
// the conformance suite every implementation runs. A nil Store keeps the history in memory and
// pins no names.
//
// Names and room names are compared case-insensitively (chat.Fold); an implementation returns
// them as they were first stored. Errors a user can cause are the sentinels of package chat
// (chat.ErrNotFound, chat.ErrKeyExists, ...), wrapped or as a *chat.LimitError.
type Store interface {
	// Identities: names pinned to keys.
	Identity(name string) (chat.Identity, bool, error)
	Claim(name string, k chat.Key) (chat.Identity, bool, error)
	ProposeKey(name string, k chat.Key, expires time.Time) error
	ConfirmKey(name, fingerprint string) (chat.Identity, bool, error)
	RemoveKey(name, fingerprint string) error
	NamesOfKey(fingerprint string) ([]string, error)

	// History: Append never waits for storage; Flush returns once every message appended
	// before it is committed (or ctx is done); Recent returns the newest n committed messages of
	// a room, oldest first.
	Append(m chat.Message)
	Flush(ctx context.Context) error
	Recent(room string, n int) ([]chat.Message, error)
	// History returns the committed messages of a room in r, oldest first: the web client's
	// scrolling back and catching up after a reconnection.
	History(room string, r chat.HistoryRange) ([]chat.Message, error)

	// Private messages kept for someone offline.
	QueueDM(dm chat.DM) (chat.DM, error)
	TakeDMs(name string) ([]chat.DM, error)

	// Moderation.
	AddBan(b chat.Ban) (chat.Ban, error)
	RemoveBan(id int64) (chat.Ban, error)
	Bans() ([]chat.Ban, error)
	Setting(key string) (string, bool, error)
	SetSetting(key, value string) error

	// Rooms: every room with its settings and invitations. SaveRoom creates a room or updates
	// its owner, topic and private flag (not its invitations); DeleteRoom removes a room with its
	// invitations, memberships and history.
	Rooms() ([]chat.Room, error)
	SaveRoom(r chat.Room) error
	DeleteRoom(room string) error
	Invite(room, name string) error

	// Memberships: the rooms a registered person is in, to put them back in when they return.
	Memberships(name string) ([]string, error)
	AddMembership(name, room string) error
	RemoveMembership(name, room string) error

	// Web sign-in: tokens kept by the hash of their secret. AddWebToken stores a new one (its ID
	// assigned); TakeWebToken returns and deletes an unexpired token of a kind in one step, so a
	// one-time link works once however many use it at once; WebToken returns an unexpired token
	// without using it up; WebTokens lists a name's unexpired sessions and bot tokens (not its
	// links), oldest first; RevokeWebTokens deletes one of them by ID (0: every one of the name's
	// tokens, links included) and says how many went.
	AddWebToken(t chat.WebToken) (chat.WebToken, error)
	TakeWebToken(kind chat.WebTokenKind, hash string) (chat.WebToken, error)
	WebToken(kind chat.WebTokenKind, hash string) (chat.WebToken, error)
	WebTokens(name string) ([]chat.WebToken, error)
	RevokeWebTokens(name string, id int64) (int, error)
}
