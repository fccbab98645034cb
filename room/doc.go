// Package room is the chat room: who is in it, what they say, and how each line reaches every
// member without any member being able to slow down the others.
//
// A transport (SSH, TCP) joins a member with an Output to write to, then hands every input line to
// Member.Handle; the command layer (/help, /who, /msg, ...) lives here so that every transport
// behaves the same. Delivery never blocks the room: each member has a bounded outbox drained by its
// own writer goroutine, which coalesces whatever is queued into one write. A member whose outbox
// overflows, or whose write stalls, is disconnected as too slow (nats-server's slow-consumer rule).
package room
