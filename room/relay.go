package room

import "time"

// Relay carries what is said in the rooms to every node serving them, in one order per room.
// The hub publishes every line said in a room (a message, an action, a topic set) and delivers
// to its own members what the relay hands back, in the order the relay gives it: so on every
// node, every member of a room gets the same lines in the same order, and the history is that
// order. One process needs no other node: LocalRelay hands every line back at once. The cluster
// backend implements Relay on a replicated, ordered log.
type Relay interface {
	// Publish hands l to every node, this one included. It must not block on members.
	Publish(l Line) error
	// Receive tells the relay where this node's lines go; the hub calls it once, at start.
	Receive(deliver func(Line))
}

// HistoryRelay is a Relay whose log of lines is the rooms' history itself (a replicated stream):
// the hub then stores nothing of what it relays, since every node would store the same line.
type HistoryRelay interface {
	Relay
	// KeepsHistory reports whether the relay's log is where the store reads the history from.
	KeepsHistory() bool
}

// Line is something said in a room, as it crosses between nodes: plain data, no rendering.
type Line struct {
	Room   string    // where it was said, as chat.ParseRoom returns it
	Kind   LineKind  // message, action or notice
	From   string    // who said it (a message or action); "" for a notice
	Text   string    // sanitised
	At     time.Time // when it was said
	Origin uint64    // the sending session, so that it gets no echo unless it asked for one
	Topic  *string   // the room's new topic, on the notice that sets it
	// Seq is the line's place in the relay's log, when the log is the history (then it is the
	// stored message's ID); 0 otherwise. A hub that loaded a room's history up to some ID skips
	// what the relay hands it again up to there.
	Seq uint64
}

// LineKind says what a Line is.
type LineKind uint8

const (
	LineMessage LineKind = iota + 1 // "alice: text"
	LineAction                      // "** alice waves"
	LineNotice                      // "* alice set the topic of #go: ..."
)

// LocalRelay is the relay of a server that is its own only node: every line is delivered at
// once, on the publisher's goroutine.
type LocalRelay struct {
	deliver func(Line)
}

// Publish delivers l at once.
func (r *LocalRelay) Publish(l Line) error {
	r.deliver(l)
	return nil
}

// Receive sets where lines go.
func (r *LocalRelay) Receive(deliver func(Line)) { r.deliver = deliver }
