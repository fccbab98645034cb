package room

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/internal/duration"
)

// ErrBanned is wrapped by the *BanError for a login that a ban keeps out.
var ErrBanned = errors.New("banned")

// BanError says which ban keeps someone out, in words fit to show them.
type BanError struct {
	Ban chat.Ban
	loc *time.Location
}

func (e *BanError) Error() string {
	s := "you are banned from this server"
	if !e.Ban.Expires.IsZero() {
		s += " until " + e.Ban.Expires.In(e.loc).Format("2006-01-02 15:04 MST")
	}
	if e.Ban.Reason != "" {
		s += " (" + e.Ban.Reason + ")"
	}
	return s
}

func (e *BanError) Unwrap() error { return ErrBanned }

// moderation is the room's state that operators change: bans, mutes, the message of the day.
// It has its own lock: logins check bans without waiting for a broadcast.
type moderation struct {
	mu     sync.Mutex
	bans   []chat.Ban           // active ones, as stored
	mutes  map[string]time.Time // by folded name; zero: until unmuted
	motd   string
	nextID int64 // ban IDs when bans are not stored
}

// Banned returns the ban that keeps out a login from ip, with a key of fingerprint (may be empty)
// and name (may be empty), if any.
func (h *Hub) Banned(ip netip.Addr, fingerprint, name string) error {
	now := h.now()
	key := chat.Fold(name)
	h.mod.mu.Lock()
	defer h.mod.mu.Unlock()
	for _, b := range h.mod.bans {
		if !b.Active(now) {
			continue
		}
		if banMatches(b, ip, fingerprint, key) {
			return &BanError{Ban: b, loc: h.cfg.Location}
		}
	}
	return nil
}

func banMatches(b chat.Ban, ip netip.Addr, fingerprint, foldedName string) bool {
	switch b.Kind {
	case chat.BanName:
		return foldedName != "" && chat.Fold(b.Value) == foldedName
	case chat.BanKey:
		return fingerprint != "" && b.Value == fingerprint
	case chat.BanIP:
		p, err := netip.ParsePrefix(b.Value)
		return err == nil && ip.IsValid() && p.Contains(ip.Unmap())
	}
	return false
}

// remoteIP is the address of a member's connection, for bans.
func remoteIP(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// loadModeration reads the bans and the message of the day from the store.
func (h *Hub) loadModeration() error {
	h.mod.mutes = make(map[string]time.Time)
	h.mod.motd = h.cfg.Motd
	st := h.cfg.Store
	if st == nil {
		return nil
	}
	bans, err := st.Bans()
	if err != nil {
		return fmt.Errorf("load bans: %w", err)
	}
	h.mod.bans = bans
	if motd, set, err := st.Setting("motd"); err != nil {
		return fmt.Errorf("load motd: %w", err)
	} else if set {
		h.mod.motd = motd
	}
	return nil
}

// limiter is a person's token bucket: Rate lines a second, Burst at once. Lines over the rate
// are held back, not dropped, and handled in order when their turn comes; a line that would wait
// too long is refused with an error. Holding a line back never holds up the transport: it goes
// on reading what the client sends (a reader that stops would leave the client's input piling
// up in the SSH library's buffers).
type limiter struct {
	mu       sync.Mutex
	tokens   float64
	last     time.Time
	notified bool
	held     []heldLine  // lines waiting for their turn, oldest first
	timer    *time.Timer // hands the next held line on; nil when none is scheduled
	running  bool        // releaseHeld is handing lines on
}

// heldLine is a line held back by the rate limit.
type heldLine struct {
	m    *Member
	line string
	due  time.Time // on the room's clock
}

// maxPace is the longest a line is held back before it is refused instead.
const maxPace = 10 * time.Second

// reserveLocked takes a token and returns how long to wait before using it, or ok false when the
// wait would be over maxPace (then nothing is taken). first is set the first time a line has to
// wait since the bucket was last full. l.mu must be held.
func (l *limiter) reserveLocked(now time.Time, rate float64, burst int) (wait time.Duration, first, ok bool) {
	if l.last.IsZero() {
		l.tokens, l.last = float64(burst), now
	}
	l.tokens = min(float64(burst), l.tokens+now.Sub(l.last).Seconds()*rate)
	l.last = now
	if l.tokens >= float64(burst) {
		l.notified = false
	}
	if l.tokens >= 1 {
		l.tokens--
		return 0, false, true
	}
	wait = time.Duration((1 - l.tokens) / rate * float64(time.Second))
	if wait > maxPace {
		return wait, false, false
	}
	l.tokens--
	first = !l.notified
	l.notified = true
	return wait, first, true
}

// pace decides what happens to a line under the rate limit. It reports true when the line is to
// be handled now; otherwise the line was either held back, to be handled in its turn by
// releaseHeld, or refused (and the member told). Lines keep their order: while any line of the
// person waits, later ones wait behind it.
func (m *Member) pace(line string) bool {
	h := m.hub
	if h.cfg.MsgRate <= 0 {
		return true
	}
	l := &m.person.limit
	now := h.cfg.Now()
	l.mu.Lock()
	wait, first, ok := l.reserveLocked(now, h.cfg.MsgRate, h.cfg.MsgBurst)
	if ok && wait == 0 && len(l.held) == 0 && !l.running {
		l.mu.Unlock()
		return true
	}
	if ok {
		l.held = append(l.held, heldLine{m: m, line: line, due: now.Add(wait)})
		if l.timer == nil && !l.running {
			l.timer = time.AfterFunc(wait, func() { h.releaseHeld(l) })
		}
	}
	l.mu.Unlock()

	if !ok {
		h.cfg.Metrics.RateLimited(true)
		h.log.Debug("rate limit: refused", "user", m.name)
		m.reply(kindError, "slow down: this line was not sent: "+chat.Excerpt(line, 60))
		return false
	}
	h.cfg.Metrics.RateLimited(false)
	if first {
		h.log.Info("rate limit", "user", m.name)
		m.reply(kindInfo, fmt.Sprintf("slow down: you may send %s lines a second (%d at once); your lines are delayed", strconv.FormatFloat(h.cfg.MsgRate, 'f', -1, 64), h.cfg.MsgBurst))
	}
	return false
}

// releaseHeld hands on the held lines that are due, in order, and schedules itself for the next.
// A line whose session has left meanwhile is dropped with it.
func (h *Hub) releaseHeld(l *limiter) {
	l.mu.Lock()
	l.timer = nil
	l.running = true
	for len(l.held) > 0 {
		next := l.held[0]
		l.held[0] = heldLine{}
		l.held = l.held[1:]
		l.mu.Unlock()
		select {
		case <-next.m.done:
		default:
			next.m.run(next.line)
		}
		l.mu.Lock()
		if len(l.held) > 0 {
			if wait := l.held[0].due.Sub(h.cfg.Now()); wait > 0 {
				l.timer = time.AfterFunc(wait, func() { h.releaseHeld(l) })
				break
			}
		}
	}
	if len(l.held) == 0 {
		l.held = nil // a flood's worth of slice is not kept
	}
	l.running = false
	l.mu.Unlock()
}

// muted returns how long the member's person is muted for, if at all.
func (m *Member) muted() (until time.Time, muted bool) {
	h := m.hub
	h.mod.mu.Lock()
	defer h.mod.mu.Unlock()
	until, muted = h.mod.mutes[m.key]
	if muted && !until.IsZero() && !h.cfg.Now().Before(until) {
		delete(h.mod.mutes, m.key)
		return time.Time{}, false
	}
	return until, muted
}

// checkMuted tells a muted member that what they said was not sent.
func (m *Member) checkMuted() bool {
	until, muted := m.muted()
	if !muted {
		return false
	}
	if until.IsZero() {
		m.reply(kindError, "you are muted: nobody sees what you say")
	} else {
		m.reply(kindError, "you are muted until "+until.In(m.hub.cfg.Location).Format("15:04")+": nobody sees what you say")
	}
	return true
}

// ParseDuration reads a duration as people write them: 90s, 10m, 2h, 7d, 2w, 1y, 1h30m. The
// error quotes s, cleaned, for the person who wrote it.
func ParseDuration(s string) (time.Duration, error) {
	d, err := duration.Parse(s)
	switch {
	case s == "":
		return 0, errors.New("empty duration")
	case errors.Is(err, duration.ErrTooLong):
		return 0, fmt.Errorf("%q is too long", chat.Excerpt(s, 20))
	case errors.Is(err, duration.ErrNotPositive):
		return 0, fmt.Errorf("%q is not a positive duration", chat.Excerpt(s, 20))
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration (like 90s, 10m, 2h, 7d, 2w)", chat.Excerpt(s, 20))
	}
	return d, nil
}

// splitDuration takes an optional leading duration off args.
func splitDuration(args string) (time.Duration, string) {
	first, rest := nameFields(args)
	if d, err := ParseDuration(first); err == nil {
		return d, rest
	}
	return 0, strings.TrimSpace(args)
}

// banTarget reads what /ban names: a key fingerprint, an address or range, or a name.
func banTarget(s string) (chat.BanKind, string, error) {
	switch {
	case strings.HasPrefix(s, "SHA256:"):
		return chat.BanKey, s, nil
	case strings.ContainsAny(s, ":/") || isIPv4(s):
		p, err := connlimit.ParsePrefix(s)
		if err != nil {
			return "", "", err
		}
		return chat.BanIP, p.String(), nil
	}
	if err := chat.ValidateName(s); err != nil {
		return "", "", err
	}
	return chat.BanName, s, nil
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}
