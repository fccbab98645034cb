package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"chatd/chat"
)

const (
	// minBackoff and maxBackoff bound the wait between two attempts to commit a failed batch.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// closeAttempts is how often a batch is tried once Close has been called, before its
	// messages are given up: shutdown must not hang on a broken disk.
	closeAttempts = 2
)

// queue is Append's queue: a mutex-protected slice, never a channel, so that Append never waits
// for the writer. Every message gets a sequence number (0, 1, ...) in Append order; it is pending
// until the writer has committed it, or until it was dropped because the backlog grew too long.
type queue struct {
	interval   time.Duration
	maxBatch   int
	maxBacklog int

	wake    chan struct{} // capacity 1: nudges the writer; sends never block
	closing chan struct{} // closed by close: cuts the writer's backoff short

	mu          sync.Mutex
	msgs        []chat.Message // waiting for the writer, oldest first
	qStart      uint64         // sequence number of msgs[0]; qStart+len(msgs) == appended
	appended    uint64         // messages ever appended
	bStart      uint64         // sequence number of the writer's batch's first message
	inflight    int            // messages taken by the writer and not committed yet
	firstAt     time.Time      // when msgs last became non-empty
	flushWanted bool           // a Flush is waiting: commit without waiting for the interval
	dropped     uint64         // messages dropped, in all
	unlogged    uint64         // dropped messages the writer has not logged yet
	reported    uint64         // dropped messages a Flush has reported
	abandoned   uint64         // messages given up at close because their commit kept failing
	closed      bool
	closedNoted bool          // an Append after Close was logged
	progress    chan struct{} // closed (and replaced) whenever pending messages become done
}

func (q *queue) init(interval time.Duration, maxBatch, maxBacklog int) {
	q.interval = interval
	q.maxBatch = maxBatch
	q.maxBacklog = maxBacklog
	q.wake = make(chan struct{}, 1)
	q.closing = make(chan struct{})
	q.progress = make(chan struct{})
}

// signal wakes the writer, or leaves a wake-up for it if it is busy.
func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// done is the sequence number of the oldest pending message: every message before it has been
// committed or dropped. Called with q.mu held.
func (q *queue) done() uint64 {
	if q.inflight > 0 {
		return q.bStart
	}
	return q.qStart
}

// advanced tells Flush callers that messages are done. Called with q.mu held.
func (q *queue) advanced() {
	close(q.progress)
	q.progress = make(chan struct{})
}

// push queues m. It reports false, without queueing, once the queue is closed, and whether this
// is the first such call (to be logged).
func (q *queue) push(m chat.Message) (ok, first bool) {
	q.mu.Lock()
	if q.closed {
		first = !q.closedNoted
		q.closedNoted = true
		q.mu.Unlock()
		return false, first
	}
	if len(q.msgs) >= q.maxBacklog {
		// The database has been failing for a long while: keep memory bounded by dropping the
		// oldest tenth of the backlog (in one go, so that this stays cheap). The writer logs it.
		k := max(1, q.maxBacklog/10)
		clear(q.msgs[:k])
		q.msgs = q.msgs[k:]
		q.qStart += uint64(k)
		q.dropped += uint64(k)
		q.unlogged += uint64(k)
		q.advanced()
	}
	if len(q.msgs) == 0 {
		q.firstAt = time.Now()
	}
	q.msgs = append(q.msgs, m)
	q.appended++
	n := len(q.msgs)
	q.mu.Unlock()
	if n == 1 || n == q.maxBatch {
		q.signal()
	}
	return true, false
}

// take waits until a batch is due and returns it: at most maxBatch messages, oldest first, once
// the oldest has waited the interval, the batch is full, a Flush waits or the queue is closing.
// It returns false once the queue is closed and empty. buf is reused for the batch.
func (q *queue) take(buf []chat.Message, timer *time.Timer) ([]chat.Message, bool) {
	q.mu.Lock()
	for {
		n := len(q.msgs)
		if n == 0 && q.closed {
			q.mu.Unlock()
			return nil, false
		}
		var wait time.Duration
		if n > 0 {
			wait = time.Until(q.firstAt.Add(q.interval))
			if wait <= 0 || n >= q.maxBatch || q.flushWanted || q.closed {
				break
			}
		}
		q.mu.Unlock()
		if n > 0 {
			timer.Reset(wait)
			select {
			case <-q.wake:
			case <-timer.C:
			}
			timer.Stop()
		} else {
			<-q.wake
		}
		q.mu.Lock()
	}
	k := min(len(q.msgs), q.maxBatch)
	if k == len(q.msgs) {
		// The common case: hand the whole queue over and queue into the other buffer.
		buf, q.msgs = q.msgs, buf[:0]
		q.flushWanted = false
	} else {
		buf = append(buf[:0], q.msgs[:k]...)
		clear(q.msgs[:k])
		q.msgs = q.msgs[k:] // the remainder has waited already: it goes next, without delay
	}
	q.bStart = q.qStart
	q.qStart += uint64(k)
	q.inflight = k
	q.mu.Unlock()
	return buf, true
}

// finish records the writer's batch as done: committed, or abandoned at close. It returns the
// number of drops not logged yet.
func (q *queue) finish(abandoned bool) (unlogged, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if abandoned {
		q.abandoned += uint64(q.inflight)
		q.dropped += uint64(q.inflight)
	}
	q.inflight = 0
	if len(q.msgs) == 0 {
		q.flushWanted = false
	}
	q.advanced()
	unlogged, q.unlogged = q.unlogged, 0
	return unlogged, q.dropped
}

// waiting is the number of messages queued for the writer.
func (q *queue) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// backlog is what the writer logs about the queue while its commits fail.
func (q *queue) backlog() (waiting int, dropped uint64, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs), q.dropped, q.closed
}

// flush waits until every message appended before the call is done: committed, or dropped. Drops
// are reported, once, by the Flush that returns after them.
func (q *queue) flush(ctx context.Context) error {
	if err := q.settle(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	q.mu.Lock()
	lost := q.dropped - q.reported
	q.reported = q.dropped
	q.mu.Unlock()
	if lost > 0 {
		return fmt.Errorf("flush: %d messages were dropped, the database failing", lost)
	}
	return nil
}

// settle waits until every message appended before the call is done, asking the writer to
// commit at once rather than at the end of its interval.
func (q *queue) settle(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errClosed
	}
	target := q.appended
	for q.done() < target {
		q.flushWanted = true
		ch := q.progress
		q.mu.Unlock()
		q.signal()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		q.mu.Lock()
	}
	q.mu.Unlock()
	return nil
}

// close stops Appends and tells the writer to commit what is queued and stop.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	close(q.closing)
	q.signal()
}

// Append queues m for the history of its room. It never waits for the disk: the writer commits
// queued messages in batches, each at most FlushInterval after it was appended (call Flush to
// wait for that). A zero m.At is the time of the call; m.ID is ignored; m.Room is read as
// chat.ParseRoom reads it. A message is dropped, and the first such drop logged, when m.Room is
// not a room name, when its room does not exist by the time the writer commits it (never saved,
// or deleted: a deleted room's history is not brought back by a message in flight), and after
// Close.
func (s *SQLite) Append(m chat.Message) {
	room, err := chat.ParseRoom(m.Room)
	if err != nil {
		if !s.badRoomNoted.Swap(true) {
			s.log.Error("message without a valid room: dropped (logged once)", "from", m.From, "err", err)
		}
		return
	}
	m.Room = room
	if m.At.IsZero() {
		m.At = s.now()
	}
	m.ID = 0
	if ok, first := s.q.push(m); !ok && first {
		s.log.Error("message appended after the store was closed: dropped (logged once)", "from", m.From)
	}
}

// writer commits the queue, batch by batch, until the queue is closed and empty.
func (s *SQLite) writer() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []chat.Message
	givenUp := false // at close, after one batch failed for good: the rest would fail too
	for {
		var ok bool
		batch, ok = s.q.take(batch, timer)
		if !ok {
			return
		}
		abandoned := givenUp || !s.commit(batch)
		if !abandoned {
			s.noteCommitted(batch)
		}
		if abandoned && !givenUp {
			givenUp = true
			s.log.Error("giving up on the messages still queued at close", "count", len(batch)+s.q.waiting())
		}
		clear(batch)
		if unlogged, dropped := s.q.finish(abandoned); unlogged > 0 {
			s.log.Warn("history backlog full: dropped the oldest messages", "dropped", unlogged, "dropped_total", dropped)
		}
	}
}

// commit inserts batch in one transaction, retrying with backoff until it succeeds. It reports
// false when it gave up, which it does only once the store is closing.
func (s *SQLite) commit(batch []chat.Message) bool {
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		err := s.insertMessages(batch)
		if err == nil {
			if attempt > 1 {
				s.log.Info("messages committed after retrying", "count", len(batch), "attempts", attempt)
			}
			return true
		}
		waiting, dropped, closed := s.q.backlog()
		if closed && attempt >= closeAttempts {
			s.log.Error("cannot commit messages at close", "count", len(batch), "err", err)
			return false
		}
		s.log.Error("cannot commit messages; will retry", "count", len(batch), "attempt", attempt,
			"retry_in", backoff, "waiting", waiting, "dropped_total", dropped, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.q.closing:
			t.Stop()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// insertMessages commits batch in one transaction, but for the messages whose room does not
// exist (which it drops).
func (s *SQLite) insertMessages(batch []chat.Message) (err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail("insert messages", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// The rooms are checked in this transaction, which no room can be deleted or created during:
	// a batch holds a few rooms, each looked up once.
	exists := map[string]bool{}
	kept := 0
	for _, m := range batch {
		ok, seen := exists[m.Room]
		if !seen {
			if ok, err = roomExists(s.prepared(tx), m.Room); err != nil {
				return s.fail("insert messages", err)
			}
			exists[m.Room] = ok
		}
		if ok {
			kept++
		} else if !s.noRoomNoted.Swap(true) {
			s.log.Error("message to a room that does not exist: dropped (logged once)", "room", m.Room, "from", m.From)
		}
	}
	// Rows go in chunks of rowsPerInsert per statement: far fewer statement executions than
	// one row each.
	var args []any
	var chunk *sql.Stmt
	for i := 0; kept > 0; kept -= rowsPerInsert {
		n := min(kept, rowsPerInsert)
		stmt := chunk
		if n < rowsPerInsert || chunk == nil {
			stmt, err = tx.Prepare(insertMessagesSQL(n))
			if err != nil {
				return s.fail("insert messages", err)
			}
			defer stmt.Close()
			if n == rowsPerInsert {
				chunk = stmt
			}
		}
		args = args[:0]
		for len(args) < n*5 {
			m := batch[i]
			i++
			if exists[m.Room] {
				args = append(args, m.At.UnixMilli(), int64(m.Kind), m.Room, m.From, m.Text)
			}
		}
		if _, err := stmt.Exec(args...); err != nil {
			return s.fail("insert messages", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return s.fail("insert messages", err)
	}
	return nil
}

// rowsPerInsert is how many messages one INSERT statement writes (5 parameters each, far below
// SQLite's limit of 32766).
const rowsPerInsert = 64

// insertMessagesSQL is an INSERT of n messages.
func insertMessagesSQL(n int) string {
	return "INSERT INTO messages(at, kind, room, sender, text) VALUES (?, ?, ?, ?, ?)" + strings.Repeat(", (?, ?, ?, ?, ?)", n-1)
}

// roomMessages runs query, which selects (id, at, kind, sender, text) of room's messages, for op
// ("recent", "history"). An empty answer is ErrNotFound when the room does not exist.
func (s *SQLite) roomMessages(op, room, query string, args ...any) ([]chat.Message, error) {
	p := s.prepared(nil)
	rows, err := p.Query(query, args...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	var msgs []chat.Message
	for rows.Next() {
		m := chat.Message{Room: room}
		var at, kind int64
		if err := rows.Scan(&m.ID, &at, &kind, &m.From, &m.Text); err != nil {
			return nil, s.fail(op, err)
		}
		m.At, m.Kind = fromMilli(at), chat.Kind(kind)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	if len(msgs) == 0 {
		// Messages exist only in rooms that do: only an empty answer needs the look-up.
		ok, err := roomExists(p, room)
		if err != nil {
			return nil, s.fail(op, err)
		}
		if !ok {
			return nil, fmt.Errorf("%s: %s: %w", op, room, chat.ErrNotFound)
		}
	}
	return msgs, nil
}

// recentSQL reads a room's newest messages, walking messages_room backwards. Those up to the
// room's pending deletion (see DeleteRoom) are gone already, whatever is left of their rows.
const recentSQL = `SELECT id, at, kind, sender, text FROM messages
	WHERE room = ?1 AND id > (SELECT coalesce(max(up_to), 0) FROM room_deletions WHERE room = ?1)
	ORDER BY id DESC LIMIT ?2`

// Recent returns the newest n committed messages of room, oldest first: none for n <= 0, and
// ErrNotFound when the room does not exist. Messages still queued are not among them: call
// Flush first to include them.
func (s *SQLite) Recent(room string, n int) ([]chat.Message, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("recent: %w", errClosed)
	}
	room, err := chat.ParseRoom(room)
	if err != nil {
		return nil, fmt.Errorf("recent: %w", err)
	}
	if n <= 0 {
		return nil, nil
	}
	msgs, err := s.roomMessages("recent", room, recentSQL, room, n)
	if err != nil {
		return nil, err
	}
	slices.Reverse(msgs)
	return msgs, nil
}
