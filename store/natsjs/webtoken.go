package natsjs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"chatd/chat"
)

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

// hashKey is the key of a hash in bucket tokens, tokensKey that of a name's tokens.
func hashKey(hash string) string     { return "h." + hash }
func tokensKey(folded string) string { return "n." + nameToken(folded) }

// AddWebToken stores t for its registered name and returns it with its ID and its times as
// stored (a zero t.Created is now; a zero t.Expires is never). The hash is created first, and
// creating a key fails if it exists: a hash stored already, for any name, is refused. The
// name's tokens are one record, so that the cap (MaxWebTokensPerName unexpired tokens, a
// *LimitError wrapping ErrWebTokenLimit beyond) holds between nodes.
func (s *Store) AddWebToken(t chat.WebToken) (chat.WebToken, error) {
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
	folded := chat.Fold(t.Name)
	ctx, cancel := s.call()
	defer cancel()
	if _, _, ok, err := getJSON[identityRec](ctx, s.identities, nameToken(folded)); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%q is not registered: %w", t.Name, chat.ErrNotFound)
		}
		return chat.WebToken{}, fmt.Errorf("add web token: %w", err)
	}
	id, err := s.nextID(ctx, "token")
	if err != nil {
		return chat.WebToken{}, fmt.Errorf("add web token: %w", err)
	}
	rec := tokenRec{ID: id, Kind: string(t.Kind), Hash: t.Hash, Name: t.Name, Label: t.Label, Created: ms(t.Created), Expires: ms(t.Expires)}
	if rec.Created == 0 {
		rec.Created = s.now()
	}
	if _, err := s.tokens.Create(ctx, hashKey(t.Hash), fmt.Appendf(nil, `{"name":%q}`, folded)); err != nil {
		if isConflict(err) {
			return chat.WebToken{}, errors.New("add web token: a token with this hash is stored already")
		}
		return chat.WebToken{}, fmt.Errorf("add web token: %w", err)
	}
	var gone []string
	_, err = modify(ctx, s.tokens, tokensKey(folded), func(r *tokensRec, _ uint64) (action, error) {
		gone = pruneTokens(r, s.now())
		if len(r.Tokens) >= s.cfg.MaxWebTokensPerName {
			return keep, fmt.Errorf("for %s: %w", t.Name, &chat.LimitError{Err: chat.ErrWebTokenLimit, Max: s.cfg.MaxWebTokensPerName})
		}
		r.Tokens = append(r.Tokens, rec)
		return write, nil
	})
	if err != nil {
		s.forgetHashes(ctx, []string{t.Hash})
		return chat.WebToken{}, fmt.Errorf("add web token: %w", err)
	}
	s.forgetHashes(ctx, gone)
	return rec.token(), nil
}

// pruneTokens drops r's expired tokens and returns their hashes.
func pruneTokens(r *tokensRec, now int64) []string {
	var gone []string
	r.Tokens = slices.DeleteFunc(r.Tokens, func(t tokenRec) bool {
		if !t.live(now) {
			gone = append(gone, t.Hash)
			return true
		}
		return false
	})
	return gone
}

// forgetHashes deletes the hashes of tokens that are gone. A hash left behind (a failure here)
// points to a name without that token, which finds nothing.
func (s *Store) forgetHashes(ctx context.Context, hashes []string) {
	for _, h := range hashes {
		if err := s.tokens.Delete(ctx, hashKey(h)); err != nil {
			s.log.Warn("cannot delete a web token's hash; it leads nowhere", "err", err)
		}
	}
}

// tokenName is the folded name hash belongs to, or false.
func (s *Store) tokenName(ctx context.Context, hash string) (string, bool, error) {
	if !validHash(hash) {
		return "", false, nil
	}
	h, _, ok, err := getJSON[hashRec](ctx, s.tokens, hashKey(hash))
	if err != nil || !ok || !chat.ValidName(h.Name) {
		return "", false, err
	}
	return h.Name, true, nil
}

// WebToken returns the unexpired token of kind whose hash is hash, without using it up;
// ErrNotFound when there is none. It reads the hash's name, then that name's tokens: the
// record is the truth, so that a token revoked is gone at once.
func (s *Store) WebToken(kind chat.WebTokenKind, hash string) (chat.WebToken, error) {
	if s.isClosed() {
		return chat.WebToken{}, fmt.Errorf("web token: %w", errClosed)
	}
	ctx, cancel := s.call()
	defer cancel()
	notFound := fmt.Errorf("web token: %w", chat.ErrNotFound)
	name, ok, err := s.tokenName(ctx, hash)
	if err != nil || !ok {
		return chat.WebToken{}, cmp.Or(wrap("web token", err), notFound)
	}
	r, _, _, err := getJSON[tokensRec](ctx, s.tokens, tokensKey(name))
	if err != nil {
		return chat.WebToken{}, fmt.Errorf("web token: %w", err)
	}
	now := s.now()
	for _, t := range r.Tokens {
		if t.Hash == hash && t.Kind == string(kind) && t.live(now) {
			return t.token(), nil
		}
	}
	return chat.WebToken{}, notFound
}

// TakeWebToken returns the unexpired token of kind whose hash is hash and deletes it: the
// name's tokens are written back without it, with the revision they were read at, so that of
// any number of takers, on any node, one gets it and the others ErrNotFound.
func (s *Store) TakeWebToken(kind chat.WebTokenKind, hash string) (chat.WebToken, error) {
	if s.isClosed() {
		return chat.WebToken{}, fmt.Errorf("take web token: %w", errClosed)
	}
	ctx, cancel := s.call()
	defer cancel()
	notFound := fmt.Errorf("take web token: %w", chat.ErrNotFound)
	name, ok, err := s.tokenName(ctx, hash)
	if err != nil || !ok {
		return chat.WebToken{}, cmp.Or(wrap("take web token", err), notFound)
	}
	var taken tokenRec
	var gone []string
	_, err = modify(ctx, s.tokens, tokensKey(name), func(r *tokensRec, _ uint64) (action, error) {
		gone = pruneTokens(r, s.now())
		i := slices.IndexFunc(r.Tokens, func(t tokenRec) bool { return t.Hash == hash && t.Kind == string(kind) })
		if i < 0 {
			return keep, notFound
		}
		taken = r.Tokens[i]
		r.Tokens = slices.Delete(r.Tokens, i, i+1)
		gone = append(gone, hash)
		return write, nil
	})
	if err != nil {
		if errors.Is(err, chat.ErrNotFound) {
			return chat.WebToken{}, notFound
		}
		return chat.WebToken{}, fmt.Errorf("take web token: %w", err)
	}
	s.forgetHashes(ctx, gone)
	return taken.token(), nil
}

// WebTokens returns name's unexpired browser sessions and bot tokens (not its sign-in links),
// oldest first; none for a name that has none.
func (s *Store) WebTokens(name string) ([]chat.WebToken, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("web tokens: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return nil, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	r, _, _, err := getJSON[tokensRec](ctx, s.tokens, tokensKey(chat.Fold(name)))
	if err != nil {
		return nil, fmt.Errorf("web tokens: %w", err)
	}
	now := s.now()
	var out []chat.WebToken
	for _, t := range r.Tokens {
		if t.live(now) && (t.Kind == string(chat.WebSession) || t.Kind == string(chat.WebBot)) {
			out = append(out, t.token())
		}
	}
	slices.SortStableFunc(out, func(a, b chat.WebToken) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RevokeWebTokens deletes name's unexpired session or bot token with id (ErrNotFound when name
// has no such token: another name's, a link, an expired one), or, for id 0, every token of
// name, links included. It returns how many unexpired tokens went.
func (s *Store) RevokeWebTokens(name string, id int64) (int, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("revoke web tokens: %w", errClosed)
	}
	notFound := fmt.Errorf("revoke web token %d of %s: %w", id, name, chat.ErrNotFound)
	if !chat.ValidName(name) {
		if id == 0 {
			return 0, nil
		}
		return 0, notFound
	}
	ctx, cancel := s.call()
	defer cancel()
	var n int
	var gone []string
	_, err := modify(ctx, s.tokens, tokensKey(chat.Fold(name)), func(r *tokensRec, _ uint64) (action, error) {
		gone = pruneTokens(r, s.now())
		n = 0
		if id == 0 {
			n = len(r.Tokens)
			for _, t := range r.Tokens {
				gone = append(gone, t.Hash)
			}
			r.Tokens = nil
		} else {
			i := slices.IndexFunc(r.Tokens, func(t tokenRec) bool {
				return t.ID == id && (t.Kind == string(chat.WebSession) || t.Kind == string(chat.WebBot))
			})
			if i < 0 {
				return keep, notFound
			}
			gone = append(gone, r.Tokens[i].Hash)
			r.Tokens = slices.Delete(r.Tokens, i, i+1)
			n = 1
		}
		if len(gone) == 0 {
			return keep, nil
		}
		if len(r.Tokens) == 0 {
			return remove, nil
		}
		return write, nil
	})
	if err != nil {
		if errors.Is(err, chat.ErrNotFound) {
			return 0, notFound
		}
		return 0, fmt.Errorf("revoke web tokens: %w", err)
	}
	s.forgetHashes(ctx, gone)
	return n, nil
}
