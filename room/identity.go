package room

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"chatd/chat"
)

// ErrRegistered is wrapped by the *chat.NameError for a name that belongs to someone else's key.
var ErrRegistered = errors.New("name is registered")

// ErrUnavailable is returned when the store cannot answer; the user should try again.
var ErrUnavailable = errors.New("the server cannot reach its storage right now; try again in a moment")

// ErrTooManyNames is wrapped by the error of a login whose key holds as many names as a key may.
var ErrTooManyNames = errors.New("this key holds too many names")

// PendingKeyTTL is how long a key added with /keys add waits for the login that confirms it. A
// day is time enough to get to the other machine; a proposal left unconfirmed for longer is
// forgotten rather than left lying around as a way in.
const PendingKeyTTL = 24 * time.Hour

// namesError explains a login refused because its key holds as many names as a key may.
func namesError(err error) error {
	var le *chat.LimitError
	if !errors.As(err, &le) {
		return fmt.Errorf("%w: log in as one of them", ErrTooManyNames)
	}
	return fmt.Errorf("%w: it is the key of %s already, and a key may hold at most %d; log in as one of them",
		ErrTooManyNames, strings.Join(le.Names, ", "), le.Max)
}

// person is someone in the room: one name, one or more sessions (members). A person who logged
// in with a registered key may be online from several terminals at once.
type person struct {
	name       string // display form
	key        string // folded
	registered bool   // logged in with one of the name's keys
	since      time.Time
	remote     netip.Addr // the first session's address: rooms created count against it
	limit      limiter    // the message rate, shared by every session

	// Under the hub's lock.
	sessions []*Member
	rooms    []*channel        // the rooms the person is in, in the order they joined them
	ignores  map[string]string // folded name -> name of whoever this person ignores
	away     string            // why they are away (/away); "" when they are not
	awayTold map[string]bool   // folded names of those told, since they went away
	lastDM   string            // who last sent them a private message, for /reply
}

// roomNames are the names of the rooms p is in, in the order they joined them.
func (p *person) roomNames() []string {
	names := make([]string, len(p.rooms))
	for i, ch := range p.rooms {
		names[i] = ch.name
	}
	return names
}

// in reports whether p is in room ch.
func (p *person) in(ch *channel) bool {
	_, ok := ch.people[p]
	return ok
}

// ignoring reports whether p ignores whoever sent ev. Called with room.mu held.
func (p *person) ignoring(ev *event) bool {
	if ev.from == "" {
		return false
	}
	_, ok := p.ignores[chat.Fold(ev.from)]
	return ok
}

func registeredError(name, reason string) error {
	return &chat.NameError{Name: chat.QuoteName(name), Reason: reason, Err: ErrRegistered}
}

// Authorize decides whether a login with key may use name: a registered name only with one of its
// keys, an unclaimed one with any key, which then claims it (trust on first use). Invalid names
// are not refused here, so that the session can explain them. The error is fit to show the user.
func (h *Hub) Authorize(name string, key chat.Key) error {
	if h.cfg.Store == nil || chat.ValidateName(name) != nil {
		return nil
	}
	_, err := h.claim(name, key)
	return err
}

// claim returns the identity behind name for a login with key, claiming the name if it is free.
// A key pending for name (added with /keys add) is confirmed by this login, which proves that
// whoever logs in holds it; until then it is not one of name's keys.
func (h *Hub) claim(name string, key chat.Key) (chat.Identity, error) {
	if key.Added.IsZero() {
		key.Added = h.now()
	}
	// Most logins are by people whose name is theirs already: a read answers those, and only a
	// free name needs the write transaction of a claim.
	if id, ok, err := h.cfg.Store.Identity(name); err == nil && ok {
		return h.admit(id, name, key)
	}
	id, claimedNow, err := h.cfg.Store.Claim(name, key)
	switch {
	case errors.Is(err, chat.ErrNameLimit):
		h.log.Info("claim refused: the key holds too many names", "user", name, "key", key.Fingerprint)
		return id, namesError(err)
	case err != nil:
		h.log.Error("store: claim", "user", name, "err", err)
		return id, ErrUnavailable
	case claimedNow:
		h.log.Info("name claimed", "user", id.Name, "key", key.Fingerprint)
		return id, nil
	}
	return h.admit(id, name, key)
}

// admit lets a login with key in as id, the identity behind name, if key is one of its keys, or
// pending for it: then this login confirms it.
func (h *Hub) admit(id chat.Identity, name string, key chat.Key) (chat.Identity, error) {
	if hasKey(id.Keys, key.Fingerprint) {
		return id, nil
	}
	if !hasKey(id.Pending, key.Fingerprint) {
		return id, registeredError(name, "is registered to another key")
	}
	confirmed, ok, err := h.cfg.Store.ConfirmKey(id.Name, key.Fingerprint)
	switch {
	case errors.Is(err, chat.ErrNameLimit):
		h.log.Info("key not confirmed: it holds too many names", "user", id.Name, "key", key.Fingerprint)
		return id, namesError(err)
	case err != nil:
		h.log.Error("store: confirm key", "user", id.Name, "err", err)
		return id, ErrUnavailable
	case !ok: // it expired, or was removed, a moment ago
		return id, registeredError(name, "is registered to another key")
	}
	h.log.Info("key confirmed", "user", confirmed.Name, "key", key.Fingerprint)
	return confirmed, nil
}

// identify resolves the name a session may join under: its registered display form, whether it
// is registered to this session's key, or an error for a name that belongs to someone else.
func (h *Hub) identify(name string, key *chat.Key) (display string, registered bool, err error) {
	if h.cfg.Store == nil {
		return name, false, nil
	}
	if key != nil {
		id, err := h.claim(name, *key)
		if err != nil {
			return name, false, err
		}
		return id.Name, true, nil
	}
	id, ok, err := h.cfg.Store.Identity(name)
	if err != nil {
		h.log.Error("store: identity", "user", name, "err", err)
		return name, false, ErrUnavailable
	}
	if ok {
		return name, false, registeredError(id.Name, "is registered to a key: log in over SSH with one of its keys")
	}
	return name, false, nil
}

func hasKey(keys []chat.Key, fingerprint string) bool {
	return slices.ContainsFunc(keys, func(k chat.Key) bool { return k.Fingerprint == fingerprint })
}

// whois describes name for /whois: online sessions, or when it was last registered.
func (h *Hub) whois(name string) (string, error) {
	key := chat.Fold(name)
	h.mu.Lock()
	p := h.people[key]
	var lines []string
	if p != nil {
		transports := make([]string, len(p.sessions))
		for i, m := range p.sessions {
			transports[i] = m.opts.Transport
		}
		sessions := "1 session"
		if len(p.sessions) > 1 {
			sessions = fmt.Sprintf("%d sessions", len(p.sessions))
		}
		lines = append(lines, fmt.Sprintf("%s: online since %s (%s: %s)", p.name, h.stamp(p.since), sessions, strings.Join(transports, ", ")))
		if p.away != "" {
			lines = append(lines, "away: "+p.away)
		}
		if rooms := h.visibleRoomsLocked(p); len(rooms) > 0 {
			lines = append(lines, "in "+strings.Join(rooms, ", "))
		}
		if h.clustered() {
			lines = append(lines, "on node "+h.cfg.Cluster.Node())
		}
		name = p.name
	}
	remote := h.remoteWhoisLocked(key)
	lines = append(lines, remote...)
	if p == nil && len(remote) > 0 {
		name = h.peers.people[key].name
	}
	online := p != nil || len(remote) > 0
	h.mu.Unlock()

	if h.cfg.Store != nil {
		id, ok, err := h.cfg.Store.Identity(name)
		if err != nil {
			h.log.Error("store: identity", "user", name, "err", err)
			return "", ErrUnavailable
		}
		if ok {
			if !online {
				lines = append(lines, id.Name+": offline")
			}
			lines = append(lines, fmt.Sprintf("registered %s, keys:", h.stamp(id.Created)))
			for _, k := range id.Keys {
				lines = append(lines, "  "+k.Type+" "+k.Fingerprint)
			}
		} else if online {
			lines = append(lines, "not registered: logged in without a key")
		}
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("%s is not online and not registered", chat.QuoteName(name))
	}
	return strings.Join(lines, "\n"), nil
}

// stamp is a date and time as the room shows them, in its time zone.
func (h *Hub) stamp(t time.Time) string { return t.In(h.cfg.Location).Format("2006-01-02 15:04") }
