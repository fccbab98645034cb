package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"chatd/chat"
)

// querier runs a look-up: the store's prepared statements, inside a transaction or not.
type querier interface {
	Query(query string, args ...any) (*sql.Rows, error)
}

// loadIdentity reads the identity whose folded name is key, with its active keys and the
// pending ones that have not expired at now (Unix ms), in one statement (so one snapshot).
func loadIdentity(q querier, key string, now int64) (chat.Identity, bool, error) {
	rows, err := q.Query(`
		SELECT i.name, i.created, k.fingerprint, k.type, k.authorized_key, k.added, k.expires
		FROM identities i LEFT JOIN keys k ON k.identity = i.name_key AND (k.expires = 0 OR k.expires > ?)
		WHERE i.name_key = ?
		ORDER BY k.added, k.id`, now, key)
	if err != nil {
		return chat.Identity{}, false, err
	}
	defer rows.Close()
	var id chat.Identity
	found := false
	for rows.Next() {
		var created int64
		var fp, typ, ak sql.NullString
		var added, expires sql.NullInt64
		if err := rows.Scan(&id.Name, &created, &fp, &typ, &ak, &added, &expires); err != nil {
			return chat.Identity{}, false, err
		}
		found = true
		id.Created = fromMilli(created)
		if !fp.Valid {
			continue
		}
		k := chat.Key{Fingerprint: fp.String, Type: typ.String, AuthorizedKey: ak.String, Added: fromMilli(added.Int64)}
		if expires.Int64 == 0 {
			id.Keys = append(id.Keys, k)
		} else {
			k.Expires = fromMilli(expires.Int64)
			id.Pending = append(id.Pending, k)
		}
	}
	if err := rows.Err(); err != nil {
		return chat.Identity{}, false, err
	}
	if !found {
		return chat.Identity{}, false, nil
	}
	return id, true, nil
}

// namesOfKey returns the display names that fingerprint is an active key of, in name order.
func namesOfKey(q querier, fingerprint string) ([]string, error) {
	rows, err := q.Query(`
		SELECT i.name FROM keys k JOIN identities i ON i.name_key = k.identity
		WHERE k.fingerprint = ? AND k.expires = 0
		ORDER BY i.name_key`, fingerprint)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, rows.Err()
}

// checkNameLimit refuses one more name for fingerprint once it holds MaxNamesPerKey.
func (s *SQLite) checkNameLimit(q querier, fingerprint string) error {
	names, err := namesOfKey(q, fingerprint)
	if err != nil {
		return err
	}
	if len(names) >= s.cfg.MaxNamesPerKey {
		return &chat.LimitError{Err: chat.ErrNameLimit, Max: s.cfg.MaxNamesPerKey, Names: names}
	}
	return nil
}

// Identity returns the identity that owns name, compared case-insensitively, or false when the
// name is unclaimed.
func (s *SQLite) Identity(name string) (chat.Identity, bool, error) {
	if s.isClosed() {
		return chat.Identity{}, false, fmt.Errorf("identity: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return chat.Identity{}, false, nil // no such name can have been claimed
	}
	id, ok, err := loadIdentity(s.prepared(nil), chat.Fold(name), s.now().UnixMilli())
	if err != nil {
		return chat.Identity{}, false, s.fail("identity", err)
	}
	return id, ok, nil
}

// NamesOfKey returns the names that the key with fingerprint may log in as (it is one of their
// active keys), in name order; none when it is nobody's.
func (s *SQLite) NamesOfKey(fingerprint string) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("names of key: %w", errClosed)
	}
	names, err := namesOfKey(s.prepared(nil), fingerprint)
	if err != nil {
		return nil, s.fail("names of key", err)
	}
	return names, nil
}

// Claim creates the identity name owned by k if name is unclaimed, and returns it with true. If
// name is claimed already, it returns the existing identity, unchanged, and false: whether k is
// one of its keys is for the caller to check. Of several concurrent claims of one name, exactly
// one creates it, in this process or any other. A claim of a free name by a key that holds
// MaxNamesPerKey names already fails with a *LimitError wrapping ErrNameLimit.
func (s *SQLite) Claim(name string, k chat.Key) (chat.Identity, bool, error) {
	if s.isClosed() {
		return chat.Identity{}, false, fmt.Errorf("claim: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return chat.Identity{}, false, fmt.Errorf("claim: invalid name %q", name)
	}
	if k.Fingerprint == "" {
		return chat.Identity{}, false, errors.New("claim: key has no fingerprint")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin() // BEGIN IMMEDIATE: no other writer until Commit
	if err != nil {
		return chat.Identity{}, false, s.fail("claim", err)
	}
	defer tx.Rollback()
	key := chat.Fold(name)
	now := s.now().UnixMilli()
	if id, ok, err := loadIdentity(s.prepared(tx), key, now); err != nil || ok {
		if err != nil {
			return chat.Identity{}, false, s.fail("claim", err)
		}
		return id, false, nil
	}
	if err := s.checkNameLimit(s.prepared(tx), k.Fingerprint); err != nil {
		return chat.Identity{}, false, s.fail("claim", err)
	}
	added := now
	if !k.Added.IsZero() {
		added = k.Added.UnixMilli()
	}
	// The primary key would refuse a second owner even if the check above were wrong.
	p := s.prepared(tx)
	if _, err := p.Exec(`INSERT INTO identities(name_key, name, created) VALUES (?, ?, ?)`, key, name, now); err != nil {
		return chat.Identity{}, false, s.fail("claim", err)
	}
	if _, err := p.Exec(`INSERT INTO keys(identity, fingerprint, type, authorized_key, added) VALUES (?, ?, ?, ?, ?)`,
		key, k.Fingerprint, k.Type, k.AuthorizedKey, added); err != nil {
		return chat.Identity{}, false, s.fail("claim", err)
	}
	if err := tx.Commit(); err != nil {
		return chat.Identity{}, false, s.fail("claim", err)
	}
	k.Added, k.Expires = fromMilli(added), time.Time{}
	return chat.Identity{Name: name, Created: fromMilli(now), Keys: []chat.Key{k}}, true, nil
}

// ProposeKey adds k to name's keys as pending until expires: it is not one of name's keys (it
// cannot log in as name, and Identity lists it apart, in Pending) until ConfirmKey, which its
// first login as name calls, proves that its holder has it. Proposing a pending key again moves
// its expiry. It returns ErrNotFound when name is unclaimed, ErrKeyExists when k (by
// fingerprint) is one of name's active keys, and a *LimitError wrapping ErrKeyLimit when name
// has MaxKeysPerName keys, active and pending, already. Expiry is judged by Config.Now.
func (s *SQLite) ProposeKey(name string, k chat.Key, expires time.Time) error {
	if s.isClosed() {
		return fmt.Errorf("propose key: %w", errClosed)
	}
	if k.Fingerprint == "" {
		return errors.New("propose key: key has no fingerprint")
	}
	if expires.IsZero() {
		return errors.New("propose key: no expiry")
	}
	added, until := s.unixMilli(k.Added), expires.UnixMilli()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail("propose key", err)
	}
	defer tx.Rollback()
	key := chat.Fold(name)
	now := s.now().UnixMilli()
	// Lapsed proposals go first: they neither count nor block a new one.
	if _, err := tx.Exec(`DELETE FROM keys WHERE identity = ? AND expires != 0 AND expires <= ?`, key, now); err != nil {
		return s.fail("propose key", err)
	}
	var hasIdentity bool
	var keys int
	var state sql.NullInt64 // the key's expires column: NULL when it is not name's, 0 when active
	err = tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM identities WHERE name_key = ?),
		(SELECT count(*) FROM keys WHERE identity = ?),
		(SELECT expires FROM keys WHERE identity = ? AND fingerprint = ?)`, key, key, key, k.Fingerprint).Scan(&hasIdentity, &keys, &state)
	switch {
	case err != nil:
		return s.fail("propose key", err)
	case !hasIdentity:
		return fmt.Errorf("propose key: %q: %w", name, chat.ErrNotFound)
	case state.Valid && state.Int64 == 0:
		return fmt.Errorf("propose key: %s: %w", k.Fingerprint, chat.ErrKeyExists)
	case state.Valid:
		_, err = tx.Exec(`UPDATE keys SET expires = ? WHERE identity = ? AND fingerprint = ?`, until, key, k.Fingerprint)
	case keys >= s.cfg.MaxKeysPerName:
		return fmt.Errorf("propose key: %q: %w", name, &chat.LimitError{Err: chat.ErrKeyLimit, Max: s.cfg.MaxKeysPerName})
	default:
		_, err = tx.Exec(`INSERT INTO keys(identity, fingerprint, type, authorized_key, added, expires) VALUES (?, ?, ?, ?, ?, ?)`,
			key, k.Fingerprint, k.Type, k.AuthorizedKey, added, until)
	}
	if err != nil {
		return s.fail("propose key", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("propose key", err)
	}
	return nil
}

// ConfirmKey makes the key with fingerprint, pending for name and not expired, one of name's
// keys; call it once a login as name has proved that its holder has the key. It returns name's
// identity as it is afterwards, and whether the key is one of its active keys now (false when
// name is unclaimed or the key is not, or no longer, pending for it). A key that holds
// MaxNamesPerKey names already stays pending, with a *LimitError wrapping ErrNameLimit.
func (s *SQLite) ConfirmKey(name, fingerprint string) (chat.Identity, bool, error) {
	if s.isClosed() {
		return chat.Identity{}, false, fmt.Errorf("confirm key: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return chat.Identity{}, false, nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return chat.Identity{}, false, s.fail("confirm key", err)
	}
	defer tx.Rollback()
	key := chat.Fold(name)
	now := s.now().UnixMilli()
	var expires int64
	err = tx.QueryRow(`SELECT expires FROM keys WHERE identity = ? AND fingerprint = ?`, key, fingerprint).Scan(&expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return chat.Identity{}, false, s.fail("confirm key", err)
	case expires == 0: // confirmed already, by a login a moment ago
	case expires <= now:
		if _, err := tx.Exec(`DELETE FROM keys WHERE identity = ? AND fingerprint = ?`, key, fingerprint); err != nil {
			return chat.Identity{}, false, s.fail("confirm key", err)
		}
	default:
		if err := s.checkNameLimit(s.prepared(tx), fingerprint); err != nil {
			return chat.Identity{}, false, s.fail("confirm key", err)
		}
		if _, err := tx.Exec(`UPDATE keys SET expires = 0, added = ? WHERE identity = ? AND fingerprint = ?`, now, key, fingerprint); err != nil {
			return chat.Identity{}, false, s.fail("confirm key", err)
		}
	}
	id, ok, err := loadIdentity(s.prepared(tx), key, now)
	if err != nil {
		return chat.Identity{}, false, s.fail("confirm key", err)
	}
	if err := tx.Commit(); err != nil {
		return chat.Identity{}, false, s.fail("confirm key", err)
	}
	return id, ok && slices.ContainsFunc(id.Keys, func(k chat.Key) bool { return k.Fingerprint == fingerprint }), nil
}

// RemoveKey removes the key with fingerprint from name's keys, active or pending. It returns
// ErrNotFound when name is unclaimed or the key is not one of its keys (nor pending for it),
// ErrLastKey when it is the only active one.
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
	key := chat.Fold(name)
	now := s.now().UnixMilli()
	var hasIdentity bool
	var active int
	var state sql.NullInt64 // the key's expires column, as in ProposeKey
	err = tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM identities WHERE name_key = ?),
		(SELECT count(*) FROM keys WHERE identity = ? AND expires = 0),
		(SELECT expires FROM keys WHERE identity = ? AND fingerprint = ?)`, key, key, key, fingerprint).Scan(&hasIdentity, &active, &state)
	switch {
	case err != nil:
		return s.fail("remove key", err)
	case !hasIdentity:
		return fmt.Errorf("remove key: %q: %w", name, chat.ErrNotFound)
	case !state.Valid || state.Int64 != 0 && state.Int64 <= now:
		return fmt.Errorf("remove key: %s: %w", fingerprint, chat.ErrNotFound)
	case state.Int64 == 0 && active <= 1:
		return fmt.Errorf("remove key: %s: %w", fingerprint, chat.ErrLastKey)
	}
	if _, err := tx.Exec(`DELETE FROM keys WHERE identity = ? AND fingerprint = ?`, key, fingerprint); err != nil {
		return s.fail("remove key", err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail("remove key", err)
	}
	return nil
}
