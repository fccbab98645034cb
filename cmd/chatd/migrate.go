package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"chatd/chat"
	"chatd/store/natsjs"
	"chatd/store/sqlite"
)

// chatd migrate copies a single node's database into a cluster's JetStream: what
// store/sqlite's Admin reads, written by store/natsjs's Importer, which copies each record once
// however often it runs (see store/natsjs/import.go). It takes the data directory's lock, so
// that no server changes the database while it is copied and none starts on it meanwhile: what
// the cluster gets is one state of the database, and a second run after a server ran on it
// again copies what that server added.

const migrateDescription = `Copy a single node's database (<DIR>/chat.db) into a cluster's NATS JetStream: the
registered names with their keys (and keys proposed, not yet confirmed), the rooms with their
owners, topics, invitations and members, every room's history with its times and senders,
the bans in force, the private messages waiting, the message of the day, and the web tokens
(kept by their hashes: browser sessions and bot tokens go on working on the cluster).

Run it with the single node stopped (it takes DIR's lock) and the cluster's nodes stopped (it
refuses while one reads the rooms' stream), then start the nodes. It may be run again, or
after it was interrupted: what is there already is not copied twice, and what the cluster has
changed since (a ban lifted, a message delivered, a token revoked) stays so. What the cluster
has under the same name (a name claimed there by another key, a room with a history of its
own) is a conflict: reported, and left as the cluster has it; a conflicting name's private
messages, web tokens, rooms it would come back to and bans on it are not copied, and a room it
owned is copied without an owner. The exit status is 0 when everything was copied or was there,
1 on a conflict or an error, 2 for usage errors.

The stream's limits stay as the cluster has them; a new cluster gets --history-keep's (lines
older than it keeps are not copied) and --nats-replicas copies.
`

// migrateWhy is why migrate needs the single node stopped.
const migrateWhy = "it copies the database, which the server changes as it runs"

func adminMigrate(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("migrate", "--from DIR --to nats://HOST:4222[,...]", migrateDescription, cfg, stderr,
		"nats-creds", "nats-ca", "nats-replicas", "history-keep")
	from := fset.String("from", "", "the single node's data directory, `DIR` (default: --data-dir)")
	to := fset.String("to", "", "the cluster's NATS servers, `URL,...` (default: --nats, CHAT_NATS)")
	if code, ok := parseHostkeysFlags(fset, args, 0, 0); !ok {
		return code
	}
	replicasGiven := false
	fset.Visit(func(f *flag.Flag) { replicasGiven = replicasGiven || f.Name == "nats-replicas" })
	urls := natsjs.ParseURLs(cmp.Or(*to, cfg.NATS))
	if len(urls) == 0 {
		fmt.Fprintf(stderr, "chatd migrate: no cluster to copy into: give --to nats://HOST:4222[,...]\n")
		return 2
	}
	for _, u := range urls {
		if err := checkNATSURL(u); err != nil {
			fmt.Fprintf(stderr, "chatd migrate: --to: %v\n", err)
			return 2
		}
	}
	if cfg.NATSReplicas < 1 || cfg.NATSReplicas > 5 {
		fmt.Fprintf(stderr, "chatd migrate: --nats-replicas %d: want 1 to 5\n", cfg.NATSReplicas)
		return 2
	}
	keepMessages, keepFor, err := sqlite.ParseKeep(cfg.HistoryKeep)
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: --history-keep: %v\n", err)
		return 2
	}
	src := *cfg
	src.DataDir = cmp.Or(*from, cfg.DataDir)
	// Taking the lock creates the directory: a mistyped --from must not leave one behind.
	if _, err := os.Stat(dbPath(&src)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "chatd migrate: no database at %s: give the single node's data directory with --from DIR\n", dbPath(&src))
		} else {
			fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		}
		return 1
	}
	lock, ok := lockDataDir("migrate", migrateWhy, &src, stderr)
	if !ok {
		return 1
	}
	defer lock.Unlock()
	a, ok := openAdmin("migrate", &src, stderr)
	if !ok {
		return 1
	}
	defer a.Close()

	nc, err := connectNATS(urls, cfg.NATSCreds, cfg.NATSCA)
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		return 1
	}
	defer nc.Close()
	sc := natsjs.DefaultConfig()
	sc.Conn = nc
	sc.Replicas, sc.KeepMessages, sc.KeepFor = cfg.NATSReplicas, keepMessages, keepFor
	// The cluster's streams keep their limits and replicas: the store would otherwise set
	// them to this command's, and a cluster keeping less, or more, would change.
	existing, err := streamSettings(ctx, nc, sc.Prefix)
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		return 1
	}
	if existing != nil {
		sc.KeepMessages, sc.KeepFor = existing.keepMessages, existing.keepFor
		if !replicasGiven {
			sc.Replicas = existing.replicas
		}
	}
	st, err := natsjs.Open(ctx, sc, nil)
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		return 1
	}
	defer st.Close()
	im, err := st.Importer(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		return 1
	}
	if n, err := im.Readers(ctx); err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		return 1
	} else if n > 0 {
		fmt.Fprintf(stderr, "chatd migrate: %s reading the cluster's rooms (each running chatd node has one):\n"+
			"stop the cluster's nodes first. Lines copied now would reach their rooms as if said now, and a\n"+
			"node reads the rooms and bans only when it starts. A node killed (not stopped) leaves its reader\n"+
			"behind for up to 5 minutes.\n", plural(n, "consumer is"))
		return 1
	}

	sum, err := a.Summary(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		return 1
	}
	state := "a new cluster"
	if existing != nil {
		state = "the cluster's"
	}
	fmt.Fprintf(stdout, "copying %s (%s)\n  into %s: %s, history kept: %s (%s)\n", a.Path(), describeSummary(sum),
		natsjs.RedactURLs(urls), plural(sc.Replicas, "replica"), sqlite.FormatKeep(sc.KeepMessages, sc.KeepFor), state)
	start := time.Now()
	m := &migration{a: a, im: im, out: stdout}
	err = m.run(ctx)
	m.report(stdout, time.Since(start))
	if err != nil {
		fmt.Fprintf(stderr, "chatd migrate: %v\n", err)
		fmt.Fprintf(stderr, "chatd migrate: run it again to go on: what was copied stays, and is not copied twice\n")
		return 1
	}
	if len(m.conflicts) > 0 {
		fmt.Fprintf(stderr, "chatd migrate: %s: not copied, the cluster's kept (see above)\n", plural(len(m.conflicts), "conflict"))
		return 1
	}
	return 0
}

// connectNATS connects to the cluster's servers as a node does, for one command.
func connectNATS(urls []string, creds, ca string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("chatd-migrate"), nats.Timeout(5 * time.Second)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", natsjs.RedactURLs(urls), err)
	}
	return nc, nil
}

// clusterStreams is what a cluster's stream of rooms is set to.
type clusterStreams struct {
	replicas     int
	keepMessages int
	keepFor      time.Duration
}

// streamSettings reads the settings of the cluster's stream of rooms (prefix_rooms); nil when
// there is none yet.
func streamSettings(ctx context.Context, nc *nats.Conn, prefix string) (*clusterStreams, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, prefix+"_rooms")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stream %s_rooms: %w", prefix, err)
	}
	c := s.CachedInfo().Config
	cs := &clusterStreams{replicas: c.Replicas, keepFor: c.MaxAge}
	if c.MaxMsgsPerSubject > 0 {
		cs.keepMessages = int(c.MaxMsgsPerSubject)
	}
	return cs, nil
}

// migration copies one database, and counts what it did.
type migration struct {
	a   *sqlite.Admin
	im  *natsjs.Importer
	out io.Writer

	counts    [numKinds]kindCount
	conflicts []string // "name bob: claimed in the cluster by another key"
	notes     []string // how a record was fitted in
	// theirs are the names (folded) that the cluster has for someone else.
	theirs map[string]bool
}

type kind int

const (
	kindNames kind = iota
	kindRooms
	kindMembers
	kindLines
	kindBans
	kindDMs
	kindSettings
	kindTokens
	numKinds
)

var kindLabels = [numKinds]string{"names", "rooms", "memberships", "history lines", "bans", "queued messages", "settings", "web tokens"}

type kindCount struct{ copied, present, skipped int }

// count records a record's outcome.
func (m *migration) count(k kind, what string, r natsjs.Result) {
	c := &m.counts[k]
	switch r.Outcome {
	case natsjs.Copied:
		c.copied++
	case natsjs.Present, natsjs.Gone:
		c.present++
	case natsjs.Conflict:
		c.skipped++
		m.conflicts = append(m.conflicts, what+": "+r.Note)
		return
	}
	if r.Note != "" {
		m.notes = append(m.notes, what+": "+r.Note)
	}
}

// skip records a record not copied because of a conflict elsewhere.
func (m *migration) skip(k kind, what, why string) {
	m.counts[k].skipped++
	m.notes = append(m.notes, what+": "+why)
}

func (m *migration) run(ctx context.Context) error {
	now := time.Now()
	names, err := m.a.Names(ctx)
	if err != nil {
		return err
	}
	rooms, err := m.a.Rooms(ctx)
	if err != nil {
		return err
	}
	m.theirs = map[string]bool{}
	mine := map[string]bool{} // names copied or there: this database's people
	for _, n := range names {
		if len(n.Keys) == 0 {
			m.skip(kindNames, "name "+n.Name, "no active key: not copied")
			continue
		}
		r, err := m.im.Identity(ctx, n.Identity)
		if err != nil {
			return err
		}
		m.count(kindNames, "name "+n.Name, r)
		if r.Outcome == natsjs.Conflict {
			m.theirs[chat.Fold(n.Name)] = true
		} else {
			mine[chat.Fold(n.Name)] = true
		}
	}

	ours := map[string]chat.Room{} // rooms copied or there, by name
	for _, r := range rooms {
		if r.Owner != "" && m.theirs[chat.Fold(r.Owner)] {
			m.notes = append(m.notes, fmt.Sprintf("room %s: its owner %s is someone else in the cluster: copied without an owner", r.Name, r.Owner))
			r.Owner = ""
		}
		var dropped []string
		r.Invited = slices.DeleteFunc(slices.Clone(r.Invited), func(n string) bool {
			if m.theirs[chat.Fold(n)] {
				dropped = append(dropped, n)
				return true
			}
			return false
		})
		if len(dropped) > 0 {
			m.notes = append(m.notes, fmt.Sprintf("room %s: invitations not copied, of names that are someone else in the cluster: %s", r.Name, strings.Join(dropped, ", ")))
		}
		res, err := m.im.Room(ctx, r)
		if err != nil {
			return err
		}
		m.count(kindRooms, "room "+r.Name, res)
		switch res.Outcome {
		case natsjs.Copied, natsjs.Present:
			ours[r.Name] = r
		default:
			// Its history is not copied: counted as the room is.
			if err := m.historyNotCopied(ctx, r.Name, res.Outcome); err != nil {
				return err
			}
		}
	}

	for _, n := range names {
		for _, room := range n.Rooms {
			what := fmt.Sprintf("membership of %s in %s", n.Name, room)
			r, ok := ours[room]
			switch {
			case m.theirs[chat.Fold(n.Name)]:
				m.counts[kindMembers].skipped++ // the name's conflict says why
			case !mine[chat.Fold(n.Name)]:
				m.skip(kindMembers, what, "the name was not copied")
			case !ok:
				m.counts[kindMembers].skipped++ // the room's conflict, or its deletion, says why
			default:
				res, err := m.im.Membership(ctx, n.Name, room, r.Created)
				if err != nil {
					return err
				}
				m.count(kindMembers, what, res)
			}
		}
	}

	bans, err := m.a.ActiveBans(ctx, now)
	if err != nil {
		return err
	}
	for _, b := range bans {
		what := fmt.Sprintf("ban of %s %s", b.Kind, b.Value)
		if b.Kind == chat.BanName && m.theirs[chat.Fold(b.Value)] {
			m.skip(kindBans, what, "the name is someone else in the cluster: not copied")
			continue
		}
		r, err := m.im.Ban(ctx, b)
		if err != nil {
			return err
		}
		m.count(kindBans, what, r)
	}

	dms, err := m.a.QueuedDMs(ctx)
	if err != nil {
		return err
	}
	for _, dm := range dms {
		what := "queued message for " + dm.To
		if m.theirs[chat.Fold(dm.To)] {
			m.skip(kindDMs, what, "the name is someone else in the cluster: not copied")
			continue
		}
		r, err := m.im.DM(ctx, dm)
		if err != nil {
			return err
		}
		m.count(kindDMs, what, r)
	}

	settings, err := m.a.Settings(ctx)
	if err != nil {
		return err
	}
	for _, s := range settings {
		r, err := m.im.Setting(ctx, s.Key, s.Value)
		if err != nil {
			return err
		}
		m.count(kindSettings, "setting "+s.Key, r)
	}

	tokens, err := m.a.LiveWebTokens(ctx, now)
	if err != nil {
		return err
	}
	for _, t := range tokens {
		what := fmt.Sprintf("web token of %s (%s)", t.Name, t.Kind)
		if !mine[chat.Fold(t.Name)] {
			// Never a token of someone else's name: it would sign its holder in as them.
			why := "its name was not copied: not copied"
			if m.theirs[chat.Fold(t.Name)] {
				why = "the name is someone else in the cluster: not copied"
			}
			m.skip(kindTokens, what, why)
			continue
		}
		r, err := m.im.WebToken(ctx, t)
		if err != nil {
			return err
		}
		m.count(kindTokens, what, r)
	}

	// The history last: the bulk of it, and nothing else waits for it.
	for _, room := range rooms {
		r, ok := ours[room.Name]
		if !ok {
			continue
		}
		if err := m.history(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// historyNotCopied counts the history of a room that is not copied: there already when the
// room was copied before and deleted in the cluster since, not copied when it is in conflict.
func (m *migration) historyNotCopied(ctx context.Context, room string, o natsjs.Outcome) error {
	h, err := m.a.History(room)
	if err != nil {
		return err
	}
	n, _, err := h.Count(ctx, -1)
	if err != nil {
		return err
	}
	if o == natsjs.Gone {
		m.counts[kindLines].present += n
	} else {
		m.counts[kindLines].skipped += n
	}
	return nil
}

// progressEvery is how many lines of a room's history go between two progress lines.
const progressEvery = 20_000

func (m *migration) history(ctx context.Context, r chat.Room) error {
	h, err := m.a.History(r.Name)
	if err != nil {
		return err
	}
	total, _, err := h.Count(ctx, -1)
	if err != nil {
		return err
	}
	shown := 0
	res, err := m.im.History(ctx, r.Name, r.Created, h, func(copied int) {
		if copied-shown >= progressEvery {
			shown = copied
			fmt.Fprintf(m.out, "  history %s: %d of %d lines copied...\n", r.Name, copied, total)
		}
	})
	c := &m.counts[kindLines]
	c.copied += res.Copied
	c.present += res.Present
	c.skipped += res.Skipped
	if err != nil {
		return err
	}
	if res.Conflict != "" {
		c.skipped += total
		m.conflicts = append(m.conflicts, fmt.Sprintf("history of %s (%s): %s", r.Name, plural(total, "line"), res.Conflict))
		return nil
	}
	fmt.Fprintf(m.out, "  history %s: %d copied, %d already there", r.Name, res.Copied, res.Present)
	if res.Skipped > 0 {
		fmt.Fprintf(m.out, ", %d older than the cluster keeps (or not a message)", res.Skipped)
	}
	fmt.Fprintln(m.out)
	return nil
}

// report prints what the migration did: a table of counts, the conflicts by name, the notes.
func (m *migration) report(w io.Writer, took time.Duration) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-16s %7s %14s %11s\n", "", "COPIED", "ALREADY THERE", "NOT COPIED")
	for k, c := range m.counts {
		fmt.Fprintf(w, "%-16s %7d %14d %11d\n", kindLabels[k], c.copied, c.present, c.skipped)
	}
	if len(m.conflicts) > 0 {
		fmt.Fprintf(w, "\nconflicts: left as the cluster has them\n")
		for _, c := range m.conflicts {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	if len(m.notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n")
		for _, n := range m.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if c := m.counts[kindTokens]; c.copied > 0 {
		fmt.Fprintf(w, "\nweb tokens are copied as their hashes: the browser sessions and bot tokens go on working on the cluster.\n")
	}
	lines := m.counts[kindLines].copied
	rate := ""
	if secs := took.Seconds(); lines > 0 && secs > 0 {
		rate = fmt.Sprintf(" (%.0f history lines/s)", float64(lines)/secs)
	}
	fmt.Fprintf(w, "\ntook %s%s\n", took.Round(time.Millisecond), rate)
}
