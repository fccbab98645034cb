package natsjs

// Importing a single-node database (chatd migrate): records written as they are, with their own
// times, where the store's methods would make them anew (a claim is dated now, a line appended
// is queued and may be dropped, a ban refused as a duplicate nowhere).
//
// Idempotence. Each record is first looked for in the cluster, by what it is rather than by its
// ID (which the cluster gives anew to bans, private messages and web tokens): an identity with
// the same key, a room created at the same millisecond, a ban or private message with the same
// content, a web token with the same hash. Once written (or found), a record is noted in bucket
// <prefix>_migrated, keyed by that content, so that a later run copies nothing that the
// cluster has since changed on purpose: a ban lifted, a message delivered, a token revoked, a
// room deleted stay so. A conflict (a name claimed in the cluster by another key, a room made
// there with its own settings or history) is never noted: the next run says it again.
//
// History. A room's lines are published in order on its subject, each with its time ("at") and
// a header, Chatd-Migrated-Id, naming its ID in the database, so that the room's newest line
// says how far an interrupted copy got. Lines are published many at a time, and each but the
// first of a run expects the stream's last message to be the line before it (JetStream's
// Nats-Expected-Last-Msg-Id), the first that the room's subject ends where it was read
// (Nats-Expected-Last-Subject-Sequence): a line that is not stored makes every later one fail,
// so a room's copy is always a prefix of its history, never one with a hole, and a line written
// meanwhile by anyone else stops the copy rather than interleave with it. The copy then reads
// where the room stands and goes on from there.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"chatd/chat"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Outcome is what an import did with one record.
type Outcome int

const (
	// Copied: the record was written to the cluster.
	Copied Outcome = iota + 1
	// Present: the cluster has it already, copied by an earlier run or the same record made
	// otherwise; nothing was written.
	Present
	// Gone: an earlier run copied it, and the cluster has deleted it since (a room): it is
	// left deleted.
	Gone
	// Conflict: the cluster has something else under its name; it was left as it is and
	// nothing was written.
	Conflict
)

func (o Outcome) String() string {
	switch o {
	case Copied:
		return "copied"
	case Present:
		return "already there"
	case Gone:
		return "deleted since"
	case Conflict:
		return "conflict"
	}
	return strconv.Itoa(int(o))
}

// Result is an import's outcome, and what is worth saying about it: why a conflict is one, or
// how a record was fitted in.
type Result struct {
	Outcome Outcome
	Note    string
}

// MigratedHeader names, on a line copied by Importer.History, its message ID in the database it
// was copied from.
const MigratedHeader = "Chatd-Migrated-Id"

// Importer writes a single-node database's records into the store (see the top of import.go).
// Its methods are for one goroutine; they may be called again for the same records, by this
// process or a later one, and copy each once.
type Importer struct {
	s      *Store
	ledger jetstream.KeyValue
	// bans are the content keys of the cluster's bans, read at the first Ban.
	bans map[string]bool
}

// Importer makes the bucket of what has been copied (<prefix>_migrated) and returns an
// importer into s.
func (s *Store) Importer(ctx context.Context) (*Importer, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("importer: %w", errClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, 4*s.cfg.Timeout)
	defer cancel()
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       s.cfg.Prefix + "_migrated",
		Description:  "chatd migrate: the records copied from single-node databases",
		Storage:      jetstream.FileStorage,
		Replicas:     s.cfg.Replicas,
		MaxValueSize: 1024,
	})
	if err != nil {
		return nil, fmt.Errorf("importer: bucket %s_migrated: %w", s.cfg.Prefix, err)
	}
	return &Importer{s: s, ledger: kv}, nil
}

// Readers returns how many consumers read the stream of rooms: each running chatd node has one
// (its relay). Lines copied while a node reads would reach its rooms as if said now, and a
// node reads rooms and bans at start only: copy with the nodes stopped.
func (im *Importer) Readers(ctx context.Context) (int, error) {
	ctx, cancel := im.call(ctx)
	defer cancel()
	info, err := im.s.rooms.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", im.s.streamName, err)
	}
	return info.State.Consumers, nil
}

// call is a context for one record's import: the store's timeout, and done at Close.
func (im *Importer) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, im.s.cfg.Timeout)
	stop := context.AfterFunc(im.s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// ledgerRec is what bucket migrated holds for a record copied.
type ledgerRec struct {
	At   int64  `json:"at"`             // when it was noted, Unix ms
	Gen  uint64 `json:"gen,omitempty"`  // a room: the generation it was copied into
	Last int64  `json:"last,omitempty"` // a room's history: the database ID of the last line copied
}

func (im *Importer) noted(ctx context.Context, key string) (ledgerRec, bool, error) {
	rec, _, ok, err := getJSON[ledgerRec](ctx, im.ledger, key)
	return rec, ok, err
}

func (im *Importer) note(ctx context.Context, key string, rec ledgerRec) error {
	rec.At = im.s.now()
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := im.ledger.Put(ctx, key, data); err != nil {
		return fmt.Errorf("note %s as copied: %w", key, err)
	}
	return nil
}

// contentKey is a ledger key for a record known by its content: kind and a digest of fields.
func contentKey(kind string, fields ...any) string {
	data, _ := json.Marshal(fields) // strings and numbers only
	sum := sha256.Sum256(data)
	return kind + "." + hex.EncodeToString(sum[:16])
}

// roomKey is the part of a ledger key naming a room of the database: its name and creation.
func roomKey(name string, created time.Time) string {
	return roomToken(name) + "." + strconv.FormatInt(ms(created), 10)
}

// Identity copies id (its name, creation, active keys with their dates, and pending keys that
// have not lapsed). A name the cluster has with one of the same active keys (or the same
// creation) is Present; with none, a Conflict: the cluster's owner keeps it.
func (im *Importer) Identity(ctx context.Context, id chat.Identity) (Result, error) {
	s := im.s
	if !chat.ValidName(id.Name) {
		return Result{}, fmt.Errorf("import identity: invalid name %q", id.Name)
	}
	if len(id.Keys) == 0 {
		return Result{}, fmt.Errorf("import identity %s: no active key", id.Name)
	}
	for _, k := range append(slices.Clone(id.Keys), id.Pending...) {
		if k.Fingerprint == "" || len(k.Fingerprint) > maxFingerprintLen {
			return Result{}, fmt.Errorf("import identity %s: a key without a fingerprint", id.Name)
		}
	}
	ctx, cancel := im.call(ctx)
	defer cancel()
	tok := nameToken(chat.Fold(id.Name))
	lkey := "identity." + tok + "." + strconv.FormatInt(ms(id.Created), 10)
	if _, ok, err := im.noted(ctx, lkey); err != nil || ok {
		return Result{Outcome: Present}, wrap("import identity", err)
	}
	now := s.now()
	rec := identityRec{Name: id.Name, Created: ms(id.Created)}
	if rec.Created == 0 {
		rec.Created = now
	}
	for _, k := range id.Keys {
		rec.Keys = append(rec.Keys, keyRec{FP: k.Fingerprint, Type: k.Type, AK: k.AuthorizedKey, Added: cmpOr(ms(k.Added), now)})
	}
	for _, k := range id.Pending {
		if e := ms(k.Expires); e > now && !rec.active(k.Fingerprint) {
			rec.Pending = append(rec.Pending, keyRec{FP: k.Fingerprint, Type: k.Type, AK: k.AuthorizedKey, Added: cmpOr(ms(k.Added), now), Expires: e})
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return Result{}, fmt.Errorf("import identity %s: %w", id.Name, err)
	}
	for attempt := 0; ; attempt++ {
		cur, _, found, err := getJSON[identityRec](ctx, s.identities, tok)
		if err != nil {
			return Result{}, fmt.Errorf("import identity %s: %w", id.Name, err)
		}
		if found {
			if cur.Created != rec.Created && !slices.ContainsFunc(rec.Keys, func(k keyRec) bool { return cur.active(k.FP) }) {
				return Result{Outcome: Conflict, Note: "claimed in the cluster by another key: the cluster's owner keeps it"}, nil
			}
			return Result{Outcome: Present}, wrap("import identity", im.note(ctx, lkey, ledgerRec{}))
		}
		// The key index first, as Claim does, so that the cap on a key's names holds.
		var reserved []string
		unreserve := func() {
			for _, fp := range reserved {
				s.unreserve(ctx, fp, id.Name)
			}
		}
		for _, k := range rec.Keys {
			added, err := s.reserve(ctx, k.FP, id.Name)
			if err != nil {
				unreserve()
				if le := (*chat.LimitError)(nil); errors.As(err, &le) {
					return Result{Outcome: Conflict, Note: fmt.Sprintf("its key %s is an active key of %d names in the cluster already, the most a key may have", k.FP, le.Max)}, nil
				}
				return Result{}, fmt.Errorf("import identity %s: %w", id.Name, err)
			}
			if added {
				reserved = append(reserved, k.FP)
			}
		}
		_, err = s.identities.Create(ctx, tok, data)
		if err == nil {
			return Result{Outcome: Copied}, wrap("import identity", im.note(ctx, lkey, ledgerRec{}))
		}
		unreserve()
		if !isConflict(err) {
			return Result{}, fmt.Errorf("import identity %s: %w", id.Name, err)
		}
		// Claimed a moment ago, on a node: look again.
		if err := backoff(ctx, attempt); err != nil {
			return Result{}, fmt.Errorf("import identity %s: %w", id.Name, err)
		}
	}
}

func cmpOr(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// Room copies r with its owner, topic, flag, creation and invitations. A room the cluster has
// with the same creation is Present; one that is empty (no owner, topic, flag, invitation or
// line: a node's default room, made at its first start) takes r's settings and is Copied; any
// other is a Conflict. A room copied before and deleted in the cluster since is Gone.
func (im *Importer) Room(ctx context.Context, r chat.Room) (Result, error) {
	s := im.s
	name, err := chat.ParseRoom(r.Name)
	if err != nil {
		return Result{}, fmt.Errorf("import room: %w", err)
	}
	if r.Owner != "" {
		if err := chat.ValidateName(r.Owner); err != nil {
			return Result{}, fmt.Errorf("import room %s: owner: %w", name, err)
		}
	}
	for _, n := range r.Invited {
		if err := chat.ValidateName(n); err != nil {
			return Result{}, fmt.Errorf("import room %s: invited: %w", name, err)
		}
	}
	ctx, cancel := im.call(ctx)
	defer cancel()
	lkey := "room." + roomKey(name, r.Created)
	if l, ok, err := im.noted(ctx, lkey); err != nil {
		return Result{}, fmt.Errorf("import room %s: %w", name, err)
	} else if ok {
		cur, found, err := im.currentRoom(ctx, name)
		if err != nil {
			return Result{}, fmt.Errorf("import room %s: %w", name, err)
		}
		if !found || cur.Gen != l.Gen {
			return Result{Outcome: Gone, Note: "copied before and deleted in the cluster since: left deleted"}, nil
		}
		return Result{Outcome: Present}, nil
	}
	created := ms(r.Created)
	if created == 0 {
		created = s.now()
	}
	var invited []string
	for _, n := range r.Invited {
		if !slices.ContainsFunc(invited, func(m string) bool { return chat.Fold(m) == chat.Fold(n) }) {
			invited = append(invited, n)
		}
	}
	subj := s.msgSubject(name)
	var res Result
	var rec roomRec
	var readRev uint64
	rev, err := modify(ctx, s.roomList, roomToken(name), func(cur *roomRec, rev uint64) (action, error) {
		readRev = rev
		last, err := s.lastSeq(ctx, subj)
		if err != nil {
			return keep, err
		}
		if rev == 0 {
			*cur = roomRec{Name: name, Owner: r.Owner, Topic: r.Topic, Private: r.Private, Created: created, Invited: invited, From: last}
			rec, res = *cur, Result{Outcome: Copied}
			return write, nil
		}
		if cur.Gen == 0 {
			cur.Gen = rev
		}
		rec = *cur
		switch {
		case cur.Created == created:
			res = Result{Outcome: Present}
			return keep, nil
		case cur.Owner == "" && cur.Topic == "" && !cur.Private && len(cur.Invited) == 0 && last <= cur.From:
			cur.Owner, cur.Topic, cur.Private, cur.Created, cur.Invited = r.Owner, r.Topic, r.Private, created, invited
			rec, res = *cur, Result{Outcome: Copied, Note: "the cluster's empty room of this name took its settings"}
			return write, nil
		}
		what := "its own settings"
		if last > cur.From {
			what = "its own history"
		}
		res = Result{Outcome: Conflict, Note: fmt.Sprintf("made in the cluster on %s, with %s: the cluster's kept, its history not copied",
			fromMS(cur.Created).Format("2006-01-02 15:04"), what)}
		return keep, nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("import room %s: %w", name, err)
	}
	if res.Outcome == Conflict {
		return res, nil
	}
	if rev == 0 {
		rev = readRev
	}
	if rec.Gen == 0 {
		rec.Gen = rev
	}
	s.cache.put(rec, rev)
	return res, wrap("import room "+name, im.note(ctx, lkey, ledgerRec{Gen: rec.Gen}))
}

// currentRoom reads room's record from the bucket (not the cache: another process may have
// deleted it).
func (im *Importer) currentRoom(ctx context.Context, room string) (roomRec, bool, error) {
	rec, rev, ok, err := im.s.storedRoom(ctx, room)
	if err != nil || !ok {
		return roomRec{}, false, err
	}
	im.s.cache.put(rec, rev)
	return rec, true, nil
}

// ourRoom returns the cluster's room that the database's room (name, created) was copied into,
// or false when it was not (yet), or has been deleted since.
func (im *Importer) ourRoom(ctx context.Context, name string, created time.Time) (roomRec, bool, error) {
	l, ok, err := im.noted(ctx, "room."+roomKey(name, created))
	if err != nil || !ok {
		return roomRec{}, false, err
	}
	rec, found, err := im.currentRoom(ctx, name)
	if err != nil || !found || rec.Gen != l.Gen {
		return roomRec{}, false, err
	}
	return rec, true, nil
}

// Membership copies that the registered name is in room (the database's room created at
// created, which Room must have copied). A name the cluster does not have is an error: import
// the identities first, and no membership of a name in conflict.
func (im *Importer) Membership(ctx context.Context, name, room string, created time.Time) (Result, error) {
	s := im.s
	rname, err := chat.ParseRoom(room)
	if err != nil {
		return Result{}, fmt.Errorf("import membership: %w", err)
	}
	if !chat.ValidName(name) {
		return Result{}, fmt.Errorf("import membership: invalid name %q", name)
	}
	ctx, cancel := im.call(ctx)
	defer cancel()
	tok := nameToken(chat.Fold(name))
	lkey := "member." + tok + "." + roomKey(rname, created)
	if _, ok, err := im.noted(ctx, lkey); err != nil || ok {
		return Result{Outcome: Present}, wrap("import membership", err)
	}
	if _, _, ok, err := getJSON[identityRec](ctx, s.identities, tok); err != nil || !ok {
		return Result{}, fmt.Errorf("import membership of %s in %s: %w", name, rname, cmpErr(err, "the name is not registered in the cluster"))
	}
	r, ok, err := im.ourRoom(ctx, rname, created)
	if err != nil {
		return Result{}, fmt.Errorf("import membership of %s in %s: %w", name, rname, err)
	}
	if !ok {
		return Result{Outcome: Gone, Note: "the room is not the one copied"}, nil
	}
	outcome := Present
	_, err = modify(ctx, s.members, tok, func(rec *membersRec, _ uint64) (action, error) {
		changed := s.pruneMemberships(rec)
		outcome = Present
		if rec.Rooms[rname] == r.Gen {
			return writeIf(changed), nil
		}
		if rec.Rooms == nil {
			rec.Rooms = map[string]uint64{}
		}
		rec.Rooms[rname] = r.Gen
		outcome = Copied
		return write, nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("import membership of %s in %s: %w", name, rname, err)
	}
	return Result{Outcome: outcome}, wrap("import membership", im.note(ctx, lkey, ledgerRec{}))
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// Ban copies b (its kind, value, reason, who banned and when, its expiry) under an ID of the
// cluster's. A ban the cluster has with the same content is Present.
func (im *Importer) Ban(ctx context.Context, b chat.Ban) (Result, error) {
	switch b.Kind {
	case chat.BanName, chat.BanKey, chat.BanIP:
	default:
		return Result{}, fmt.Errorf("import ban: unknown kind %q", b.Kind)
	}
	if b.Value == "" {
		return Result{}, errors.New("import ban: empty value")
	}
	key := contentKey("ban", string(b.Kind), b.Value, b.Reason, b.By, ms(b.Created), ms(b.Expires))
	cctx, cancel := im.call(ctx)
	defer cancel()
	if _, ok, err := im.noted(cctx, key); err != nil || ok {
		return Result{Outcome: Present}, wrap("import ban", err)
	}
	if im.bans == nil {
		bans, err := im.s.Bans()
		if err != nil {
			return Result{}, fmt.Errorf("import ban: %w", err)
		}
		im.bans = map[string]bool{}
		for _, c := range bans {
			im.bans[contentKey("ban", string(c.Kind), c.Value, c.Reason, c.By, ms(c.Created), ms(c.Expires))] = true
		}
	}
	outcome := Present
	if !im.bans[key] {
		if _, err := im.s.AddBan(b); err != nil { // AddBan keeps Created and Expires
			return Result{}, fmt.Errorf("import %w", err)
		}
		im.bans[key] = true
		outcome = Copied
	}
	return Result{Outcome: outcome}, wrap("import ban", im.note(cctx, key, ledgerRec{}))
}

// DM copies a private message waiting for dm.To, with its time, sender and sender's address,
// under an ID of the cluster's; the caps on a queue are not applied (it was within the
// database's). One waiting in the cluster with the same content is Present; one copied before
// and delivered since is not copied again.
func (im *Importer) DM(ctx context.Context, dm chat.DM) (Result, error) {
	s := im.s
	if !chat.ValidName(dm.To) {
		return Result{}, fmt.Errorf("import dm: invalid recipient %q", dm.To)
	}
	at := cmpOr(ms(dm.At), s.now())
	key := contentKey("dm", chat.Fold(dm.To), at, dm.From, dm.FromAddr, dm.Text)
	ctx, cancel := im.call(ctx)
	defer cancel()
	if _, ok, err := im.noted(ctx, key); err != nil || ok {
		return Result{Outcome: Present}, wrap("import dm", err)
	}
	var id int64
	outcome := Present
	_, err := modify(ctx, s.dms, nameToken(chat.Fold(dm.To)), func(q *dmsRec, _ uint64) (action, error) {
		outcome = Present
		if slices.ContainsFunc(q.DMs, func(d dmRec) bool {
			return d.At == at && d.From == dm.From && d.Addr == dm.FromAddr && d.Text == dm.Text
		}) {
			return keep, nil
		}
		if id == 0 {
			var err error
			if id, err = s.nextID(ctx, "dm"); err != nil {
				return keep, err
			}
		}
		q.DMs = append(q.DMs, dmRec{ID: id, At: at, From: dm.From, Addr: dm.FromAddr, To: dm.To, Text: dm.Text})
		outcome = Copied
		return write, nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("import dm for %s: %w", dm.To, err)
	}
	return Result{Outcome: outcome}, wrap("import dm", im.note(ctx, key, ledgerRec{}))
}

// Setting copies a run-time setting. One the cluster has with the same value is Present, with
// another value a Conflict: the cluster's is kept.
func (im *Importer) Setting(ctx context.Context, key, value string) (Result, error) {
	s := im.s
	if len(key) > maxSettingKeyLen {
		return Result{}, fmt.Errorf("import setting: key longer than %d bytes", maxSettingKeyLen)
	}
	lkey := contentKey("setting", key, value)
	ctx, cancel := im.call(ctx)
	defer cancel()
	if _, ok, err := im.noted(ctx, lkey); err != nil || ok {
		return Result{Outcome: Present}, wrap("import setting", err)
	}
	for attempt := 0; ; attempt++ {
		e, err := s.settings.Get(ctx, settingKey(key))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.settings.Create(ctx, settingKey(key), []byte(value))
			if err == nil {
				return Result{Outcome: Copied}, wrap("import setting", im.note(ctx, lkey, ledgerRec{}))
			}
			if !isConflict(err) {
				return Result{}, fmt.Errorf("import setting %s: %w", key, err)
			}
			if err := backoff(ctx, attempt); err != nil {
				return Result{}, fmt.Errorf("import setting %s: %w", key, err)
			}
		case err != nil:
			return Result{}, fmt.Errorf("import setting %s: %w", key, err)
		case string(e.Value()) == value:
			return Result{Outcome: Present}, wrap("import setting", im.note(ctx, lkey, ledgerRec{}))
		default:
			return Result{Outcome: Conflict, Note: "the cluster has another value: the cluster's kept"}, nil
		}
	}
}

// WebToken copies a web token as the database has it, by the hash of its secret (which neither
// ever held), with its kind, label, creation and expiry, under an ID of the cluster's: the
// browser sessions and bot tokens it signs in go on working against the cluster. Its name must
// be registered in the cluster, as the database's owner of the name (see Identity): never
// copy a token of a name in conflict. The cap on a name's tokens is not applied. A token the
// cluster has with the same hash is Present; one copied before and revoked or used since is not
// copied again.
func (im *Importer) WebToken(ctx context.Context, t chat.WebToken) (Result, error) {
	s := im.s
	switch t.Kind {
	case chat.WebLink, chat.WebSession, chat.WebBot:
	default:
		return Result{}, fmt.Errorf("import web token: unknown kind %q", t.Kind)
	}
	if !validHash(t.Hash) {
		return Result{}, errors.New("import web token: the hash is not a hex SHA-256")
	}
	if !chat.ValidName(t.Name) {
		return Result{}, fmt.Errorf("import web token: invalid name %q", t.Name)
	}
	folded := chat.Fold(t.Name)
	lkey := "token." + t.Hash
	ctx, cancel := im.call(ctx)
	defer cancel()
	if _, ok, err := im.noted(ctx, lkey); err != nil || ok {
		return Result{Outcome: Present}, wrap("import web token", err)
	}
	if _, _, ok, err := getJSON[identityRec](ctx, s.identities, nameToken(folded)); err != nil || !ok {
		return Result{}, fmt.Errorf("import web token of %s: %w", t.Name, cmpErr(err, "the name is not registered in the cluster"))
	}
	if _, err := s.tokens.Create(ctx, hashKey(t.Hash), fmt.Appendf(nil, `{"name":%q}`, folded)); err != nil {
		if !isConflict(err) {
			return Result{}, fmt.Errorf("import web token of %s: %w", t.Name, err)
		}
		// Stored already: by an earlier run (perhaps stopped before the name's record).
		h, _, _, err := getJSON[hashRec](ctx, s.tokens, hashKey(t.Hash))
		if err != nil {
			return Result{}, fmt.Errorf("import web token of %s: %w", t.Name, err)
		}
		if h.Name != folded {
			return Result{Outcome: Conflict, Note: "the cluster has a token with this hash for another name"}, nil
		}
	}
	var id int64
	outcome := Present
	var gone []string
	_, err := modify(ctx, s.tokens, tokensKey(folded), func(r *tokensRec, _ uint64) (action, error) {
		outcome = Present
		gone = pruneTokens(r, s.now())
		if slices.ContainsFunc(r.Tokens, func(c tokenRec) bool { return c.Hash == t.Hash }) {
			return writeIf(len(gone) > 0), nil
		}
		if id == 0 {
			var err error
			if id, err = s.nextID(ctx, "token"); err != nil {
				return keep, err
			}
		}
		r.Tokens = append(r.Tokens, tokenRec{ID: id, Kind: string(t.Kind), Hash: t.Hash, Name: t.Name, Label: t.Label,
			Created: cmpOr(ms(t.Created), s.now()), Expires: ms(t.Expires)})
		outcome = Copied
		return write, nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("import web token of %s: %w", t.Name, err)
	}
	s.forgetHashes(ctx, slices.DeleteFunc(gone, func(h string) bool { return h == t.Hash }))
	return Result{Outcome: outcome}, wrap("import web token", im.note(ctx, lkey, ledgerRec{}))
}

// HistorySource is a room's history in the database being copied: its messages by ID, which
// increase along the room.
type HistorySource interface {
	// After returns up to n of the room's messages with IDs above id, oldest first.
	After(ctx context.Context, id int64, n int) ([]chat.Message, error)
	// Message returns the room's message with id, and whether it has it.
	Message(ctx context.Context, id int64) (chat.Message, bool, error)
	// Count returns how many of the room's messages have IDs up to upTo (all, for upTo < 0),
	// and the highest of those IDs.
	Count(ctx context.Context, upTo int64) (n int, last int64, err error)
}

// HistoryResult is what History did with a room's lines.
type HistoryResult struct {
	Copied  int // published now
	Present int // in the cluster already (copied by an earlier run, or deleted since there)
	// Skipped were not copied: older than the cluster keeps (Config.KeepFor), too large for
	// the stream, or of a kind the history does not keep.
	Skipped int
	// Conflict, when not empty, says why none of the room's lines were copied.
	Conflict string
}

// historyWindow is how many lines History has in flight at once (at most Config.MaxInFlight):
// 100 000 lines take 1.9 s in windows of 500 and 1.6 s in windows of 1000 into an embedded
// server on 2 cores (BenchmarkImportHistory).
const historyWindow = 1000

// maxHistoryRetries bounds how many times in a row History starts again after a line that
// was not stored without copying one more.
const maxHistoryRetries = 5

// History copies the history of the database's room (name, created), which Room must have
// copied, after what the cluster has of it: the lines go onto the room's subject in their
// order, with their times and senders, so that Recent and History return them, and the lines
// said in the cluster after them. progress, if not nil, is told the count copied so far after
// each batch. A room whose subject has lines that this source did not put there (the cluster's
// own, or another database's) is a Conflict: merging two histories would break their order.
func (im *Importer) History(ctx context.Context, room string, created time.Time, src HistorySource, progress func(copied int)) (HistoryResult, error) {
	s := im.s
	name, err := chat.ParseRoom(room)
	if err != nil {
		return HistoryResult{}, fmt.Errorf("import history: %w", err)
	}
	fail := func(err error) (HistoryResult, error) {
		return HistoryResult{}, fmt.Errorf("import history of %s: %w", name, err)
	}
	total, srcLast, err := src.Count(ctx, -1)
	if err != nil {
		return fail(err)
	}
	cctx, cancel := im.call(ctx)
	rec, ok, err := im.ourRoom(cctx, name, created)
	cancel()
	if err != nil {
		return fail(err)
	}
	if !ok {
		// Deleted in the cluster after it was copied (or never copied: a conflict Room said).
		return HistoryResult{Present: total}, nil
	}
	hkey := "hist." + roomKey(name, created)
	var res HistoryResult
	var cutoff int64 = -1 << 63
	if s.cfg.KeepFor > 0 {
		cutoff = s.now() - s.cfg.KeepFor.Milliseconds()
	}
	msgIDPrefix := "migrate." + roomKey(name, created) + "."
	for retries := 0; ; {
		// Where the room stands: the newest line of its subject and the mark of earlier runs.
		st, err := im.historyState(ctx, name, rec, hkey, src)
		if err != nil {
			return fail(err)
		}
		if st.conflict != "" {
			return HistoryResult{Conflict: st.conflict}, nil
		}
		if st.done > srcLast && srcLast > 0 {
			return fail(fmt.Errorf("the cluster has line %d of it, the database's newest is %d", st.done, srcLast))
		}
		if res.Copied == 0 && res.Skipped == 0 {
			if res.Present, _, err = src.Count(ctx, st.done); err != nil {
				return fail(err)
			}
		}
		copied, skipped, done, perr := im.publishHistory(ctx, name, rec, st, src, cutoff, msgIDPrefix, hkey, func(n int) {
			if progress != nil {
				progress(res.Copied + n)
			}
		})
		res.Copied += copied
		res.Skipped += skipped
		if perr == nil && done {
			return res, nil
		}
		if ctx.Err() != nil || s.isClosed() {
			return res, fmt.Errorf("import history of %s: %w", name, cmpErr(perr, "stopped"))
		}
		if copied > 0 {
			retries = 0
		}
		if retries++; retries > maxHistoryRetries {
			return res, fmt.Errorf("import history of %s: %w", name, perr)
		}
		s.log.Warn("import history: a line was not stored; reading where the room stands and going on", "room", name, "err", perr)
		if err := backoff(ctx, retries+3); err != nil {
			return res, fmt.Errorf("import history of %s: %w", name, err)
		}
	}
}

// historyState is where a room's copy stands.
type historyState struct {
	done     int64  // the database ID of the last line copied: go on after it
	subjSeq  uint64 // the stream sequence of the subject's newest message, 0 for none
	conflict string
}

// historyState reads where the room's copy stands: its subject's newest line, and the mark of
// earlier runs.
func (im *Importer) historyState(ctx context.Context, name string, rec roomRec, hkey string, src HistorySource) (historyState, error) {
	s := im.s
	ctx, cancel := im.call(ctx)
	defer cancel()
	mark, _, err := im.noted(ctx, hkey)
	if err != nil {
		return historyState{}, err
	}
	var st historyState
	raw, err := s.rooms.GetLastMsgForSubject(ctx, s.msgSubject(name))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return historyState{}, err
	default:
		st.subjSeq = raw.Sequence
	}
	if st.subjSeq <= rec.From {
		// No line of this room: none copied yet, or every one gone since (the stream's
		// limits, or deleted in the cluster) after the mark.
		st.done = mark.Last
		return st, nil
	}
	idText := raw.Header.Get(MigratedHeader)
	if idText == "" {
		// The cluster's own line: the room went on in the cluster after a copy, or had a
		// history of its own before.
		if _, last, err := src.Count(ctx, -1); err != nil {
			return historyState{}, err
		} else if mark.Last > 0 && mark.Last >= last {
			st.done = mark.Last
			return st, nil
		}
		if mark.Last > 0 {
			st.conflict = "the cluster has lines of its own in the room after those copied before: the rest would go after them, out of order; not copied"
		} else {
			st.conflict = "the cluster has a history of its own in the room: the two would be merged out of order; not copied"
		}
		return st, nil
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return historyState{}, fmt.Errorf("the room's newest line has a bad %s %q", MigratedHeader, idText)
	}
	var l line
	m, found, err := src.Message(ctx, id)
	if err != nil {
		return historyState{}, err
	}
	if json.Unmarshal(raw.Data, &l) != nil || !found || l.At != ms(m.At) || l.From != m.From || l.Text != m.Text || l.Kind != uint8(m.Kind) {
		st.conflict = "the cluster's history of the room ends with a line copied from another database: not copied"
		return st, nil
	}
	st.done = max(id, mark.Last)
	return st, nil
}

// publishHistory publishes the room's lines after st.done, historyWindow at a time, each
// expecting the one before it to be the stream's last message. It returns how many it copied
// and skipped, whether it reached the end, and the error that stopped it.
func (im *Importer) publishHistory(ctx context.Context, name string, rec roomRec, st historyState, src HistorySource,
	cutoff int64, msgIDPrefix, hkey string, progress func(int)) (copied, skipped int, done bool, err error) {
	s := im.s
	subj := s.msgSubject(name)
	next := st.done
	prevID := "" // the message ID of the line before, once one is published
	window := min(historyWindow, s.cfg.MaxInFlight)
	for {
		msgs, err := src.After(ctx, next, window)
		if err != nil {
			return copied, skipped, false, err
		}
		if len(msgs) == 0 {
			return copied, skipped, true, nil
		}
		type sent struct {
			f  jetstream.PubAckFuture
			id int64
		}
		var batch []sent
		var pubErr error
		winSkipped := 0
		for _, m := range msgs {
			data, _ := json.Marshal(line{Gen: rec.Gen, Kind: uint8(m.Kind), From: m.From, Text: m.Text, At: ms(m.At)})
			if (m.Kind != chat.KindMessage && m.Kind != chat.KindAction) || ms(m.At) < cutoff || len(data) > maxLineSize {
				winSkipped++
				continue
			}
			msg := nats.NewMsg(subj)
			msg.Data = data
			msgID := msgIDPrefix + strconv.FormatInt(m.ID, 10)
			msg.Header.Set(MigratedHeader, strconv.FormatInt(m.ID, 10))
			msg.Header.Set(jetstream.MsgIDHeader, msgID)
			if prevID == "" {
				msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(st.subjSeq, 10))
			} else {
				msg.Header.Set(jetstream.ExpectedLastMsgIDHeader, prevID)
			}
			f, err := s.js.PublishMsgAsync(msg, jetstream.WithExpectStream(s.streamName))
			if err != nil {
				pubErr = err
				break
			}
			batch = append(batch, sent{f: f, id: m.ID})
			prevID = msgID
		}
		// The lines stored are a prefix of those sent: after one that is not, each expects a
		// line that is not the stream's last.
		var firstErr error
		stored := 0
		lastStored := int64(0)
		for _, b := range batch {
			select {
			case ack := <-b.f.Ok():
				if firstErr == nil {
					// A duplicate is a line an earlier attempt stored (JetStream remembers
					// message IDs for a while): there already, and the chain goes on from it.
					if !ack.Duplicate {
						stored++
					}
					lastStored = b.id
					st.subjSeq = ack.Sequence
				}
			case err := <-b.f.Err():
				if firstErr == nil {
					firstErr = err
				}
			case <-ctx.Done():
				return copied, skipped, false, ctx.Err()
			case <-s.ctx.Done():
				return copied, skipped, false, errClosed
			}
		}
		copied += stored
		if firstErr == nil {
			firstErr = pubErr
		}
		if firstErr != nil {
			return copied, skipped, false, firstErr
		}
		skipped += winSkipped
		next = msgs[len(msgs)-1].ID
		if lastStored > 0 {
			cctx, cancel := im.call(ctx)
			err := im.note(cctx, hkey, ledgerRec{Last: lastStored})
			cancel()
			if err != nil {
				return copied, skipped, false, err
			}
		}
		progress(copied)
	}
}
