package sqlite

// What chatd migrate reads of a database to copy it into a cluster: every kind of record as the
// store's own methods would return it, read through an Admin (no writer, no pruner, no schema
// migration). The caller holds the data directory, so nothing changes between the reads.

import (
	"context"
	"fmt"
	"time"

	"chatd/chat"
)

// needRooms refuses a database older than schema version 4 (rooms), which the cluster's
// records cannot describe: the server brings it up to date when it starts once.
func (a *Admin) needRooms(what string) error {
	if a.version < 4 {
		return fmt.Errorf("%s: the database has schema version %d: start chatd once on it to bring it to version %d", what, a.version, SchemaVersion())
	}
	return nil
}

// Rooms returns every room, in name order, each with the names invited to it in the order they
// were invited.
func (a *Admin) Rooms(ctx context.Context) ([]chat.Room, error) {
	if err := a.needRooms("rooms"); err != nil {
		return nil, err
	}
	rooms, err := readRooms(ctx, a.db)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	return rooms, nil
}

// ActiveBans returns the bans that have not expired at now, oldest first.
func (a *Admin) ActiveBans(ctx context.Context, now time.Time) ([]chat.Ban, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT id, kind, value, reason, by, created, expires FROM bans
		WHERE expires = 0 OR expires > ? ORDER BY id`, now.UnixMilli())
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer rows.Close()
	var bans []chat.Ban
	for rows.Next() {
		b, err := scanBan(rows)
		if err != nil {
			return nil, adminFail(a.path, err)
		}
		bans = append(bans, b)
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	return bans, nil
}

// QueuedDMs returns every private message waiting for its recipient, oldest first.
func (a *Admin) QueuedDMs(ctx context.Context) ([]chat.DM, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT id, at, sender, sender_addr, recipient, text FROM dms ORDER BY id`)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer rows.Close()
	var dms []chat.DM
	for rows.Next() {
		var dm chat.DM
		var at int64
		if err := rows.Scan(&dm.ID, &at, &dm.From, &dm.FromAddr, &dm.To, &dm.Text); err != nil {
			return nil, adminFail(a.path, err)
		}
		dm.At = fromMilli(at)
		dms = append(dms, dm)
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	return dms, nil
}

// Setting is a run-time setting (the message of the day).
type Setting struct {
	Key, Value string
}

// Settings returns every run-time setting, in key order.
func (a *Admin) Settings(ctx context.Context) ([]Setting, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT key, value FROM settings ORDER BY key`)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer rows.Close()
	var out []Setting
	for rows.Next() {
		var s Setting
		if err := rows.Scan(&s.Key, &s.Value); err != nil {
			return nil, adminFail(a.path, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	return out, nil
}

// LiveWebTokens returns every web token (browser sessions, bot tokens and sign-in links) that
// has not expired at now, as stored: by the hash of its secret, which the database never held.
// Oldest first; none for a database older than schema version 5.
func (a *Admin) LiveWebTokens(ctx context.Context, now time.Time) ([]chat.WebToken, error) {
	if ok, err := a.hasTable(ctx, "web_tokens"); err != nil || !ok {
		return nil, err
	}
	rows, err := a.db.QueryContext(ctx, `SELECT id, kind, hash, name, label, created, expires FROM web_tokens
		WHERE expires = 0 OR expires > ? ORDER BY id`, now.UnixMilli())
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer rows.Close()
	var out []chat.WebToken
	for rows.Next() {
		var t chat.WebToken
		var kind string
		var created, expires int64
		if err := rows.Scan(&t.ID, &kind, &t.Hash, &t.Name, &t.Label, &created, &expires); err != nil {
			return nil, adminFail(a.path, err)
		}
		t.Kind, t.Created = chat.WebTokenKind(kind), fromMilli(created)
		if expires != 0 {
			t.Expires = fromMilli(expires)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	return out, nil
}

// RoomHistory is one room's history, read by message ID (which increases along it), without
// what a deletion of an earlier room of the same name left to be deleted.
type RoomHistory struct {
	a    *Admin
	room string
}

// History returns room's history (room as chat.ParseRoom returns it).
func (a *Admin) History(room string) (*RoomHistory, error) {
	if err := a.needRooms("history"); err != nil {
		return nil, err
	}
	name, err := chat.ParseRoom(room)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return &RoomHistory{a: a, room: name}, nil
}

// The messages of the room that are its own: above the last one a deletion of its name still
// has to delete.
const roomHistoryWhere = `room = ?1 AND id > (SELECT coalesce(max(up_to), 0) FROM room_deletions WHERE room = ?1)`

// After returns up to n of the room's messages with IDs above id, oldest first.
func (h *RoomHistory) After(ctx context.Context, id int64, n int) ([]chat.Message, error) {
	rows, err := h.a.db.QueryContext(ctx, `SELECT id, at, kind, room, sender, text FROM messages INDEXED BY messages_room
		WHERE `+roomHistoryWhere+` AND id > ?2 ORDER BY id LIMIT ?3`, h.room, id, n)
	if err != nil {
		return nil, adminFail(h.a.path, err)
	}
	defer rows.Close()
	var msgs []chat.Message
	for rows.Next() {
		var m chat.Message
		var at int64
		if err := rows.Scan(&m.ID, &at, &m.Kind, &m.Room, &m.From, &m.Text); err != nil {
			return nil, adminFail(h.a.path, err)
		}
		m.At = fromMilli(at)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(h.a.path, err)
	}
	return msgs, nil
}

// Message returns the room's message with id, and whether the room has it.
func (h *RoomHistory) Message(ctx context.Context, id int64) (chat.Message, bool, error) {
	msgs, err := h.After(ctx, id-1, 1)
	if err != nil || len(msgs) == 0 || msgs[0].ID != id {
		return chat.Message{}, false, err
	}
	return msgs[0], true, nil
}

// Count returns how many of the room's messages have IDs up to id (every one, for id < 0), and
// the highest of their IDs (0 when there are none).
func (h *RoomHistory) Count(ctx context.Context, upTo int64) (n int, last int64, err error) {
	if upTo < 0 {
		upTo = 1<<63 - 1
	}
	err = h.a.db.QueryRowContext(ctx, `SELECT count(*), coalesce(max(id), 0) FROM messages INDEXED BY messages_room
		WHERE `+roomHistoryWhere+` AND id <= ?2`, h.room, upTo).Scan(&n, &last)
	if err != nil {
		return 0, 0, adminFail(h.a.path, err)
	}
	return n, last, nil
}
