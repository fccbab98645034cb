package room

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/log"

	"chatd/chat"
)

// ErrClosed is returned by Join once the hub is shutting down.
var ErrClosed = errors.New("the server is shutting down")

// Hub is the chat: its rooms, the people in them and their sessions, and the order of everything
// said in each room. Every method is safe for concurrent use.
type Hub struct {
	cfg   Config
	log   *log.Logger
	relay Relay
	// relayKeepsHistory: the relay's log is the history (a cluster's stream), so the hub appends
	// nothing to the store.
	relayKeepsHistory bool
	commands          map[string]*command
	help              string // /help for everyone
	opHelp            string // what /help adds for operators

	// mu guards the rooms, the people and the sessions: one lock, held across a room's
	// broadcast, is what gives every member of a room the same order of lines.
	mu        sync.Mutex
	sessions  []*Member           // every session; a member knows its index
	people    map[string]*person  // who is online, by folded name
	rooms     map[string]*channel // every room, by name
	creations creations           // rooms created lately, by person and by address
	nextID    uint64              // session IDs
	closed    bool

	peers      peers       // who is online on the cluster's other nodes: under mu
	paused     atomic.Bool // this node lost the rest of its cluster: logins and lines refused
	mod        moderation  // bans, mutes, the message of the day: under mod.mu
	storeQueue storeQueue  // room changes on their way to the store, in order

	shortcodes shortcodeTable // for completing :shortcodes:

	buffers  sync.Pool      // render buffers, shared so that idle members hold none
	flushers sync.WaitGroup // every running writer goroutine, and every member's last drain
	janitor  sync.WaitGroup
	stop     chan struct{} // closed by Shutdown: stops the janitor
	shutdown sync.Once
	done     chan struct{} // closed when Shutdown has finished
}

// New returns a hub with the rooms the store keeps, and the default room. logger may be nil.
func New(cfg Config, logger *log.Logger) (*Hub, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("room config: %w", err)
	}
	cfg.DefaultRoom, _ = chat.ParseRoom(cfg.DefaultRoom)
	if logger == nil {
		logger = log.New(discard{})
	}
	h := &Hub{
		cfg:    cfg,
		log:    logger,
		relay:  cfg.Relay,
		people: make(map[string]*person),
		rooms:  make(map[string]*channel),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if h.relay == nil {
		h.relay = &LocalRelay{}
	}
	if hr, ok := h.relay.(HistoryRelay); ok {
		h.relayKeepsHistory = hr.KeepsHistory()
	}
	if err := h.loadRooms(); err != nil {
		return nil, fmt.Errorf("room: %w", err)
	}
	// Only now: a relay that hands over lines said meanwhile must find the rooms loaded.
	h.relay.Receive(h.deliver)
	if err := h.loadModeration(); err != nil {
		return nil, fmt.Errorf("room: %w", err)
	}
	h.commands, h.help, h.opHelp = newCommands(cfg)
	if cfg.Cluster != nil {
		cfg.Cluster.Start(clusterSide{h})
	}
	h.janitor.Add(1)
	go h.watch()
	return h, nil
}

// loadRooms reads the rooms and their recent history from the store, and makes sure the
// default room exists.
func (h *Hub) loadRooms() error {
	if h.cfg.Store != nil {
		// Lines appended a moment ago (by a hub that shared this store) count too.
		ctx, cancel := context.WithTimeout(context.Background(), historyFlushTimeout)
		err := h.cfg.Store.Flush(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("load rooms: %w", err)
		}
		rooms, err := h.cfg.Store.Rooms()
		if err != nil {
			return fmt.Errorf("load rooms: %w", err)
		}
		for _, sr := range rooms {
			ch := newChannel(sr, h.tailLen())
			recent, err := h.cfg.Store.Recent(sr.Name, h.tailLen())
			if err != nil {
				return fmt.Errorf("load the history of %s: %w", sr.Name, err)
			}
			for _, m := range recent {
				ch.history.add(storedEvent(m, h.cfg.Location))
				ch.loadedSeq = max(ch.loadedSeq, uint64(max(m.ID, 0)))
			}
			h.rooms[ch.name] = ch
		}
	}
	if h.rooms[h.cfg.DefaultRoom] == nil {
		sr := chat.Room{Name: h.cfg.DefaultRoom, Created: h.now()}
		if h.cfg.Store != nil {
			if err := h.cfg.Store.SaveRoom(sr); err != nil {
				return fmt.Errorf("create %s: %w", sr.Name, err)
			}
		}
		h.rooms[sr.Name] = newChannel(sr, h.tailLen())
	}
	return nil
}

// tailLen is how many of each room's newest lines are kept in memory: what a join replays, and
// /history answers without asking the store. Without a store the memory is all there is.
func (h *Hub) tailLen() int {
	if h.cfg.Store == nil {
		return HistorySize
	}
	return max(h.cfg.historyOnJoin(), minTail)
}

// minTail is the least of each room's history kept in memory when a store keeps the rest.
const minTail = 50

// Config returns the hub's effective configuration.
func (h *Hub) Config() Config { return h.cfg }

// JoinOptions describe a member's connection.
type JoinOptions struct {
	Format    Format    // how its terminal wants lines
	Echo      bool      // whether it gets its own messages back (interactive terminals do)
	Transport string    // "ssh", "tcp": for logs and /whois
	Remote    string    // remote address: for logs
	Key       *chat.Key // the key the session proved it holds; nil for keyless logins
	Operator  bool      // may use the operator commands (/kick, /ban, ...)
	Width     int       // the terminal's width, for ANSI lines: see Member.SetWidth
	// Room is the room the session starts in (joining it if need be); "" for the person's
	// current rooms, or the default room.
	Room string
	// WebToken is the secret of a web session or a bot token (see /weblogin): the session signs
	// in as the token's registered name, as good as a key. The name given to Join must be that
	// name or "".
	WebToken string
}

// Join admits name to the chat, writing to out. The name must be valid, not registered to
// another key, and not in use by anyone online (compared case-insensitively), unless this is
// another session of the same registered person; the error is then a *chat.NameError fit to
// show the user. A person comes back to the rooms they were in when they last left (if their
// name is registered), or starts in the default room; another session of someone online joins
// the rooms they are in. The welcome, the room's history and everyone's join notice are queued
// before Join returns, so the join notice always precedes anything the member says.
func (h *Hub) Join(name string, out Output, opts JoinOptions) (*Member, error) {
	if h.paused.Load() {
		return nil, ErrPaused
	}
	var tok chat.WebToken
	if opts.WebToken != "" {
		var err error
		if tok, err = h.webToken(opts.WebToken); err != nil {
			return nil, err
		}
		if name != "" && chat.Fold(name) != chat.Fold(tok.Name) {
			return nil, fmt.Errorf("this token signs in as %s, not %s", tok.Name, name)
		}
		name = tok.Name
	}
	var display string
	var registered bool
	var err error
	if tok.ID != 0 {
		display, registered, err = h.checkWebLogin(tok, opts.Remote)
	} else {
		display, registered, err = h.checkLogin(name, opts.Key, opts.Remote)
	}
	if err != nil {
		return nil, err
	}
	var start string
	if opts.Room != "" {
		if start, err = chat.ParseRoom(opts.Room); err != nil {
			return nil, err
		}
	}
	var saved []string
	if registered && h.cfg.Store != nil {
		if saved, err = h.cfg.Store.Memberships(display); err != nil {
			h.log.Error("store: memberships", "user", display, "err", err)
			saved = nil // they start in the default room; their rooms are kept for next time
		}
	}
	m := newMember(h, display, out, opts)
	m.webToken = tok.ID
	now := h.now()

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	p := h.people[m.key]
	first := p == nil
	if !first && !(registered && p.registered) {
		h.mu.Unlock()
		return nil, takenError(name)
	}
	if s := h.peers.people[m.key]; first && s != nil && !(registered && s.registered) {
		h.mu.Unlock()
		return nil, takenError(name) // online on another node
	}
	if first {
		p = &person{name: display, key: m.key, registered: registered, since: now, remote: remoteIP(opts.Remote)}
		h.people[m.key] = p
		h.peers.nowLocal(m.key)
		h.announce(PresenceOnline, p, "")
	}
	h.nextID++
	m.id = h.nextID
	m.person = p
	p.sessions = append(p.sessions, m)
	m.index = len(h.sessions)
	h.sessions = append(h.sessions, m)
	for _, ch := range p.rooms {
		ch.addSession(m)
	}

	// Where the person goes: back to their rooms (or the default room) when they arrive, and to
	// the room this session asked for. The session is greeted first (the welcome, the room's
	// topic and history), and the rooms are told after, so that its own join notice follows the
	// welcome and precedes anything it says.
	var enter []*channel
	fresh := false // enter is the default room, not rooms saved from before
	if first {
		for _, name := range saved {
			if ch := h.rooms[name]; ch != nil {
				enter = append(enter, ch)
			}
		}
		if len(enter) == 0 {
			// The default room, kept as one of theirs like a room they chose: they come back
			// to it until they /part it.
			enter = append(enter, h.rooms[h.cfg.DefaultRoom])
			fresh = true
		}
	}
	var ops storeOps
	var refused string
	var startCh *channel
	if start != "" {
		startCh = h.roomLocked(start)
		if startCh == nil {
			// A new room is made only if they may be in one more (and stays empty otherwise).
			if err = h.roomLeftLocked(p, len(enter)); err == nil {
				startCh, err = h.createLocked(p, start, &ops)
			}
			if err != nil {
				refused = err.Error()
			}
		}
		if startCh != nil && !slices.Contains(enter, startCh) && !p.in(startCh) {
			if err := startCh.mayEnter(p, opts.Operator); err != nil {
				refused, startCh = err.Error(), nil
			}
		}
	}
	current := startCh
	if current == nil {
		if len(enter) > 0 {
			current = enter[0]
			for _, ch := range enter {
				if ch.name == h.cfg.DefaultRoom {
					current = ch
				}
			}
		} else {
			current = h.currentFor(p)
		}
	}
	m.current.Store(current)
	sessions := len(p.sessions)
	welcome := fmt.Sprintf("welcome to %s, %s! you are in %s; /help lists the commands; bye leaves.", h.cfg.Name, display, current.name)
	if !first {
		welcome = fmt.Sprintf("welcome back, %s: this is your session #%d, in %s; every session gets every line.", display, sessions, current.name)
	}
	m.enqueue(newEvent(kindInfo, now, "", "", welcome))
	if motd := h.motd(); motd != "" && first {
		m.enqueue(newEvent(kindInfo, now, "", "", motd))
	}
	if refused != "" {
		m.enqueue(newEvent(kindError, now, "", "", refused))
	}
	current.greetLocked(m, h, now)
	for _, ch := range enter {
		if _, err := h.enterLocked(p, ch, fresh, &ops); err != nil {
			m.enqueue(newEvent(kindError, now, "", "", err.Error()))
			ops.part(p, ch.name)
		}
	}
	if startCh != nil && !p.in(startCh) {
		if _, err := h.enterLocked(p, startCh, true, &ops); err != nil {
			m.enqueue(newEvent(kindError, now, "", "", err.Error()))
		}
	}
	if !p.in(m.current.Load()) { // a room it could not enter after all
		m.current.Store(h.currentFor(p))
	}
	if rooms := p.roomNames(); len(rooms) > 1 && first {
		m.enqueue(newEvent(kindInfo, now, "", "", "your rooms: "+strings.Join(rooms, ", ")+" (lines from rooms but the current one start with the room's name)"))
	}
	online := h.onlineCountLocked()
	h.unlockAndStore(ops)

	h.cfg.Metrics.Joined(opts.Transport)
	h.log.Info("join", "user", display, "transport", opts.Transport, "remote", opts.Remote, "key", fingerprintOf(opts.Key), "operator", opts.Operator, "sessions", sessions, "online", online, "room", m.current.Load().name)
	if first && registered {
		h.deliverQueued(m)
	}
	return m, nil
}

// currentFor is the room a session of p goes to when it needs one: the default room if p is in
// it (or in no room at all), else the first of p's rooms.
func (h *Hub) currentFor(p *person) *channel {
	for _, ch := range p.rooms {
		if ch.name == h.cfg.DefaultRoom {
			return ch
		}
	}
	if len(p.rooms) == 0 {
		return h.rooms[h.cfg.DefaultRoom]
	}
	return p.rooms[0]
}

// checkLogin is what every login must pass, joins and one-shot commands alike: a valid name, no
// ban on the name, the key or the address, and a name that is not registered to someone else.
// It returns the name's display form and whether the login holds one of its keys.
func (h *Hub) checkLogin(name string, key *chat.Key, remote string) (display string, registered bool, err error) {
	if err := chat.ValidateName(name); err != nil {
		return name, false, err
	}
	fingerprint := ""
	if key != nil {
		fingerprint = key.Fingerprint
	}
	if err := h.Banned(remoteIP(remote), fingerprint, name); err != nil {
		return name, false, err
	}
	return h.identify(name, key)
}

// checkWebLogin is checkLogin for a web session or bot token, which stands for one of the
// name's keys: the name must still be registered, and no ban may cover it or the address.
func (h *Hub) checkWebLogin(tok chat.WebToken, remote string) (display string, registered bool, err error) {
	if err := h.Banned(remoteIP(remote), "", tok.Name); err != nil {
		return tok.Name, false, err
	}
	id, ok, err := h.cfg.Store.Identity(tok.Name)
	if err != nil {
		h.log.Error("store: identity", "user", tok.Name, "err", err)
		return tok.Name, false, ErrUnavailable
	}
	if !ok {
		return tok.Name, false, ErrWebToken // the name was released since
	}
	return id.Name, true, nil
}

func fingerprintOf(k *chat.Key) string {
	if k == nil {
		return "none"
	}
	return k.Fingerprint
}

// motd is the current message of the day.
func (h *Hub) motd() string {
	h.mod.mu.Lock()
	defer h.mod.mu.Unlock()
	return h.mod.motd
}

// now is the hub's clock in its time zone.
func (h *Hub) now() time.Time { return h.cfg.Now().In(h.cfg.Location) }

// Names returns the names of everyone online, sorted case-insensitively.
func (h *Hub) Names() []string {
	h.mu.Lock()
	names := make([]string, 0, len(h.people))
	for _, p := range h.people {
		names = append(names, p.name)
	}
	for key, s := range h.peers.people {
		if h.people[key] == nil {
			names = append(names, s.name)
		}
	}
	h.mu.Unlock()
	sortNames(names)
	return names
}

func sortNames(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(strings.Compare(chat.Fold(a), chat.Fold(b)), strings.Compare(a, b))
	})
}

// Online returns how many people are online, on every node (a person may have several
// sessions).
func (h *Hub) Online() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.onlineCountLocked()
}

// remove takes m out of the hub: out of every room's sessions, and when it was its person's
// last session, the person out of every room, each telling its members (notice, when set,
// instead of the usual "alice left #go"), unless the hub is shutting down. It reports false when
// m had already been removed.
func (h *Hub) remove(m *Member, reason Reason, notice string) bool {
	h.mu.Lock()
	if m.index < 0 {
		h.mu.Unlock()
		return false
	}
	last := len(h.sessions) - 1
	h.sessions[m.index] = h.sessions[last]
	h.sessions[m.index].index = m.index
	h.sessions[last] = nil
	h.sessions = h.sessions[:last]
	m.index = -1
	p := m.person
	if i := slices.Index(p.sessions, m); i >= 0 {
		p.sessions = slices.Delete(p.sessions, i, i+1)
	}
	for _, ch := range p.rooms {
		ch.removeSession(m)
	}
	gone := len(p.sessions) == 0
	if gone {
		delete(h.people, p.key)
		h.peers.noLongerLocal(p.key)
		h.announce(PresenceOffline, p, "")
		for _, ch := range slices.Clone(p.rooms) {
			text := notice
			if text == "" {
				text = p.name + " left " + ch.name + reason.noticeSuffix()
			}
			h.exitLocked(p, ch, text)
		}
	}
	online, sessions := h.onlineCountLocked(), len(p.sessions)
	h.mu.Unlock()

	h.cfg.Metrics.Left(m.opts.Transport, reason)
	h.log.Info("leave", "user", m.name, "transport", m.opts.Transport, "remote", m.opts.Remote, "reason", reason.String(), "sessions_left", sessions, "online", online)
	return true
}

// lookup returns who is online as name (any case), or nil.
func (h *Hub) lookup(name string) *person {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.people[chat.Fold(name)]
}

// watch disconnects members whose current write has been blocked longer than WriteTimeout (a
// client that stopped reading must not hold its writer, and its queued lines, forever), and
// members that sent nothing for the idle timeout.
func (h *Hub) watch() {
	defer h.janitor.Done()
	period := min(h.cfg.WriteTimeout/4, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var stalled, idle []*Member
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		deadline := time.Now().Add(-h.cfg.WriteTimeout).UnixNano()
		idleSince := h.cfg.Now().Add(-h.cfg.IdleTimeout).UnixNano()
		stalled, idle = stalled[:0], idle[:0]
		h.mu.Lock()
		for _, m := range h.sessions {
			if started := m.writeStarted.Load(); started != 0 && started < deadline {
				stalled = append(stalled, m)
			} else if h.cfg.IdleTimeout > 0 && m.lastInput.Load() < idleSince {
				idle = append(idle, m)
			}
		}
		h.mu.Unlock()
		for _, m := range stalled {
			m.end(ReasonStalled, nil, "")
		}
		for _, m := range idle {
			m.end(ReasonIdle, newEvent(kindError, h.now(), "", "", "you sent nothing for "+h.cfg.IdleTimeout.String()+"; goodbye"), "")
		}
	}
}

// Shutdown tells every member the server is going down, gives their writers until ctx expires to
// deliver that, then disconnects everyone. Later joins fail with ErrClosed. It is idempotent:
// every call returns once the first has finished.
func (h *Hub) Shutdown(ctx context.Context) error {
	var err error
	h.shutdown.Do(func() {
		err = h.shutdownOnce(ctx)
		close(h.done)
	})
	<-h.done
	return err
}

func (h *Hub) shutdownOnce(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	members := slices.Clone(h.sessions)
	for _, ch := range h.rooms {
		ch.notices.stop()
	}
	h.mu.Unlock()
	close(h.stop)
	h.janitor.Wait()

	bye := newEvent(kindNotice, h.now(), "", "", "server is shutting down, goodbye")
	for _, m := range members {
		m.end(ReasonShutdown, bye, "")
	}
	flushed := make(chan struct{})
	go func() { h.flushers.Wait(); close(flushed) }()
	select {
	case <-flushed:
		return nil
	case <-ctx.Done():
		for _, m := range members {
			m.finish(true)
		}
		return fmt.Errorf("room shutdown: %w", ctx.Err())
	}
}

func (h *Hub) getBuffer() *[]byte {
	if b, ok := h.buffers.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (h *Hub) putBuffer(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // a rare huge batch: let it go rather than pin it in the pool
	}
	*b = (*b)[:0]
	h.buffers.Put(b)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// onlineIn is the "(3 online)" of a join notice.
func onlineIn(n int) string { return "(" + strconv.Itoa(n) + " online)" }
