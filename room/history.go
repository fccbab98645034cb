package room

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"chatd/chat"
)

// history holds a room's newest lines (messages and actions), in the order everyone saw them:
// at most size of them, the rest being in the store. It is guarded by the hub's lock.
type history struct {
	size   int
	events []*event // oldest first; grows to twice the size before it is trimmed
}

func (hs *history) add(ev *event) {
	hs.events = append(hs.events, ev)
	if len(hs.events) >= 2*hs.size {
		n := copy(hs.events, hs.events[len(hs.events)-hs.size:])
		clear(hs.events[n:])
		hs.events = hs.events[:n]
	}
}

// last returns the newest n events, oldest first. The slice is shared: don't modify it.
func (hs *history) last(n int) []*event {
	n = min(n, hs.size, len(hs.events))
	return hs.events[len(hs.events)-n:]
}

// rememberLocked records a line said in ch in its history and the store. Called with h.mu held,
// so that the history's order is the order everyone received; Store.Append never blocks.
func (h *Hub) rememberLocked(ch *channel, ev *event) {
	ch.history.add(ev)
	if h.cfg.Store == nil || h.relayKeepsHistory {
		return
	}
	k := chat.KindMessage
	if ev.kind == kindAction {
		k = chat.KindAction
	}
	h.cfg.Store.Append(chat.Message{At: ev.at, Kind: k, Room: ch.name, From: ev.from, Text: ev.text})
}

// storedEvent is a line of the store's history as the room shows it.
func storedEvent(m chat.Message, loc *time.Location) *event {
	k := kindMessage
	if m.Kind == chat.KindAction {
		k = kindAction
	}
	ev := newEvent(k, m.At.In(loc), m.From, "", m.Text)
	ev.room = m.Room
	return ev
}

// historyFlushTimeout bounds the wait for the store to commit what was just said, before it
// answers for a room's history beyond what is kept in memory.
const historyFlushTimeout = 2 * time.Second

// recent returns the newest n lines of room ch, oldest first: from memory when it holds them,
// else from the store. Called without h.mu held: the store may take a moment.
func (h *Hub) recent(ch *channel, n int) ([]*event, error) {
	h.mu.Lock()
	evs := slices.Clone(ch.history.last(n))
	h.mu.Unlock()
	if len(evs) >= n || h.cfg.Store == nil {
		return evs, nil
	}
	// The store has every committed line; what was said a moment ago may not be yet.
	ctx, cancel := context.WithTimeout(context.Background(), historyFlushTimeout)
	defer cancel()
	if err := h.cfg.Store.Flush(ctx); err != nil {
		h.log.Warn("store: flush before reading history", "room", ch.name, "err", err)
	}
	msgs, err := h.cfg.Store.Recent(ch.name, n)
	if err != nil {
		h.log.Error("store: recent", "room", ch.name, "err", err)
		return evs, ErrUnavailable
	}
	if len(msgs) < len(evs) {
		return evs, nil // the store lags behind what this process remembers: keep the newest
	}
	evs = evs[:0]
	for _, m := range msgs {
		evs = append(evs, storedEvent(m, h.cfg.Location))
	}
	return evs, nil
}

// replayHeadroom is how much of a member's outbox a replay leaves free (at most a quarter of
// it), for the live lines that follow it before the member has read it.
const replayHeadroom = 64

// replayLocked queues room ch's newest n lines for m, marked as earlier ones.
func (h *Hub) replayLocked(m *Member, ch *channel, n int, now time.Time) {
	h.replay(m, ch, ch.history.last(n), now)
}

// replay queues evs, lines of room ch, for m, marked as earlier ones. A replay never fills the
// outbox: it is cut to what fits beside what is already waiting for the member, with room left
// for live lines, and says so. (Asking for more than the outbox holds, again and again without
// reading, would otherwise overflow it: the member is then dropped as too slow, like any member
// that does not read.)
func (h *Hub) replay(m *Member, ch *channel, evs []*event, now time.Time) {
	if len(evs) == 0 {
		return
	}
	asked := len(evs)
	headroom := min(replayHeadroom, h.cfg.OutboxSize/4)
	fits := m.outboxRoom() - headroom - 1 // the header takes a line
	if fits < 1 {
		m.enqueue(newEvent(kindError, now, "", "", "too much is still waiting to be written to you: ask for the history again once you have read it"))
		return
	}
	if asked > fits {
		evs = evs[asked-fits:]
	}
	var header string
	switch {
	case len(evs) < asked:
		header = fmt.Sprintf("the last %d messages of %s (of the %d asked for: more would not fit until you have read these):", len(evs), ch.name, asked)
	case len(evs) == 1:
		header = "the last message of " + ch.name + ":"
	default:
		header = fmt.Sprintf("the last %d messages of %s:", len(evs), ch.name)
	}
	m.enqueue(newEvent(kindInfo, now, "", "", header))
	for _, ev := range evs {
		m.enqueue(earlierEvent(ev, now))
	}
}

// deliverQueued hands m the private messages that waited for it while it was offline, each
// with the time it was sent.
func (h *Hub) deliverQueued(m *Member) {
	dms, err := h.cfg.Store.TakeDMs(m.name)
	if err != nil {
		h.log.Error("store: take queued messages", "user", m.name, "err", err)
		m.reply(kindError, "your queued private messages could not be read; they are kept for next time")
		return
	}
	if len(dms) == 0 {
		return
	}
	m.reply(kindInfo, fmt.Sprintf("%d private message(s) arrived while you were away:", len(dms)))
	for _, dm := range dms {
		at := dm.At.In(h.cfg.Location)
		text := "(sent " + h.stamp(at) + ") " + dm.Text
		h.deliverTo(m.person, dmIn(at, dm.From, m.name, text))
	}
	h.log.Info("delivered queued messages", "user", m.name, "count", len(dms))
}

// deliverTo queues ev for every session of p.
func (h *Hub) deliverTo(p *person, ev *event) {
	h.mu.Lock()
	h.deliverToLocked(p, ev)
	h.mu.Unlock()
}

func (h *Hub) deliverToLocked(p *person, ev *event) {
	if p.ignores != nil && p.ignoring(ev) {
		return
	}
	for _, m := range p.sessions {
		m.enqueue(ev)
	}
}

// writeHistory prints room ch's newest n lines as plain history lines, for "ssh host history".
func (h *Hub) writeHistory(w io.Writer, ch *channel, n int) error {
	evs, err := h.recent(ch, n)
	if err != nil {
		return err
	}
	now := h.now()
	for _, ev := range evs {
		if _, err := w.Write(earlierEvent(ev, now).plain); err != nil {
			return err
		}
	}
	return nil
}

// cmdHistory is /history [ROOM] [N]: a room's newest lines (the current room's, 20 by default).
func (m *Member) cmdHistory(args string) Action {
	h := m.hub
	ch, n, err := roomAndCount(strings.Fields(args), m.current.Load(), 20, h.roomNamed)
	if err != nil {
		m.reply(kindError, "usage: /history [ROOM] [N]: "+err.Error())
		return Continue
	}
	if err := m.mayRead(ch); err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	evs, err := h.recent(ch, n)
	if err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	now := h.now()
	if len(evs) == 0 {
		m.reply(kindInfo, "no messages yet in "+ch.name)
		return Continue
	}
	h.replay(m, ch, evs, now)
	return Continue
}

// errCount is parseCount's complaint.
var errCount = errors.New("N must be a whole number from 1 to " + fmt.Sprint(HistorySize))

// parseCount reads the N of "/history N": a whole number from 1 to HistorySize.
func parseCount(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n < 1 || n > HistorySize || fmt.Sprint(n) != s {
		return 0, errCount
	}
	return n, nil
}
