package natsjs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"chatd/chat"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// roomCache is every room, as bucket roomlist has it: kept by a watcher of the bucket, and at
// once by this store's own writes and reads, so that Append learns without waiting whether a
// room exists and which generation it is, and so that this store reads its own writes. Each
// entry carries the bucket revision it is from, and a deleted room stays as a tombstone with
// the revision of its deletion, so that an older state never replaces a newer one, whichever
// source delivers it first.
type roomCache struct {
	mu    sync.RWMutex
	rooms map[string]cachedRoom // by name, as chat.ParseRoom returns it
	seen  uint64                // the newest revision the watcher has delivered
	acked map[string]acked      // each room's newest line this store published
}

// acked is a room's newest line this store published: its sequence, and when it was
// acknowledged.
type acked struct {
	seq uint64
	at  time.Time
}

type cachedRoom struct {
	rec  roomRec // Gen resolved
	rev  uint64
	gone bool // deleted at rev (at the latest: this store's deletion knows only the revision it deleted)
}

func (c *roomCache) init() {
	c.rooms = map[string]cachedRoom{}
	c.acked = map[string]acked{}
}

// get returns room's record, and whether it exists.
func (c *roomCache) get(room string) (roomRec, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.rooms[room]
	return r.rec, ok && !r.gone
}

// apply records room's state at revision rev: its record, or its deletion (rec nil), unless
// the cache has a state as new already.
func (c *roomCache) apply(room string, rec *roomRec, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.rooms[room]; ok && cur.rev >= rev {
		return
	}
	if rec == nil {
		c.rooms[room] = cachedRoom{rev: rev, gone: true}
		delete(c.acked, room)
		return
	}
	c.rooms[room] = cachedRoom{rec: *rec, rev: rev}
}

// put records rec, written or read at revision rev by this store.
func (c *roomCache) put(rec roomRec, rev uint64) { c.apply(rec.Name, &rec, rev) }

// drop records that this store deleted room's record of revision rev. The deletion's own
// revision is later, which no state of revision rev or older can undo.
func (c *roomCache) drop(room string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.acked, room)
	if cur, ok := c.rooms[room]; ok && cur.rev > rev {
		return
	}
	c.rooms[room] = cachedRoom{rev: rev, gone: true}
}

// watched applies what the watcher delivered, in revision order.
func (c *roomCache) watched(room string, rec *roomRec, rev uint64) {
	c.apply(room, rec, rev)
	c.mu.Lock()
	c.seen = max(c.seen, rev)
	c.mu.Unlock()
}

// watchedUpTo returns the newest revision the watcher has delivered.
func (c *roomCache) watchedUpTo() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.seen
}

// noteAcked records that this store published room's line at seq.
func (c *roomCache) noteAcked(room string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.rooms[room]; ok && !r.gone && seq > c.acked[room].seq {
		c.acked[room] = acked{seq: seq, at: time.Now()}
	}
}

// ackedSeq is room's newest line this store published, if that was less than ackedFresh ago:
// a replica can be behind by that only.
func (c *roomCache) ackedSeq(room string) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if a := c.acked[room]; time.Since(a.at) < ackedFresh {
		return a.seq
	}
	return 0
}

// ackedFresh is how long after a line's acknowledgement a read waits for a replica to have it:
// replicas follow their leader by milliseconds, and after that the line may have gone for
// good (the stream's age limit).
const ackedFresh = 10 * time.Second

// all returns every room, in name order.
func (c *roomCache) all() []chat.Room {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]chat.Room, 0, len(c.rooms))
	for _, r := range c.rooms {
		if !r.gone {
			out = append(out, r.rec.room())
		}
	}
	slices.SortFunc(out, func(a, b chat.Room) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (r roomRec) room() chat.Room {
	return chat.Room{Name: r.Name, Owner: r.Owner, Topic: r.Topic, Private: r.Private, Created: fromMS(r.Created),
		Invited: slices.Clone(r.Invited)}
}

// decodeRoom reads a record of bucket roomlist, resolving its generation.
func decodeRoom(data []byte, rev uint64) (roomRec, error) {
	var rec roomRec
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, err
	}
	if rec.Gen == 0 {
		rec.Gen = rev
	}
	if !chat.IsRoom(rec.Name) {
		return rec, fmt.Errorf("record of an invalid room name %q", rec.Name)
	}
	return rec, nil
}

// roomOfKey is the room whose record is under key (roomToken's inverse).
func roomOfKey(key string) string { return "#" + strings.ReplaceAll(key, "=", ".") }

// loadRooms reads every room's record as the bucket has it now into the cache (with deleted
// ones, as deletions), through apply: Open's first load, and Rooms.
func (s *Store) loadRooms(ctx context.Context, apply func(room string, rec *roomRec, rev uint64)) error {
	w, err := s.roomList.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("list the rooms: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("list the rooms: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("list the rooms: the listing stopped")
			}
			if e == nil {
				return nil // everything there was
			}
			s.applyRoomEntry(e, apply)
		}
	}
}

// applyRoomEntry hands a record (or a deletion) the bucket delivered to apply.
func (s *Store) applyRoomEntry(e jetstream.KeyValueEntry, apply func(room string, rec *roomRec, rev uint64)) {
	if e.Operation() != jetstream.KeyValuePut {
		apply(roomOfKey(e.Key()), nil, e.Revision())
		return
	}
	rec, err := decodeRoom(e.Value(), e.Revision())
	if err != nil {
		s.log.Warn("ignoring a bad room record", "key", e.Key(), "err", err)
		return
	}
	apply(rec.Name, &rec, e.Revision())
}

// startRoomWatch loads every room and keeps the cache up to date from then on.
func (s *Store) startRoomWatch(ctx context.Context) error {
	s.cache.init()
	if err := s.loadRooms(ctx, s.cache.watched); err != nil {
		return err
	}
	// A consumer lives on one server: when the connection comes back (to that server
	// restarted, or to another), the watcher starts afresh rather than wait for its consumer's
	// heartbeats to be missed.
	reconnected := s.nc.StatusChanged(nats.CONNECTED)
	w, err := s.roomList.WatchAll(s.ctx, jetstream.ResumeFromRevision(s.cache.watchedUpTo()+1))
	if err != nil {
		s.nc.RemoveStatusListener(reconnected)
		return fmt.Errorf("watch the rooms: %w", err)
	}
	s.wg.Add(1)
	go s.watchRooms(w, reconnected)
	return nil
}

// watchRooms applies every change of bucket roomlist to the cache until Close.
func (s *Store) watchRooms(w jetstream.KeyWatcher, reconnected chan nats.Status) {
	defer s.wg.Done()
	defer s.nc.RemoveStatusListener(reconnected)
	for {
		restart := false
		for !restart {
			select {
			case <-s.ctx.Done():
				w.Stop()
				return
			case <-reconnected:
				restart = true
			case e, ok := <-w.Updates():
				switch {
				case !ok:
					restart = true
				case e != nil:
					s.applyRoomEntry(e, s.cache.watched)
				}
			}
		}
		w.Stop()
		wait := 100 * time.Millisecond
		for {
			var err error
			w, err = s.roomList.WatchAll(s.ctx, jetstream.ResumeFromRevision(s.cache.watchedUpTo()+1))
			if err == nil {
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("cannot watch the rooms; retrying", "err", err)
			t := time.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, 2*time.Second)
		}
	}
}

// Rooms returns every room, in name order, each with the names invited to it in the order they
// were invited. It reads the whole bucket (chatd asks at start), so that it has every write
// made before the call, on any node.
func (s *Store) Rooms() ([]chat.Room, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("rooms: %w", errClosed)
	}
	ctx, cancel := s.call()
	defer cancel()
	if err := s.loadRooms(ctx, s.cache.apply); err != nil {
		return nil, fmt.Errorf("rooms: %w", err)
	}
	return s.cache.all(), nil
}

// room returns room's record, and whether it exists: from the cache, or, when the cache does
// not have it (a room another node made a moment ago), from the bucket.
func (s *Store) room(ctx context.Context, room string) (roomRec, bool, error) {
	if r, ok := s.cache.get(room); ok {
		return r, true, nil
	}
	rec, rev, ok, err := s.storedRoom(ctx, room)
	if err != nil || !ok {
		return roomRec{}, false, err
	}
	// The cache decides: it may know of a deletion newer than what a replica said.
	s.cache.put(rec, rev)
	rec, ok = s.cache.get(room)
	return rec, ok, nil
}

// storedRoom reads room's record from the bucket, with its revision; false when there is none.
func (s *Store) storedRoom(ctx context.Context, room string) (roomRec, uint64, bool, error) {
	e, err := s.roomList.Get(ctx, roomToken(room))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return roomRec{}, 0, false, nil
	}
	if err != nil {
		return roomRec{}, 0, false, err
	}
	rec, err := decodeRoom(e.Value(), e.Revision())
	if err != nil {
		return roomRec{}, 0, false, err
	}
	return rec, e.Revision(), true, nil
}

// SaveRoom creates r, or updates its owner, topic and private flag if it exists; r.Invited is
// ignored (see Invite), and so is r.Created for a room that exists. A zero r.Created is now.
func (s *Store) SaveRoom(r chat.Room) error {
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
	created := ms(r.Created)
	if created == 0 {
		created = s.now()
	}
	ctx, cancel := s.call()
	defer cancel()
	var rec roomRec
	var from uint64
	fromKnown := false
	rev, err := modify(ctx, s.roomList, roomToken(name), func(cur *roomRec, rev uint64) (action, error) {
		if rev != 0 {
			if cur.Gen == 0 {
				cur.Gen = rev // the record Create wrote: the update writes its generation down
			}
			cur.Owner, cur.Topic, cur.Private = r.Owner, r.Topic, r.Private
			rec = *cur
			return write, nil
		}
		if !fromKnown {
			// A new room's history starts after whatever its name's subject holds: a
			// deleted room's lines, should its purge have failed.
			last, err := s.lastSeq(ctx, s.msgSubject(name))
			if err != nil {
				return keep, err
			}
			from, fromKnown = last, true
		}
		*cur = roomRec{Name: name, Owner: r.Owner, Topic: r.Topic, Private: r.Private, Created: created, From: from}
		rec = *cur
		return write, nil
	})
	if err != nil {
		return fmt.Errorf("save room %s: %w", name, err)
	}
	if rec.Gen == 0 {
		rec.Gen = rev
	}
	s.cache.put(rec, rev)
	return nil
}

// DeleteRoom removes room, its invitations, its memberships (they name its generation, which is
// gone) and its history: every line appended before the call. The record goes first, so that
// from then on the room is gone and its name free; this store's queue is then published and the
// room's subjects purged. Lines that reach the stream later (another node's, in flight) carry
// the old generation, which no read takes. It returns ErrNotFound when the room does not exist.
func (s *Store) DeleteRoom(room string) error {
	if s.isClosed() {
		return fmt.Errorf("delete room: %w", errClosed)
	}
	name, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("delete room: %w", err)
	}
	ctx, cancel := s.call()
	defer cancel()
	var deleted uint64
	if _, err := modify(ctx, s.roomList, roomToken(name), func(_ *roomRec, rev uint64) (action, error) {
		if rev == 0 {
			return keep, fmt.Errorf("%s: %w", name, chat.ErrNotFound)
		}
		deleted = rev
		return remove, nil
	}); err != nil {
		return fmt.Errorf("delete room %s: %w", name, err)
	}
	s.cache.drop(name, deleted)
	if err := s.q.wait(ctx, s.q.last()); err != nil {
		s.log.Warn("deleting a room before its queued lines are published; reads skip them", "room", name, "err", err)
	}
	if err := s.rooms.Purge(ctx, jetstream.WithPurgeSubject(s.subjPrefix+roomToken(name)+".>")); err != nil {
		s.log.Warn("cannot purge a deleted room's history; reads skip it, the stream's limits delete it", "room", name, "err", err)
	}
	return nil
}

// Invite records name as invited to room. It returns ErrNotFound for a room that does not
// exist and a *chat.NameError for an invalid name; inviting a name again changes nothing.
func (s *Store) Invite(room, name string) error {
	if s.isClosed() {
		return fmt.Errorf("invite: %w", errClosed)
	}
	rname, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("invite: %w", err)
	}
	if err := chat.ValidateName(name); err != nil {
		return fmt.Errorf("invite to %s: %w", rname, err)
	}
	ctx, cancel := s.call()
	defer cancel()
	var rec roomRec
	folded := chat.Fold(name)
	rev, err := modify(ctx, s.roomList, roomToken(rname), func(cur *roomRec, rev uint64) (action, error) {
		if rev == 0 {
			return keep, fmt.Errorf("%s: %w", rname, chat.ErrNotFound)
		}
		if slices.ContainsFunc(cur.Invited, func(n string) bool { return chat.Fold(n) == folded }) {
			return keep, nil
		}
		if cur.Gen == 0 {
			cur.Gen = rev
		}
		cur.Invited = append(cur.Invited, name)
		rec = *cur
		return write, nil
	})
	if err != nil {
		return fmt.Errorf("invite to %s: %w", rname, err)
	}
	if rev != 0 {
		s.cache.put(rec, rev)
	}
	return nil
}

// Memberships returns the rooms name is in, in name order: those it joined that still exist,
// as the generation it joined.
func (s *Store) Memberships(name string) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("memberships: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return nil, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	rec, _, _, err := getJSON[membersRec](ctx, s.members, nameToken(chat.Fold(name)))
	if err != nil {
		return nil, fmt.Errorf("memberships: %w", err)
	}
	var rooms []string
	for room, gen := range rec.Rooms {
		if r, ok := s.cache.get(room); ok && r.Gen == gen {
			rooms = append(rooms, room)
		}
	}
	slices.Sort(rooms)
	return rooms, nil
}

// AddMembership records that the registered name is in room. It returns ErrNotFound for a name
// that is not registered or a room that does not exist.
func (s *Store) AddMembership(name, room string) error {
	if s.isClosed() {
		return fmt.Errorf("add membership: %w", errClosed)
	}
	rname, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("add membership: %w", err)
	}
	if !chat.ValidName(name) {
		return fmt.Errorf("add membership: %q: %w", name, chat.ErrNotFound)
	}
	ctx, cancel := s.call()
	defer cancel()
	key := nameToken(chat.Fold(name))
	if _, _, ok, err := getJSON[identityRec](ctx, s.identities, key); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%q is not registered: %w", name, chat.ErrNotFound)
		}
		return fmt.Errorf("add membership: %w", err)
	}
	r, ok, err := s.room(ctx, rname)
	if err != nil || !ok {
		return fmt.Errorf("add membership: %w", cmp.Or(err, fmt.Errorf("%s: %w", rname, chat.ErrNotFound)))
	}
	_, err = modify(ctx, s.members, key, func(rec *membersRec, _ uint64) (action, error) {
		changed := s.pruneMemberships(rec)
		if rec.Rooms[rname] == r.Gen {
			return writeIf(changed), nil
		}
		if rec.Rooms == nil {
			rec.Rooms = map[string]uint64{}
		}
		rec.Rooms[rname] = r.Gen
		return write, nil
	})
	return wrap("add membership", err)
}

// RemoveMembership forgets that name is in room; one that does not exist is no error.
func (s *Store) RemoveMembership(name, room string) error {
	if s.isClosed() {
		return fmt.Errorf("remove membership: %w", errClosed)
	}
	rname, err := chat.ParseRoom(room)
	if err != nil {
		return fmt.Errorf("remove membership: %w", err)
	}
	if !chat.ValidName(name) {
		return nil
	}
	ctx, cancel := s.call()
	defer cancel()
	_, err = modify(ctx, s.members, nameToken(chat.Fold(name)), func(rec *membersRec, _ uint64) (action, error) {
		changed := s.pruneMemberships(rec)
		if _, ok := rec.Rooms[rname]; ok {
			delete(rec.Rooms, rname)
			changed = true
		}
		if changed && len(rec.Rooms) == 0 {
			return remove, nil
		}
		return writeIf(changed), nil
	})
	return wrap("remove membership", err)
}

// pruneMemberships drops the memberships of rooms deleted since (as this store knows), and
// reports whether it dropped any: a record stays as small as the rooms someone is in.
func (s *Store) pruneMemberships(rec *membersRec) bool {
	changed := false
	for room, gen := range rec.Rooms {
		if r, ok := s.cache.get(room); !ok || r.Gen != gen {
			delete(rec.Rooms, room)
			changed = true
		}
	}
	return changed
}

func writeIf(changed bool) action {
	if changed {
		return write
	}
	return keep
}
