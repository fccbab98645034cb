package natsjs

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"chatd/chat"

	"github.com/nats-io/nats.go/jetstream"
)

// AddBan stores b under a new ID and returns it with that ID (and Created set when it was
// zero).
func (s *Store) AddBan(b chat.Ban) (chat.Ban, error) {
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
	created := ms(b.Created)
	if created == 0 {
		created = s.now()
	}
	ctx, cancel := s.call()
	defer cancel()
	id, err := s.nextID(ctx, "ban")
	if err != nil {
		return chat.Ban{}, fmt.Errorf("add ban: %w", err)
	}
	rec := banRec{ID: id, Kind: string(b.Kind), Value: b.Value, Reason: b.Reason, By: b.By, Created: created, Expires: ms(b.Expires)}
	if _, err := modify(ctx, s.bans, banKey(id), func(cur *banRec, _ uint64) (action, error) {
		*cur = rec
		return write, nil
	}); err != nil {
		return chat.Ban{}, fmt.Errorf("add ban: %w", err)
	}
	return rec.ban(), nil
}

func banKey(id int64) string { return strconv.FormatInt(id, 10) }

// RemoveBan deletes the ban with id and returns it; ErrNotFound when there is none or it has
// expired. Of concurrent removals, one gets it.
func (s *Store) RemoveBan(id int64) (chat.Ban, error) {
	if s.isClosed() {
		return chat.Ban{}, fmt.Errorf("remove ban: %w", errClosed)
	}
	notFound := fmt.Errorf("remove ban %d: %w", id, chat.ErrNotFound)
	if id <= 0 {
		return chat.Ban{}, notFound
	}
	ctx, cancel := s.call()
	defer cancel()
	var removed banRec
	if _, err := modify(ctx, s.bans, banKey(id), func(cur *banRec, rev uint64) (action, error) {
		removed = *cur
		if rev == 0 {
			return keep, notFound
		}
		if cur.Expires != 0 && cur.Expires <= s.now() {
			return keep, notFound // Bans deletes it
		}
		return remove, nil
	}); err != nil {
		if errors.Is(err, chat.ErrNotFound) {
			return chat.Ban{}, notFound
		}
		return chat.Ban{}, fmt.Errorf("remove ban %d: %w", id, err)
	}
	return removed.ban(), nil
}

// Bans returns every ban that has not expired, oldest first: it reads the whole bucket (chatd
// asks at start), deleting the bans that expired.
func (s *Store) Bans() ([]chat.Ban, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("bans: %w", errClosed)
	}
	ctx, cancel := s.call()
	defer cancel()
	w, err := s.bans.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("bans: %w", err)
	}
	defer w.Stop()
	now := s.now()
	var bans []chat.Ban
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bans: %w", ctx.Err())
		case e = <-w.Updates():
		}
		if e == nil {
			break
		}
		var b banRec
		if err := json.Unmarshal(e.Value(), &b); err != nil {
			s.log.Warn("ignoring a bad ban record", "key", e.Key(), "err", err)
			continue
		}
		if b.Expires != 0 && b.Expires <= now {
			if err := s.bans.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision())); err != nil && !isConflict(err) {
				s.log.Warn("cannot delete an expired ban", "id", b.ID, "err", err)
			}
			continue
		}
		bans = append(bans, b.ban())
	}
	slices.SortFunc(bans, func(a, b chat.Ban) int { return cmp.Compare(a.ID, b.ID) })
	return bans, nil
}

// Setting returns the value of a run-time setting, and whether it is set.
func (s *Store) Setting(key string) (string, bool, error) {
	if s.isClosed() {
		return "", false, fmt.Errorf("setting: %w", errClosed)
	}
	if len(key) > maxSettingKeyLen {
		return "", false, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	e, err := s.settings.Get(ctx, settingKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("setting %s: %w", key, err)
	}
	return string(e.Value()), true, nil
}

// SetSetting stores a run-time setting.
func (s *Store) SetSetting(key, value string) error {
	if s.isClosed() {
		return fmt.Errorf("set setting: %w", errClosed)
	}
	if len(key) > maxSettingKeyLen {
		return fmt.Errorf("set setting: key longer than %d bytes", maxSettingKeyLen)
	}
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.settings.PutString(ctx, settingKey(key), value); err != nil {
		return fmt.Errorf("set setting %s: %w", key, err)
	}
	return nil
}
