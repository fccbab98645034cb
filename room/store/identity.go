package store

import (
	"database/sql"
	"errors"
	"fmt"
)

// validName reports whether name can be stored: non-empty ASCII letters, digits, '_', '.', '-'.
// The room applies its own, stricter rules (length, first character, reserved names).
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// fold is the lookup form of a name: ASCII lower case.
func fold(name string) string {
	b := []byte(name)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	Query(query string, args ...any) (*sql.Rows, error)
}

// loadIdentity reads the identity whose folded name is key, with its keys, in one statement (so
// one snapshot).
func loadIdentity(q querier, key string) (Identity, bool, error) {
	rows, err := q.Query(`
		SELECT i.name, i.created, k.fingerprint, k.type, k.authorized_key, k.added
		FROM identities i LEFT JOIN keys k ON k.identity = i.name_key
		WHERE i.name_key = ?
		ORDER BY k.added, k.id`, key)
	if err != nil {
		return Identity{}, false, err
	}
	defer rows.Close()
	var id Identity
	found := false
	for rows.Next() {
		var created int64
		var fp, typ, ak sql.NullString
		var added sql.NullInt64
		if err := rows.Scan(&id.Name, &created, &fp, &typ, &ak, &added); err != nil {
			return Identity{}, false, err
		}
		found = true
		id.Created = fromMilli(created)
		if fp.Valid {
			id.Keys = append(id.Keys, Key{Fingerprint: fp.String, Type: typ.String, AuthorizedKey: ak.String, Added: fromMilli(added.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return Identity{}, false, err
	}
	if !found {
		return Identity{}, false, nil
	}
	return id, true, nil
}

// Identity returns the identity that owns name, compared case-insensitively, or false when the
// name is unclaimed.
func (s *SQLite) Identity(name string) (Identity, bool, error) {
	if s.isClosed() {
		return Identity{}, false, fmt.Errorf("identity: %w", errClosed)
	}
	if !validName(name) {
		return Identity{}, false, nil // no such name can have been claimed
	}
	id, ok, err := loadIdentity(s.db, fold(name))
	if err != nil {
		return Identity{}, false, s.fail("identity", err)
	}
	return id, ok, nil
}

// Claim creates the identity name owned by k if name is unclaimed, and returns it with true. If
// name is claimed already, it returns the existing identity, unchanged, and false: whether k is
// one of its keys is for the caller to check. Of several concurrent claims of one name, exactly
// one creates it, in this process or any other.
func (s *SQLite) Claim(name string, k Key) (Identity, bool, error) {
	if s.isClosed() {
		return Identity{}, false, fmt.Errorf("claim: %w", errClosed)
	}
	if !validName(name) {
		return Identity{}, false, fmt.Errorf("claim: invalid name %q", name)
	}
	if k.Fingerprint == "" {
		return Identity{}, false, errors.New("claim: key has no fingerprint")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin() // BEGIN IMMEDIATE: no other writer until Commit
	if err != nil {
		return Identity{}, false, s.fail("claim", err)
	}
	defer tx.Rollback()
	key := fold(name)
	if id, ok, err := loadIdentity(tx, key); err != nil || ok {
		if err != nil {
			return Identity{}, false, s.fail("claim", err)
		}
		return id, false, nil
	}
	now := s.now().UnixMilli()
	added := now
	if !k.Added.IsZero() {
		added = k.Added.UnixMilli()
	}
	// The primary key would refuse a second owner even if the check above were wrong.
	if _, err := tx.Exec(`INSERT INTO identities(name_key, name, created) VALUES (?, ?, ?)`, key, name, now); err != nil {
		return Identity{}, false, s.fail("claim", err)
	}
	if _, err := tx.Exec(`INSERT INTO keys(identity, fingerprint, type, authorized_key, added) VALUES (?, ?, ?, ?, ?)`,
		key, k.Fingerprint, k.Type, k.AuthorizedKey, added); err != nil {
		return Identity{}, false, s.fail("claim", err)
	}
	if err := tx.Commit(); err != nil {
		return Identity{}, false, s.fail("claim", err)
	}
	k.Added = fromMilli(added)
	return Identity{Name: name, Created: fromMilli(now), Keys: []Key{k}}, true, nil
}

// AddKey adds k to name's keys. It returns ErrNotFound when name is unclaimed, ErrKeyExists when
// k (by fingerprint) is one of its keys already.
func (s *SQLite) AddKey(name string, k Key) error {
	if s.isClosed() {
		return fmt.Errorf("add key: %w", errClosed)
	}
	if k.Fingerprint == "" {
		return errors.New("add key: key has no fingerprint")
	}
	added := s.unixMilli(k.Added)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail("add key", err)
	}
	defer tx.Rollback()
	key := fold(name)
	var hasIdentity, hasKey bool
	err = tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM identities WHERE name_key = ?),
		EXISTS (SELECT 1 FROM keys WHERE identity = ? AND fingerprint = ?)`, key, key, k.Fingerprint).Scan(&hasIdentity, &hasKey)
	switch {
	case err != nil:
		return s.fail("add key", err)
	case !hasIdentity:
		return fmt.Errorf("add key: %q: %w", name, ErrNotFound)
	case hasKey:
		return fmt.Errorf("add key: %s: %w", k.Fingerprint, ErrKeyExists)
	}
	if _, err := tx.Exec(`INSERT INTO keys(identity, fingerprint, type, authorized_key, added) VALUES (?, ?, ?, ?, ?)`,
		key, k.Fingerprint, k.Type, k.AuthorizedKey, added); err != nil {
		return s.fail("add key", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("add key", err)
	}
	return nil
}

// RemoveKey removes the key with fingerprint from name's keys. It returns ErrNotFound when name
// is unclaimed or the key is not one of its keys, ErrLastKey when it is the only one.
func (s *SQLite) RemoveKey(name, fingerprint string) error {
	if s.isClosed() {
		return fmt.Errorf("remove key: %w", errClosed)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail("remove key", err)
	}
	defer tx.Rollback()
	key := fold(name)
	var hasIdentity, hasKey bool
	var keys int
	err = tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM identities WHERE name_key = ?),
		EXISTS (SELECT 1 FROM keys WHERE identity = ? AND fingerprint = ?),
		(SELECT count(*) FROM keys WHERE identity = ?)`, key, key, fingerprint, key).Scan(&hasIdentity, &hasKey, &keys)
	switch {
	case err != nil:
		return s.fail("remove key", err)
	case !hasIdentity:
		return fmt.Errorf("remove key: %q: %w", name, ErrNotFound)
	case !hasKey:
		return fmt.Errorf("remove key: %s: %w", fingerprint, ErrNotFound)
	case keys <= 1:
		return fmt.Errorf("remove key: %s: %w", fingerprint, ErrLastKey)
	}
	if _, err := tx.Exec(`DELETE FROM keys WHERE identity = ? AND fingerprint = ?`, key, fingerprint); err != nil {
		return s.fail("remove key", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("remove key", err)
	}
	return nil
}
