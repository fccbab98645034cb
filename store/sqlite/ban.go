package sqlite

import (
	"database/sql"
	"errors"
	"fmt"

	"chatd/chat"
)

// AddBan stores b and returns it with its ID (and Created set when it was zero).
func (s *SQLite) AddBan(b chat.Ban) (chat.Ban, error) {
	if s.isClosed() {
		return chat.Ban{}, fmt.Errorf("add ban: %w", errClosed)
	}
	switch b.Kind {
	case chat.BanName, chat.BanKey, chat.BanIP:
	default:
		return chat.Ban{}, fmt.Errorf("add ban: unknown kind %q", b.Kind)
	}
	if b.Value == "" {
		return chat.Ban{}, errors.New("add ban: empty value")
	}
	created := s.unixMilli(b.Created)
	var expires int64
	if !b.Expires.IsZero() {
		expires = b.Expires.UnixMilli()
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	res, err := s.db.Exec(`INSERT INTO bans(kind, value, reason, by, created, expires) VALUES (?, ?, ?, ?, ?, ?)`,
		string(b.Kind), b.Value, b.Reason, b.By, created, expires)
	if err != nil {
		return chat.Ban{}, s.fail("add ban", err)
	}
	if b.ID, err = res.LastInsertId(); err != nil {
		return chat.Ban{}, s.fail("add ban", err)
	}
	b.Created = fromMilli(created)
	return b, nil
}

// RemoveBan deletes the ban with id and returns it; ErrNotFound when there is none.
func (s *SQLite) RemoveBan(id int64) (chat.Ban, error) {
	if s.isClosed() {
		return chat.Ban{}, fmt.Errorf("remove ban: %w", errClosed)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	b, err := scanBan(s.db.QueryRow(`DELETE FROM bans WHERE id = ? RETURNING id, kind, value, reason, by, created, expires`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Ban{}, fmt.Errorf("remove ban %d: %w", id, chat.ErrNotFound)
	}
	if err != nil {
		return chat.Ban{}, s.fail("remove ban", err)
	}
	return b, nil
}

// Bans returns every ban that has not expired, oldest first. Expired ones are deleted.
func (s *SQLite) Bans() ([]chat.Ban, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("bans: %w", errClosed)
	}
	now := s.cfg.Now().UnixMilli()
	s.writeMu.Lock()
	_, err := s.db.Exec(`DELETE FROM bans WHERE expires != 0 AND expires <= ?`, now)
	s.writeMu.Unlock()
	if err != nil {
		return nil, s.fail("bans", err)
	}
	rows, err := s.db.Query(`SELECT id, kind, value, reason, by, created, expires FROM bans ORDER BY id`)
	if err != nil {
		return nil, s.fail("bans", err)
	}
	defer rows.Close()
	var bans []chat.Ban
	for rows.Next() {
		b, err := scanBan(rows)
		if err != nil {
			return nil, s.fail("bans", err)
		}
		bans = append(bans, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("bans", err)
	}
	return bans, nil
}

func scanBan(row interface{ Scan(...any) error }) (chat.Ban, error) {
	var b chat.Ban
	var kind string
	var created, expires int64
	if err := row.Scan(&b.ID, &kind, &b.Value, &b.Reason, &b.By, &created, &expires); err != nil {
		return chat.Ban{}, err
	}
	b.Kind, b.Created = chat.BanKind(kind), fromMilli(created)
	if expires != 0 {
		b.Expires = fromMilli(expires)
	}
	return b, nil
}

// Setting returns the value of a run-time setting, and whether it is set.
func (s *SQLite) Setting(key string) (string, bool, error) {
	if s.isClosed() {
		return "", false, fmt.Errorf("setting: %w", errClosed)
	}
	var v string
	err := s.db.QueryRow(`SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, s.fail("setting", err)
	}
	return v, true, nil
}

// SetSetting stores a run-time setting.
func (s *SQLite) SetSetting(key, value string) error {
	if s.isClosed() {
		return fmt.Errorf("set setting: %w", errClosed)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.Exec(`INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return s.fail("set setting", err)
	}
	return nil
}
