package sqlite

import (
	"fmt"

	"chatd/chat"
)

// QueueDM stores dm for its recipient (dm.To, compared case-insensitively) until TakeDMs, and
// returns it with its ID, and its time as stored (a zero dm.At is now). It refuses it with a
// *LimitError when the recipient has MaxQueuedDMs messages waiting already (ErrQueueFull), when
// MaxQueuedDMsPerSender of them are from dm.From, compared case-insensitively
// (ErrSenderQueueFull), or when MaxQueuedDMsPerAddr of them are from dm.FromAddr
// (ErrAddrQueueFull; an empty FromAddr is not counted). The sender's caps come first: a sender
// at its own cap is told so, whatever the others sent.
func (s *SQLite) QueueDM(dm chat.DM) (chat.DM, error) {
	if s.isClosed() {
		return chat.DM{}, fmt.Errorf("queue dm: %w", errClosed)
	}
	if !chat.ValidName(dm.To) {
		return chat.DM{}, fmt.Errorf("queue dm: invalid recipient %q", dm.To)
	}
	at := s.unixMilli(dm.At)
	key, sender := chat.Fold(dm.To), chat.Fold(dm.From)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return chat.DM{}, s.fail("queue dm", err)
	}
	defer tx.Rollback()
	// One pass over the recipient's queue (its index; at most MaxQueuedDMs rows) counts all three.
	var waiting, fromSender, fromAddr int
	if err := tx.QueryRow(`SELECT count(*), coalesce(sum(sender_key = ?), 0), coalesce(sum(sender_addr = ? AND sender_addr != ''), 0)
		FROM dms WHERE recipient_key = ?`, sender, dm.FromAddr, key).Scan(&waiting, &fromSender, &fromAddr); err != nil {
		return chat.DM{}, s.fail("queue dm", err)
	}
	if limit := s.cfg.DMQueueFull(waiting, fromSender, fromAddr, dm.FromAddr != ""); limit != nil {
		return chat.DM{}, fmt.Errorf("queue dm: for %s: %w", dm.To, limit)
	}
	res, err := tx.Exec(`INSERT INTO dms(at, sender, sender_key, sender_addr, recipient_key, recipient, text) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		at, dm.From, sender, dm.FromAddr, key, dm.To, dm.Text)
	if err != nil {
		return chat.DM{}, s.fail("queue dm", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return chat.DM{}, s.fail("queue dm", err)
	}
	if err := tx.Commit(); err != nil {
		return chat.DM{}, s.fail("queue dm", err)
	}
	dm.ID, dm.At = id, fromMilli(at)
	return dm, nil
}

// TakeDMs returns the private messages waiting for name (case-insensitively), oldest first, and
// deletes them in the same transaction: each is returned once.
func (s *SQLite) TakeDMs(name string) ([]chat.DM, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("take dms: %w", errClosed)
	}
	key := chat.Fold(name)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return nil, s.fail("take dms", err)
	}
	defer tx.Rollback()
	rows, err := tx.Query(`SELECT id, at, sender, sender_addr, recipient, text FROM dms WHERE recipient_key = ? ORDER BY id`, key)
	if err != nil {
		return nil, s.fail("take dms", err)
	}
	var dms []chat.DM
	for rows.Next() {
		var dm chat.DM
		var at int64
		if err := rows.Scan(&dm.ID, &at, &dm.From, &dm.FromAddr, &dm.To, &dm.Text); err != nil {
			rows.Close()
			return nil, s.fail("take dms", err)
		}
		dm.At = fromMilli(at)
		dms = append(dms, dm)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.fail("take dms", err)
	}
	if len(dms) == 0 {
		return nil, nil
	}
	// Exactly the rows read: no other writer can have added one since (BEGIN IMMEDIATE), but
	// the bound says so without relying on it.
	if _, err := tx.Exec(`DELETE FROM dms WHERE recipient_key = ? AND id <= ?`, key, dms[len(dms)-1].ID); err != nil {
		return nil, s.fail("take dms", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, s.fail("take dms", err)
	}
	return dms, nil
}
