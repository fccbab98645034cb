package chat

import "time"

// WebTokenKind says what a web token opens.
type WebTokenKind string

const (
	// WebLink is a one-time sign-in link made by /weblogin: it is used once, within minutes, and
	// opens a WebSession.
	WebLink WebTokenKind = "link"
	// WebSession is a browser's signed-in session, held in a cookie.
	WebSession WebTokenKind = "session"
	// WebBot is a bot's token, made by its registered owner, for the WebSocket protocol.
	WebBot WebTokenKind = "bot"
)

// WebToken is a secret that signs a browser or a bot in as a registered name. Only a hash of the
// secret is ever stored: whoever reads the store cannot sign in with it.
type WebToken struct {
	ID      int64 // assigned by the store; 0 before it is stored
	Kind    WebTokenKind
	Hash    string // hex SHA-256 of the secret
	Name    string // the registered name it signs in as
	Label   string // what it is to its owner: a browser's user agent, a bot's name (sanitised, short)
	Created time.Time
	Expires time.Time // zero: never
}

// HistoryRange selects part of a room's history by time; both bounds are exclusive and a zero
// bound is open. With After set, the oldest Limit messages after it are returned (catching up
// from a point); otherwise the newest Limit before Before (scrolling back).
type HistoryRange struct {
	Before, After time.Time
	Limit         int
}
