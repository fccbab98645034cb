package store

import (
	"fmt"
)

// QueueDM stores dm for its recipient (dm.To, compared case-insensitively) until TakeDMs, and
// returns it with its ID, and its time as stored (a zero dm.At is now). It returns ErrQueueFull
// when MaxQueuedDMs are waiting for the recipient already.
func (s *SQLite) QueueDM(dm DM) (DM, error) {
	if s.isClosed() {
		return DM{}, fmt.Errorf("queue dm: %w", errClosed)
	}
	if !validName(dm.To) {
		return DM{}, fmt.Errorf("queue dm: invalid recipient %q", dm.To)
	}
	at := s.unixMilli(dm.At)
	key := fold(dm.To)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return DM{}, s.fail("queue dm", err)
	}
	defer tx.Rollback()
	var waiting int
	if err := tx.QueryRow(`SELECT count(*) FROM dms WHERE recipient_key = ?`, key).Scan(&waiting); err != nil {
		return DM{}, s.fail("queue dm", err)
	}
	if waiting >= s.cfg.MaxQueuedDMs {
		return DM{}, fmt.Errorf("queue dm: %d waiting for %s: %w", waiting, dm.To, ErrQueueFull)
	}
	res, err := tx.Exec(`INSERT INTO dms(at, sender, recipient_key, recipient, text) VALUES (?, ?, ?, ?, ?)`,
		at, dm.From, key, dm.To, dm.Text)
	if err != nil {
		return DM{}, s.fail("queue dm", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return DM{}, s.fail("queue dm", err)
	}
	if err := tx.Commit(); err != nil {
		return DM{}, s.fail("queue dm", err)
	}
	dm.ID, dm.At = id, fromMilli(at)
	return dm, nil
}

// TakeDMs returns the private messages waiting for name (case-insensitively), oldest first, and
// deletes them in the same transaction: each is returned once.
func (s *SQLite) TakeDMs(name string) ([]DM, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("take dms: %w", errClosed)
	}
	key := fold(name)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return nil, s.fail("take dms", err)
	}
	defer tx.Rollback()
	rows, err := tx.Query(`SELECT id, at, sender, recipient, text FROM dms WHERE recipient_key = ? ORDER BY id`, key)
	if err != nil {
		return nil, s.fail("take dms", err)
	}
	var dms []DM
	for rows.Next() {
		var dm DM
		var at int64
		if err := rows.Scan(&dm.ID, &at, &dm.From, &dm.To, &dm.Text); err != nil {
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
