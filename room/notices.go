package room

import (
	"strconv"
	"strings"
	"time"
)

// Join and leave notices cost every member a line each: in a join storm (a thousand people
// connecting at once, or coming back after a network hiccup) that is members² lines. So notices
// go out one by one until they come faster than Config.NoticeBurst a second; then they are
// gathered and sent once a second, as one line for the joins and one for the leaves.
type notices struct {
	windowStart time.Time
	count       int      // notices in the window that started at windowStart
	joined      []string // gathered, in order
	left        []string
	timer       *time.Timer // flushes what is gathered; nil when nothing is
}

// noticeWindow is how often gathered notices go out during a storm.
const noticeWindow = time.Second

// announceLocked tells room ch that name joined or left it, now or with the next batch.
func (h *Hub) announceLocked(ch *channel, joined bool, name, line string) {
	n := &ch.notices
	now := time.Now()
	if now.Sub(n.windowStart) >= noticeWindow {
		n.windowStart, n.count = now, 0
	}
	n.count++
	if h.cfg.NoticeBurst < 0 || n.count <= h.cfg.NoticeBurst && n.timer == nil {
		who := []string{name}
		if joined {
			h.presenceLocked(ch, line, &presence{joined: who})
		} else {
			h.presenceLocked(ch, line, &presence{left: who})
		}
		return
	}
	if joined {
		n.joined = append(n.joined, name)
	} else {
		n.left = append(n.left, name)
	}
	if n.timer == nil {
		n.timer = time.AfterFunc(noticeWindow, func() { h.flushNotices(ch) })
	}
}

// noticeLocked tells every member of ch something that happened there.
func (h *Hub) noticeLocked(ch *channel, text string) { h.presenceLocked(ch, text, nil) }

// presenceLocked is noticeLocked for a notice that says who joined or left: structured clients
// get the names with it, to keep their lists of members without asking.
func (h *Hub) presenceLocked(ch *channel, text string, p *presence) {
	ev := newEvent(kindNotice, h.now(), "", "", text)
	ev.room = ch.name
	ev.presence = p
	ch.broadcastLocked(ev, nil)
}

// flushNotices sends the notices gathered in ch.
func (h *Hub) flushNotices(ch *channel) {
	h.mu.Lock()
	h.flushNoticesLocked(ch)
	h.mu.Unlock()
}

// flushNoticesLocked sends ch's gathered notices now: before anything anyone says there, so
// that a join notice always comes before the newcomer's first line.
func (h *Hub) flushNoticesLocked(ch *channel) {
	n := &ch.notices
	if n.timer == nil {
		return
	}
	n.stop()
	if h.closed {
		n.joined, n.left = nil, nil
		return
	}
	if len(n.joined) > 0 {
		h.presenceLocked(ch, nameList(n.joined)+" joined "+ch.name+" "+onlineIn(ch.countIn()), gathered(n.joined, true))
	}
	if len(n.left) > 0 {
		h.presenceLocked(ch, nameList(n.left)+" left "+ch.name, gathered(n.left, false))
	}
	n.joined, n.left = nil, nil // the events keep the lists
}

// stop cancels the pending flush.
func (n *notices) stop() {
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
}

// nameList names the first few and counts the rest: "alice, bob, carol and 97 others".
func nameList(names []string) string {
	const shown = 5
	switch {
	case len(names) == 1:
		return names[0]
	case len(names) <= shown:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	return strings.Join(names[:shown], ", ") + " and " + strconv.Itoa(len(names)-shown) + " others"
}
