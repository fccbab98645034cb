package room

import (
	"errors"
	"slices"
	"strings"

	"chatd/chat"
)

// ErrPaused is the error of a join while this node cannot reach the rest of its cluster.
var ErrPaused = errors.New("this server cannot reach the rest of the chat right now; try again in a moment")

// peers is who is online on the cluster's other nodes, as their presence changes tell it: per
// node, each person and their rooms there; and per name, on how many nodes they are. A room
// keeps its own count of the people in it elsewhere (channel.remote). Guarded by the hub's lock.
type peers struct {
	nodes  map[string]map[string]*peer // node -> folded name -> the person there
	people map[string]*seat            // folded name -> on how many other nodes
	only   int                         // how many of people are not online here too
}

// nowLocal and noLongerLocal keep the count of people online elsewhere only, as someone of
// folded name key comes online here or leaves.
func (ps *peers) nowLocal(key string) {
	if ps.people[key] != nil {
		ps.only--
	}
}

func (ps *peers) noLongerLocal(key string) {
	if ps.people[key] != nil {
		ps.only++
	}
}

// peer is someone online on another node.
type peer struct {
	name       string
	registered bool
	rooms      map[string]bool // the rooms they are in there, by name
}

// seat counts the other nodes where one name is online (or in one room).
type seat struct {
	name       string
	registered bool
	nodes      int
}

// clustered reports whether the hub is one node of several.
func (h *Hub) clustered() bool { return h.cfg.Cluster != nil }

// announce tells the other nodes of a change to who is online here. Called with the hub's lock
// held, so the changes leave in the order they were made.
func (h *Hub) announce(op PresenceOp, p *person, room string) {
	if h.cfg.Cluster != nil {
		h.cfg.Cluster.Announce(PresenceChange{Op: op, Name: p.name, Room: room, Registered: p.registered})
	}
}

// send tells the other nodes of an operator's change.
func (h *Hub) send(ev ClusterEvent) {
	if h.cfg.Cluster != nil {
		h.cfg.Cluster.Send(ev)
	}
}

// localIn reports whether the person online here under folded name key is in ch.
func (h *Hub) localIn(ch *channel, key string) bool {
	p := h.people[key]
	return p != nil && p.in(ch)
}

// countIn is how many people are in ch, on every node.
func (ch *channel) countIn() int { return len(ch.people) + ch.remoteOnly }

// onlineCountLocked is how many people are online, on every node.
func (h *Hub) onlineCountLocked() int { return len(h.people) + h.peers.only }

// remoteNamesLocked appends the names of the people in ch online only on other nodes.
func (h *Hub) remoteNamesLocked(ch *channel, names []string) []string {
	for key, s := range ch.remote {
		if !h.localIn(ch, key) {
			names = append(names, s.name)
		}
	}
	return names
}

// roomLocked is the room called name: one this hub knows, or one that another node of the
// cluster created meanwhile (the store has it), which it adopts. Nil when there is none.
func (h *Hub) roomLocked(name string) *channel {
	if ch := h.rooms[name]; ch != nil || !h.clustered() || h.cfg.Store == nil {
		return ch
	}
	rooms, err := h.cfg.Store.Rooms()
	if err != nil {
		h.log.Error("store: rooms", "err", err)
		return nil
	}
	for _, r := range rooms {
		if r.Name == name {
			ch := newChannel(r, h.tailLen())
			h.rooms[name] = ch
			return ch
		}
	}
	return nil
}

// peerOnlineLocked records that c.Name is online on node.
func (h *Hub) peerOnlineLocked(node string, c PresenceChange) *peer {
	if h.peers.nodes == nil {
		h.peers.nodes = make(map[string]map[string]*peer)
		h.peers.people = make(map[string]*seat)
	}
	there := h.peers.nodes[node]
	if there == nil {
		there = make(map[string]*peer)
		h.peers.nodes[node] = there
	}
	key := chat.Fold(c.Name)
	if pr := there[key]; pr != nil {
		pr.registered = pr.registered || c.Registered
		return pr
	}
	pr := &peer{name: c.Name, registered: c.Registered, rooms: make(map[string]bool)}
	there[key] = pr
	s := h.peers.people[key]
	if s == nil {
		s = &seat{name: c.Name}
		h.peers.people[key] = s
		if h.people[key] == nil {
			h.peers.only++
		}
	}
	s.nodes++
	s.registered = s.registered || c.Registered
	if p := h.people[key]; p != nil && !(p.registered && c.Registered) {
		// Two guests took one name on two nodes at the same moment: both stay, and /who shows
		// the name once. Rare, and a registered name cannot be taken so.
		h.log.Warn("cluster: a name is online on two nodes", "user", c.Name, "node", node)
	}
	return pr
}

// peerOfflineLocked records that the person of folded name key left node: they leave every room
// there.
func (h *Hub) peerOfflineLocked(node, key string, ops *storeOps) {
	there := h.peers.nodes[node]
	pr := there[key]
	if pr == nil {
		return
	}
	for _, room := range sortedKeys(pr.rooms) {
		h.peerLeaveLocked(pr, key, room, false, ops)
	}
	delete(there, key)
	if s := h.peers.people[key]; s != nil {
		if s.nodes--; s.nodes <= 0 {
			delete(h.peers.people, key)
			if h.people[key] == nil {
				h.peers.only--
			}
		}
	}
}

// peerJoinLocked records that a person on another node entered room: the room hears of it
// unless they were in it here or elsewhere already, and their sessions here (a registered
// person online on several nodes is one person) follow them in.
func (h *Hub) peerJoinLocked(pr *peer, key, room string, ops *storeOps) {
	if pr.rooms[room] {
		return
	}
	ch := h.roomLocked(room)
	if ch == nil {
		// Made a moment ago: the node announces who entered it before the store has it, and
		// its record follows (EventRoom).
		r, err := chat.ParseRoom(room)
		if err != nil {
			return
		}
		ch = newChannel(chat.Room{Name: r}, h.tailLen())
		h.rooms[r] = ch
	}
	pr.rooms[room] = true
	if ch.remote == nil {
		ch.remote = make(map[string]*seat)
	}
	s := ch.remote[key]
	if s == nil {
		s = &seat{name: pr.name}
		ch.remote[key] = s
		if !h.localIn(ch, key) {
			ch.remoteOnly++
			h.announceLocked(ch, true, pr.name, pr.name+" joined "+ch.name+" "+onlineIn(ch.countIn()))
		}
	}
	s.nodes++
	if p := h.people[key]; p != nil && p.registered && pr.registered && !p.in(ch) {
		if entered, _ := h.enterLocked(p, ch, false, ops); entered {
			// The room heard of them already; their sessions here hear it now, as the
			// session that joined did.
			ev := newEvent(kindNotice, h.now(), "", "", p.name+" joined "+ch.name+" "+onlineIn(ch.countIn()))
			ev.room, ev.presence = ch.name, &presence{joined: []string{p.name}}
			h.deliverToLocked(p, ev)
		}
	}
}

// peerLeaveLocked records that a person on another node left room; follow: they chose to (or
// were taken out), and their sessions here follow them out.
func (h *Hub) peerLeaveLocked(pr *peer, key, room string, follow bool, ops *storeOps) {
	if !pr.rooms[room] {
		return
	}
	delete(pr.rooms, room)
	ch := h.rooms[room]
	if ch == nil {
		return
	}
	if s := ch.remote[key]; s != nil {
		if s.nodes--; s.nodes <= 0 {
			delete(ch.remote, key)
			if !h.localIn(ch, key) {
				ch.remoteOnly--
				h.announceLocked(ch, false, pr.name, pr.name+" left "+ch.name)
			}
		}
	}
	if p := h.people[key]; follow && p != nil && p.registered && pr.registered && p.in(ch) {
		h.exitLocked(p, ch, p.name+" left "+ch.name)
		h.homeLocked(p, ops)
	}
}

// forgetRoomLocked drops what is known of a deleted room's people on other nodes.
func (h *Hub) forgetRoomLocked(name string) {
	for _, there := range h.peers.nodes {
		for _, pr := range there {
			delete(pr.rooms, name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// clusterSide is the hub as its Cluster sees it (ClusterHub): kept apart from Hub's own methods.
type clusterSide struct{ h *Hub }

var _ ClusterHub = clusterSide{}

func (c clusterSide) Presence(node string, changes []PresenceChange, full bool) {
	h := c.h
	var ops storeOps
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if full {
		// What the node no longer has goes first, quietly where it is only a difference of
		// what this hub had heard.
		want := make(map[string]map[string]bool)
		for _, ch := range changes {
			key := chat.Fold(ch.Name)
			switch ch.Op {
			case PresenceOnline:
				if want[key] == nil {
					want[key] = make(map[string]bool)
				}
			case PresenceJoin:
				if want[key] == nil {
					want[key] = make(map[string]bool)
				}
				want[key][ch.Room] = true
			}
		}
		for _, key := range sortedKeys(h.peers.nodes[node]) {
			pr := h.peers.nodes[node][key]
			rooms, ok := want[key]
			if !ok {
				h.peerOfflineLocked(node, key, &ops)
				continue
			}
			for _, room := range sortedKeys(pr.rooms) {
				if !rooms[room] {
					h.peerLeaveLocked(pr, key, room, false, &ops)
				}
			}
		}
	}
	for _, ch := range changes {
		key := chat.Fold(ch.Name)
		switch ch.Op {
		case PresenceOnline:
			h.peerOnlineLocked(node, ch)
		case PresenceOffline:
			h.peerOfflineLocked(node, key, &ops)
		case PresenceJoin:
			pr := h.peerOnlineLocked(node, PresenceChange{Name: ch.Name, Registered: ch.Registered})
			h.peerJoinLocked(pr, key, ch.Room, &ops)
		case PresenceLeave:
			if pr := h.peers.nodes[node][key]; pr != nil {
				h.peerLeaveLocked(pr, key, ch.Room, true, &ops)
			}
		}
	}
	h.unlockAndStore(ops)
}

func (c clusterSide) NodeGone(node string) {
	h := c.h
	var ops storeOps
	h.mu.Lock()
	if !h.closed {
		for _, key := range sortedKeys(h.peers.nodes[node]) {
			h.peerOfflineLocked(node, key, &ops)
		}
		delete(h.peers.nodes, node)
	}
	h.unlockAndStore(ops)
	h.log.Info("cluster: node gone", "node", node)
}

func (c clusterSide) Snapshot() []PresenceChange {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	changes := make([]PresenceChange, 0, 2*len(h.people))
	for _, p := range h.people {
		changes = append(changes, PresenceChange{Op: PresenceOnline, Name: p.name, Registered: p.registered})
		for _, ch := range p.rooms {
			changes = append(changes, PresenceChange{Op: PresenceJoin, Name: p.name, Room: ch.name, Registered: p.registered})
		}
	}
	return changes
}

func (c clusterSide) DM(dm chat.DM) bool {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.people[chat.Fold(dm.To)]
	if p == nil || h.closed {
		return false
	}
	at := dm.At.In(h.cfg.Location)
	if at.IsZero() {
		at = h.now()
	}
	h.deliverToLocked(p, dmIn(at, dm.From, p.name, dm.Text))
	p.lastDM = dm.From
	return true
}

func (c clusterSide) Connection(up bool) {
	h := c.h
	if h.paused.Swap(!up) == !up {
		return
	}
	text := "the chat is back: this server reaches the rest of the chat again"
	if !up {
		text = "the chat is paused: this server lost its connection to the rest of the chat; what you send is refused until it is back"
		h.log.Warn("cluster: connection lost; chat paused, logins refused")
	} else {
		h.log.Info("cluster: connection back; chat resumed")
	}
	ev := newEvent(kindNotice, h.now(), "", "", text)
	h.mu.Lock()
	for _, m := range h.sessions {
		m.enqueue(ev)
	}
	h.mu.Unlock()
	if up {
		h.catchUp()
	}
}

func (c clusterSide) Event(ev ClusterEvent) {
	h := c.h
	switch ev.Kind {
	case EventKick:
		if p := h.lookup(ev.Name); p != nil {
			reason := ev.Reason
			verb := "kicked"
			if reason == ReasonBanned {
				verb = "banned"
			} else {
				reason = ReasonKicked
			}
			h.expel(p, reason, "you were "+verb+" by "+ev.By+withReason(ev.Text), p.name+" was "+verb+" by "+ev.By+withReason(ev.Text))
		}
	case EventBans:
		h.takeBans(ev)
	case EventMute:
		h.mod.mu.Lock()
		h.mod.mutes[chat.Fold(ev.Name)] = ev.Until
		h.mod.mu.Unlock()
	case EventUnmute:
		h.mod.mu.Lock()
		delete(h.mod.mutes, chat.Fold(ev.Name))
		h.mod.mu.Unlock()
	case EventMotd:
		h.mod.mu.Lock()
		h.mod.motd = ev.Text
		h.mod.mu.Unlock()
	case EventRoom:
		if ev.Room != nil {
			h.adoptRoom(*ev.Room)
		}
	case EventRoomDeleted:
		h.removeRoom(ev.RoomName, ev.By, false)
	case EventRoomKick:
		h.mu.Lock()
		p, ch := h.people[chat.Fold(ev.Name)], h.rooms[ev.RoomName]
		h.mu.Unlock()
		if p != nil && ch != nil {
			_ = h.kickFromRoom(p, ch, ev.By, ev.Text)
		}
	case EventWebRevoke:
		if p := h.lookup(ev.Name); p != nil {
			h.endWebSessions(p, ev.ID)
		}
	}
}

// adoptRoom takes in a room's settings as another node stored them: a new room, or a changed
// owner, topic, privacy or invitations.
func (h *Hub) adoptRoom(r chat.Room) {
	name, err := chat.ParseRoom(r.Name)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.rooms[name]
	if ch == nil {
		r.Name = name
		h.rooms[name] = newChannel(r, h.tailLen())
		return
	}
	ch.owner, ch.topic, ch.private = r.Owner, r.Topic, r.Private
	invited := make(map[string]string, len(r.Invited))
	for _, n := range r.Invited {
		invited[chat.Fold(n)] = n
	}
	ch.invited = invited
}

// catchUp reads again from the store what other nodes may have changed while this one could not
// hear their events: bans, rooms, the message of the day. (Mutes live in memory only: a node
// that was away misses those made meanwhile.)
func (h *Hub) catchUp() {
	st := h.cfg.Store
	if st == nil {
		return
	}
	h.reloadBans("", "")
	if motd, set, err := st.Setting("motd"); err != nil {
		h.log.Error("store: motd", "err", err)
	} else if set {
		h.mod.mu.Lock()
		h.mod.motd = motd
		h.mod.mu.Unlock()
	}
	rooms, err := st.Rooms()
	if err != nil {
		h.log.Error("store: rooms", "err", err)
		return
	}
	stored := make(map[string]bool, len(rooms))
	for _, r := range rooms {
		stored[r.Name] = true
		h.adoptRoom(r)
	}
	h.mu.Lock()
	var gone []string
	for name := range h.rooms {
		if !stored[name] && name != h.cfg.DefaultRoom {
			gone = append(gone, name)
		}
	}
	h.mu.Unlock()
	for _, name := range gone {
		_ = h.removeRoom(name, "an operator", false)
	}
}

// takeBans applies bans another node added or lifted: the new ones end the sessions here they
// cover.
func (h *Hub) takeBans(ev ClusterEvent) {
	h.mod.mu.Lock()
	if len(ev.Bans) == 0 {
		h.mod.bans = slices.DeleteFunc(h.mod.bans, func(b chat.Ban) bool { return b.ID == ev.ID })
	}
	for _, b := range ev.Bans {
		if !slices.ContainsFunc(h.mod.bans, func(known chat.Ban) bool { return known.ID == b.ID }) {
			h.mod.bans = append(h.mod.bans, b)
		}
	}
	h.mod.mu.Unlock()
	if len(ev.Bans) == 0 {
		return
	}
	for _, p := range h.coveredBy(ev.Bans) {
		h.expel(p, ReasonBanned, "you were banned by "+ev.By+withReason(ev.Text), p.name+" was banned by "+ev.By+withReason(ev.Text))
	}
}

// reloadBans reads the bans again from the store, after another node changed them, and ends
// the sessions here that an active ban covers.
func (h *Hub) reloadBans(by, reason string) {
	if h.cfg.Store == nil {
		return
	}
	bans, err := h.cfg.Store.Bans()
	if err != nil {
		h.log.Error("store: bans", "err", err)
		return
	}
	h.mod.mu.Lock()
	h.mod.bans = bans
	h.mod.mu.Unlock()
	now := h.now()
	var active []chat.Ban
	for _, b := range bans {
		if b.Active(now) {
			active = append(active, b)
		}
	}
	if by == "" {
		by = "an operator"
	}
	for _, p := range h.coveredBy(active) {
		h.expel(p, ReasonBanned, "you were banned by "+by+withReason(reason), p.name+" was banned by "+by+withReason(reason))
	}
}

// remoteWhoisLocked describes someone online on other nodes only, for /whois.
func (h *Hub) remoteWhoisLocked(key string) []string {
	var lines []string
	for _, node := range sortedKeys(h.peers.nodes) {
		pr := h.peers.nodes[node][key]
		if pr == nil {
			continue
		}
		line := pr.name + ": online on node " + node
		if rooms := h.visibleRemoteRooms(pr); len(rooms) > 0 {
			line += ", in " + strings.Join(rooms, ", ")
		}
		lines = append(lines, line)
	}
	return lines
}

// visibleRemoteRooms are the public rooms a person on another node is in.
func (h *Hub) visibleRemoteRooms(pr *peer) []string {
	var rooms []string
	for _, name := range sortedKeys(pr.rooms) {
		if ch := h.rooms[name]; ch != nil && !ch.private {
			rooms = append(rooms, name)
		}
	}
	return rooms
}

// peerNodesLocked are the nodes where the person of folded name key is online.
func (h *Hub) peerNodesLocked(key string) []string {
	var nodes []string
	for _, node := range sortedKeys(h.peers.nodes) {
		if h.peers.nodes[node][key] != nil {
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// sendRemoteDM hands a private message to the nodes where its recipient is online, and reports
// whether one of them had them.
func (h *Hub) sendRemoteDM(nodes []string, dm chat.DM) bool {
	delivered := false
	for _, node := range nodes {
		ok, err := h.cfg.Cluster.SendDM(node, dm)
		if err != nil {
			h.log.Warn("cluster: send DM", "node", node, "err", err)
		}
		delivered = delivered || ok
	}
	return delivered
}
