package natsjs

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"chatd/chat"

	"github.com/nats-io/nats.go"
)

// Config holds the store's settings. The zero value of each field means its default, except
// where a field says otherwise; either Conn or URLs is required.
type Config struct {
	// Conn is a connection to use, shared with its owner (the relay, a test): Close leaves it
	// open. When it is set, URLs, CredsFile, CAFile and Name are not used.
	Conn *nats.Conn
	// URLs are the NATS servers to connect to ("nats://n1:4222", "tls://n2:4222"); the client
	// picks one and fails over to the others.
	URLs []string
	// CredsFile is a NATS credentials file (JWT and NKey seed), for servers that ask for one.
	CredsFile string
	// CAFile is a PEM file of the certificate authorities that sign the servers' certificates,
	// for tls:// URLs whose servers the system's roots do not vouch for.
	CAFile string
	// Name names the connection in the servers' monitoring (chatd passes its node's name).
	// Default "chatd".
	Name string

	// Replicas is how many NATS servers keep a copy of every stream and bucket: 1, or 3 (or 5)
	// on a NATS cluster of at least as many servers. Default 1. Changing it on existing
	// streams changes their replica count.
	Replicas int
	// Prefix starts the name of every stream, bucket and subject the store uses ("chatd":
	// stream chatd_rooms, bucket chatd_identities, subjects chatd.room.*.msg), so that several
	// chat servers can share one NATS account. 1-32 of A-Z a-z 0-9 _ -. Default "chatd".
	Prefix string
	// Timeout bounds every call to NATS: connecting, a key-value read or write, a history read.
	// Default 5s.
	Timeout time.Duration

	// MaxBacklog is how many appended messages may wait to be published; beyond it Append drops
	// (and logs, and the next Flush reports) rather than hold the room up or grow without end
	// while NATS is slow or gone. Default 10 000: at most about 12 MB of lines, a few seconds of
	// a busy server's traffic.
	MaxBacklog int
	// MaxInFlight is how many messages may be published and not acknowledged yet. Default 1000.
	MaxInFlight int

	// StoreLimits are the caps on what people can make the store hold, as store/sqlite's.
	chat.StoreLimits

	// KeepMessages is how many of its newest messages each room keeps (the stream's limit per
	// subject); KeepFor is how long a message is kept (the stream's age limit). As in
	// store/sqlite, 0 is no limit, not the default: DefaultConfig has the defaults.
	KeepMessages int
	KeepFor      time.Duration

	// Now is the clock, for Identity.Created, Key.Added, expiries and zero timestamps. Default
	// time.Now.
	Now func() time.Time
}

const (
	// DefaultKeepMessages and DefaultKeepFor are store/sqlite's: a year of a lively room, or the
	// last 100 000 lines of a busy one.
	DefaultKeepMessages = 100_000
	DefaultKeepFor      = 365 * 24 * time.Hour
)

// DefaultConfig returns the defaults; URLs and Conn are left empty.
func DefaultConfig() Config {
	return Config{
		Name:         "chatd",
		Replicas:     1,
		Prefix:       "chatd",
		Timeout:      5 * time.Second,
		MaxBacklog:   10_000,
		MaxInFlight:  1000,
		StoreLimits:  chat.DefaultStoreLimits(),
		KeepMessages: DefaultKeepMessages,
		KeepFor:      DefaultKeepFor,
		Now:          time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.Name, d.Name)
	orDefault(&c.Replicas, d.Replicas)
	orDefault(&c.Prefix, d.Prefix)
	orDefault(&c.Timeout, d.Timeout)
	orDefault(&c.MaxBacklog, d.MaxBacklog)
	orDefault(&c.MaxInFlight, d.MaxInFlight)
	c.StoreLimits = c.StoreLimits.WithDefaults()
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// maxReplicas is JetStream's own limit.
const maxReplicas = 5

// minKeepFor is the shortest age limit of the history: well beyond ackedFresh.
const minKeepFor = time.Minute

// Validate reports the first invalid setting. Zero values are valid (they mean the default),
// except that one of Conn and URLs is required.
func (c Config) Validate() error {
	switch {
	case c.Conn == nil && len(c.URLs) == 0:
		return errors.New("nats store: no NATS server URL")
	case c.Replicas < 0 || c.Replicas > maxReplicas:
		return fmt.Errorf("nats store: replicas %d out of range (1-%d)", c.Replicas, maxReplicas)
	case c.Prefix != "" && !validPrefix(c.Prefix):
		return fmt.Errorf("nats store: prefix %q: want 1-32 of A-Z a-z 0-9 _ -", c.Prefix)
	case c.Timeout < 0:
		return fmt.Errorf("nats store: timeout %v is negative", c.Timeout)
	case c.MaxBacklog < 0 || c.MaxInFlight < 0:
		return fmt.Errorf("nats store: max backlog (%d) or max in flight (%d) is negative", c.MaxBacklog, c.MaxInFlight)
	case c.StoreLimits.Validate() != nil:
		return fmt.Errorf("nats store: %w", c.StoreLimits.Validate())
	case c.KeepMessages < 0:
		return fmt.Errorf("nats store: keep messages %d is negative (0 keeps them all)", c.KeepMessages)
	case c.KeepFor < 0:
		return fmt.Errorf("nats store: keep for %v is negative (0 keeps messages for ever)", c.KeepFor)
	case c.KeepFor > 0 && c.KeepFor < minKeepFor:
		// A read waits a moment for a replica to have the line it was told was stored; a
		// line must outlive that moment.
		return fmt.Errorf("nats store: keep for %v: at least %v", c.KeepFor, minKeepFor)
	}
	if c.Conn == nil {
		for _, u := range c.URLs {
			if u == "" || strings.ContainsAny(u, ", \t") {
				return fmt.Errorf("nats store: bad URL %q (one URL per entry)", u)
			}
		}
		for what, path := range map[string]string{"creds file": c.CredsFile, "CA file": c.CAFile} {
			if path == "" {
				continue
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("nats store: %s: %w", what, err)
			}
		}
	}
	return nil
}

// ParseURLs splits a list of server URLs as operators write it ("nats://a:4222,nats://b:4222",
// CHAT_NATS), dropping empty entries.
func ParseURLs(s string) []string {
	var urls []string
	for u := range strings.SplitSeq(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// RedactURL is a server's URL as messages and logs may show it: a password in it
// (nats://user:secret@host) hidden; in a URL that does not parse, everything before its '@'.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			return "..." + s[i:]
		}
		return s
	case u.User == nil:
		return s
	}
	return u.Redacted()
}

// RedactURLs is RedactURL on a list, joined with commas as operators write it.
func RedactURLs(urls []string) string {
	shown := make([]string, len(urls))
	for i, u := range urls {
		shown[i] = RedactURL(u)
	}
	return strings.Join(shown, ",")
}

// validPrefix reports whether p can start stream, bucket and subject names.
func validPrefix(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
