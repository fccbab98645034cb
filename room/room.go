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
	"time"

	"github.com/charmbracelet/log"

	"chatd/chat"
)

// ErrClosed is returned by Join once the room is shutting down.
var ErrClosed = errors.New("room is closed")

// Config holds the room's limits. The zero value of each field means its default.
type Config struct {
	// Name is what the room calls itself in the welcome line.
	Name string
	// MaxMessageBytes is the longest message a member may send, after sanitising. Default 1000.
	MaxMessageBytes int
	// OutboxSize is how many lines may wait for a member before it is disconnected as too slow.
	// Default 1024.
	OutboxSize int
	// WriteTimeout is how long one write to a member may block before it is disconnected as too
	// slow. Default 10s.
	WriteTimeout time.Duration
	// DrainTimeout bounds how long a leaving member's last lines (a goodbye, an error) may take to
	// be written before its connection is closed anyway. Default 2s.
	DrainTimeout time.Duration
	// WriteGap is the least time between two writes to one member under load; lines arriving in
	// between are written together. Default 10ms; negative: write as soon as possible.
	WriteGap time.Duration
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// Location is the time zone of every timestamp shown. Default time.Local.
	Location *time.Location
	// Store keeps name pins, history and queued private messages. Nil: history in memory only.
	Store Store
	// HistoryOnJoin is how many earlier messages a joining member is shown. Default 20; negative
	// for none. At most HistorySize.
	HistoryOnJoin int
	// ParseKey reads an authorized_keys line for /keys add; nil disables /keys add. The room knows
	// no SSH: the SSH layer provides it.
	ParseKey func(line string) (chat.Key, error)
	// MsgRate is how many lines a second a person may send, MsgBurst how many at once; lines over
	// the rate are delayed. 0 disables the limit (unlike the other fields, 0 is not a default).
	MsgRate  float64
	MsgBurst int // default 10 when MsgRate is set
	// IdleTimeout disconnects a session that sends nothing for this long; 0 never does.
	IdleTimeout time.Duration
	// Motd is the message of the day shown on joining, until an operator sets another (/motd).
	Motd string
	// Metrics receives counts and timings; nil for none. Package metrics implements it.
	Metrics Metrics
	// NoticeBurst is how many join and leave notices a second go out one by one; past it they
	// are gathered and sent once a second as one line. Default 10; negative: never gathered.
	NoticeBurst int
}

// Metrics is what the room reports about itself.
type Metrics interface {
	Joined(transport string)
	Left(transport string, reason Reason)
	Said(kind string) // "message", "action", "dm"
	Delivered(delay time.Duration)
	RateLimited(refused bool)
}

type noMetrics struct{}

func (noMetrics) Joined(string)           {}
func (noMetrics) Left(string, Reason)     {}
func (noMetrics) Said(string)             {}
func (noMetrics) Delivered(time.Duration) {}
func (noMetrics) RateLimited(bool)        {}

// HistorySize is how many public messages the room keeps at hand for joins and /history.
const HistorySize = 1000

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Name:            "chatd",
		MaxMessageBytes: 1000,
		OutboxSize:      1024,
		WriteTimeout:    10 * time.Second,
		DrainTimeout:    2 * time.Second,
		WriteGap:        10 * time.Millisecond,
		Now:             time.Now,
		Location:        time.Local,
		HistoryOnJoin:   20,
		NoticeBurst:     10,
	}
}

// withDefaults fills in every unset field.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.OutboxSize == 0 {
		c.OutboxSize = d.OutboxSize
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	switch {
	case c.WriteGap == 0:
		c.WriteGap = d.WriteGap
	case c.WriteGap < 0:
		c.WriteGap = 0
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Location == nil {
		c.Location = d.Location
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.NoticeBurst == 0 {
		c.NoticeBurst = d.NoticeBurst
	}
	if c.MsgRate > 0 && c.MsgBurst == 0 {
		c.MsgBurst = 10
	}
	switch {
	case c.HistoryOnJoin == 0:
		c.HistoryOnJoin = d.HistoryOnJoin
	case c.HistoryOnJoin < 0:
		c.HistoryOnJoin = 0
	}
	return c
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxMessageBytes < 1:
		return fmt.Errorf("max message bytes must be positive, got %d", c.MaxMessageBytes)
	case c.OutboxSize < 16:
		return fmt.Errorf("outbox size must be at least 16 lines, got %d", c.OutboxSize)
	case c.WriteTimeout < 100*time.Millisecond:
		return fmt.Errorf("write timeout must be at least 100ms, got %s", c.WriteTimeout)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("drain timeout must be positive, got %s", c.DrainTimeout)
	case c.HistoryOnJoin > HistorySize:
		return fmt.Errorf("history on join must be at most %d, got %d", HistorySize, c.HistoryOnJoin)
	case c.MsgRate < 0 || c.MsgBurst < 0:
		return fmt.Errorf("message rate and burst must be 0 (off) or more")
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle timeout must be 0 (off) or more, got %s", c.IdleTimeout)
	}
	return nil
}

// MaxLineBytes is the longest input line a transport should read before discarding it as too
// long: well above the message limit, so that a long message gets the precise "message too long"
// answer, and bounded so that reading a line costs bounded memory.
func (c Config) MaxLineBytes() int { return 4*c.MaxMessageBytes + 64 }

// Room is one chat room: its members and the order of everything said in it. Every method is safe
// for concurrent use.
type Room struct {
	cfg      Config
	log      *log.Logger
	commands map[string]*command
	help     string // /help for everyone
	opHelp   string // what /help adds for operators

	mu      sync.Mutex
	members []*Member          // every session; a member knows its index (order changes on leave)
	people  map[string]*person // who is online, by folded name
	history history            // the last HistorySize public messages, in the room's order
	closed  bool

	mod     moderation // bans, mutes, the message of the day: under mod.mu
	notices notices    // join and leave notices gathered during a storm: under mu

	buffers  sync.Pool      // render buffers, shared so that idle members hold none
	flushers sync.WaitGroup // every running writer goroutine
	janitor  sync.WaitGroup
	stop     chan struct{} // closed by Shutdown: stops the janitor
	shutdown sync.Once
	done     chan struct{} // closed when Shutdown has finished
}

// New returns an empty room. logger may be nil.
func New(cfg Config, logger *log.Logger) (*Room, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("room config: %w", err)
	}
	if logger == nil {
		logger = log.New(discard{})
	}
	r := &Room{
		cfg:    cfg,
		log:    logger,
		people: make(map[string]*person),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if cfg.Store != nil {
		recent, err := cfg.Store.Recent(HistorySize)
		if err != nil {
			return nil, fmt.Errorf("room history: %w", err)
		}
		for _, m := range recent {
			k := kindMessage
			if m.Kind == chat.KindAction {
				k = kindAction
			}
			r.history.add(newEvent(k, m.At.In(cfg.Location), m.From, "", m.Text))
		}
	}
	if err := r.loadModeration(); err != nil {
		return nil, fmt.Errorf("room: %w", err)
	}
	r.commands, r.help, r.opHelp = newCommands(cfg)
	r.janitor.Add(1)
	go r.watchWrites()
	return r, nil
}

// Config returns the room's effective configuration.
func (r *Room) Config() Config { return r.cfg }

// JoinOptions describe a member's connection.
type JoinOptions struct {
	Format    Format    // how its terminal wants lines
	Echo      bool      // whether it gets its own messages back (interactive terminals do)
	Transport string    // "ssh", "tcp": for logs and /whois
	Remote    string    // remote address: for logs
	Key       *chat.Key // the key the session proved it holds; nil for keyless logins
	Operator  bool      // may use the operator commands (/kick, /ban, ...)
	Width     int       // the terminal's width, for ANSI lines: see Member.SetWidth
}

// Join admits name into the room, writing to out. The name must be valid, not registered to
// another key, and not in use by anyone online (compared case-insensitively), unless this is
// another session of the same registered person; the error is then a *chat.NameError fit to show the
// user. The welcome, the history and everyone's join notice are queued before Join returns, so
// the join notice always precedes anything the member says.
func (r *Room) Join(name string, out Output, opts JoinOptions) (*Member, error) {
	display, registered, err := r.checkLogin(name, opts.Key, opts.Remote)
	if err != nil {
		return nil, err
	}
	m := newMember(r, display, out, opts)
	now := r.now()

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	p := r.people[m.key]
	first := p == nil
	if !first && !(registered && p.registered) {
		r.mu.Unlock()
		return nil, takenError(name)
	}
	if first {
		p = &person{name: display, key: m.key, registered: registered, since: now}
		r.people[m.key] = p
	}
	p.members = append(p.members, m)
	m.person = p
	m.index = len(r.members)
	r.members = append(r.members, m)
	online, sessions := len(r.people), len(p.members)

	welcome := fmt.Sprintf("welcome to %s, %s! /help lists the commands; bye leaves.", r.cfg.Name, display)
	if !first {
		welcome = fmt.Sprintf("welcome back, %s: this is your session #%d; every session gets every line.", display, sessions)
	}
	m.enqueue(newEvent(kindInfo, now, "", "", welcome))
	if motd := r.motd(); motd != "" && first {
		m.enqueue(newEvent(kindInfo, now, "", "", motd))
	}
	r.replayLocked(m, r.cfg.HistoryOnJoin, now)
	if first {
		r.announceLocked(true, display, display+" joined ("+strconv.Itoa(online)+" online)")
	}
	r.mu.Unlock()

	r.cfg.Metrics.Joined(opts.Transport)
	r.log.Info("join", "user", display, "transport", opts.Transport, "remote", opts.Remote, "key", fingerprintOf(opts.Key), "operator", opts.Operator, "sessions", sessions, "online", online)
	if first && registered {
		r.deliverQueued(m)
	}
	return m, nil
}

// checkLogin is what every login must pass, joins and one-shot commands alike: a valid name, no
// ban on the name, the key or the address, and a name that is not registered to someone else.
// It returns the name's display form and whether the login holds one of its keys.
func (r *Room) checkLogin(name string, key *chat.Key, remote string) (display string, registered bool, err error) {
	if err := chat.ValidateName(name); err != nil {
		return name, false, err
	}
	fingerprint := ""
	if key != nil {
		fingerprint = key.Fingerprint
	}
	if err := r.Banned(remoteIP(remote), fingerprint, name); err != nil {
		return name, false, err
	}
	return r.identify(name, key)
}

func fingerprintOf(k *chat.Key) string {
	if k == nil {
		return "none"
	}
	return k.Fingerprint
}

// motd is the current message of the day.
func (r *Room) motd() string {
	r.mod.mu.Lock()
	defer r.mod.mu.Unlock()
	return r.mod.motd
}

// now is the room's clock in its time zone.
func (r *Room) now() time.Time { return r.cfg.Now().In(r.cfg.Location) }

// Names returns the names of everyone online, sorted case-insensitively.
func (r *Room) Names() []string {
	r.mu.Lock()
	names := make([]string, 0, len(r.people))
	for _, p := range r.people {
		names = append(names, p.name)
	}
	r.mu.Unlock()
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(strings.Compare(chat.Fold(a), chat.Fold(b)), strings.Compare(a, b))
	})
	return names
}

// Online returns how many people are in the room (a person may have several sessions).
func (r *Room) Online() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.people)
}

// broadcastLocked queues ev for every member but except. Holding r.mu across the loop is what
// gives every member the same order of events.
func (r *Room) broadcastLocked(ev *event, except *Member) {
	for _, m := range r.members {
		if m == except || m.person.ignores != nil && m.person.ignoring(ev) {
			continue
		}
		m.enqueue(ev)
	}
}

// remove takes m out of the room, and tells everyone the person left when it was their last
// session, unless the room is shutting down. It reports false when m had already been removed.
func (r *Room) remove(m *Member, reason Reason) bool { return r.removeWithNotice(m, reason, "") }

// removeWithNotice is remove with the notice everyone gets when the person is gone; "" for the
// usual "alice left".
func (r *Room) removeWithNotice(m *Member, reason Reason, notice string) bool {
	r.mu.Lock()
	if m.index < 0 {
		r.mu.Unlock()
		return false
	}
	last := len(r.members) - 1
	r.members[m.index] = r.members[last]
	r.members[m.index].index = m.index
	r.members[last] = nil
	r.members = r.members[:last]
	m.index = -1
	p := m.person
	if i := slices.Index(p.members, m); i >= 0 {
		p.members = slices.Delete(p.members, i, i+1)
	}
	gone := len(p.members) == 0
	if gone {
		delete(r.people, p.key)
		if notice == "" {
			notice = m.name + " left" + reason.noticeSuffix()
		}
		if !r.closed {
			r.announceLocked(false, m.name, notice)
		}
	}
	online, sessions := len(r.people), len(p.members)
	r.mu.Unlock()

	r.cfg.Metrics.Left(m.opts.Transport, reason)
	r.log.Info("leave", "user", m.name, "transport", m.opts.Transport, "remote", m.opts.Remote, "reason", reason.String(), "sessions_left", sessions, "online", online)
	return true
}

// lookup returns who is online as name (any case), or nil.
func (r *Room) lookup(name string) *person {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.people[chat.Fold(name)]
}

// watchWrites disconnects members whose current write has been blocked longer than WriteTimeout
// (a client that stopped reading must not hold its writer, and its queued lines, forever), and
// members that sent nothing for the idle timeout.
func (r *Room) watchWrites() {
	defer r.janitor.Done()
	period := min(r.cfg.WriteTimeout/4, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var stalled, idle []*Member
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		deadline := time.Now().Add(-r.cfg.WriteTimeout).UnixNano()
		idleSince := r.cfg.Now().Add(-r.cfg.IdleTimeout).UnixNano()
		stalled, idle = stalled[:0], idle[:0]
		r.mu.Lock()
		for _, m := range r.members {
			if started := m.writeStarted.Load(); started != 0 && started < deadline {
				stalled = append(stalled, m)
			} else if r.cfg.IdleTimeout > 0 && m.lastInput.Load() < idleSince {
				idle = append(idle, m)
			}
		}
		r.mu.Unlock()
		for _, m := range stalled {
			m.kill(ReasonStalled)
		}
		for _, m := range idle {
			m.reply(kindError, "you sent nothing for "+r.cfg.IdleTimeout.String()+"; goodbye")
			r.remove(m, ReasonIdle)
			m.closeOutbox(ReasonIdle)
			m.closeWhenDrained()
		}
	}
}

// Shutdown tells every member the server is going down, gives their writers until ctx expires to
// deliver that, then disconnects everyone. Later joins fail with ErrClosed. It is idempotent:
// every call returns once the first has finished.
func (r *Room) Shutdown(ctx context.Context) error {
	var err error
	r.shutdown.Do(func() {
		err = r.shutdownOnce(ctx)
		close(r.done)
	})
	<-r.done
	return err
}

func (r *Room) shutdownOnce(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	members := slices.Clone(r.members)
	if r.notices.timer != nil {
		r.notices.timer.Stop()
		r.notices.timer = nil
	}
	r.mu.Unlock()
	close(r.stop)
	r.janitor.Wait()

	bye := newEvent(kindNotice, r.now(), "", "", "server is shutting down, goodbye")
	for _, m := range members {
		m.enqueue(bye)
		m.closeOutbox(ReasonShutdown)
	}
	for _, m := range members {
		select {
		case <-m.drained:
		case <-ctx.Done():
		}
	}
	for _, m := range members {
		r.remove(m, ReasonShutdown)
		m.finish(true)
	}
	flushed := make(chan struct{})
	go func() { r.flushers.Wait(); close(flushed) }()
	select {
	case <-flushed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("room shutdown: %w", ctx.Err())
	}
}

func (r *Room) getBuffer() *[]byte {
	if b, ok := r.buffers.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func (r *Room) putBuffer(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // a rare huge batch: let it go rather than pin it in the pool
	}
	*b = (*b)[:0]
	r.buffers.Put(b)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
