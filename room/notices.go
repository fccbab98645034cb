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

// announceLocked tells everyone that name joined or left, now or with the next batch.
func (r *Room) announceLocked(joined bool, name, line string) {
	n := &r.notices
	now := time.Now()
	if now.Sub(n.windowStart) >= noticeWindow {
		n.windowStart, n.count = now, 0
	}
	n.count++
	if r.cfg.NoticeBurst < 0 || n.count <= r.cfg.NoticeBurst && n.timer == nil {
		r.broadcastLocked(newEvent(kindNotice, r.now(), "", "", line), nil)
		return
	}
	if joined {
		n.joined = append(n.joined, name)
	} else {
		n.left = append(n.left, name)
	}
	if n.timer == nil {
		n.timer = time.AfterFunc(noticeWindow, r.flushNotices)
	}
}

// flushNotices sends the gathered notices.
func (r *Room) flushNotices() {
	r.mu.Lock()
	r.flushNoticesLocked()
	r.mu.Unlock()
}

// flushNoticesLocked sends the gathered notices now: before anything anyone says, so that a
// join notice always comes before the newcomer's first line.
func (r *Room) flushNoticesLocked() {
	n := &r.notices
	if n.timer == nil {
		return
	}
	n.timer.Stop()
	n.timer = nil
	if r.closed {
		n.joined, n.left = nil, nil
		return
	}
	now := r.now()
	if len(n.joined) > 0 {
		line := nameList(n.joined) + " joined (" + strconv.Itoa(len(r.people)) + " online)"
		r.broadcastLocked(newEvent(kindNotice, now, "", "", line), nil)
	}
	if len(n.left) > 0 {
		line := nameList(n.left) + " left"
		r.broadcastLocked(newEvent(kindNotice, now, "", "", line), nil)
	}
	n.joined, n.left = n.joined[:0], n.left[:0]
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
