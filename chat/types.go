package chat

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind says how a public message is shown.
type Kind uint8

const (
	KindMessage Kind = 1 // "alice: text"
	KindAction  Kind = 2 // "** alice waves"
)

// Message is one public message or action.
type Message struct {
	ID   int64     // assigned by the store, increasing; 0 before it is stored
	At   time.Time // server time, stored with millisecond precision (UTC in the db, returned as time.Local)
	Kind Kind
	Room string // the room it was said in, as ParseRoom returns it
	From string // sender's display name
	Text string
}

// Key is one SSH public key that may log in as an identity.
type Key struct {
	Fingerprint   string // "SHA256:..." exactly as ssh-keygen -l prints it (x/crypto ssh.FingerprintSHA256)
	Type          string // "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", ...
	AuthorizedKey string // authorized_keys form without comment: "ssh-ed25519 AAAA..."
	Added         time.Time
	// Expires is when a pending key (a store's ProposeKey) lapses unless confirmed; zero for an active
	// key.
	Expires time.Time
}

// Identity is a claimed name and the keys that own it.
type Identity struct {
	Name    string // display form, as first claimed ("Alice"); lookups are case-insensitive (ASCII fold)
	Created time.Time
	Keys    []Key // the active keys, which may log in as Name: oldest first; at least one
	// Pending are keys proposed for Name (a store's ProposeKey) that have not logged in yet, and have not
	// expired: oldest first. They are not Name's keys until ConfirmKey makes them so.
	Pending []Key
}

// DM is a private message waiting for its recipient.
type DM struct {
	ID       int64
	At       time.Time
	From     string // sender display name
	FromAddr string // sender's address ("192.0.2.7", "2001:db8::/64"), for the per-address cap; may be empty
	To       string // recipient display name
	Text     string
}

var (
	// ErrNotFound: no such identity, or no such key.
	ErrNotFound = errors.New("not found")
	// ErrLastKey: refusing to remove an identity's only key.
	ErrLastKey = errors.New("refusing to remove the only key")
	// ErrKeyExists: the key is already one of the identity's keys.
	ErrKeyExists = errors.New("key already added")
	// ErrQueueFull: the recipient already has MaxQueuedDMs private messages waiting.
	ErrQueueFull = errors.New("too many queued private messages")
	// ErrSenderQueueFull: the sender already has MaxQueuedDMsPerSender messages waiting for the
	// recipient.
	ErrSenderQueueFull = errors.New("too many queued private messages from this sender")
	// ErrAddrQueueFull: the sender's address already has MaxQueuedDMsPerAddr messages waiting
	// for the recipient.
	ErrAddrQueueFull = errors.New("too many queued private messages from this address")
	// ErrNameLimit: the key already holds MaxNamesPerKey names.
	ErrNameLimit = errors.New("key holds too many names")
	// ErrKeyLimit: the name already has MaxKeysPerName keys, active and pending.
	ErrKeyLimit = errors.New("name has too many keys")
	// ErrWebTokenLimit: the name already has MaxWebTokensPerName unexpired web tokens (browser
	// sessions, bot tokens and sign-in links together).
	ErrWebTokenLimit = errors.New("too many web sessions")
)

// LimitError is the error of a write refused by a cap; it unwraps to the cap's sentinel
// (ErrNameLimit, ErrKeyLimit, ErrQueueFull, ErrSenderQueueFull, ErrAddrQueueFull,
// ErrWebTokenLimit).
type LimitError struct {
	Err   error
	Max   int      // the cap
	Names []string // for ErrNameLimit: the names the key holds
}

func (e *LimitError) Error() string {
	if len(e.Names) > 0 {
		return fmt.Sprintf("%v (at most %d: %s)", e.Err, e.Max, strings.Join(e.Names, ", "))
	}
	return fmt.Sprintf("%v (at most %d)", e.Err, e.Max)
}

func (e *LimitError) Unwrap() error { return e.Err }

// BanKind is what a ban matches.
type BanKind string

const (
	BanName BanKind = "name" // a name, case-insensitively
	BanKey  BanKind = "key"  // a key fingerprint, "SHA256:..."
	BanIP   BanKind = "ip"   // an address range in CIDR form, "192.0.2.7/32"
)

// Ban keeps someone out: by name, by key or by address, until Expires (zero: for ever).
type Ban struct {
	ID      int64
	Kind    BanKind
	Value   string
	Reason  string
	By      string // the operator who set it
	Created time.Time
	Expires time.Time
}

// Active reports whether the ban still holds at t.
func (b Ban) Active(t time.Time) bool { return b.Expires.IsZero() || t.Before(b.Expires) }
