package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/chat"
	"chatd/datadir"
	"chatd/hostkeys"
	"chatd/store/sqlite"
)

// The admin commands work on a data directory, with a server running on it or not. Those that
// only read (backup, names list and show, export, check) run beside a server: SQLite's WAL lets
// them read while it writes. Those that change what a running server holds in memory (restore,
// names release) take the data directory's lock first, so they refuse while a server runs and
// no server can start while they work.

const adminUsage = `Administration (each takes --data-dir, default ./data, env CHAT_DATA_DIR):
  chatd backup FILE                  a consistent copy of the database, while the server runs
  chatd restore FILE                 replace the database with a backup (the server stopped)
  chatd names list                   registered names: keys, pending keys, rooms
  chatd names show NAME              one name: keys with fingerprints and dates, rooms, invitations
  chatd names release NAME           free a name whose owner lost every key (the server stopped)
  chatd export [--room ROOM] [--since TIME]
                                     the history as JSON lines, for archives
  chatd check                        check the database and the host keys
  chatd migrate --from DIR --to nats://HOST:4222[,...]
                                     copy a single node's database into a cluster (both stopped)

Run "chatd COMMAND -h" for details on a command.
`

// runAdmin runs "chatd backup|restore|names|export|check". It returns the exit code: 0 on
// success, 1 when the command failed, 2 for usage errors.
func runAdmin(ctx context.Context, cmd string, args []string, cfg config, stdout, stderr io.Writer) int {
	switch cmd {
	case "backup":
		return adminBackup(ctx, args, &cfg, stdout, stderr)
	case "restore":
		return adminRestore(ctx, args, &cfg, stdout, stderr)
	case "names":
		return adminNames(ctx, args, &cfg, stdout, stderr)
	case "export":
		return adminExport(ctx, args, &cfg, stdout, stderr)
	case "check":
		return adminCheck(ctx, args, &cfg, stdout, stderr)
	case "migrate":
		return adminMigrate(ctx, args, &cfg, stdout, stderr)
	}
	fmt.Fprintf(stderr, "chatd: unknown command %q\n\n%s", cmd, adminUsage)
	return 2
}

// newAdminFlagSet returns a FlagSet for "chatd <name>" that reports to stderr and prints
// synopsis and description as its usage. It also takes the server flags named in serverFlags
// (--data-dir always), into cfg, so they may come after the command too.
func newAdminFlagSet(name, synopsis, description string, cfg *config, stderr io.Writer, serverFlags ...string) *flag.FlagSet {
	fset := flag.NewFlagSet("chatd "+name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	for _, o := range cfg.options() {
		if o.flag == "data-dir" || containsString(serverFlags, o.flag) {
			fset.Var(o.value, o.flag, o.usage+" (`"+o.arg+"`)")
		}
	}
	fset.Usage = func() {
		fmt.Fprintf(stderr, "usage: chatd %s %s\n\n%s", name, synopsis, description)
		fmt.Fprint(stderr, "\nFlags:\n")
		fset.PrintDefaults()
	}
	return fset
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dbPath is the database file of the data directory.
func dbPath(cfg *config) string { return filepath.Join(cfg.DataDir, "chat.db") }

// openAdmin opens the data directory's database for command cmd, reporting a failure on stderr.
func openAdmin(cmd string, cfg *config, stderr io.Writer) (*sqlite.Admin, bool) {
	a, err := sqlite.OpenAdmin(dbPath(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "chatd %s: %v\n", cmd, err)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "chatd %s: is %s the server's data directory? Give it with --data-dir (the package's is /var/lib/chatd)\n",
				cmd, cfg.DataDir)
		}
		return nil, false
	}
	return a, true
}

// lockDataDir takes the data directory for a command that must not run beside a server, and
// says why when a server holds it.
func lockDataDir(cmd, why string, cfg *config, stderr io.Writer) (*datadir.Lock, bool) {
	l, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		fmt.Fprintf(stderr, "chatd %s: %v\n", cmd, err)
		if errors.Is(err, datadir.ErrInUse) {
			fmt.Fprintf(stderr, "chatd %s needs the server stopped: %s; stop it (systemctl stop chatd) and run this again\n", cmd, why)
		}
		return nil, false
	}
	// A lock file made here by root would keep the service's own user out of its directory.
	if err := ownLike(filepath.Join(cfg.DataDir, datadir.LockFile), cfg.DataDir); err != nil {
		l.Unlock()
		fmt.Fprintf(stderr, "chatd %s: %v\n", cmd, err)
		return nil, false
	}
	return l, true
}

func adminBackup(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("backup", "FILE",
		"Write a consistent copy of the database (<data-dir>/chat.db) to FILE, while the server\n"+
			"runs or not: every message committed before the backup starts is in it, and the\n"+
			"server goes on meanwhile. FILE must not exist. The copy is checked before it gets\n"+
			"its name, and only its owner may read it (it holds keys and private messages).\n\n"+
			"The host keys are not in the backup: keep a copy of <data-dir>/hostkeys once (they\n"+
			"change only when you generate new ones). Put it back with chatd restore FILE.\n", cfg, stderr)
	if code, ok := parseHostkeysFlags(fset, args, 1, 1); !ok {
		return code
	}
	a, ok := openAdmin("backup", cfg, stderr)
	if !ok {
		return 1
	}
	defer a.Close()
	start := time.Now()
	sum, err := a.Backup(ctx, fset.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "chatd %v\n", err) // "backup: ..."
		return 1
	}
	dest, _ := filepath.Abs(fset.Arg(0))
	fmt.Fprintf(stdout, "backed up %s to %s in %s\n", a.Path(), dest, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "  %s; integrity check: ok\n", describeSummary(sum))
	fmt.Fprintf(stdout, "the host keys are not in the backup: keep a copy of %s (once: they change only with chatd hostkeys generate)\n",
		hostkeysDir(cfg))
	return 0
}

// describeSummary says what a database holds.
func describeSummary(s sqlite.Summary) string {
	newest := ""
	if s.LastMessage > 0 {
		newest = fmt.Sprintf(" (the newest #%d)", s.LastMessage)
	}
	return fmt.Sprintf("%s, schema version %d, %s, %s, %s%s", formatBytes(s.Bytes), s.Version,
		plural(s.Identities, "registered name"), plural(s.Rooms, "room"), plural(s.Messages, "message"), newest)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func adminRestore(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("restore", "FILE",
		"Replace the database (<data-dir>/chat.db) with FILE, a copy made by chatd backup.\n"+
			"The server must be stopped: restore refuses while one holds the data directory.\n"+
			"FILE is checked first (an intact chatd database, of a schema this chatd knows; an\n"+
			"older one is brought up to date when the server starts). The database it replaces\n"+
			"is kept beside it as chat.db.before-restore-TIME: delete it once all is well.\n"+
			"Host keys are not touched.\n", cfg, stderr)
	if code, ok := parseHostkeysFlags(fset, args, 1, 1); !ok {
		return code
	}
	lock, ok := lockDataDir("restore", "it replaces the database the server has open", cfg, stderr)
	if !ok {
		return 1
	}
	defer lock.Unlock()
	db := dbPath(cfg)
	r, err := sqlite.Restore(ctx, fset.Arg(0), db)
	if err != nil {
		fmt.Fprintf(stderr, "chatd %v\n", err) // "restore: ..."
		return 1
	}
	// Run as root on a service's directory, the new file would be root's and the service
	// could not open it: it gets the directory's owner.
	if err := ownLike(db, cfg.DataDir); err != nil {
		fmt.Fprintf(stderr, "chatd restore: %v\n", err)
		return 1
	}
	src, _ := filepath.Abs(fset.Arg(0))
	if abs, err := filepath.Abs(db); err == nil {
		db = abs
	}
	fmt.Fprintf(stdout, "restored %s to %s\n  %s\n", src, db, describeSummary(r.Summary))
	if r.Previous != "" {
		fmt.Fprintf(stdout, "the database it replaced is kept as %s: delete it once the server runs well\n", r.Previous)
	}
	if r.Version < sqlite.SchemaVersion() {
		fmt.Fprintf(stdout, "schema version %d is older than this chatd's %d: the server brings it up to date when it starts\n",
			r.Version, sqlite.SchemaVersion())
	}
	return 0
}

const namesUsage = `usage: chatd names list | show NAME | release [--keep-rooms] NAME

See the registered names (a name is registered by the first SSH key that logs in with it),
and free a name whose owner lost every key.

Commands:
  list           every registered name: when it was registered, keys, pending keys, rooms
  show NAME      one name: its keys (type, fingerprint, date added), keys waiting for their
                 first login, the rooms it comes back to, owns and is invited to, private
                 messages waiting for it, web sessions
  release NAME   free NAME: its keys, pending keys, rooms to come back to, web sessions and the
                 private messages waiting for it go; its rooms lose their owner and its
                 invitations go (--keep-rooms keeps both, for when the same person claims it
                 again). What it said stays in the history under its name. The next key to log
                 in as NAME claims it. The server must be stopped: it keeps who is online, and
                 each room's owner and invitations, in memory.

list and show run beside a running server. Run "chatd names COMMAND -h" for its flags.
`

func adminNames(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, namesUsage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stderr, namesUsage)
		return 0
	case "list":
		return namesList(ctx, rest, cfg, stdout, stderr)
	case "show":
		return namesShow(ctx, rest, cfg, stdout, stderr)
	case "release":
		return namesRelease(ctx, rest, cfg, stdout, stderr)
	}
	fmt.Fprintf(stderr, "chatd names: unknown command %q\n\n%s", cmd, namesUsage)
	return 2
}

// stamp is a time as the admin commands print it, in the local time zone.
func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04") }

func namesList(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("names list", "",
		"List every registered name: when it was registered, its keys, the keys waiting for\n"+
			"their first login (pending) and the rooms it comes back to.\n", cfg, stderr)
	if code, ok := parseHostkeysFlags(fset, args, 0, 0); !ok {
		return code
	}
	a, ok := openAdmin("names list", cfg, stderr)
	if !ok {
		return 1
	}
	defer a.Close()
	names, err := a.Names(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chatd names list: %v\n", err)
		return 1
	}
	if len(names) == 0 {
		fmt.Fprintln(stdout, "no registered names")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREGISTERED\tKEYS\tPENDING\tROOMS")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", n.Name, stamp(n.Created), len(n.Keys), len(n.Pending), strings.Join(n.Rooms, " "))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "chatd names list: %v\n", err)
		return 1
	}
	return 0
}

func namesShow(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("names show", "NAME",
		"Show a registered name: its keys (type, SHA-256 fingerprint as ssh-keygen -l prints\n"+
			"it, date added), keys waiting for their first login, the rooms it comes back to,\n"+
			"owns and is invited to, private messages waiting for it and web sessions.\n", cfg, stderr)
	if code, ok := parseHostkeysFlags(fset, args, 1, 1); !ok {
		return code
	}
	a, ok := openAdmin("names show", cfg, stderr)
	if !ok {
		return 1
	}
	defer a.Close()
	name := fset.Arg(0)
	info, found, err := a.Name(ctx, name)
	if err != nil {
		fmt.Fprintf(stderr, "chatd names show: %v\n", err)
		return 1
	}
	if !found {
		fmt.Fprintf(stderr, "chatd names show: nobody has registered %s\n", chat.QuoteName(name))
		return 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name:        %s\nregistered:  %s\n", info.Name, stamp(info.Created))
	fmt.Fprintf(&b, "keys:        %d\n", len(info.Keys))
	for _, k := range info.Keys {
		fmt.Fprintf(&b, "  %s %s  added %s\n", k.Type, k.Fingerprint, stamp(k.Added))
	}
	if len(info.Pending) > 0 {
		fmt.Fprintf(&b, "pending:     %d (proposed with /keys add, waiting for their first login)\n", len(info.Pending))
		for _, k := range info.Pending {
			fmt.Fprintf(&b, "  %s %s  proposed %s, expires %s\n", k.Type, k.Fingerprint, stamp(k.Added), stamp(k.Expires))
		}
	}
	list := func(label string, rooms []string) {
		if len(rooms) == 0 {
			fmt.Fprintf(&b, "%-12s -\n", label)
			return
		}
		fmt.Fprintf(&b, "%-12s %s\n", label, strings.Join(rooms, " "))
	}
	list("rooms:", info.Rooms)
	list("owns:", info.Owns)
	list("invited to:", info.Invited)
	fmt.Fprintf(&b, "queued:      %s waiting\n", plural(info.QueuedDMs, "private message"))
	fmt.Fprintf(&b, "web:         %s (browser sessions, bot tokens, sign-in links)\n", plural(info.WebTokens, "web token"))
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		fmt.Fprintf(stderr, "chatd names show: %v\n", err)
		return 1
	}
	return 0
}

func namesRelease(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("names release", "[--keep-rooms] NAME",
		"Free NAME, so that the next SSH key to log in with it claims it: for someone who lost\n"+
			"every key. Its keys, pending keys, rooms to come back to, web sessions and the\n"+
			"private messages waiting for it are deleted; its rooms lose their owner (operators\n"+
			"still manage them) and its invitations go, unless --keep-rooms. The history keeps\n"+
			"every line under the name it was said with.\n\n"+
			"The server must be stopped: it keeps who is online, and each room's owner and\n"+
			"invitations, in memory, and would not see the release.\n", cfg, stderr)
	keepRooms := fset.Bool("keep-rooms", false, "keep the rooms NAME owns and its invitations for whoever claims it next\n(when you know the same person will)")
	if code, ok := parseHostkeysFlags(fset, args, 1, 1); !ok {
		return code
	}
	lock, ok := lockDataDir("names release", "the server keeps who is online, and each room's owner and invitations, in memory, and would not see the release", cfg, stderr)
	if !ok {
		return 1
	}
	defer lock.Unlock()
	a, ok := openAdmin("names release", cfg, stderr)
	if !ok {
		return 1
	}
	defer a.Close()
	name := fset.Arg(0)
	r, err := a.ReleaseName(ctx, name, *keepRooms)
	if errors.Is(err, chat.ErrNotFound) {
		fmt.Fprintf(stderr, "chatd names release: nobody has registered %s\n", chat.QuoteName(name))
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatd names release: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "released %s: deleted %s, %s, %s, %s and %s\n", r.Name,
		plural(r.Keys, "key"), plural(r.Pending, "pending key"), plural(r.Memberships, "room membership"),
		plural(r.WebTokens, "web token"), plural(r.QueuedDMs, "queued private message"))
	switch {
	case *keepRooms && (len(r.Owned) > 0 || len(r.Invited) > 0):
		fmt.Fprintf(stdout, "kept for whoever claims %s next: owner of %s; invited to %s\n", r.Name, orNone(r.Owned), orNone(r.Invited))
	case len(r.Owned) > 0 || len(r.Invited) > 0:
		fmt.Fprintf(stdout, "rooms now without an owner: %s; invitations removed: %s\n", orNone(r.Owned), orNone(r.Invited))
	}
	fmt.Fprintf(stdout, "the history keeps %s under the name %s\n", plural(r.Messages, "message"), r.Name)
	fmt.Fprintf(stdout, "the next SSH key to log in as %s claims the name\n", r.Name)
	return 0
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, " ")
}

// exported is one line of chatd export.
type exported struct {
	ID   int64  `json:"id"`
	Time string `json:"time"`
	Room string `json:"room"`
	From string `json:"from"`
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// kindName is how export names a message's kind.
func kindName(k chat.Kind) string {
	switch k {
	case chat.KindMessage:
		return "message"
	case chat.KindAction:
		return "action"
	}
	return strconv.Itoa(int(k))
}

func adminExport(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("export", "[--room ROOM] [--since TIME]",
		"Write the history, oldest first, as JSON lines on stdout, for archives and search:\n"+
			`  {"id":12,"time":"2026-01-02T15:04:05.000+01:00","room":"#lobby","from":"alice","kind":"message","text":"hi"}`+"\n"+
			"kind is message (alice: hi) or action (/me: ** alice waves). Runs beside a running\n"+
			"server: what is said during the export is left for the next one. The history holds\n"+
			"what --history-keep keeps, no more.\n", cfg, stderr)
	room := fset.String("room", "", "only this room (`ROOM`: go or #go)")
	sinceArg := fset.String("since", "", "only messages from `TIME` on: 2026-01-02, 2026-01-02T15:04:05+01:00,\nor a time ago: 90m, 24h, 7d")
	if code, ok := parseHostkeysFlags(fset, args, 0, 0); !ok {
		return code
	}
	var since time.Time
	if *sinceArg != "" {
		var err error
		if since, err = parseSince(*sinceArg, time.Now()); err != nil {
			fmt.Fprintf(stderr, "chatd export: --since: %v\n", err)
			return 2
		}
	}
	if *room != "" {
		if _, err := chat.ParseRoom(*room); err != nil {
			fmt.Fprintf(stderr, "chatd export: --room: %v\n", err)
			return 2
		}
	}
	a, ok := openAdmin("export", cfg, stderr)
	if !ok {
		return 1
	}
	defer a.Close()
	w := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // the text as it was said: "<3" stays "<3"
	_, err := a.Export(ctx, sqlite.ExportFilter{Room: *room, Since: since}, func(m chat.Message) error {
		return enc.Encode(exported{ID: m.ID, Time: m.At.Format("2006-01-02T15:04:05.000Z07:00"), Room: m.Room,
			From: m.From, Kind: kindName(m.Kind), Text: m.Text})
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatd export: %v\n", err)
		return 1
	}
	return 0
}

// parseSince reads --since: an RFC 3339 time, a date or a date and time (local time), or a
// duration before now (90m, 24h, 7d).
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want 2026-01-02, 2026-01-02T15:04:05+01:00 or a time ago such as 24h or 7d", s)
}

// checker collects the lines of chatd check.
type checker struct {
	out      io.Writer
	problems int
}

func (c *checker) ok(format string, args ...any) { fmt.Fprintf(c.out, "ok    "+format+"\n", args...) }

func (c *checker) fail(format string, args ...any) {
	c.problems++
	fmt.Fprintf(c.out, "FAIL  "+format+"\n", args...)
}

func adminCheck(ctx context.Context, args []string, cfg *config, stdout, stderr io.Writer) int {
	fset := newAdminFlagSet("check", "",
		"Check the database (SQLite's integrity and foreign key checks, the schema version)\n"+
			"and the host keys (each loads, only its owner may read it, its .pub matches, one\n"+
			"key per type). Each check prints a line, ok or FAIL with what is wrong; the exit\n"+
			"status is 0 when all pass and 1 otherwise. Runs beside a running server (the\n"+
			"integrity check reads the whole database: seconds for a large one).\n", cfg, stderr, "hostkey")
	if code, ok := parseHostkeysFlags(fset, args, 0, 0); !ok {
		return code
	}
	c := &checker{out: stdout}
	checkDatabase(ctx, c, cfg)
	checkHostKeys(c, cfg)
	if c.problems > 0 {
		fmt.Fprintf(stderr, "chatd check: %s\n", plural(c.problems, "problem"))
		return 1
	}
	return 0
}

func checkDatabase(ctx context.Context, c *checker, cfg *config) {
	path := dbPath(cfg)
	a, err := sqlite.OpenAdmin(path)
	if err != nil {
		c.fail("database: %v", err)
		return
	}
	defer a.Close()
	if fi, err := os.Stat(a.Path()); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		c.fail("database %s: others may read it (mode %04o), and it holds private messages: run chmod 600 %s",
			a.Path(), fi.Mode().Perm(), a.Path())
	}
	r, err := a.Check(ctx)
	if err != nil {
		c.fail("database %s: %v", a.Path(), err)
		return
	}
	if len(r.Integrity) == 0 {
		c.ok("database %s: integrity check (%s)", a.Path(), formatBytes(r.Bytes))
	} else {
		c.fail("database %s: integrity check found damage; restore a backup (chatd restore FILE):", a.Path())
		for _, p := range r.Integrity {
			fmt.Fprintf(c.out, "        %s\n", p)
		}
	}
	if len(r.ForeignKeys) == 0 {
		c.ok("database %s: foreign keys", a.Path())
	} else {
		c.fail("database %s: foreign key check:", a.Path())
		for _, p := range r.ForeignKeys {
			fmt.Fprintf(c.out, "        %s\n", p)
		}
	}
	if r.Version == sqlite.SchemaVersion() {
		c.ok("database %s: schema version %d; %s, %s, %s", a.Path(), r.Version,
			plural(r.Identities, "registered name"), plural(r.Rooms, "room"), plural(r.Messages, "message"))
	} else {
		// Older is not wrong: the server migrates it when it starts.
		c.ok("database %s: schema version %d (this chatd's is %d: the server brings it up to date when it starts)",
			a.Path(), r.Version, sqlite.SchemaVersion())
	}
}

func checkHostKeys(c *checker, cfg *config) {
	paths := cfg.HostKeys
	if len(paths) == 0 {
		dir := hostkeysDir(cfg)
		var err error
		if paths, err = hostkeyFiles(dir); err != nil {
			c.fail("host keys %s: %v", dir, err)
			return
		}
		if len(paths) == 0 {
			c.ok("host keys: none in %s yet (chatd generates an ed25519 key on first start)", dir)
			return
		}
	}
	var good []string
	for _, p := range paths {
		keys, err := hostkeys.LoadFiles([]string{p})
		if err != nil {
			c.fail("%v", err)
			continue
		}
		k := keys[0]
		if problem := pubMismatch(k); problem != "" {
			c.fail("host key %s: %s", p, problem)
			continue
		}
		good = append(good, p)
		c.ok("host key %s: %s %d bits %s", p, k.Type, k.Bits, k.Fingerprint)
	}
	if len(good) > 1 {
		if _, err := hostkeys.LoadFiles(good); err != nil {
			c.fail("%v", err)
		}
	}
}

// pubMismatch says what is wrong with a host key's .pub file, if it has one: a .pub that is
// not the private key's public half would have operators publish the wrong fingerprint.
func pubMismatch(k hostkeys.Key) string {
	data, err := os.ReadFile(k.Path + ".pub")
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return err.Error()
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(data)
	if err != nil {
		return fmt.Sprintf("%s.pub is not a public key: %v", k.Path, err)
	}
	if !bytes.Equal(pub.Marshal(), k.Signer.PublicKey().Marshal()) {
		return fmt.Sprintf("%s.pub is not this key's public half (it is %s): regenerate it with ssh-keygen -y -f %s > %s.pub",
			k.Path, gossh.FingerprintSHA256(pub), k.Path, k.Path)
	}
	return ""
}
