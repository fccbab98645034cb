package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"chatd/chat"
)

// identity is rec as the store returns it: its pending keys that have not lapsed at now (Unix
// ms), both lists oldest first.
func (rec identityRec) identity(now int64) chat.Identity {
	id := chat.Identity{Name: rec.Name, Created: fromMS(rec.Created)}
	for _, k := range rec.Keys {
		k.Expires = 0
		id.Keys = append(id.Keys, k.key())
	}
	for _, k := range rec.Pending {
		if k.Expires > now {
			id.Pending = append(id.Pending, k.key())
		}
	}
	byAdded := func(a, b chat.Key) int { return a.Added.Compare(b.Added) }
	slices.SortStableFunc(id.Keys, byAdded)
	slices.SortStableFunc(id.Pending, byAdded)
	return id
}

// active reports whether fp is one of rec's active keys.
func (rec identityRec) active(fp string) bool {
	return slices.ContainsFunc(rec.Keys, func(k keyRec) bool { return k.FP == fp })
}

func (s *Store) now() int64 { return s.cfg.Now().UnixMilli() }

// Identity returns the identity that owns name, compared case-insensitively, or false when the
// name is unclaimed.
func (s *Store) Identity(name string) (chat.Identity, bool, error) {
	if s.isClosed() {
		return chat.Identity{}, false, fmt.Errorf("identity: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return chat.Identity{}, false, nil // no such name can have been claimed
	}
	ctx, cancel := s.call()
	defer cancel()
	rec, _, ok, err := getJSON[identityRec](ctx, s.identities, nameToken(chat.Fold(name)))
	if err != nil || !ok {
		return chat.Identity{}, false, wrap("identity", err)
	}
	return rec.identity(s.now()), true, nil
}

// NamesOfKey returns the names that the key with fingerprint may log in as (it is one of their
// active keys), in name order; none when it is nobody's.
func (s *Store) NamesOfKey(fingerprint string) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("names of key: %w", errClosed)
	}
	if fingerprint == "" || len(fingerprint) > maxFingerprintLen {
		return nil, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	idx, _, _, err := getJSON[keyIndexRec](ctx, s.keys, fingerprintKey(fingerprint))
	if err != nil {
		return nil, wrap("names of key", err)
	}
	var names []string
	for _, e := range idx.Names {
		ok, err := s.holds(ctx, e.Name, fingerprint)
		if err != nil {
			return nil, wrap("names of key", err)
		}
		if ok {
			names = append(names, e.Name)
		}
	}
	sortNames(names)
	return names, nil
}

// holds reports whether the identity name has fp as an active key: the truth the key index
// only points to.
func (s *Store) holds(ctx context.Context, name, fp string) (bool, error) {
	rec, _, ok, err := getJSON[identityRec](ctx, s.identities, nameToken(chat.Fold(name)))
	return ok && rec.active(fp), err
}

// sortNames puts names in chat.Fold order.
func sortNames(names []string) {
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(chat.Fold(a), chat.Fold(b)) })
}

// reserve puts name in fp's index entry, unless fp holds MaxNamesPerKey names already (a
// *chat.LimitError): the claims and confirmations in progress, on this node or another, count,
// so that the cap holds between them. It reports whether it added the entry (false when it was
// there).
func (s *Store) reserve(ctx context.Context, fp, name string) (bool, error) {
	added := false
	folded := chat.Fold(name)
	_, err := modify(ctx, s.keys, fingerprintKey(fp), func(idx *keyIndexRec, _ uint64) (action, error) {
		added = false
		now := s.now()
		var live []keyIndexEntry
		for _, e := range idx.Names {
			if chat.Fold(e.Name) == folded {
				return keep, nil // a claim of the same name with the same key: one entry serves both
			}
			fresh := now-e.At < reserveFor.Milliseconds()
			if !fresh {
				ok, err := s.holds(ctx, e.Name, fp)
				if err != nil {
					return keep, err
				}
				if !ok {
					continue // a key removed, or a claim that never finished: the slot is free
				}
			}
			live = append(live, e)
		}
		if len(live) >= s.cfg.MaxNamesPerKey {
			var names []string
			for _, e := range live {
				names = append(names, e.Name)
			}
			sortNames(names)
			return keep, &chat.LimitError{Err: chat.ErrNameLimit, Max: s.cfg.MaxNamesPerKey, Names: names}
		}
		idx.Names = append(live, keyIndexEntry{Name: name, At: now})
		added = true
		return write, nil
	})
	return added, err
}

// unreserve takes name out of fp's index entry: the key is no longer, or never became, one of
// its active keys. The entry would be dropped anyway once stale (see keyIndexRec): this frees
// the slot at once.
func (s *Store) unreserve(ctx context.Context, fp, name string) {
	folded := chat.Fold(name)
	_, err := modify(ctx, s.keys, fingerprintKey(fp), func(idx *keyIndexRec, _ uint64) (action, error) {
		i := slices.IndexFunc(idx.Names, func(e keyIndexEntry) bool { return chat.Fold(e.Name) == folded })
		if i < 0 {
			return keep, nil
		}
		// Another claim of the name by the same key may have won meanwhile: then the entry is
		// the winner's.
		if ok, err := s.holds(ctx, name, fp); ok || err != nil {
			return keep, err
		}
		idx.Names = slices.Delete(idx.Names, i, i+1)
		if len(idx.Names) == 0 {
			return remove, nil
		}
		return write, nil
	})
	if err != nil {
		s.log.Warn("cannot update the key index; the entry lapses by itself", "name", name, "err", err)
	}
}

// Claim creates the identity name owned by k if name is unclaimed, and returns it with true. If
// name is claimed already, it returns the existing identity, unchanged, and false. Of several
// concurrent claims of one name, on any node, exactly one creates it: the identity's key is
// created only if it does not exist. A claim of a free name by a key that holds MaxNamesPerKey
// names already fails with a *LimitError wrapping ErrNameLimit.
func (s *Store) Claim(name string, k chat.Key) (chat.Identity, bool, error) {
	if s.isClosed() {
		return chat.Identity{}, false, fmt.Errorf("claim: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return chat.Identity{}, false, fmt.Errorf("claim: invalid name %q", name)
	}
	if k.Fingerprint == "" || len(k.Fingerprint) > maxFingerprintLen {
		return chat.Identity{}, false, errors.New("claim: key has no fingerprint")
	}
	ctx, cancel := s.call()
	defer cancel()
	key := nameToken(chat.Fold(name))
	if rec, _, ok, err := getJSON[identityRec](ctx, s.identities, key); err != nil || ok {
		return rec.identity(s.now()), false, wrap("claim", err)
	}
	added, err := s.reserve(ctx, k.Fingerprint, name)
	if err != nil {
		return chat.Identity{}, false, wrap("claim", err)
	}
	now := s.now()
	kr := keyRec{FP: k.Fingerprint, Type: k.Type, AK: k.AuthorizedKey, Added: now}
	if !k.Added.IsZero() {
		kr.Added = k.Added.UnixMilli()
	}
	rec := identityRec{Name: name, Created: now, Keys: []keyRec{kr}}
	created := false
	if _, err := modify(ctx, s.identities, key, func(cur *identityRec, rev uint64) (action, error) {
		if rev != 0 {
			rec, created = *cur, false
			return keep, nil
		}
		*cur, created = rec, true
		return write, nil
	}); err != nil {
		if added {
			s.unreserve(ctx, k.Fingerprint, name)
		}
		return chat.Identity{}, false, wrap("claim", err)
	}
	if !created && added {
		s.unreserve(ctx, k.Fingerprint, name)
	}
	return rec.identity(now), created, nil
}

// ProposeKey adds k to name's keys as pending until expires (see room.Store and storetest).
// It returns ErrNotFound when name is unclaimed, ErrKeyExists when k is one of name's active
// keys, and a *LimitError wrapping ErrKeyLimit when name has MaxKeysPerName keys already.
func (s *Store) ProposeKey(name string, k chat.Key, expires time.Time) error {
	if s.isClosed() {
		return fmt.Errorf("propose key: %w", errClosed)
	}
	if k.Fingerprint == "" || len(k.Fingerprint) > maxFingerprintLen {
		return errors.New("propose key: key has no fingerprint")
	}
	if expires.IsZero() {
		return errors.New("propose key: no expiry")
	}
	if !chat.ValidName(name) {
		return fmt.Errorf("propose key: %q: %w", name, chat.ErrNotFound)
	}
	ctx, cancel := s.call()
	defer cancel()
	added := ms(k.Added)
	if added == 0 {
		added = s.now()
	}
	_, err := modify(ctx, s.identities, nameToken(chat.Fold(name)), func(rec *identityRec, rev uint64) (action, error) {
		if rev == 0 {
			return keep, fmt.Errorf("%q: %w", name, chat.ErrNotFound)
		}
		now := s.now()
		// Lapsed proposals go first: they neither count nor block a new one.
		rec.Pending = slices.DeleteFunc(rec.Pending, func(p keyRec) bool { return p.Expires <= now })
		if rec.active(k.Fingerprint) {
			return keep, fmt.Errorf("%s: %w", k.Fingerprint, chat.ErrKeyExists)
		}
		if i := slices.IndexFunc(rec.Pending, func(p keyRec) bool { return p.FP == k.Fingerprint }); i >= 0 {
			rec.Pending[i].Expires = expires.UnixMilli()
			return write, nil
		}
		if len(rec.Keys)+len(rec.Pending) >= s.cfg.MaxKeysPerName {
			return keep, fmt.Errorf("%q: %w", name, &chat.LimitError{Err: chat.ErrKeyLimit, Max: s.cfg.MaxKeysPerName})
		}
		rec.Pending = append(rec.Pending, keyRec{FP: k.Fingerprint, Type: k.Type, AK: k.AuthorizedKey, Added: added, Expires: expires.UnixMilli()})
		return write, nil
	})
	return wrap("propose key", err)
}

// ConfirmKey makes the key with fingerprint, pending for name and not expired, one of name's
// active keys. It returns name's identity as it is afterwards, and whether the key is active
// now. A key that holds MaxNamesPerKey names already stays pending, with a *LimitError wrapping
// ErrNameLimit.
func (s *Store) ConfirmKey(name, fingerprint string) (chat.Identity, bool, error) {
	if s.isClosed() {
		return chat.Identity{}, false, fmt.Errorf("confirm key: %w", errClosed)
	}
	if !chat.ValidName(name) || fingerprint == "" || len(fingerprint) > maxFingerprintLen {
		return chat.Identity{}, false, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	key := nameToken(chat.Fold(name))
	reserved := false // fingerprint's index entry for name was put by this call
	var rec identityRec
	_, err := modify(ctx, s.identities, key, func(cur *identityRec, rev uint64) (action, error) {
		rec = *cur
		if rev == 0 {
			return keep, nil
		}
		now := s.now()
		if cur.active(fingerprint) {
			return keep, nil // confirmed already, by a login a moment ago
		}
		i := slices.IndexFunc(cur.Pending, func(p keyRec) bool { return p.FP == fingerprint })
		if i < 0 {
			return keep, nil
		}
		if cur.Pending[i].Expires <= now {
			cur.Pending = slices.Delete(cur.Pending, i, i+1)
			rec = *cur
			return write, nil
		}
		if !reserved {
			added, err := s.reserve(ctx, fingerprint, cur.Name)
			if err != nil {
				return keep, err
			}
			reserved = added
		}
		k := cur.Pending[i]
		k.Added, k.Expires = now, 0
		cur.Pending = slices.Delete(cur.Pending, i, i+1)
		cur.Keys = append(cur.Keys, k)
		rec = *cur
		return write, nil
	})
	active := rec.active(fingerprint)
	if reserved && (err != nil || !active) {
		s.unreserve(ctx, fingerprint, name)
	}
	if err != nil {
		return chat.Identity{}, false, wrap("confirm key", err)
	}
	if rec.Name == "" {
		return chat.Identity{}, false, nil
	}
	return rec.identity(s.now()), active, nil
}

// RemoveKey removes the key with fingerprint from name's keys, active or pending. It returns
// ErrNotFound when name is unclaimed or the key is not one of its keys (nor pending for it),
// ErrLastKey when it is the only active one.
func (s *Store) RemoveKey(name, fingerprint string) error {
	if s.isClosed() {
		return fmt.Errorf("remove key: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return fmt.Errorf("remove key: %q: %w", name, chat.ErrNotFound)
	}
	ctx, cancel := s.call()
	defer cancel()
	wasActive := false
	_, err := modify(ctx, s.identities, nameToken(chat.Fold(name)), func(rec *identityRec, rev uint64) (action, error) {
		wasActive = false
		if rev == 0 {
			return keep, fmt.Errorf("%q: %w", name, chat.ErrNotFound)
		}
		if i := slices.IndexFunc(rec.Keys, func(k keyRec) bool { return k.FP == fingerprint }); i >= 0 {
			if len(rec.Keys) <= 1 {
				return keep, fmt.Errorf("%s: %w", fingerprint, chat.ErrLastKey)
			}
			rec.Keys = slices.Delete(rec.Keys, i, i+1)
			wasActive = true
			return write, nil
		}
		i := slices.IndexFunc(rec.Pending, func(k keyRec) bool { return k.FP == fingerprint })
		if i < 0 || rec.Pending[i].Expires <= s.now() {
			return keep, fmt.Errorf("%s: %w", fingerprint, chat.ErrNotFound)
		}
		rec.Pending = slices.Delete(rec.Pending, i, i+1)
		return write, nil
	})
	if err != nil {
		return wrap("remove key", err)
	}
	if wasActive {
		s.unreserve(ctx, fingerprint, name)
	}
	return nil
}

// wrap adds what to err's context; nil stays nil.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
