package room

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"chatd/chat"
)

// Output is where a member's lines go: the transport's end of the connection.
type Output interface {
	// Write writes rendered lines. It may block while the client is slow: only the member's own
	// writer goroutine calls it, never the room.
	Write(p []byte) (int, error)
	// Close tears the connection down now. It must not block, and it must make a Write in progress
	// return: the room calls it to disconnect a member that is too slow, and at shutdown.
	Close() error
}

// Reason says why a member left.
type Reason uint8

const (
	ReasonQuit       Reason = iota + 1 // the user asked to leave (/quit, bye)
	ReasonEOF                          // the client closed its input or the connection
	ReasonSlow                         // the outbox overflowed: the client reads slower than the room talks
	ReasonStalled                      // one write blocked longer than the write timeout
	ReasonWriteError                   // the connection failed while writing
	ReasonShutdown                     // the server is shutting down
	ReasonKicked                       // an operator kicked them
	ReasonBanned                       // an operator banned them
	ReasonIdle                         // they sent nothing for the idle timeout
	ReasonFailed                       // the server failed serving them (a bug, logged)
)

// String is the reason as logged.
func (r Reason) String() string {
	switch r {
	case ReasonQuit:
		return "quit"
	case ReasonEOF:
		return "eof"
	case ReasonSlow:
		return "too slow: outbox full"
	case ReasonStalled:
		return "too slow: write timeout"
	case ReasonWriteError:
		return "write error"
	case ReasonShutdown:
		return "shutdown"
	case ReasonKicked:
		return "kicked"
	case ReasonBanned:
		return "banned"
	case ReasonIdle:
		return "idle"
	case ReasonFailed:
		return "internal error"
	}
	return "unknown"
}

// Slow reports whether the member was disconnected for not keeping up.
func (r Reason) Slow() bool { return r == ReasonSlow || r == ReasonStalled }

// dropsQueue reports the ends after which nothing queued can be written: the client is not
// reading, or its connection failed.
func (r Reason) dropsQueue() bool {
	return r.Slow() || r == ReasonWriteError || r == ReasonFailed
}

// byTransport reports the ends a member's transport decides (its client quit or went): the
// transport waits for the last lines and closes the connection itself.
func (r Reason) byTransport() bool { return r == ReasonQuit || r == ReasonEOF }

// noticeSuffix is what the left notice says about the reason, if anything.
func (r Reason) noticeSuffix() string {
	switch {
	case r.Slow():
		return " (too slow)"
	case r == ReasonIdle:
		return " (idle)"
	}
	return ""
}

// Member is one session in the chat: a connection of a person, in every room the person is in,
// with a current room its lines go to. Its transport hands it input lines with Handle and calls
// Leave when the connection ends.
type Member struct {
	hub    *Hub
	id     uint64 // unique in the hub: a relayed line's origin
	name   string
	key    string // folded name
	out    Output
	opts   JoinOptions
	format Format
	person *person // who this session belongs to; set once by Join
	// webToken is the ID of the web session or bot token the session signed in with; 0 for none.
	// Revoking it ends the session.
	webToken int64

	// Under the hub's lock.
	index int    // position in hub.sessions, -1 once removed
	slots []slot // position in each room's sessions

	current atomic.Pointer[channel] // where plain lines go; lines of other rooms come tagged

	showTime  atomic.Bool  // lines start with HH:MM (/timestamps)
	width     atomic.Int32 // the terminal's width, to wrap ANSI lines to; 0: not wrapped
	lastInput atomic.Int64 // UnixNano of the last line from the client, for the idle timeout

	mu        sync.Mutex
	queue     []*event // the outbox
	spare     []*event // the last batch's backing array, reused while lines keep coming
	flushing  bool     // a writer goroutine is running
	closed    bool     // the outbox takes no more lines
	isDrained bool
	reason    Reason
	drained   chan struct{} // closed once the outbox is closed, empty and no write is running

	writeStarted atomic.Int64 // UnixNano when the current write began, 0 when none

	completions completionBucket // Tab completions left; under mu

	pendingBan    []chat.Ban // a ban that covers its operator, waiting for /ban confirm; under mu
	pendingAt     time.Time
	pendingDelete string // a room an operator asked to delete, waiting for confirmation; under mu
	pendingDelAt  time.Time

	finishOnce sync.Once
	done       chan struct{}
}

func newMember(h *Hub, name string, out Output, opts JoinOptions) *Member {
	m := &Member{
		hub:     h,
		name:    name,
		key:     chat.Fold(name),
		out:     out,
		opts:    opts,
		format:  opts.Format,
		index:   -1,
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
	m.showTime.Store(opts.Format == ANSI) // terminals show times; plain lines stay plain
	m.SetWidth(opts.Width)
	m.lastInput.Store(h.cfg.Now().UnixNano())
	return m
}

// SetWidth tells the room the width of the member's terminal, in columns: its ANSI lines are
// wrapped to it, every continuation row indented, so that no line can make the terminal's own
// wrapping start part of it at column 0, where it would pass for a line of its own. 0: no
// wrapping.
func (m *Member) SetWidth(cols int) { m.width.Store(int32(min(max(cols, 0), 1<<16))) }

// Name is the member's name as they chose it.
func (m *Member) Name() string { return m.name }

// Done is closed when the member has left the room, whoever ended it.
func (m *Member) Done() <-chan struct{} { return m.done }

// Reason says why the member left; zero while it is in the room.
func (m *Member) Reason() Reason {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reason
}

// Errorf sends the member an error line, for problems the transport finds in its input (a line
// too long to read, say). The text is sanitised like any other.
func (m *Member) Errorf(format string, args ...any) {
	m.reply(kindError, chat.Sanitize(fmt.Sprintf(format, args...)))
}

// Leave takes the member out of the chat when its connection ends (quit, EOF): see end.
func (m *Member) Leave(reason Reason) { m.end(reason, nil, "") }

// reply queues a line for this member alone.
func (m *Member) reply(k kind, text string) {
	m.enqueue(newEvent(k, m.hub.now(), m.name, "", text))
}

// enqueue adds ev to the outbox and makes sure a writer is running. It never blocks on the
// client. When the outbox is full the member is too slow: it takes no more lines and is
// disconnected, whatever path the line came by, so that no member can stay in the room deaf.
// The disconnection runs on its own goroutine because the caller may hold the room's lock,
// which leaving takes.
func (m *Member) enqueue(ev *event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return // leaving: whatever comes now has no one to read it
	}
	if len(m.queue) >= m.hub.cfg.OutboxSize {
		m.closed = true
		m.reason = ReasonSlow
		clear(m.queue)
		m.queue = m.queue[:0]
		m.checkDrainedLocked()
		m.hub.flushers.Add(1)
		go func() {
			defer m.hub.flushers.Done()
			m.end(ReasonSlow, nil, "")
		}()
		return
	}
	m.queue = append(m.queue, ev)
	if !m.flushing {
		m.flushing = true
		m.hub.flushers.Add(1)
		go m.flush()
	}
}

// outboxRoom is how many more lines the member's outbox takes before it overflows.
func (m *Member) outboxRoom() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0
	}
	return m.hub.cfg.OutboxSize - len(m.queue)
}

// flush is the member's writer: it runs while the outbox has lines, renders everything queued
// into one buffer and writes it in one call, so a burst costs one write, not one per line. Under
// load its writes are at least WriteGap apart: what arrives in between goes out with the next
// one (every write to an SSH session is a packet and a syscall, whatever its size). A member
// written to rarely is written to at once. The writer lingers for one gap after a write, in case
// more comes, then exits: idle members hold no goroutine.
func (m *Member) flush() {
	defer m.hub.flushers.Done()
	bp := m.hub.getBuffer()
	defer m.hub.putBuffer(bp)
	gap := m.hub.cfg.WriteGap
	var last time.Time // of the last write; zero before the first
	for {
		m.mu.Lock()
		empty := len(m.queue) == 0
		if wait := gap - time.Since(last); !last.IsZero() && wait > 0 && !m.closed {
			m.mu.Unlock()
			time.Sleep(wait)
			if empty {
				last = time.Time{} // lingered once: exit if still nothing
			}
			continue
		}
		if empty {
			m.flushing = false
			if cap(m.queue) > 64 {
				m.queue = nil // don't pin a burst's worth of slice to an idle member
			}
			m.spare = nil
			m.checkDrainedLocked()
			m.mu.Unlock()
			return
		}
		batch := m.queue
		m.queue, m.spare = m.spare[:0], nil
		m.mu.Unlock()

		buf := (*bp)[:0]
		for _, ev := range batch {
			buf = ev.appendTo(buf, m)
		}
		m.writeStarted.Store(time.Now().UnixNano())
		_, err := m.out.Write(buf)
		m.writeStarted.Store(0)
		*bp = buf
		if err == nil {
			done := time.Now()
			for _, ev := range batch {
				m.hub.cfg.Metrics.Delivered(done.Sub(ev.born))
			}
		}
		clear(batch)
		last = time.Now()

		m.mu.Lock()
		m.spare = batch[:0]
		m.mu.Unlock()
		if err != nil {
			m.end(ReasonWriteError, nil, "")
		}
	}
}

// end takes the member out of the chat for good, whoever ends it: its transport (quit, EOF), the
// room (too slow, a failed write, idle, kicked, banned) or the server's shutdown. It is the one
// way out; later calls only wait as the first did.
//
// last, when set, is the member's last line (why it ends); notice replaces the usual
// "alice left #go" the rooms get when this was the person's last session. Lines already queued
// are written first, within DrainTimeout, unless the member is too slow or its connection failed:
// then they are dropped and the connection closed at once. When the transport ends the member
// (quit, EOF) end waits for the drain and leaves the connection to the transport; otherwise the
// connection is closed once the lines are out, without waiting.
func (m *Member) end(reason Reason, last *event, notice string) {
	if last != nil {
		m.enqueue(last)
	}
	drop := reason.dropsQueue()
	m.mu.Lock()
	m.closed = true
	if m.reason == 0 {
		m.reason = reason
	}
	if drop {
		clear(m.queue)
		m.queue = m.queue[:0]
	}
	m.checkDrainedLocked()
	m.mu.Unlock()

	m.hub.remove(m, reason, notice)
	switch {
	case drop:
		m.finish(true)
	case reason.byTransport():
		t := time.NewTimer(m.hub.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-m.drained:
			m.finish(false)
		case <-t.C:
			m.finish(true)
		}
	default:
		m.hub.flushers.Add(1)
		go func() {
			defer m.hub.flushers.Done()
			t := time.NewTimer(m.hub.cfg.DrainTimeout)
			defer t.Stop()
			select {
			case <-m.drained:
			case <-t.C:
			}
			m.finish(true)
		}()
	}
}

func (m *Member) checkDrainedLocked() {
	if m.closed && !m.flushing && len(m.queue) == 0 && !m.isDrained {
		m.isDrained = true
		close(m.drained)
	}
}

// finish marks the member done, closing its connection when the room ends it.
func (m *Member) finish(closeOutput bool) {
	m.finishOnce.Do(func() {
		close(m.done)
		if closeOutput {
			_ = m.out.Close()
		}
	})
}
