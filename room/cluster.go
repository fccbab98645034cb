package room

import (
	"time"

	"chatd/chat"
)

// Cluster is what a hub needs of the other nodes of a cluster beyond the rooms' lines (Relay):
// who is online on each of them, the changes operators make that every node must enforce at
// once, and private messages to people online elsewhere. A process that is its own only node
// has none (Config.Cluster nil). Package store/natsjs implements it on NATS.
//
// Presence travels as changes in the order the hub made them; a node that missed some (it
// started late, a message was lost) asks for the whole of another node's presence, which the
// hub gives as a snapshot. A node not heard from for a while is gone, with all its people.
type Cluster interface {
	// Node is this node's name, for /whois and logs.
	Node() string
	// Start hands the cluster the hub's side and starts it; the hub calls it once, from New,
	// before any other method. ClusterHub's methods are called from one goroutine at a time.
	Start(h ClusterHub)
	// Announce tells the other nodes of a change to who is online here. It never blocks:
	// changes wait in order, and when too many wait, the cluster sends a snapshot instead.
	Announce(c PresenceChange)
	// Send tells every other node of ev, within about a second. It never blocks for long.
	Send(ev ClusterEvent)
	// SendDM hands dm to node, where its recipient is online, and reports whether they got it
	// there (false: they left meanwhile, and the caller queues it).
	SendDM(node string, dm chat.DM) (bool, error)
	// Connected reports whether this node reaches the others now.
	Connected() bool
}

// ClusterHub is the hub's side of a Cluster.
type ClusterHub interface {
	// Presence applies another node's changes, in order. full: changes are the node's whole
	// presence (a snapshot), replacing what was known of it.
	Presence(node string, changes []PresenceChange, full bool)
	// NodeGone: every person of node left (it stopped, or was not heard from in time).
	NodeGone(node string)
	// Snapshot is this node's whole presence, as the changes that would make it from nothing.
	Snapshot() []PresenceChange
	// Event applies what another node sent.
	Event(ev ClusterEvent)
	// DM delivers a private message another node sent to someone online here; false when
	// nobody of that name is online here.
	DM(dm chat.DM) bool
	// Connection tells the hub that this node lost (false) or regained (true) the cluster.
	Connection(up bool)
}

// PresenceOp is what a PresenceChange says.
type PresenceOp uint8

const (
	// PresenceOnline: Name came online on the node (Registered: with the name's key or token).
	PresenceOnline PresenceOp = iota + 1
	// PresenceOffline: Name's last session on the node ended; they are in no room there.
	PresenceOffline
	// PresenceJoin: Name entered Room on the node. A registered person's sessions on other
	// nodes follow them in.
	PresenceJoin
	// PresenceLeave: Name chose to leave Room, or was taken out of it, on the node; their
	// sessions on other nodes follow them out. (Going offline is PresenceOffline.)
	PresenceLeave
)

// PresenceChange is one change to who is online on a node.
type PresenceChange struct {
	Op         PresenceOp `json:"op"`
	Name       string     `json:"name"`
	Room       string     `json:"room,omitempty"`
	Registered bool       `json:"registered,omitempty"`
}

// ClusterEventKind is what a ClusterEvent says.
type ClusterEventKind uint8

const (
	// EventKick: Name is disconnected from every node (By, Text: the reason); Reason says why
	// (kicked or banned).
	EventKick ClusterEventKind = iota + 1
	// EventBans: Bans were added (By, Text: who banned and why), and every node ends the
	// sessions they cover; or, without Bans, ban ID was lifted. The event carries the bans
	// rather than sending every node to the store: a replica there may not have them yet.
	EventBans
	// EventMute: Name is muted until Until (zero: until unmuted); EventUnmute lifts it.
	EventMute
	EventUnmute
	// EventRoom: Room (the whole record, as stored) was created or changed: owner, private,
	// invitations.
	EventRoom
	// EventRoomDeleted: RoomName was deleted by By.
	EventRoomDeleted
	// EventRoomKick: Name was taken out of RoomName by By (Text: the reason).
	EventRoomKick
	// EventMotd: the message of the day is now Text.
	EventMotd
	// EventWebRevoke: Name's web sessions opened with token ID end (0: all of them).
	EventWebRevoke
)

// ClusterEvent is a change one node made that every node must enforce.
type ClusterEvent struct {
	Kind     ClusterEventKind `json:"kind"`
	Name     string           `json:"name,omitempty"`
	By       string           `json:"by,omitempty"`
	Text     string           `json:"text,omitempty"`
	RoomName string           `json:"room_name,omitempty"`
	Room     *chat.Room       `json:"room,omitempty"`
	Until    time.Time        `json:"until,omitzero"`
	Bans     []chat.Ban       `json:"bans,omitempty"`
	ID       int64            `json:"id,omitempty"`
	Reason   Reason           `json:"reason,omitempty"`
}
