package sqlite

import (
	"fmt"
	"slices"
	"time"

	"chatd/chat"
)

// historyBeforeSQL and historyAfterSQL read a room's messages in a time range, walking
// messages_room_at from one bound (?2, exclusive, Unix ms) towards the other (?3): backwards
// from Before for the newest ?4, forwards from After for the oldest. Messages of one millisecond
// come in append order (the index's rowid). Those up to the room's pending deletion (see
// DeleteRoom) are gone already, whatever is left of their rows.
const (
	historyBeforeSQL = `SELECT id, at, kind, sender, text FROM messages
	WHERE room = ?1 AND at < ?2 AND at > ?3 AND id > (SELECT coalesce(max(up_to), 0) FROM room_deletions WHERE room = ?1)
	ORDER BY at DESC, id DESC LIMIT ?4`
	historyAfterSQL = `SELECT id, at, kind, sender, text FROM messages
	WHERE room = ?1 AND at > ?2 AND at < ?3 AND id > (SELECT coalesce(max(up_to), 0) FROM room_deletions WHERE room = ?1)
	ORDER BY at, id LIMIT ?4`
)

// History returns the committed messages of room in r, oldest first: with r.After set, the
// oldest r.Limit after it; otherwise the newest r.Limit before r.Before (or the newest of all).
// Both bounds are exclusive and taken to the millisecond, as messages' times are stored: a
// message at 12:00:00.123 is neither before nor after 12:00:00.123456, so that a bound taken
// from a message's At, stored or not yet, leaves that message out. None for r.Limit <= 0, and
// ErrNotFound when the room does not exist.
func (s *SQLite) History(room string, r chat.HistoryRange) ([]chat.Message, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("history: %w", errClosed)
	}
	room, err := chat.ParseRoom(room)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if r.Limit <= 0 {
		return nil, nil
	}
	before, after := int64(maxMilli), int64(minMilli)
	if !r.Before.IsZero() {
		before = floorMilli(r.Before)
	}
	if !r.After.IsZero() {
		after = floorMilli(r.After)
	}
	query, from, to := historyBeforeSQL, before, after
	if !r.After.IsZero() {
		query, from, to = historyAfterSQL, after, before
	}
	msgs, err := s.roomMessages("history", room, query, room, from, to, r.Limit)
	if err != nil {
		return nil, err
	}
	if query == historyBeforeSQL {
		slices.Reverse(msgs)
	}
	return msgs, nil
}

// The open bounds of a range: beyond any time a message can have.
const (
	maxMilli = 1<<63 - 1
	minMilli = -1 << 63
)

// floorMilli is t in Unix ms, rounded down as Time.Truncate rounds (UnixMilli rounds towards
// zero: up, before 1970).
func floorMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).After(t) {
		ms--
	}
	return ms
}
