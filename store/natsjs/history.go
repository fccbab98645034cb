package natsjs

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"chatd/chat"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// msgSubject is the subject of room's messages and actions.
func (s *Store) msgSubject(room string) string { return s.subjPrefix + roomToken(room) + ".msg" }

// Append queues m for publishing on its room's subject and returns at once: it never waits for
// NATS. A message whose room is not a room name, or not a room this store knows, is dropped, as
// is one that finds the backlog full (Config.MaxBacklog: NATS slow or gone); the first drop of
// each kind is logged, and the next Flush reports the backlog's.
func (s *Store) Append(m chat.Message) {
	room, err := chat.ParseRoom(m.Room)
	if err != nil {
		if !s.badRoomNoted.Swap(true) {
			s.log.Warn("dropping a message without a valid room (later ones are dropped quietly)", "room", chat.QuoteName(m.Room))
		}
		return
	}
	r, ok := s.cache.get(room)
	if !ok {
		if !s.noRoomNoted.Swap(true) {
			s.log.Warn("dropping a message to a room that does not exist (later ones are dropped quietly)", "room", room)
		}
		return
	}
	at := ms(m.At)
	if at == 0 {
		at = s.now()
	}
	data, err := json.Marshal(line{Gen: r.Gen, Kind: uint8(m.Kind), From: m.From, Text: m.Text, At: at})
	if err != nil || len(data) > maxLineSize {
		s.log.Warn("dropping a message too large to store", "room", room, "bytes", len(data))
		return
	}
	if ok, first := s.q.push(room, s.msgSubject(room), data); !ok && first && !s.q.isClosing() {
		s.log.Warn("history backlog full: dropping messages until NATS catches up", "backlog", s.cfg.MaxBacklog)
	}
}

// Flush returns once every message appended before the call is published and acknowledged by
// the stream (or ctx is done). If messages were dropped since the last Flush that said so, it
// returns an error saying how many.
func (s *Store) Flush(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("flush: %w", errClosed)
	}
	return s.q.flush(ctx)
}

// publisher publishes the queue: a batch of up to MaxInFlight lines at once, asynchronously,
// then each that failed again, in order, until it is stored (NATS back) or the store closes.
// Every line carries a message ID, so that a retry of a line that was stored after all is
// dropped by the stream as a duplicate.
func (s *Store) publisher() {
	defer s.wg.Done()
	for {
		if s.ctx.Err() != nil {
			s.q.settle(s.q.last(), len(s.q.take(int(^uint(0)>>1))))
			return
		}
		batch := s.q.take(s.cfg.MaxInFlight)
		if len(batch) == 0 {
			if s.q.isClosing() {
				return
			}
			select {
			case <-s.q.wake:
			case <-s.ctx.Done():
			}
			continue
		}
		gaveUp := s.publishBatch(batch)
		s.q.settle(batch[len(batch)-1].ticket, gaveUp)
	}
}

// publishBatch publishes batch and returns how many of its lines it gave up (at Close only).
func (s *Store) publishBatch(batch []queued) int {
	futures := make([]jetstream.PubAckFuture, len(batch))
	for i, it := range batch {
		if f, err := s.js.PublishMsgAsync(s.lineMsg(it), jetstream.WithExpectStream(s.streamName)); err == nil {
			futures[i] = f
		}
	}
	var failed []int
	for i, f := range futures {
		if f == nil {
			failed = append(failed, i)
			continue
		}
		select {
		case ack := <-f.Ok():
			s.cache.noteAcked(batch[i].room, ack.Sequence)
		case <-f.Err():
			failed = append(failed, i)
		case <-s.ctx.Done():
			return len(batch) - i
		}
	}
	for n, i := range failed {
		if !s.republish(batch[i]) {
			return len(failed) - n
		}
	}
	return 0
}

// republish publishes one line that failed until it is stored, waiting longer after each
// failure; false when the store closed first.
func (s *Store) republish(it queued) bool {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		ctx, cancel := s.call()
		ack, err := s.js.PublishMsg(ctx, s.lineMsg(it), jetstream.WithExpectStream(s.streamName))
		cancel()
		if err == nil {
			s.cache.noteAcked(it.room, ack.Sequence)
			if attempt > 0 {
				s.log.Info("history publishing again", "room", it.room)
			}
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		if attempt == 0 {
			s.log.Warn("cannot publish to the history; retrying", "room", it.room, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// lineMsg is the NATS message of a queued line, with its message ID.
func (s *Store) lineMsg(it queued) *nats.Msg {
	m := nats.NewMsg(it.subj)
	m.Data = it.data
	m.Header.Set(jetstream.MsgIDHeader, s.msgIDPrefix+strconv.FormatUint(it.ticket, 36))
	return m
}

// historyChunk is the most lines one direct get asks for.
const historyChunk = 500

// roomReader reads one room's history from the stream with direct gets, which need no
// consumer: a count of the messages on the room's subject from a sequence on (JetStream keeps
// an index per subject), the first message from a sequence, a batch from a sequence.
type roomReader struct {
	s    *Store
	ctx  context.Context
	room string
	subj string
	gen  uint64
}

// reader returns a reader of room's history, and the sequences its lines can have: lo (after
// the room's creation) to hi (its newest line); hi < lo when it has none.
func (s *Store) reader(ctx context.Context, room string, r roomRec) (rr *roomReader, lo, hi uint64, err error) {
	rr = &roomReader{s: s, ctx: ctx, room: room, subj: s.msgSubject(room), gen: r.Gen}
	// A replica a moment behind may answer: it must have what this store published.
	acked := s.cache.ackedSeq(room)
	for attempt := 0; ; attempt++ {
		if hi, err = s.lastSeq(ctx, rr.subj); err != nil {
			return nil, 0, 0, err
		}
		if hi >= acked {
			break
		}
		if err := backoff(ctx, attempt+3); err != nil {
			return nil, 0, 0, fmt.Errorf("the history's replica is behind: %w", err)
		}
	}
	return rr, r.From + 1, hi, nil
}

// lastSeq is the sequence of subj's newest message, 0 when it has none.
func (s *Store) lastSeq(ctx context.Context, subj string) (uint64, error) {
	msgs, err := s.dg.get(ctx, s.streamName, directReq{LastFor: subj})
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	return msgs[0].seq, nil
}

// count is how many messages the subject has from seq on.
func (rr *roomReader) count(seq uint64) (uint64, error) {
	msgs, err := rr.s.dg.get(rr.ctx, rr.s.streamName, directReq{Seq: seq, NextFor: rr.subj, Batch: 1})
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	return msgs[0].pending + 1, nil
}

// first is the subject's first message from seq on, if any.
func (rr *roomReader) first(seq uint64) (storedMsg, bool, error) {
	msgs, err := rr.s.dg.get(rr.ctx, rr.s.streamName, directReq{Seq: seq, NextFor: rr.subj})
	if err != nil || len(msgs) == 0 {
		return storedMsg{}, false, err
	}
	return msgs[0], true, nil
}

// read returns up to n of the subject's messages from seq on, up to hi, in order.
func (rr *roomReader) read(seq, hi uint64, n int) ([]storedMsg, error) {
	var out []storedMsg
	for len(out) < n && seq <= hi {
		msgs, err := rr.s.dg.get(rr.ctx, rr.s.streamName, directReq{Seq: seq, NextFor: rr.subj, Batch: min(n-len(out), historyChunk)})
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.seq > hi {
				return out, nil
			}
			out = append(out, m)
		}
		if len(msgs) == 0 {
			break
		}
		seq = msgs[len(msgs)-1].seq + 1
	}
	return out, nil
}

// decoded is a stored line as the reader sees it.
type decoded struct {
	msg   chat.Message
	valid bool // of this room's generation, and well formed
}

// decode reads a stored line: its time is its own, or the stream's when it has none (to the
// millisecond, as times are kept).
func (rr *roomReader) decode(sm storedMsg) decoded {
	var l line
	if err := json.Unmarshal(sm.data, &l); err != nil {
		return decoded{msg: chat.Message{At: sm.at.Truncate(time.Millisecond)}}
	}
	at := fromMS(l.At)
	if l.At == 0 {
		at = time.UnixMilli(floorMilli(sm.at))
	}
	m := chat.Message{ID: int64(sm.seq), At: at, Kind: chat.Kind(l.Kind), Room: rr.room, From: l.From, Text: l.Text}
	ok := (l.Gen == 0 || l.Gen == rr.gen) && (m.Kind == chat.KindMessage || m.Kind == chat.KindAction)
	return decoded{msg: m, valid: ok}
}

// last returns the newest n valid lines with sequences in [lo, hi], oldest first. It finds, by
// counting from the end backwards with growing steps, a sequence from which the subject has
// at least n messages up to hi, and reads from there: a few small requests however long the
// room's history and however many other rooms' lines lie between its own.
func (rr *roomReader) last(lo, hi uint64, n int) ([]chat.Message, error) {
	if n <= 0 || hi < lo {
		return nil, nil
	}
	above, err := rr.count(hi + 1)
	if err != nil {
		return nil, err
	}
	want := uint64(n)
	for {
		// Find a, the sequence to read from: c messages in [a, hi], c >= want unless a == lo.
		span := want
		a, c := lo, uint64(0)
		var below uint64 // a sequence above a with fewer than want messages from it: 0 for none
		for {
			a = lo
			if hi+1-lo > span {
				a = hi + 1 - span
			}
			total, err := rr.count(a)
			if err != nil {
				return nil, err
			}
			c = total - min(total, above)
			if c >= want || a == lo {
				break
			}
			below = a
			// Grow by the density seen so far, with a little to spare, by at most sixteen
			// times; eight times when the span held none of the room's lines.
			next := 8 * span
			if c > 0 {
				next = min(span*want/c+span/16+16, 16*span)
			}
			span = next
		}
		// Far more than wanted (a denser stretch): narrow it down, halving, as long as a step
		// (one small request) saves reading more lines than a request's worth.
		for below > a+1 && c > want+want/16+16 {
			mid := a + (below-a)/2
			total, err := rr.count(mid)
			if err != nil {
				return nil, err
			}
			if cm := total - min(total, above); cm >= want {
				a, c = mid, cm
			} else {
				below = mid
			}
		}
		stored, err := rr.read(a, hi, int(c))
		if err != nil {
			return nil, err
		}
		var out []chat.Message
		for _, sm := range stored {
			if d := rr.decode(sm); d.valid {
				out = append(out, d.msg)
			}
		}
		if len(out) >= n || a == lo {
			return out[len(out)-min(n, len(out)):], nil
		}
		// Lines of another generation, or bad ones, took places (or the room's newest lines
		// were counted with the ones above hi as they arrived): look further back.
		want += uint64(n - len(out))
	}
}

// firstWhere returns the sequence of the first message in [lo, hi] whose time satisfies pred,
// hi+1 when none does, by bisecting the sequences: pred must turn true once and stay true
// along the history (a line's time grows with its sequence). Each step is one direct get.
func (rr *roomReader) firstWhere(lo, hi uint64, pred func(at time.Time) bool) (uint64, error) {
	found := hi + 1
	// The answer, if it is below found, is a message in [lo, end).
	for end := hi + 1; lo < end; {
		mid := lo + (end-lo)/2
		sm, ok, err := rr.first(mid)
		switch {
		case err != nil:
			return 0, err
		case !ok || sm.seq >= end: // no message in [mid, end)
			end = mid
		case pred(rr.decode(sm).msg.At):
			found, end = sm.seq, mid // and there is none in [mid, sm.seq)
		default:
			lo = sm.seq + 1
		}
	}
	return found, nil
}

// Recent returns the newest n messages of room, oldest first: none for n <= 0, ErrNotFound for
// a room that does not exist.
func (s *Store) Recent(room string, n int) ([]chat.Message, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("recent: %w", errClosed)
	}
	name, err := chat.ParseRoom(room)
	if err != nil {
		return nil, fmt.Errorf("recent: %w", err)
	}
	ctx, cancel := s.call()
	defer cancel()
	r, ok, err := s.room(ctx, name)
	if err != nil || !ok {
		return nil, fmt.Errorf("recent: %w", cmp.Or(err, fmt.Errorf("%s: %w", name, chat.ErrNotFound)))
	}
	if n <= 0 {
		return nil, nil
	}
	rr, lo, hi, err := s.reader(ctx, name, r)
	if err != nil {
		return nil, fmt.Errorf("recent %s: %w", name, err)
	}
	msgs, err := rr.last(lo, hi, n)
	if err != nil {
		return nil, fmt.Errorf("recent %s: %w", name, err)
	}
	return msgs, nil
}

// History returns the messages of room in r, oldest first: with r.After set, the oldest r.Limit
// after it; otherwise the newest r.Limit before r.Before (or of all). Both bounds are exclusive
// and taken to the millisecond. The bounds are found by bisecting the room's sequences on the
// lines' times, which grow along the history (each line's own time, set by whoever said it;
// lines of nodes whose clocks disagree may be a little out of order, and a bound among them is
// approximate: no line outside the bounds is returned, a line just inside may be missed).
func (s *Store) History(room string, r chat.HistoryRange) ([]chat.Message, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("history: %w", errClosed)
	}
	name, err := chat.ParseRoom(room)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if r.Limit <= 0 {
		return nil, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	rec, ok, err := s.room(ctx, name)
	if err != nil || !ok {
		return nil, fmt.Errorf("history: %w", cmp.Or(err, fmt.Errorf("%s: %w", name, chat.ErrNotFound)))
	}
	rr, lo, hi, err := s.reader(ctx, name, rec)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", name, err)
	}
	var msgs []chat.Message
	if r.After.IsZero() {
		msgs, err = rr.before(lo, hi, r)
	} else {
		msgs, err = rr.after(lo, hi, r)
	}
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", name, err)
	}
	return msgs, nil
}

// before returns the newest r.Limit lines before r.Before (of all, when it is zero).
func (rr *roomReader) before(lo, hi uint64, r chat.HistoryRange) ([]chat.Message, error) {
	if r.Before.IsZero() {
		return rr.last(lo, hi, r.Limit)
	}
	b := floorMilli(r.Before)
	end, err := rr.firstWhere(lo, hi, func(at time.Time) bool { return at.UnixMilli() >= b })
	if err != nil || end <= lo {
		return nil, err
	}
	msgs, err := rr.last(lo, end-1, r.Limit)
	return slices.DeleteFunc(msgs, func(m chat.Message) bool { return m.At.UnixMilli() >= b }), err
}

// after returns the oldest r.Limit lines after r.After, and before r.Before if set.
func (rr *roomReader) after(lo, hi uint64, r chat.HistoryRange) ([]chat.Message, error) {
	a := floorMilli(r.After)
	b := int64(1<<63 - 1)
	if !r.Before.IsZero() {
		b = floorMilli(r.Before)
	}
	if hi < lo || a >= b {
		return nil, nil
	}
	// Catching up is asking for what came after the newest line one has: often nothing.
	if last, ok, err := rr.first(hi); err != nil || !ok || rr.decode(last).msg.At.UnixMilli() <= a {
		return nil, err
	}
	start, err := rr.firstWhere(lo, hi, func(at time.Time) bool { return at.UnixMilli() > a })
	if err != nil {
		return nil, err
	}
	var out []chat.Message
	for seq := start; seq <= hi && len(out) < r.Limit; {
		stored, err := rr.read(seq, hi, r.Limit-len(out))
		if err != nil {
			return nil, err
		}
		if len(stored) == 0 {
			break
		}
		for _, sm := range stored {
			d := rr.decode(sm)
			at := d.msg.At.UnixMilli()
			if at >= b {
				return out, nil
			}
			if d.valid && at > a {
				out = append(out, d.msg)
			}
		}
		seq = stored[len(stored)-1].seq + 1
	}
	return out, nil
}
