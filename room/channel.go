package room

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"chatd/chat"
)

// channel is one room: who is in it, their sessions (every one gets the room's lines), its
// settings and its newest lines. It is guarded by the hub's lock.
type channel struct {
	name    string
	owner   string // the registered name of whoever created it; "" for none
	topic   string
	private bool
	created time.Time
	invited map[string]string // folded name -> as invited

	people  map[*person]struct{} // who is in it
	members []*Member            // their sessions; a member knows its slot here
	history history              // the newest lines; the store keeps the rest
	notices notices              // join and leave notices gathered during a storm
	// remote: the people in it on the cluster's other nodes, by folded name; remoteOnly: how
	// many of them are not in it here too.
	remote     map[string]*seat
	remoteOnly int
	// loadedSeq is the ID of the newest line loaded from the store at the start: a relay whose
	// log is the history may hand it over again (Line.Seq).
	loadedSeq uint64
}

func newChannel(r chat.Room, tail int) *channel {
	ch := &channel{
		name:    r.Name,
		owner:   r.Owner,
		topic:   r.Topic,
		private: r.Private,
		created: r.Created,
		invited: make(map[string]string),
		people:  make(map[*person]struct{}),
		history: history{size: tail},
	}
	for _, n := range r.Invited {
		ch.invited[chat.Fold(n)] = n
	}
	return ch
}

// record is the room as the store keeps it.
func (ch *channel) record() chat.Room {
	r := chat.Room{Name: ch.name, Owner: ch.owner, Topic: ch.topic, Private: ch.private, Created: ch.created}
	for _, n := range ch.invited {
		r.Invited = append(r.Invited, n)
	}
	return r
}

// addSession puts m among the room's sessions.
func (ch *channel) addSession(m *Member) {
	if _, ok := m.slot(ch); ok {
		return
	}
	m.slots = append(m.slots, slot{ch, len(ch.members)})
	ch.members = append(ch.members, m)
}

// removeSession takes m out of the room's sessions.
func (ch *channel) removeSession(m *Member) {
	i, ok := m.slot(ch)
	if !ok {
		return
	}
	last := len(ch.members) - 1
	moved := ch.members[last]
	ch.members[i] = moved
	moved.setSlot(ch, i)
	ch.members[last] = nil
	ch.members = ch.members[:last]
	m.slots = slices.DeleteFunc(m.slots, func(s slot) bool { return s.ch == ch })
}

// slot is where a member sits in one room's sessions. A member is in a few rooms: a short slice
// costs less than a map, for every idle session.
type slot struct {
	ch *channel
	i  int
}

func (m *Member) slot(ch *channel) (int, bool) {
	for _, s := range m.slots {
		if s.ch == ch {
			return s.i, true
		}
	}
	return 0, false
}

func (m *Member) setSlot(ch *channel, i int) {
	for k := range m.slots {
		if m.slots[k].ch == ch {
			m.slots[k].i = i
			return
		}
	}
}

// broadcastLocked queues ev for every session in the room but except. Holding the hub's lock
// across the loop is what gives every member the same order of events.
func (ch *channel) broadcastLocked(ev *event, except *Member) {
	for _, m := range ch.members {
		if m == except || m.person.ignores != nil && m.person.ignoring(ev) {
			continue
		}
		m.enqueue(ev)
	}
}

// mayEnter reports why p may not come in: a private room admits the people invited to it, its
// owner and operators.
func (ch *channel) mayEnter(p *person, operator bool) error {
	if !ch.private || operator || p.registered && chat.Fold(ch.owner) == p.key {
		return nil
	}
	if _, ok := ch.invited[p.key]; ok {
		return nil
	}
	return fmt.Errorf("%s is invite-only", ch.name)
}

// ErrRoomLimit is wrapped by the error of a join that a room limit refuses.
var ErrRoomLimit = errors.New("room limit")

// joinLocked puts p in the room named name (creating it if it is new) and makes it m's current
// room, greeting m with the room's topic and history before the room hears of the newcomer. It
// reports whether p was already in it.
func (h *Hub) joinLocked(p *person, name string, m *Member, operator bool, ops *storeOps) (*channel, bool, error) {
	ch := h.roomLocked(name)
	if ch != nil && p.in(ch) {
		m.current.Store(ch)
		return ch, true, nil
	}
	if err := h.roomLeftLocked(p, 0); err != nil {
		return nil, false, err
	}
	if ch == nil {
		var err error
		if ch, err = h.createLocked(p, name, ops); err != nil {
			return nil, false, err
		}
	} else if err := ch.mayEnter(p, operator); err != nil {
		return nil, false, err
	}
	ch.greetLocked(m, h, h.now())
	if _, err := h.enterLocked(p, ch, true, ops); err != nil {
		return nil, false, err
	}
	m.current.Store(ch)
	return ch, false, nil
}

// roomLeftLocked reports why p, about to enter pending rooms, may not enter one more.
func (h *Hub) roomLeftLocked(p *person, pending int) error {
	if limit := h.cfg.MaxRoomsPerPerson; limit > 0 && len(p.rooms)+pending >= limit {
		return fmt.Errorf("%w: you are in %d rooms, the most one may be in; leave one first (/part ROOM)", ErrRoomLimit, limit)
	}
	return nil
}

// createLocked makes a new room, owned by p if p's name is registered, within the limits.
func (h *Hub) createLocked(p *person, name string, ops *storeOps) (*channel, error) {
	if limit := h.cfg.MaxRooms; limit > 0 && len(h.rooms) >= limit {
		return nil, fmt.Errorf("%w: the server has %d rooms, the most it may have; join one of them (/rooms)", ErrRoomLimit, limit)
	}
	now := h.now()
	if limit := h.cfg.RoomsPerHour; limit > 0 {
		if err := h.creations.allow(p.key, p.remote, limit, now); err != nil {
			return nil, err
		}
	}
	r := chat.Room{Name: name, Created: now}
	if p.registered {
		r.Owner = p.name
	}
	ch := newChannel(r, h.tailLen())
	h.rooms[name] = ch
	ops.save(ch)
	h.log.Info("room created", "room", name, "by", p.name)
	return ch, nil
}

// enterLocked puts person p in room ch, with every session of p, and tells the room (at once,
// or gathered in a storm). member says whether the person chose to (a /join, kept for a
// registered person's next login) or came back to it.
func (h *Hub) enterLocked(p *person, ch *channel, member bool, ops *storeOps) (bool, error) {
	if _, in := ch.people[p]; in {
		return false, nil
	}
	if err := h.roomLeftLocked(p, 0); err != nil {
		return false, err
	}
	ch.people[p] = struct{}{}
	p.rooms = append(p.rooms, ch)
	for _, s := range p.sessions {
		ch.addSession(s)
	}
	if member {
		ops.join(p, ch.name)
	}
	h.announce(PresenceJoin, p, ch.name)
	if ch.remote[p.key] != nil {
		ch.remoteOnly-- // in it on another node already: the room knows
	} else {
		h.announceLocked(ch, true, p.name, p.name+" joined "+ch.name+" "+onlineIn(ch.countIn()))
	}
	return true, nil
}

// exitLocked takes person p, with every session, out of room ch, telling the room notice.
// Sessions whose current room it was move to another of p's rooms.
func (h *Hub) exitLocked(p *person, ch *channel, notice string) {
	if _, in := ch.people[p]; !in {
		return
	}
	delete(ch.people, p)
	if i := slices.Index(p.rooms, ch); i >= 0 {
		p.rooms = slices.Delete(p.rooms, i, i+1)
	}
	for _, s := range p.sessions {
		ch.removeSession(s)
		if s.current.Load() == ch && len(p.rooms) > 0 {
			s.current.Store(h.currentFor(p))
		}
	}
	if len(p.sessions) > 0 {
		h.announce(PresenceLeave, p, ch.name) // by choice: going offline is PresenceOffline
	}
	if ch.remote[p.key] != nil {
		ch.remoteOnly++ // still in it on another node
	} else if !h.closed && notice != "" {
		h.announceLocked(ch, false, p.name, notice)
	}
}

// greetLocked shows m the room it has just entered: its topic and its newest lines.
func (ch *channel) greetLocked(m *Member, h *Hub, now time.Time) {
	if ch.topic != "" {
		m.enqueue(newEvent(kindInfo, now, "", "", "topic of "+ch.name+": "+ch.topic))
	}
	h.replayLocked(m, ch, h.cfg.historyOnJoin(), now)
}

// creations counts the rooms created in the last hour, by person and by address, so that
// nobody fills the server's rooms (or its disk) with new ones.
type creations struct {
	by map[string][]time.Time // "name:alice" or "ip:192.0.2.7" -> when
}

// allow records a creation by the person with folded name key from address ip, or refuses it.
func (c *creations) allow(key string, ip netip.Addr, limit int, now time.Time) error {
	if c.by == nil {
		c.by = make(map[string][]time.Time)
	}
	keys := []string{"name:" + key}
	if ip.IsValid() {
		keys = append(keys, "ip:"+ip.String())
	}
	hourAgo := now.Add(-time.Hour)
	for _, k := range keys {
		c.by[k] = slices.DeleteFunc(c.by[k], func(t time.Time) bool { return t.Before(hourAgo) })
		if len(c.by[k]) >= limit {
			return fmt.Errorf("%w: you may create %d rooms an hour; join an existing one (/rooms) or try later", ErrRoomLimit, limit)
		}
	}
	for _, k := range keys {
		c.by[k] = append(c.by[k], now)
	}
	if len(c.by) > 10000 { // forget the quiet ones now and then
		for k, ts := range c.by {
			if len(ts) == 0 || ts[len(ts)-1].Before(hourAgo) {
				delete(c.by, k)
			}
		}
	}
	return nil
}

// storeOps are the writes a change of rooms needs, gathered under the hub's lock and made after
// it is released: the store may take milliseconds, and the room never waits for the disk while
// it holds everyone up.
type storeOps struct {
	saves   []chat.Room
	joins   []membership
	parts   []membership
	invites []membership
	deletes []string
}

type membership struct{ name, room string }

func (o *storeOps) save(ch *channel) { o.saves = append(o.saves, ch.record()) }

// join records that registered person p chose room; part that p left it. Sessions of people
// without a registered name are forgotten when they leave.
func (o *storeOps) join(p *person, room string) {
	if p.registered {
		o.joins = append(o.joins, membership{p.name, room})
	}
}

func (o *storeOps) part(p *person, room string) {
	if p.registered {
		o.parts = append(o.parts, membership{p.name, room})
	}
}

func (o *storeOps) invite(room, name string) {
	o.invites = append(o.invites, membership{name, room})
}

func (o *storeOps) deleteRoom(name string) { o.deletes = append(o.deletes, name) }

func (o *storeOps) empty() bool {
	return len(o.saves)+len(o.joins)+len(o.parts)+len(o.invites)+len(o.deletes) == 0
}

// storeQueue holds the hub's pending store writes in the order of the changes they record (the
// order of the hub's lock), so that a /join and a /part racing in two sessions reach the disk
// in the order they happened. One goroutine at a time writes them out.
type storeQueue struct {
	mu      sync.Mutex
	pending []storeOps
	writing bool
}

// unlockAndStore queues ops, releases the hub's lock and writes what is queued, unless another
// goroutine is writing already (it then writes these too). h.mu must be held.
func (h *Hub) unlockAndStore(ops storeOps) {
	q := &h.storeQueue
	if h.cfg.Store == nil || ops.empty() {
		h.mu.Unlock()
		return
	}
	q.mu.Lock()
	q.pending = append(q.pending, ops)
	h.mu.Unlock()
	if q.writing {
		q.mu.Unlock()
		return
	}
	q.writing = true
	for len(q.pending) > 0 {
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, o := range batch {
			h.writeStoreOps(o)
		}
		q.mu.Lock()
	}
	q.writing = false
	q.mu.Unlock()
}

// writeStoreOps makes the writes, logging failures: the rooms as they are in memory go on.
func (h *Hub) writeStoreOps(o storeOps) {
	st := h.cfg.Store
	for _, r := range o.saves {
		if err := st.SaveRoom(r); err != nil {
			h.log.Error("store: save room", "room", r.Name, "err", err)
		}
		h.send(ClusterEvent{Kind: EventRoom, Room: &r})
	}
	for _, i := range o.invites {
		if err := st.Invite(i.room, i.name); err != nil {
			h.log.Error("store: invite", "room", i.room, "user", i.name, "err", err)
		}
	}
	for _, j := range o.joins {
		if err := st.AddMembership(j.name, j.room); err != nil {
			h.log.Error("store: add membership", "user", j.name, "room", j.room, "err", err)
		}
	}
	for _, p := range o.parts {
		if err := st.RemoveMembership(p.name, p.room); err != nil {
			h.log.Error("store: remove membership", "user", p.name, "room", p.room, "err", err)
		}
	}
	for _, name := range o.deletes {
		if err := st.DeleteRoom(name); err != nil {
			h.log.Error("store: delete room", "room", name, "err", err)
		}
	}
}
