package room

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"chatd/chat"
)

// What the room offers clients that draw the chat themselves (the web page, bots): their
// session's state, a room's history by time, and signing in with a token instead of an SSH key.
// The tokens are made by /weblogin, in a session that proved its key, so a browser or a bot
// signs in as a registered name only on its owner's word.

// Web token lifetimes.
const (
	WebLinkTTL    = 10 * time.Minute    // a /weblogin link: long enough to open it, short enough to be useless later
	WebSessionTTL = 30 * 24 * time.Hour // a browser's session, like a "remember me"
	maxWebLabel   = 64                  // bytes of a token's label kept
	// MaxHistoryPage is the most lines one History call returns.
	MaxHistoryPage = 200
)

// ErrWebToken is the error of a token that is unknown, expired, used up or revoked. It says no
// more, so that a guesser learns nothing.
var ErrWebToken = errors.New("this sign-in link or token is not valid (used, expired or revoked)")

// State is what a structured client needs to draw a session: who it is, where it talks, and its
// rooms with their members.
type State struct {
	Type       string      `json:"type"` // "state"
	Name       string      `json:"name"`
	Registered bool        `json:"registered"`
	Current    string      `json:"current"`
	Rooms      []RoomState `json:"rooms"`
}

// RoomState is one of a session's rooms.
type RoomState struct {
	Name    string   `json:"name"`
	Topic   string   `json:"topic"`
	Private bool     `json:"private"`
	Members []string `json:"members"` // the people in it who are online, sorted
}

// State is the member's session as a structured client draws it.
func (m *Member) State() State {
	h := m.hub
	s := State{Type: "state", Name: m.name, Registered: m.person.registered}
	h.mu.Lock()
	if cur := m.current.Load(); cur != nil {
		s.Current = cur.name
	}
	s.Rooms = make([]RoomState, 0, len(m.person.rooms))
	for _, ch := range m.person.rooms {
		r := RoomState{Name: ch.name, Topic: ch.topic, Private: ch.private, Members: make([]string, 0, len(ch.people))}
		for p := range ch.people {
			r.Members = append(r.Members, p.name)
		}
		r.Members = h.remoteNamesLocked(ch, r.Members)
		s.Rooms = append(s.Rooms, r)
	}
	h.mu.Unlock()
	for _, r := range s.Rooms {
		sortNames(r.Members)
	}
	return s
}

// History returns lines of one of the member's rooms in r, oldest first, at most MaxHistoryPage:
// scrolling back (r.Before) and catching up after a reconnection (r.After). The bounds include
// their own millisecond (see below). The error is fit to show the user.
func (m *Member) History(room string, r chat.HistoryRange) ([]Event, error) {
	h := m.hub
	name, err := chat.ParseRoom(room)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	ch := h.rooms[name]
	in := ch != nil && m.person.in(ch)
	var mem []*event
	if in {
		mem = slices.Clone(ch.history.last(ch.history.size))
	}
	h.mu.Unlock()
	if !in {
		return nil, fmt.Errorf("you are not in %s", name)
	}
	// Several lines may share a millisecond, the unit times are kept in: a page that ended inside
	// one would skip the rest of it. So a bound takes in its own millisecond, and the client
	// drops the lines it already shows (same time, sender and text).
	if !r.Before.IsZero() {
		r.Before = r.Before.Truncate(time.Millisecond).Add(time.Millisecond)
	}
	if !r.After.IsZero() {
		r.After = r.After.Truncate(time.Millisecond).Add(-time.Millisecond)
	}
	r.Limit = min(max(r.Limit, 0), MaxHistoryPage)
	if r.Limit == 0 {
		return nil, nil
	}
	var evs []*event
	if h.cfg.Store == nil {
		evs = inRange(mem, r)
	} else {
		// What was said a moment ago may not be committed yet: a client catching up needs it.
		ctx, cancel := context.WithTimeout(context.Background(), historyFlushTimeout)
		if err := h.cfg.Store.Flush(ctx); err != nil {
			h.log.Warn("store: flush before reading history", "room", name, "err", err)
		}
		cancel()
		msgs, err := h.cfg.Store.History(name, r)
		if err != nil {
			h.log.Error("store: history", "room", name, "err", err)
			return nil, ErrUnavailable
		}
		for _, msg := range msgs {
			evs = append(evs, storedEvent(msg, h.cfg.Location))
		}
	}
	out := make([]Event, len(evs))
	for i, ev := range evs {
		out[i] = ev.Event()
		out[i].History = true
	}
	return out, nil
}

// inRange picks the lines of evs (oldest first) in r, for a hub without a store.
func inRange(evs []*event, r chat.HistoryRange) []*event {
	var in []*event
	for _, ev := range evs {
		at := ev.at.Truncate(time.Millisecond)
		if (r.Before.IsZero() || at.Before(r.Before)) && (r.After.IsZero() || at.After(r.After)) {
			in = append(in, ev)
		}
	}
	if len(in) <= r.Limit {
		return in
	}
	if !r.After.IsZero() {
		return in[:r.Limit]
	}
	return in[len(in)-r.Limit:]
}

// newWebSecret makes a token's secret and the hash the store keeps of it.
func newWebSecret() (secret, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// RedeemWebLink uses up a one-time link made by /weblogin and opens a browser session in its
// place: the secret returned goes in the browser's cookie. label says what the browser is (its
// user agent), for /weblogin list.
func (h *Hub) RedeemWebLink(secret, label string) (session, name string, err error) {
	if h.cfg.Store == nil || secret == "" {
		return "", "", ErrWebToken
	}
	link, err := h.cfg.Store.TakeWebToken(chat.WebLink, hashSecret(secret))
	if errors.Is(err, chat.ErrNotFound) {
		return "", "", ErrWebToken
	}
	if err != nil {
		h.log.Error("store: take web link", "err", err)
		return "", "", ErrUnavailable
	}
	if err := h.Banned(netip.Addr{}, "", link.Name); err != nil {
		return "", "", err
	}
	session, hash := newWebSecret()
	now := h.cfg.Now()
	_, err = h.cfg.Store.AddWebToken(chat.WebToken{Kind: chat.WebSession, Hash: hash, Name: link.Name,
		Label: webLabel(label), Created: now, Expires: now.Add(WebSessionTTL)})
	if err != nil {
		return "", "", webTokenError(h, err)
	}
	h.log.Info("web sign-in", "user", link.Name)
	return session, link.Name, nil
}

// WebLinkName names the person a /weblogin link signs in as, without using it up: the page that
// asks "sign in as alice?" before the link is used.
func (h *Hub) WebLinkName(secret string) (string, error) {
	if h.cfg.Store == nil || secret == "" {
		return "", ErrWebToken
	}
	tok, err := h.cfg.Store.WebToken(chat.WebLink, hashSecret(secret))
	if errors.Is(err, chat.ErrNotFound) {
		return "", ErrWebToken
	}
	if err != nil {
		h.log.Error("store: web link", "err", err)
		return "", ErrUnavailable
	}
	return tok.Name, nil
}

// EndWebSession signs a browser out: its session secret no longer opens anything, and the
// sessions it opened end.
func (h *Hub) EndWebSession(secret string) error {
	if h.cfg.Store == nil || secret == "" {
		return nil
	}
	tok, err := h.cfg.Store.WebToken(chat.WebSession, hashSecret(secret))
	if errors.Is(err, chat.ErrNotFound) {
		return nil // already gone
	}
	if err != nil {
		return webTokenError(h, err)
	}
	if _, err := h.cfg.Store.RevokeWebTokens(tok.Name, tok.ID); err != nil && !errors.Is(err, chat.ErrNotFound) {
		return webTokenError(h, err)
	}
	h.mu.Lock()
	p := h.people[chat.Fold(tok.Name)]
	h.mu.Unlock()
	if p != nil {
		h.endWebSessions(p, tok.ID)
	}
	h.send(ClusterEvent{Kind: EventWebRevoke, Name: tok.Name, ID: tok.ID})
	return nil
}

// SendJSON queues v, as one JSON line, for a member of Format JSON, after the lines already
// queued: the answers to a structured client's requests (its state, a page of history) keep
// their place among the room's lines, and a client that does not read them is too slow like any.
func (m *Member) SendJSON(v any) error {
	if m.format != JSON {
		return errors.New("send json: the member does not read JSON")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("send json: %w", err)
	}
	b = append(b, '\n')
	ev := &event{kind: kindInfo, at: m.hub.now(), born: time.Now()}
	ev.json.Store(&b)
	m.enqueue(ev)
	return nil
}

// webToken resolves the session or bot token a web login signs in with.
func (h *Hub) webToken(secret string) (chat.WebToken, error) {
	if h.cfg.Store == nil {
		return chat.WebToken{}, ErrWebToken
	}
	hash := hashSecret(secret)
	for _, kind := range []chat.WebTokenKind{chat.WebSession, chat.WebBot} {
		tok, err := h.cfg.Store.WebToken(kind, hash)
		if err == nil {
			return tok, nil
		}
		if !errors.Is(err, chat.ErrNotFound) {
			h.log.Error("store: web token", "err", err)
			return chat.WebToken{}, ErrUnavailable
		}
	}
	return chat.WebToken{}, ErrWebToken
}

// webTokenError is what a user is told of a store error about web tokens.
func webTokenError(h *Hub, err error) error {
	var le *chat.LimitError
	if errors.As(err, &le) {
		return fmt.Errorf("%w: revoke some with /weblogin revoke", err)
	}
	h.log.Error("store: web tokens", "err", err)
	return ErrUnavailable
}

// webLabel keeps a short, clean label.
func webLabel(s string) string { return chat.Excerpt(chat.Sanitize(s), maxWebLabel) }

// cmdWeblogin is /weblogin: a one-time sign-in link for a browser, and the management of the
// browser sessions and bot tokens of the member's name. Only a session that logged in with one
// of the name's keys may use it: a web sign-in is as good as the key.
func (m *Member) cmdWeblogin(args string) Action {
	h := m.hub
	if h.cfg.Store == nil || !m.person.registered || m.opts.Key == nil {
		m.reply(kindError, "/weblogin needs a registered name, in a session that logged in with its key (ssh with your key)")
		return Continue
	}
	sub, rest, _ := strings.Cut(strings.TrimSpace(args), " ")
	rest = strings.TrimSpace(rest)
	now := h.cfg.Now()
	switch strings.ToLower(sub) {
	case "":
		secret, hash := newWebSecret()
		_, err := h.cfg.Store.AddWebToken(chat.WebToken{Kind: chat.WebLink, Hash: hash, Name: m.name,
			Label: "link", Created: now, Expires: now.Add(WebLinkTTL)})
		if err != nil {
			m.reply(kindError, webTokenError(h, err).Error())
			return Continue
		}
		m.reply(kindInfo, "open this link within 10 minutes to sign a browser in as "+m.name+" (it works once; keep it to yourself):\n"+
			h.cfg.PublicURL+"/login?t="+secret)
		h.log.Info("web link made", "user", m.name)
	case "token":
		if rest == "" {
			m.reply(kindError, "usage: /weblogin token LABEL (what the bot is, to tell its tokens apart)")
			return Continue
		}
		secret, hash := newWebSecret()
		tok, err := h.cfg.Store.AddWebToken(chat.WebToken{Kind: chat.WebBot, Hash: hash, Name: m.name,
			Label: webLabel(rest), Created: now})
		if err != nil {
			m.reply(kindError, webTokenError(h, err).Error())
			return Continue
		}
		m.reply(kindInfo, fmt.Sprintf("bot token %d (%s) for %s; it is shown only now, and works until /weblogin revoke %d:\n%s",
			tok.ID, tok.Label, m.name, tok.ID, secret))
		h.log.Info("bot token made", "user", m.name, "id", tok.ID)
	case "list":
		toks, err := h.cfg.Store.WebTokens(m.name)
		if err != nil {
			m.reply(kindError, webTokenError(h, err).Error())
			return Continue
		}
		if len(toks) == 0 {
			m.reply(kindInfo, "no browser sessions or bot tokens")
			return Continue
		}
		var b strings.Builder
		b.WriteString("browser sessions and bot tokens:")
		for _, t := range toks {
			fmt.Fprintf(&b, "\n  %d  %-7s  %s  since %s", t.ID, t.Kind, t.Label, h.stamp(t.Created))
			if !t.Expires.IsZero() {
				b.WriteString(", until " + h.stamp(t.Expires))
			}
		}
		m.reply(kindInfo, b.String())
	case "revoke":
		var id int64
		if strings.ToLower(rest) != "all" {
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || n <= 0 {
				m.reply(kindError, "usage: /weblogin revoke ID|all (IDs from /weblogin list)")
				return Continue
			}
			id = n
		}
		n, err := h.cfg.Store.RevokeWebTokens(m.name, id)
		switch {
		case errors.Is(err, chat.ErrNotFound):
			m.reply(kindError, "no browser session or bot token "+rest+" of yours; see /weblogin list")
			return Continue
		case err != nil:
			m.reply(kindError, webTokenError(h, err).Error())
			return Continue
		}
		h.endWebSessions(m.person, id)
		h.send(ClusterEvent{Kind: EventWebRevoke, Name: m.name, ID: id})
		m.reply(kindInfo, fmt.Sprintf("revoked %d", n))
	default:
		m.reply(kindError, "usage: /weblogin [list | revoke ID|all | token LABEL]")
	}
	return Continue
}

// endWebSessions disconnects the person's web sessions opened with a token just revoked (every
// one for id 0).
func (h *Hub) endWebSessions(p *person, id int64) {
	h.mu.Lock()
	var end []*Member
	for _, s := range p.sessions {
		if s.webToken != 0 && (id == 0 || s.webToken == id) {
			end = append(end, s)
		}
	}
	h.mu.Unlock()
	for _, s := range end {
		s.end(ReasonKicked, newEvent(kindError, h.now(), "", "", "this browser session was signed out"), "")
	}
}
