// Package room is the chat core: the rooms, who is in them, what they say, and how each line
// reaches every member without any member being able to slow down the others.
//
// A Hub holds the rooms and the people online. A transport (SSH, TCP) joins a session with an
// Output to write to, then hands every input line to Member.Handle; the command layer (/help,
// /join, /who, /msg, ...) lives here so that every transport behaves the same. A person may be
// in several rooms; each session talks in its current room and gets the lines of the others
// tagged with their room's name.
//
// Delivery never blocks the room: each member has a bounded outbox drained by its own writer
// goroutine, which coalesces whatever is queued into one write. A member whose outbox overflows,
// or whose write stalls, is disconnected as too slow (nats-server's slow-consumer rule), and
// every way out of the chat goes through one path (Member.end).
//
// The package declares what it needs from outside and imports no implementation: Store keeps
// identities, rooms, history, queued messages and bans (store/sqlite implements it, and
// store/storetest is the suite every implementation passes); Relay carries what is said in a
// room to every node serving it (LocalRelay for one process).
package room
