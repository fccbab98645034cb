package sqlite

import (
	"database/sql"
	"errors"
	"fmt"

	"chatd/chat"
)

// webTokenColumns are what scanWebToken reads, in its order.
const webTokenColumns = `id, kind, hash, name, label, created, expires`

// scanWebToken reads one row of webTokenColumns.
func scanWebToken(row interface{ Scan(...any) error }) (chat.WebToken, error) {
	var t chat.WebToken
	var kind string
	var created, expires int64
	if err := row.Scan(&t.ID, &kind, &t.Hash, &t.Name, &t.Label, &created, &expires); err != nil {
		return chat.WebToken{}, err
	}
	t.Kind, t.Created = chat.WebTokenKind(kind), fromMilli(created)
	if expires != 0 {
		t.Expires = fromMilli(expires)
	}
	return t, nil
}

// validHash reports whether h is what chat.WebToken.Hash holds: a SHA-256 in lower-case hex.
// Anything else is a caller's mistake, such as the secret itself, which must never be stored.
func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := range len(h) {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// AddWebToken stores t and returns it with its ID, and its times as stored (a zero t.Created is
// now; a zero t.Expires is never). t.Name must be registered (ErrNotFound otherwise), and may
// hold at most MaxWebTokensPerName unexpired tokens, of every kind together (a *LimitError
// wrapping ErrWebTokenLimit beyond). A hash already stored is refused. An expiry already past is
// taken: the token is then as good as gone.
func (s *SQLite) AddWebToken(t chat.WebToken) (chat.WebToken, error) {
	if s.isClosed() {
		return chat.WebToken{}, fmt.Errorf("add web token: %w", errClosed)
	}
	switch t.Kind {
	case chat.WebLink, chat.WebSession, chat.WebBot:
	default:
		return chat.WebToken{}, fmt.Errorf("add web token: unknown kind %q", t.Kind)
	}
	if !validHash(t.Hash) {
		return chat.WebToken{}, errors.New("add web token: the hash is not a hex SHA-256")
	}
	if !chat.ValidName(t.Name) {
		return chat.WebToken{}, fmt.Errorf("add web token: %q: %w", t.Name, chat.ErrNotFound)
	}
	key := chat.Fold(t.Name)
	now := s.now().UnixMilli()
	created := s.unixMilli(t.Created)
	var expires int64
	if !t.Expires.IsZero() {
		expires = t.Expires.UnixMilli()
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return chat.WebToken{}, s.fail("add web token", err)
	}
	defer tx.Rollback()
	// One look-up both checks that the name is registered and counts its live tokens.
	var registered bool
	var live int
	if err := tx.QueryRow(`SELECT EXISTS (SELECT 1 FROM identities WHERE name_key = ?1),
		(SELECT count(*) FROM web_tokens WHERE name_key = ?1 AND (expires = 0 OR expires > ?2))`, key, now).Scan(&registered, &live); err != nil {
		return chat.WebToken{}, s.fail("add web token", err)
	}
	switch {
	case !registered:
		return chat.WebToken{}, fmt.Errorf("add web token: %q is not registered: %w", t.Name, chat.ErrNotFound)
	case live >= s.cfg.MaxWebTokensPerName:
		return chat.WebToken{}, fmt.Errorf("add web token: for %s: %w", t.Name,
			&chat.LimitError{Err: chat.ErrWebTokenLimit, Max: s.cfg.MaxWebTokensPerName})
	}
	res, err := tx.Exec(`INSERT INTO web_tokens(hash, kind, name_key, name, label, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(hash) DO NOTHING`, t.Hash, string(t.Kind), key, t.Name, t.Label, created, expires)
	if err != nil {
		return chat.WebToken{}, s.fail("add web token", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return chat.WebToken{}, s.fail("add web token", err)
	} else if n == 0 {
		return chat.WebToken{}, errors.New("add web token: a token with this hash is stored already")
	}
	if t.ID, err = res.LastInsertId(); err != nil {
		return chat.WebToken{}, s.fail("add web token", err)
	}
	if err := tx.Commit(); err != nil {
		return chat.WebToken{}, s.fail("add web token", err)
	}
	t.Created = fromMilli(created)
	if expires != 0 {
		t.Expires = fromMilli(expires)
	}
	return t, nil
}

// webTokenSQL finds an unexpired token by kind and hash (the hash's unique index).
const webTokenSQL = `SELECT ` + webTokenColumns + ` FROM web_tokens
	WHERE hash = ? AND kind = ? AND (expires = 0 OR expires > ?)`

// WebToken returns the unexpired token of kind whose hash is hash, without using it up;
// ErrNotFound when there is none. Every request a signed-in browser makes asks: the statement
// is prepared once.
func (s *SQLite) WebToken(kind chat.WebTokenKind, hash string) (chat.WebToken, error) {
	if s.isClosed() {
		return chat.WebToken{}, fmt.Errorf("web token: %w", errClosed)
	}
	rows, err := s.prepared(nil).Query(webTokenSQL, hash, string(kind), s.now().UnixMilli())
	if err != nil {
		return chat.WebToken{}, s.fail("web token", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return chat.WebToken{}, s.fail("web token", err)
		}
		return chat.WebToken{}, fmt.Errorf("web token: %w", chat.ErrNotFound)
	}
	t, err := scanWebToken(rows)
	if err != nil {
		return chat.WebToken{}, s.fail("web token", err)
	}
	return t, nil
}

// TakeWebToken returns the unexpired token of kind whose hash is hash and deletes it, in one
// statement: of any number of takers, in this process or another, one gets it and the others
// ErrNotFound.
func (s *SQLite) TakeWebToken(kind chat.WebTokenKind, hash string) (chat.WebToken, error) {
	if s.isClosed() {
		return chat.WebToken{}, fmt.Errorf("take web token: %w", errClosed)
	}
	now := s.now().UnixMilli()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	t, err := scanWebToken(s.db.QueryRow(`DELETE FROM web_tokens WHERE hash = ? AND kind = ? AND (expires = 0 OR expires > ?)
		RETURNING `+webTokenColumns, hash, string(kind), now))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.WebToken{}, fmt.Errorf("take web token: %w", chat.ErrNotFound)
	}
	if err != nil {
		return chat.WebToken{}, s.fail("take web token", err)
	}
	return t, nil
}

// WebTokens returns name's unexpired browser sessions and bot tokens (not its sign-in links),
// oldest first; none for a name that has none.
func (s *SQLite) WebTokens(name string) ([]chat.WebToken, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("web tokens: %w", errClosed)
	}
	rows, err := s.db.Query(`SELECT `+webTokenColumns+` FROM web_tokens
		WHERE name_key = ? AND kind IN (?, ?) AND (expires = 0 OR expires > ?)
		ORDER BY created, id`, chat.Fold(name), string(chat.WebSession), string(chat.WebBot), s.now().UnixMilli())
	if err != nil {
		return nil, s.fail("web tokens", err)
	}
	defer rows.Close()
	var tokens []chat.WebToken
	for rows.Next() {
		t, err := scanWebToken(rows)
		if err != nil {
			return nil, s.fail("web tokens", err)
		}
		tokens = append(tokens, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("web tokens", err)
	}
	return tokens, nil
}

// RevokeWebTokens deletes name's unexpired session or bot token with id (ErrNotFound when name
// has no such token: another name's, a link, an expired one), or, for id 0, every token of
// name, links included. It returns how many unexpired tokens went (expired ones go too, but
// they no longer counted).
func (s *SQLite) RevokeWebTokens(name string, id int64) (int, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("revoke web tokens: %w", errClosed)
	}
	key, now := chat.Fold(name), s.now().UnixMilli()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if id != 0 {
		res, err := s.db.Exec(`DELETE FROM web_tokens WHERE id = ? AND name_key = ? AND kind IN (?, ?) AND (expires = 0 OR expires > ?)`,
			id, key, string(chat.WebSession), string(chat.WebBot), now)
		if err != nil {
			return 0, s.fail("revoke web tokens", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, s.fail("revoke web tokens", err)
		}
		if n == 0 {
			return 0, fmt.Errorf("revoke web token %d of %s: %w", id, name, chat.ErrNotFound)
		}
		return int(n), nil
	}
	rows, err := s.db.Query(`DELETE FROM web_tokens WHERE name_key = ? RETURNING expires`, key)
	if err != nil {
		return 0, s.fail("revoke web tokens", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var expires int64
		if err := rows.Scan(&expires); err != nil {
			return 0, s.fail("revoke web tokens", err)
		}
		if expires == 0 || expires > now {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, s.fail("revoke web tokens", err)
	}
	return n, nil
}
