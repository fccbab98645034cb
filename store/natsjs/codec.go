package natsjs

import (
	"encoding/base64"
	"strings"
	"time"

	"chatd/chat"
)

// nameToken turns a folded name, or a room name without its '#', into a key-value key or a
// subject token. Both are made of a-z 0-9 _ . - (chat.ValidateName, chat.ParseRoom), and '.'
// separates tokens in NATS (a name may even end with one, or hold two in a row), so '.' becomes
// '=', which neither ever contains: the mapping is one to one.
func nameToken(folded string) string { return strings.ReplaceAll(folded, ".", "=") }

// roomToken is the token of a room name as chat.ParseRoom returns it ("#go.dev": "go=dev").
func roomToken(room string) string { return nameToken(strings.TrimPrefix(room, "#")) }

// maxFingerprintLen bounds the fingerprints the store keeps and looks up: an SSH key's is 50
// bytes ("SHA256:" and 43 of base64); anything far longer is nobody's.
const maxFingerprintLen = 256

// fingerprintKey is the key of a key fingerprint in the key index: base64url, since a
// fingerprint holds ':', '+' and '/', which keys may not.
func fingerprintKey(fp string) string { return base64.RawURLEncoding.EncodeToString([]byte(fp)) }

// settingKey is the key of a run-time setting: itself when it is made of A-Z a-z 0-9 _ - (as
// chatd's are: "motd"), otherwise '=' and its base64url, which no plain key starts with.
func settingKey(key string) string {
	plain := key != ""
	for i := 0; i < len(key) && plain; i++ {
		c := key[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if plain {
		return key
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(key))
}

// maxSettingKeyLen bounds a setting's key (its encoded form must fit in a subject).
const maxSettingKeyLen = 256

// ms is t in Unix milliseconds, or 0 for the zero time. Times are kept to the millisecond, as in
// store/sqlite.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is a stored time as the store returns it: local time, to the millisecond; zero for 0.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// floorMilli is t in Unix ms, rounded down as Time.Truncate rounds (UnixMilli rounds towards
// zero: up, before 1970).
func floorMilli(t time.Time) int64 {
	v := t.UnixMilli()
	if time.UnixMilli(v).After(t) {
		v--
	}
	return v
}

// keyRec is a key as an identity record keeps it.
type keyRec struct {
	FP      string `json:"fp"`
	Type    string `json:"type,omitempty"`
	AK      string `json:"ak,omitempty"`
	Added   int64  `json:"added"`
	Expires int64  `json:"expires,omitempty"` // pending keys only
}

func (k keyRec) key() chat.Key {
	return chat.Key{Fingerprint: k.FP, Type: k.Type, AuthorizedKey: k.AK, Added: fromMS(k.Added), Expires: fromMS(k.Expires)}
}

// identityRec is an identity, in bucket identities under its name's token: its active keys and
// its pending ones, so that one compare-and-set covers the cap on a name's keys.
type identityRec struct {
	Name    string   `json:"name"`
	Created int64    `json:"created"`
	Keys    []keyRec `json:"keys"`
	Pending []keyRec `json:"pending,omitempty"`
}

// keyIndexRec is what bucket keys holds for a fingerprint: the names it may be an active key of.
// An entry is put before the identity is written, so that the cap on a key's names holds
// between concurrent claims; it counts while the identity has the key active, or while it is
// younger than reserveFor (a claim in progress), and is dropped otherwise.
type keyIndexRec struct {
	Names []keyIndexEntry `json:"names"`
}

type keyIndexEntry struct {
	Name string `json:"n"`  // display form
	At   int64  `json:"at"` // when it was put, Unix ms
}

// reserveFor is how long an index entry counts without the identity that should follow it:
// far longer than a claim takes, short enough that a crashed node's reservation soon frees
// its slot.
const reserveFor = time.Minute

// roomRec is a room, in bucket rooms under its token.
type roomRec struct {
	Name    string   `json:"name"`
	Owner   string   `json:"owner,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	Private bool     `json:"private,omitempty"`
	Created int64    `json:"created"`
	Invited []string `json:"invited,omitempty"`
	// Gen tells this room from an earlier room of the same name: 0 in the record Create
	// writes, meaning that record's own revision, and that revision from then on. Lines carry
	// it, and memberships record it, so that nothing of a deleted room passes to its successor.
	Gen uint64 `json:"gen,omitempty"`
	// From is the last stream sequence of the room's subject when it was created: its
	// history is what comes after.
	From uint64 `json:"from,omitempty"`
}

// membersRec is the rooms a registered person is in, in bucket members under their name's
// token: each room with its generation, so that a membership of a room deleted since (and
// perhaps made again) is no longer one.
type membersRec struct {
	Rooms map[string]uint64 `json:"rooms"`
}

// line is a room's line as it is published on its subject, and read back.
type line struct {
	Gen  uint64 `json:"g,omitempty"` // the room's generation; 0: whichever is current
	Kind uint8  `json:"k"`
	From string `json:"f,omitempty"`
	Text string `json:"t"`
	At   int64  `json:"at,omitempty"` // Unix ms; 0: the stream's time stamp
}

// dmRec is a private message waiting, in its recipient's dmsRec.
type dmRec struct {
	ID   int64  `json:"id"`
	At   int64  `json:"at"`
	From string `json:"from"`
	Addr string `json:"addr,omitempty"`
	To   string `json:"to"`
	Text string `json:"text"`
}

func (d dmRec) dm() chat.DM {
	return chat.DM{ID: d.ID, At: fromMS(d.At), From: d.From, FromAddr: d.Addr, To: d.To, Text: d.Text}
}

// dmsRec is a recipient's queue, in bucket dms under their name's token: one record, so that
// one compare-and-set covers the caps and taking the queue.
type dmsRec struct {
	DMs []dmRec `json:"dms"`
}

// banRec is a ban, in bucket bans under its ID.
type banRec struct {
	ID      int64  `json:"id"`
	Kind    string `json:"kind"`
	Value   string `json:"value"`
	Reason  string `json:"reason,omitempty"`
	By      string `json:"by,omitempty"`
	Created int64  `json:"created"`
	Expires int64  `json:"expires,omitempty"`
}

func (b banRec) ban() chat.Ban {
	return chat.Ban{ID: b.ID, Kind: chat.BanKind(b.Kind), Value: b.Value, Reason: b.Reason, By: b.By,
		Created: fromMS(b.Created), Expires: fromMS(b.Expires)}
}

// tokenRec is a web token, in its name's tokensRec.
type tokenRec struct {
	ID      int64  `json:"id"`
	Kind    string `json:"kind"`
	Hash    string `json:"hash"`
	Name    string `json:"name"`
	Label   string `json:"label,omitempty"`
	Created int64  `json:"created"`
	Expires int64  `json:"expires,omitempty"`
}

func (t tokenRec) token() chat.WebToken {
	return chat.WebToken{ID: t.ID, Kind: chat.WebTokenKind(t.Kind), Hash: t.Hash, Name: t.Name, Label: t.Label,
		Created: fromMS(t.Created), Expires: fromMS(t.Expires)}
}

// live reports whether t has not expired at now (Unix ms).
func (t tokenRec) live(now int64) bool { return t.Expires == 0 || t.Expires > now }

// tokensRec is a name's web tokens, in bucket tokens under "n." and the name's token: one
// record, so that one compare-and-set covers the cap, a take and a revocation. The bucket also
// maps each hash to its name ("h." and the hash), which refuses a hash stored already.
type tokensRec struct {
	Tokens []tokenRec `json:"tokens"`
}

// hashRec is what a hash maps to.
type hashRec struct {
	Name string `json:"name"` // folded
}
