package room

import (
	"fmt"
	"strings"
	"time"

	"chatd/chat"
)

// Config holds the hub's settings. One rule for every field: its zero value means its default,
// and for a limit or a feature, a negative value switches it off.
type Config struct {
	// Name is what the server calls itself in the welcome line. Default "chatd".
	Name string
	// DefaultRoom is where everyone starts, and where someone who leaves their last room goes.
	// Default "#lobby".
	DefaultRoom string
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
	// Store keeps identities, rooms, history, queued private messages, bans and settings. Nil:
	// everything in memory, for as long as the process lives.
	Store Store
	// Relay carries the rooms' lines between the nodes of a cluster. Nil: this process is the
	// only node (LocalRelay).
	Relay Relay
	// Cluster tells the other nodes of a cluster who is online here and what operators change,
	// and hears the same from them. Nil: this process is the only node.
	Cluster Cluster
	// HistoryOnJoin is how many earlier messages of a room someone joining it is shown. Default
	// 20; negative: none. At most HistorySize.
	HistoryOnJoin int
	// ParseKey reads an authorized_keys line for /keys add; nil disables /keys add. The room knows
	// no SSH: the SSH layer provides it.
	ParseKey func(line string) (chat.Key, error)
	// MsgRate is how many lines a second a person may send, MsgBurst how many at once; lines over
	// the rate are delayed. Default 2 a second, 10 at once; a negative MsgRate: no limit.
	MsgRate  float64
	MsgBurst int
	// IdleTimeout disconnects a session that sends nothing for this long. Default (and negative):
	// never.
	IdleTimeout time.Duration
	// Motd is the message of the day shown on joining, until an operator sets another (/motd).
	Motd string
	// Metrics receives counts and timings; nil for none. Package metrics implements it.
	Metrics Metrics
	// NoticeBurst is how many join and leave notices a second a room sends one by one; past it
	// they are gathered and sent once a second as one line. Default 10; negative: never gathered.
	NoticeBurst int
	// MaxRooms is how many rooms the server may have. Default 1000; negative: no limit.
	MaxRooms int
	// MaxRoomsPerPerson is how many rooms one person may be in at once. Default 50; negative: no
	// limit.
	MaxRoomsPerPerson int
	// RoomsPerHour is how many rooms one person, and one address, may create in an hour. Default
	// 10; negative: no limit.
	RoomsPerHour int
	// PublicURL is where people reach the web page, for the links /weblogin makes. Default
	// "http://localhost:8080".
	PublicURL string
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

// HistorySize is the most earlier messages of a room anyone can ask for at once.
const HistorySize = 1000

// DefaultConfig returns the defaults, as the zero Config means them.
func DefaultConfig() Config {
	return Config{
		Name:              "chatd",
		DefaultRoom:       "#lobby",
		MaxMessageBytes:   1000,
		OutboxSize:        1024,
		WriteTimeout:      10 * time.Second,
		DrainTimeout:      2 * time.Second,
		WriteGap:          10 * time.Millisecond,
		Now:               time.Now,
		Location:          time.Local,
		HistoryOnJoin:     20,
		MsgRate:           2,
		MsgBurst:          10,
		NoticeBurst:       10,
		MaxRooms:          1000,
		MaxRoomsPerPerson: 50,
		RoomsPerHour:      10,
		PublicURL:         "http://localhost:8080",
	}
}

// withDefaults fills in every zero field with its default. Switched-off features stay negative
// (checked as "< 0" or "<= 0" where they are used).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.Name, d.Name)
	orDefault(&c.DefaultRoom, d.DefaultRoom)
	orDefault(&c.MaxMessageBytes, d.MaxMessageBytes)
	orDefault(&c.OutboxSize, d.OutboxSize)
	orDefault(&c.HistoryOnJoin, d.HistoryOnJoin)
	orDefault(&c.MsgBurst, d.MsgBurst)
	orDefault(&c.NoticeBurst, d.NoticeBurst)
	orDefault(&c.MaxRooms, d.MaxRooms)
	orDefault(&c.MaxRoomsPerPerson, d.MaxRoomsPerPerson)
	orDefault(&c.RoomsPerHour, d.RoomsPerHour)
	orDefault(&c.PublicURL, d.PublicURL)
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	orDefault(&c.WriteTimeout, d.WriteTimeout)
	orDefault(&c.DrainTimeout, d.DrainTimeout)
	orDefault(&c.WriteGap, d.WriteGap)
	orDefault(&c.MsgRate, d.MsgRate)
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Location == nil {
		c.Location = d.Location
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	return c
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if _, err := chat.ParseRoom(c.DefaultRoom); err != nil {
		return fmt.Errorf("default room: %w", err)
	}
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
	case !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://"):
		return fmt.Errorf("public url must start with http:// or https://, got %q", c.PublicURL)
	case c.MsgRate > 0 && c.MsgBurst < 1:
		return fmt.Errorf("message burst must be at least 1 with a rate, got %d", c.MsgBurst)
	}
	return nil
}

// MaxLineBytes is the longest input line a transport should read before discarding it as too
// long: well above the message limit, so that a long message gets the precise "message too long"
// answer, and bounded so that reading a line costs bounded memory.
func (c Config) MaxLineBytes() int { return 4*c.MaxMessageBytes + 64 }

// historyOnJoin is how many earlier messages a join replays: none when switched off.
func (c Config) historyOnJoin() int { return max(c.HistoryOnJoin, 0) }

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
