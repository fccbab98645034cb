package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"chatd/chat"
)

// roomExists reports whether room (as chat.ParseRoom returns it) exists.
func roomExists(q querier, room string) (bool, error) {
	rows, err := q.Query(`SELECT 1 FROM rooms WHERE name = ?`, room)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// Rooms returns every room, in name order, each with the names invited to it in the order they
// were invited.
func (s *SQLite) Rooms() ([]chat.Room, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("rooms: %w", errClosed)
	}
	rooms, err := readRooms(context.Background(), s.db)
	if err != nil {
		return nil, s.fail("rooms", err)
	}
	return rooms, nil
}

// readRooms reads every room with its invitations, in name order, each room's invitations in
// the order they were made. One statement, so one snapshot: no room without the invitations it
// had.
func readRooms(ctx context.Context, db *sql.DB) ([]chat.Room, error) {
	rows, err := db.QueryContext(ctx, `SELECT r.name, r.owner, r.topic, r.private, r.created, i.name
		FROM rooms r LEFT JOIN invitations i ON i.room = r.name
		ORDER BY r.name, i.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rooms []chat.Room
	for rows.Next() {
		var r chat.Room
		var created int64
		var invited sql.NullString
		if err := rows.Scan(&r.Name, &r.Owner, &r.Topic, &r.Private, &created, &invited); err != nil {
			return nil, err
		}
		if n := len(rooms); n == 0 || rooms[n-1].Name != r.Name {
			r.Created = fromMilli(created)
			rooms = append(rooms, r)
		}
		if invited.Valid {
			last := &rooms[len(rooms)-1]
			last.Invited = append(last.Invited, invited.String)
		}
	}
	return rooms, rows.Err()
}

// SaveRoom creates r, or updates its owner, topic and private flag if it exists; r.Invited is
// ignored (see Invite), and so is r.Created for a room that exists. A zero r.Created is now.
// r.Name is read as chat.ParseRoom reads it; r.Owner is a valid name or "" for none.
func (s *SQLite) SaveRoom(r chat.Room) error {
	if s.isClosed() {
		return fmt.Errorf("save room: %w", errClosed)
	}
	name, err := chat.ParseRoom(r.Name)
	if err != nil {
		return fmt.Errorf("save room: %w", err)
	}
	if r.Owner != "" {
		if err := chat.ValidateName(r.Owner); err != nil {
			return fmt.Errorf("save room %s: owner: %w", name, err)
		}
	}
	created := s.unixMilli(r.Created)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.Exec(`INSERT INTO rooms(name, owner, topic, private, created) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, topic = excluded.topic, private = excluded.private`,
		name, r.Owner, r.Topic, r.Private, created); err != nil {
		return s.fail("save room", err)
	}
	return nil
}

// DeleteRoom removes room, its invitations, its memberships and its history: every message
// appended to it before the call. It returns ErrNotFound when the room does not exist.
//
// The room, its invitations and memberships go in one transaction, which also records the
// history as to be deleted up to its newest message: from then on the room is gone, its name
// free, and Recent shows none of its old messages. The history's rows are then deleted in
// chunks, each a short transaction, so that the writer takes turns with them however long the
// history. Should that fail (or the process stop), the pruner finishes the job; DeleteRoom still
// returns nil, the room being gone.
func (s *SQLite) DeleteRoom(room string) error {
	if s.isClosed() {
		return fmt.Errorf("delete room: %w", errClosed)
	}
	room, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("delete room: %w", err)
	}
	// What was appended before the call is committed first, so that the bound covers it.
	ctx, cancel := context.WithTimeout(context.Background(), busyTimeout)
	err = s.q.settle(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("delete room %s: wait for the history's writer: %w", room, err)
	}
	upTo, err := s.dropRoom(room)
	if err != nil {
		return err
	}
	if upTo > 0 {
		if _, err := s.deleteHistory(room, upTo); err != nil && !s.isClosed() {
			s.log.Error("cannot delete a deleted room's history; the pruner will retry", "room", room, "err", err)
		}
	}
	return nil
}

// dropRoom deletes room with its invitations and memberships, and records its history as to be
// deleted; it returns the bound of that history (0 for none).
func (s *SQLite) dropRoom(room string) (int64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return 0, s.fail("delete room", err)
	}
	defer tx.Rollback()
	var exists bool
	var upTo int64
	if err := tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ?1),
		coalesce((SELECT max(id) FROM messages WHERE room = ?1), 0)`, room).Scan(&exists, &upTo); err != nil {
		return 0, s.fail("delete room", err)
	}
	if !exists {
		return 0, fmt.Errorf("delete room %s: %w", room, chat.ErrNotFound)
	}
	for _, q := range []string{
		`DELETE FROM memberships WHERE room = ?`,
		`DELETE FROM invitations WHERE room = ?`,
		`DELETE FROM rooms WHERE name = ?`,
	} {
		if _, err := tx.Exec(q, room); err != nil {
			return 0, s.fail("delete room", err)
		}
	}
	if upTo > 0 {
		if _, err := tx.Exec(`INSERT INTO room_deletions(room, up_to) VALUES (?, ?)
			ON CONFLICT(room) DO UPDATE SET up_to = max(up_to, excluded.up_to)`, room, upTo); err != nil {
			return 0, s.fail("delete room", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, s.fail("delete room", err)
	}
	return upTo, nil
}

// deleteHistory deletes room's messages up to id upTo, oldest first and a chunk at a time, then
// forgets the pending deletion. It returns how many messages it deleted.
func (s *SQLite) deleteHistory(room string, upTo int64) (int, error) {
	total := 0
	for {
		n, err := s.deleteChunk("delete history", `DELETE FROM messages WHERE id IN
			(SELECT id FROM messages WHERE room = ? AND id <= ? ORDER BY id LIMIT ?)`, room, upTo, s.p.opts.chunk)
		total += n
		if err != nil {
			return total, err
		}
		if n < s.p.opts.chunk {
			break
		}
		if s.isClosed() {
			return total, nil // the next start finishes it
		}
		s.p.opts.betweenChunks()
	}
	// The bound may have been raised meanwhile, by the deletion of a room of the same name made
	// since: that deletion is not done yet.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.Exec(`DELETE FROM room_deletions WHERE room = ? AND up_to = ?`, room, upTo); err != nil {
		return total, s.fail("delete history", err)
	}
	return total, nil
}

// finishRoomDeletions deletes what is left of deleted rooms' histories: what a crash, a failure
// or Close interrupted.
func (s *SQLite) finishRoomDeletions() (int, error) {
	rows, err := s.db.Query(`SELECT room, up_to FROM room_deletions`)
	if err != nil {
		return 0, s.fail("delete history", err)
	}
	type pending struct {
		room string
		upTo int64
	}
	var todo []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.room, &p.upTo); err != nil {
			rows.Close()
			return 0, s.fail("delete history", err)
		}
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, s.fail("delete history", err)
	}
	total := 0
	for _, p := range todo {
		n, err := s.deleteHistory(p.room, p.upTo)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Invite adds name (a valid name, registered or not) to room's invitations, as given; inviting
// a name again, in any case, changes nothing. It returns ErrNotFound when the room does not
// exist, and a *chat.NameError for an invalid name.
func (s *SQLite) Invite(room, name string) error {
	if s.isClosed() {
		return fmt.Errorf("invite: %w", errClosed)
	}
	room, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("invite: %w", err)
	}
	if err := chat.ValidateName(name); err != nil {
		return fmt.Errorf("invite to %s: %w", room, err)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail("invite", err)
	}
	defer tx.Rollback()
	switch ok, err := roomExists(tx, room); {
	case err != nil:
		return s.fail("invite", err)
	case !ok:
		return fmt.Errorf("invite to %s: %w", room, chat.ErrNotFound)
	}
	if _, err := tx.Exec(`INSERT INTO invitations(room, name_key, name) VALUES (?, ?, ?) ON CONFLICT(room, name_key) DO NOTHING`,
		room, chat.Fold(name), name); err != nil {
		return s.fail("invite", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("invite", err)
	}
	return nil
}

// Memberships returns the rooms name (compared case-insensitively) is a member of, in name
// order; none for a name that is not registered.
func (s *SQLite) Memberships(name string) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("memberships: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return nil, nil
	}
	rows, err := s.prepared(nil).Query(`SELECT room FROM memberships WHERE name_key = ? ORDER BY room`, chat.Fold(name))
	if err != nil {
		return nil, s.fail("memberships", err)
	}
	defer rows.Close()
	var rooms []string
	for rows.Next() {
		var room string
		if err := rows.Scan(&room); err != nil {
			return nil, s.fail("memberships", err)
		}
		rooms = append(rooms, room)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("memberships", err)
	}
	return rooms, nil
}

// AddMembership records that name, a registered name, is a member of room; again changes
// nothing. It returns ErrNotFound when name is not registered (only registered people come
// back: a guest's memberships would be anyone's, and would pile up) or room does not exist.
func (s *SQLite) AddMembership(name, room string) error {
	if s.isClosed() {
		return fmt.Errorf("add membership: %w", errClosed)
	}
	room, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("add membership: %w", err)
	}
	key := chat.Fold(name)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail("add membership", err)
	}
	defer tx.Rollback()
	var registered, exists bool
	if err := tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM identities WHERE name_key = ?), EXISTS (SELECT 1 FROM rooms WHERE name = ?)`,
		key, room).Scan(&registered, &exists); err != nil {
		return s.fail("add membership", err)
	}
	switch {
	case !registered:
		return fmt.Errorf("add membership: %s: %w", chat.QuoteName(name), chat.ErrNotFound)
	case !exists:
		return fmt.Errorf("add membership: %s: %w", room, chat.ErrNotFound)
	}
	if _, err := tx.Exec(`INSERT INTO memberships(name_key, room) VALUES (?, ?) ON CONFLICT DO NOTHING`, key, room); err != nil {
		return s.fail("add membership", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("add membership", err)
	}
	return nil
}

// RemoveMembership records that name is no longer a member of room. A membership that does not
// exist is no error: the outcome is the same.
func (s *SQLite) RemoveMembership(name, room string) error {
	if s.isClosed() {
		return fmt.Errorf("remove membership: %w", errClosed)
	}
	room, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("remove membership: %w", err)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.Exec(`DELETE FROM memberships WHERE name_key = ? AND room = ?`, chat.Fold(name), room); err != nil {
		return s.fail("remove membership", err)
	}
	return nil
}
