package room

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"chatd/chat"
)

// The room commands: /join, /part, /rooms, /topic, /private, /invite, /who, and the operators'
// /room delete and /kick NAME #ROOM.

func (m *Member) cmdJoin(args string) Action {
	arg, _ := nameFields(args)
	if arg == "" {
		m.reply(kindError, "usage: /join ROOM (such as #go; /rooms lists them)")
		return Continue
	}
	name, err := chat.ParseRoom(arg)
	if err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	h := m.hub
	now := h.now()
	var ops storeOps
	h.mu.Lock()
	if m.index < 0 {
		h.mu.Unlock()
		return Continue
	}
	ch, already, err := h.joinLocked(m.person, name, m, m.opts.Operator, &ops)
	if err == nil {
		if already {
			m.enqueue(newEvent(kindInfo, now, "", "", "you are in "+ch.name+" now: your lines go there"))
		} else {
			for _, s := range m.person.sessions {
				if s != m {
					s.enqueue(newEvent(kindInfo, now, "", "", "you joined "+ch.name+" in another session"))
				}
			}
		}
	}
	h.unlockAndStore(ops)
	if err != nil {
		m.reply(kindError, err.Error())
	}
	return Continue
}

func (m *Member) cmdPart(args string) Action {
	h := m.hub
	ch, err := m.roomArg(args)
	if err != nil {
		m.reply(kindError, "usage: /part [ROOM]: "+err.Error())
		return Continue
	}
	now := h.now()
	var ops storeOps
	h.mu.Lock()
	p := m.person
	if !p.in(ch) {
		h.mu.Unlock()
		m.reply(kindError, "you are not in "+ch.name)
		return Continue
	}
	if len(p.rooms) == 1 && ch.name == h.cfg.DefaultRoom {
		h.mu.Unlock()
		m.reply(kindError, ch.name+" is your only room: there is nowhere else to go (/join another first)")
		return Continue
	}
	h.exitLocked(p, ch, p.name+" left "+ch.name)
	ops.part(p, ch.name)
	h.homeLocked(p, &ops)
	cur := m.current.Load()
	m.enqueue(newEvent(kindInfo, now, "", "", "you left "+ch.name+"; you are in "+cur.name+" now"))
	h.unlockAndStore(ops)
	return Continue
}

func (m *Member) cmdRooms(string) Action {
	h := m.hub
	h.mu.Lock()
	rooms := make([]*channel, 0, len(h.rooms))
	for _, ch := range h.rooms {
		if !ch.private || m.person.in(ch) || m.opts.Operator {
			rooms = append(rooms, ch)
		}
	}
	slices.SortFunc(rooms, func(a, b *channel) int {
		return cmpRooms(a.countIn(), a.name, b.countIn(), b.name)
	})
	lines := []string{fmt.Sprintf("%d rooms (the busiest first):", len(rooms))}
	for _, ch := range rooms {
		var b strings.Builder
		b.WriteString(ch.name)
		b.WriteString(" (")
		b.WriteString(strconv.Itoa(ch.countIn()))
		b.WriteString(" online")
		if ch.private {
			b.WriteString(", private")
		}
		if m.person.in(ch) {
			b.WriteString(", you are in it")
		}
		b.WriteString(")")
		if ch.topic != "" {
			b.WriteString(": ")
			b.WriteString(ch.topic)
		}
		lines = append(lines, b.String())
	}
	h.mu.Unlock()
	m.reply(kindInfo, strings.Join(lines, "\n"))
	return Continue
}

// cmpRooms orders rooms by people online, most first, then by name.
func cmpRooms(na int, a string, nb int, b string) int {
	if na != nb {
		return nb - na
	}
	return strings.Compare(a, b)
}

// maxTopic is the longest topic, in bytes.
const maxTopic = 300

func (m *Member) cmdTopic(args string) Action {
	h := m.hub
	text := strings.TrimSpace(args)
	ch := m.current.Load()
	if text == "" {
		h.mu.Lock()
		topic := ch.topic
		h.mu.Unlock()
		if topic == "" {
			m.reply(kindInfo, ch.name+" has no topic")
		} else {
			m.reply(kindInfo, "topic of "+ch.name+": "+topic)
		}
		return Continue
	}
	if len(text) > maxTopic {
		m.reply(kindError, fmt.Sprintf("topic too long (%d bytes; the limit is %d)", len(text), maxTopic))
		return Continue
	}
	text = expandEmoji(text)
	var ops storeOps
	if !m.lockToManage(ch) {
		return Continue
	}
	ch.topic = text
	ops.save(ch)
	h.unlockAndStore(ops)
	if err := h.relay.Publish(Line{Room: ch.name, Kind: LineNotice, Text: m.name + " set the topic of " + ch.name + ": " + text, At: h.now(), Topic: &text}); err != nil {
		h.log.Error("relay: publish", "room", ch.name, "err", err)
	}
	return Continue
}

// lockToManage takes the hub's lock for m to change room ch, or, when m may not, tells m why and
// reports false without the lock.
func (m *Member) lockToManage(ch *channel) bool {
	m.hub.mu.Lock()
	if err := m.mayManage(ch); err != nil {
		m.hub.mu.Unlock()
		m.reply(kindError, err.Error())
		return false
	}
	return true
}

// mayManage reports why m may not change room ch: only its owner and operators may. Called with
// the hub's lock held.
func (m *Member) mayManage(ch *channel) error {
	if m.opts.Operator || m.person.registered && ch.owner != "" && chat.Fold(ch.owner) == m.key {
		return nil
	}
	if ch.owner == "" {
		return fmt.Errorf("%s has no owner: only an operator may change it", ch.name)
	}
	return fmt.Errorf("only %s, who owns %s, or an operator may change it", ch.owner, ch.name)
}

func (m *Member) cmdPrivate(args string) Action {
	private, ok := onOff(args)
	if !ok {
		m.reply(kindError, "usage: /private on|off")
		return Continue
	}
	h := m.hub
	ch := m.current.Load()
	var ops storeOps
	if !m.lockToManage(ch) {
		return Continue
	}
	ch.private = private
	ops.save(ch)
	what := "public"
	if private {
		what = "private: invitation only (/invite NAME)"
	}
	h.noticeLocked(ch, m.name+" made "+ch.name+" "+what)
	h.unlockAndStore(ops)
	return Continue
}

func (m *Member) cmdInvite(args string) Action {
	name, _ := nameFields(args)
	if err := chat.ValidateName(name); err != nil {
		m.reply(kindError, "usage: /invite NAME: "+err.Error())
		return Continue
	}
	h := m.hub
	ch := m.current.Load()
	if !m.lockToManage(ch) {
		return Continue
	}
	if _, again := ch.invited[chat.Fold(name)]; !again && len(ch.invited) >= maxInvited {
		h.mu.Unlock()
		m.reply(kindError, fmt.Sprintf("%s has %d invitations, the most a room may have", ch.name, maxInvited))
		return Continue
	}
	ch.invited[chat.Fold(name)] = name
	invitee := h.people[chat.Fold(name)]
	if invitee != nil {
		h.deliverToLocked(invitee, newEvent(kindInfo, h.now(), "", "", m.name+" invited you to "+ch.name+": /join "+ch.name))
	}
	var ops storeOps
	ops.invite(ch.name, name)
	ops.save(ch) // the other nodes learn of the invitation from the room's record
	h.unlockAndStore(ops)
	m.reply(kindInfo, name+" may join "+ch.name+" now")
	return Continue
}

// maxInvited bounds a room's invitations.
const maxInvited = 1000

func (m *Member) cmdWho(args string) Action {
	ch, err := m.roomArg(args)
	if err != nil {
		m.reply(kindError, "usage: /who [ROOM]: "+err.Error())
		return Continue
	}
	if err := m.mayRead(ch); err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	m.reply(kindInfo, m.hub.whoIn(ch))
	return Continue
}

// whoIn says who is in ch: "3 online in #go: alice, bob (away: lunch), carol".
func (h *Hub) whoIn(ch *channel) string {
	names := h.namesIn(ch, true)
	return strconv.Itoa(len(names)) + " online in " + ch.name + ": " + strings.Join(names, ", ")
}

// namesIn are the names of the people in ch, in order; withAway adds " (away: TEXT)" to those
// who are away.
func (h *Hub) namesIn(ch *channel, withAway bool) []string {
	h.mu.Lock()
	names := make([]string, 0, len(ch.people))
	away := make(map[string]string)
	for p := range ch.people {
		names = append(names, p.name)
		if withAway && p.away != "" {
			away[p.name] = p.away
		}
	}
	names = h.remoteNamesLocked(ch, names)
	h.mu.Unlock()
	sortNames(names)
	for i, n := range names {
		if a, ok := away[n]; ok {
			names[i] = n + " (away: " + a + ")"
		}
	}
	return names
}

// roomArg reads an optional room argument: the named room, or the member's current one.
func (m *Member) roomArg(args string) (*channel, error) {
	arg, _ := nameFields(args)
	if arg == "" {
		return m.current.Load(), nil
	}
	return m.hub.roomNamed(arg)
}

// roomNamed finds the room arg names ("go" or "#go").
func (h *Hub) roomNamed(arg string) (*channel, error) {
	name, err := chat.ParseRoom(arg)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	ch := h.rooms[name]
	h.mu.Unlock()
	if ch == nil {
		return nil, fmt.Errorf("there is no room %s (/rooms lists them)", name)
	}
	return ch, nil
}

// roomAndCount reads "[ROOM] [N]" from fields, in either order: ch and def when left out, and a
// room as find finds it.
func roomAndCount(fields []string, ch *channel, def int, find func(string) (*channel, error)) (*channel, int, error) {
	n := def
	for _, f := range fields {
		if f != "" && f[0] >= '0' && f[0] <= '9' {
			var err error
			if n, err = parseCount(f, def); err != nil {
				return nil, 0, err
			}
			continue
		}
		var err error
		if ch, err = find(f); err != nil {
			return nil, 0, err
		}
	}
	return ch, n, nil
}

// mayRead reports why m may not see who is in room ch or read its history: a private room is
// for its members and operators.
func (m *Member) mayRead(ch *channel) error {
	h := m.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ch.private || m.opts.Operator || m.person.in(ch) {
		return nil
	}
	return fmt.Errorf("%s is invite-only", ch.name)
}

// visibleRoomsLocked are the public rooms p is in, for others to see in /whois.
func (h *Hub) visibleRoomsLocked(p *person) []string {
	var names []string
	for _, ch := range p.rooms {
		if !ch.private {
			names = append(names, ch.name)
		}
	}
	return names
}

// cmdRoom is the operators' /room delete ROOM, which asks to confirm: /room delete ROOM confirm.
func (m *Member) cmdRoom(args string) Action {
	if !m.requireOp("room") {
		return Continue
	}
	sub, rest := nameFields(args)
	arg, confirm := nameFields(rest)
	if chat.Fold(sub) != "delete" || arg == "" {
		m.reply(kindError, "usage: /room delete ROOM")
		return Continue
	}
	h := m.hub
	name, err := chat.ParseRoom(arg)
	if err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	if name == h.cfg.DefaultRoom {
		m.reply(kindError, name+" is the default room: it cannot be deleted")
		return Continue
	}
	now := h.cfg.Now()
	m.mu.Lock()
	pending, at := m.pendingDelete, m.pendingDelAt
	confirmed := chat.Fold(confirm) == "confirm" && pending == name && now.Sub(at) <= time.Minute
	if !confirmed {
		m.pendingDelete, m.pendingDelAt = name, now
	} else {
		m.pendingDelete = ""
	}
	m.mu.Unlock()
	if !confirmed {
		h.mu.Lock()
		ch := h.rooms[name]
		h.mu.Unlock()
		if ch == nil {
			m.reply(kindError, "there is no room "+name)
			return Continue
		}
		m.reply(kindError, "this deletes "+name+" and all its history for good: send /room delete "+name+" confirm within a minute to go ahead")
		return Continue
	}
	if err := h.deleteRoom(name, m.name); err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	m.opLog("room delete", "room", name)
	m.reply(kindInfo, "deleted "+name)
	return Continue
}

// deleteRoom removes a room with its history: everyone in it is told and moved out (to the
// default room when it was their last).
func (h *Hub) deleteRoom(name, by string) error { return h.removeRoom(name, by, true) }

// removeRoom takes a room out of the hub: deleted here (the store forgets it and the other nodes
// are told), or on another node.
func (h *Hub) removeRoom(name, by string, here bool) error {
	var ops storeOps
	h.mu.Lock()
	ch := h.rooms[name]
	if ch == nil {
		h.mu.Unlock()
		return fmt.Errorf("there is no room %s", name)
	}
	h.noticeLocked(ch, name+" was deleted by "+by)
	for p := range ch.people {
		h.exitLocked(p, ch, "")
		h.homeLocked(p, &ops)
	}
	ch.notices.stop()
	delete(h.rooms, name)
	h.forgetRoomLocked(name)
	if here {
		ops.deleteRoom(name)
	}
	h.unlockAndStore(ops)
	if here {
		h.send(ClusterEvent{Kind: EventRoomDeleted, RoomName: name, By: by})
	}
	return nil
}

// kickFromRoom takes person p out of room ch, telling them and the room.
func (h *Hub) kickFromRoom(p *person, ch *channel, by, reason string) error {
	var ops storeOps
	h.mu.Lock()
	if !p.in(ch) {
		h.mu.Unlock()
		return fmt.Errorf("%s is not in %s", p.name, ch.name)
	}
	h.exitLocked(p, ch, p.name+" was kicked from "+ch.name+" by "+by+withReason(reason))
	ops.part(p, ch.name)
	h.homeLocked(p, &ops)
	h.deliverToLocked(p, newEvent(kindError, h.now(), "", "", "you were kicked from "+ch.name+" by "+by+withReason(reason)))
	h.unlockAndStore(ops)
	return nil
}

// homeLocked puts p, online but in no room any more (they parted, were kicked or their room was
// deleted), in the default room: everyone is always in at least one room.
func (h *Hub) homeLocked(p *person, ops *storeOps) {
	if len(p.rooms) > 0 {
		return
	}
	def := h.rooms[h.cfg.DefaultRoom]
	if _, err := h.enterLocked(p, def, true, ops); err == nil {
		for _, s := range p.sessions {
			s.current.Store(def)
		}
	}
}
