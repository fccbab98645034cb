package room

import (
	"errors"
	"fmt"
	"io"
	"time"

	"chatd/chat"
)

// history holds the room's last HistorySize public messages and actions, in the order everyone
// saw them. It is guarded by the room's lock.
type history struct {
	events []*event // oldest first; grows to twice the size before it is trimmed
}

func (h *history) add(ev *event) {
	h.events = append(h.events, ev)
	if len(h.events) >= 2*HistorySize {
		n := copy(h.events, h.events[len(h.events)-HistorySize:])
		clear(h.events[n:])
		h.events = h.events[:n]
	}
}

// last returns the newest n events, oldest first. The slice is shared: don't modify it.
func (h *history) last(n int) []*event {
	n = min(n, HistorySize, len(h.events))
	return h.events[len(h.events)-n:]
}

// rememberLocked records a public message in the history and the sqlite. Called with r.mu held,
// so that the history's order is the order everyone received; Store.Append never blocks.
func (r *Room) rememberLocked(ev *event) {
	r.history.add(ev)
	if r.cfg.Store == nil {
		return
	}
	k := chat.KindMessage
	if ev.kind == kindAction {
		k = chat.KindAction
	}
	r.cfg.Store.Append(chat.Message{At: ev.at, Kind: k, From: ev.from, Text: ev.text})
}

// replayHeadroom is how much of a member's outbox a replay leaves free (at most a quarter of
// it), for the live lines that follow it before the member has read it.
const replayHeadroom = 64

// replayLocked queues the last n public messages for m, marked as earlier ones. A replay never
// fills the outbox: it is cut to what fits beside what is already waiting for the member, with
// room left for live lines, and says so. (Asking for more than the outbox holds, again and
// again without reading, would otherwise overflow it: the member is then dropped as too slow,
// like any member that does not read.)
func (r *Room) replayLocked(m *Member, n int, now time.Time) {
	evs := r.history.last(n)
	if len(evs) == 0 {
		return
	}
	asked := len(evs)
	headroom := min(replayHeadroom, r.cfg.OutboxSize/4)
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
		header = fmt.Sprintf("the last %d messages (of the %d asked for: more would not fit until you have read these):", len(evs), asked)
	case len(evs) == 1:
		header = "the last message:"
	default:
		header = fmt.Sprintf("the last %d messages:", len(evs))
	}
	m.enqueue(newEvent(kindInfo, now, "", "", header))
	for _, ev := range evs {
		m.enqueue(earlierEvent(ev, now))
	}
}

// deliverQueued hands m the private messages that waited for it while it was offline, each
// with the time it was sent.
func (r *Room) deliverQueued(m *Member) {
	dms, err := r.cfg.Store.TakeDMs(m.name)
	if err != nil {
		r.log.Error("store: take queued messages", "user", m.name, "err", err)
		m.reply(kindError, "your queued private messages could not be read; they are kept for next time")
		return
	}
	if len(dms) == 0 {
		return
	}
	m.reply(kindInfo, fmt.Sprintf("%d private message(s) arrived while you were away:", len(dms)))
	for _, dm := range dms {
		at := dm.At.In(r.cfg.Location)
		text := "(sent " + r.stamp(at) + ") " + dm.Text
		r.deliverTo(m.person, newEvent(kindDMIn, at, dm.From, dm.From, text))
	}
	r.log.Info("delivered queued messages", "user", m.name, "count", len(dms))
}

// deliverTo queues ev for every session of p.
func (r *Room) deliverTo(p *person, ev *event) {
	r.mu.Lock()
	r.deliverToLocked(p, ev)
	r.mu.Unlock()
}

func (r *Room) deliverToLocked(p *person, ev *event) {
	if p.ignores != nil && p.ignoring(ev) {
		return
	}
	for _, m := range p.members {
		m.enqueue(ev)
	}
}

// writeHistory prints the last n public messages as plain history lines, for "ssh host history".
func (r *Room) writeHistory(w io.Writer, n int) error {
	now := r.now()
	r.mu.Lock()
	evs := make([]*event, 0, n)
	evs = append(evs, r.history.last(n)...)
	r.mu.Unlock()
	for _, ev := range evs {
		if _, err := w.Write(earlierEvent(ev, now).plain); err != nil {
			return err
		}
	}
	return nil
}

func (m *Member) cmdHistory(args string) Action {
	n, err := parseCount(args, 20)
	if err != nil {
		m.reply(kindError, "usage: /history [N]: "+err.Error())
		return Continue
	}
	r := m.room
	r.mu.Lock()
	r.replayLocked(m, n, r.now())
	if len(r.history.events) == 0 {
		m.enqueue(newEvent(kindInfo, r.now(), "", "", "no messages yet"))
	}
	r.mu.Unlock()
	return Continue
}

// parseCount reads the N of "/history N": a whole number from 1 to HistorySize.
func parseCount(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n < 1 || n > HistorySize || fmt.Sprint(n) != s {
		return 0, errors.New("N must be a whole number from 1 to " + fmt.Sprint(HistorySize))
	}
	return n, nil
}
