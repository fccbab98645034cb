package sqlite

// The operator's side of the database, for the chatd backup, restore, names, export and check
// commands. They open the file beside a running server (WAL lets them read while it writes;
// the busy timeout covers a moment of its write lock) or while it is stopped, without Open's
// writer, pruner and migrations: an admin command never changes the schema under a server.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"chatd/chat"
)

// SchemaVersion is the newest schema this code knows: a database with a higher version was
// written by a newer chatd.
func SchemaVersion() int { return len(schema()) }

// Admin is a chatd database opened for the admin commands. Its methods are for one goroutine.
type Admin struct {
	db      *sql.DB
	path    string
	version int
}

// OpenAdmin opens the database at path, which must exist, for the admin commands. It refuses a
// file that is not a chatd database (ErrCorrupt) or was written by a newer chatd
// (ErrNewerSchema), and migrates nothing: a database of an older chatd is read as it is.
// Opening runs no integrity check (see Check): it stays quick on a large file.
func OpenAdmin(path string) (*Admin, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s (chatd creates it on first start): %w", abs, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open database: %w", err)
	}
	// mode=rw: a typo in the path must not create an empty database.
	db, err := sql.Open("sqlite", dsn(abs)+"&mode=rw")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	db.SetMaxOpenConns(1)
	a := &Admin{db: db, path: abs}
	if a.version, err = chatdVersion(context.Background(), db, abs); err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

// Close closes the database.
func (a *Admin) Close() error {
	if err := a.db.Close(); err != nil {
		return fmt.Errorf("close database %s: %w", a.path, err)
	}
	return nil
}

// Path is the database file, absolute.
func (a *Admin) Path() string { return a.path }

// Version is the database's schema version.
func (a *Admin) Version() int { return a.version }

// chatdVersion returns the schema version of the database db opened at path, after checking
// that it is a chatd database this code can read.
func chatdVersion(ctx context.Context, db *sql.DB, path string) (int, error) {
	var version int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return 0, adminFail(path, err)
	}
	known := SchemaVersion()
	switch {
	case version > known:
		return 0, fmt.Errorf("%s: %w (schema version %d, this chatd knows up to %d): use a newer chatd",
			path, ErrNewerSchema, version, known)
	case version < 0:
		return 0, fmt.Errorf("%s: %w (schema version %d)", path, ErrCorrupt, version)
	case version == 0:
		var name string
		err := db.QueryRowContext(ctx, `SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\_%' ESCAPE '\' LIMIT 1`).Scan(&name)
		switch {
		case err == nil:
			return 0, fmt.Errorf("%s: %w (an SQLite database of another program: it has a table %q but no chatd schema version)", path, ErrCorrupt, name)
		case errors.Is(err, sql.ErrNoRows):
			return 0, fmt.Errorf("%s: %w (an empty SQLite database, with no chatd tables)", path, ErrCorrupt)
		default:
			return 0, adminFail(path, err)
		}
	}
	return version, nil
}

// adminFail names the file, and says ErrCorrupt for SQLite's "not a database" and "malformed".
func adminFail(path string, err error) error {
	if isCorrupt(err) {
		return fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Summary is what a database holds, in numbers.
type Summary struct {
	Version     int   // schema version
	Bytes       int64 // size of the file (without its write-ahead log)
	Identities  int   // registered names
	Rooms       int
	Messages    int   // history lines, every room's
	LastMessage int64 // the newest message's id; 0 when there is none
}

// summarize counts what db holds; version is its schema version.
func summarize(ctx context.Context, db *sql.DB, path string, version int) (Summary, error) {
	s := Summary{Version: version}
	if fi, err := os.Stat(path); err == nil {
		s.Bytes = fi.Size()
	}
	rooms := `0`
	if version >= 4 {
		rooms = `(SELECT count(*) FROM rooms)`
	}
	err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM identities), `+rooms+`,
		(SELECT count(*) FROM messages), (SELECT coalesce(max(id), 0) FROM messages)`).
		Scan(&s.Identities, &s.Rooms, &s.Messages, &s.LastMessage)
	if err != nil {
		return Summary{}, adminFail(path, err)
	}
	return s, nil
}

// Summary counts what the database holds.
func (a *Admin) Summary(ctx context.Context) (Summary, error) {
	return summarize(ctx, a.db, a.path, a.version)
}

// integrityProblems runs PRAGMA integrity_check, which reads every page and index, and returns
// what it found wrong (at most max lines); none when the database is intact.
func integrityProblems(ctx context.Context, db *sql.DB, max int) ([]string, error) {
	rows, err := db.QueryContext(ctx, fmt.Sprintf(`PRAGMA integrity_check(%d)`, max))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		// One row may hold several problems, a line each.
		for l := range strings.SplitSeq(line, "\n") {
			if l = strings.TrimSpace(l); l != "ok" && l != "" && len(problems) < max {
				problems = append(problems, l)
			}
		}
	}
	return problems, rows.Err()
}

// foreignKeyProblems runs PRAGMA foreign_key_check: rows that point at a row that is not there.
func foreignKeyProblems(ctx context.Context, db *sql.DB, max int) ([]string, error) {
	rows, err := db.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fk int
		if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
			return nil, err
		}
		if len(problems) < max {
			problems = append(problems, fmt.Sprintf("a row of %s (rowid %d) refers to a missing row of %s", table, rowid.Int64, parent))
		}
	}
	return problems, rows.Err()
}

// maxProblems bounds what a check reports of each kind: enough to see what is wrong.
const maxProblems = 20

// Report is what Check found.
type Report struct {
	Summary
	Integrity   []string // what PRAGMA integrity_check found wrong; none when it passed
	ForeignKeys []string // rows referring to rows that are not there
}

// OK reports whether the check found nothing wrong.
func (r Report) OK() bool { return len(r.Integrity) == 0 && len(r.ForeignKeys) == 0 }

// Check runs SQLite's integrity and foreign key checks over the whole database, in one read
// transaction beside a running server (which goes on writing meanwhile). A damaged file that
// cannot even be counted is an error wrapping ErrCorrupt.
func (a *Admin) Check(ctx context.Context) (Report, error) {
	var r Report
	var err error
	if r.Integrity, err = integrityProblems(ctx, a.db, maxProblems); err != nil {
		return r, adminFail(a.path, err)
	}
	if r.ForeignKeys, err = foreignKeyProblems(ctx, a.db, maxProblems); err != nil {
		return r, adminFail(a.path, err)
	}
	if len(r.Integrity) > 0 {
		// Counting may fail on the damage: what is wrong has been found already.
		r.Summary, _ = a.Summary(ctx)
		r.Version = a.version
		return r, nil
	}
	r.Summary, err = a.Summary(ctx)
	return r, err
}

// InspectFile checks the database file at path as restore needs it: an SQLite file, intact
// (integrity and foreign key checks), chatd's, and no newer than this code. It opens the file
// read-only and immutable: nothing is created beside it, and a write-ahead log beside it is not
// read, so one that is not empty is refused (the file alone would be an old state).
func InspectFile(ctx context.Context, path string) (Summary, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Summary{}, fmt.Errorf("inspect: %w", err)
	}
	return inspectFile(ctx, abs, abs)
}

// inspectFile is InspectFile of the file at abs, named name in errors: restore checks its copy
// of the file the operator named.
func inspectFile(ctx context.Context, abs, name string) (Summary, error) {
	fi, err := os.Stat(abs)
	if err != nil {
		return Summary{}, fmt.Errorf("inspect: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Summary{}, fmt.Errorf("inspect: %s is not a regular file", name)
	}
	if wal, err := os.Stat(abs + "-wal"); err == nil && wal.Size() > 0 {
		return Summary{}, fmt.Errorf("%s has a write-ahead log beside it (%s-wal): it is a live database, or a copy taken "+
			"without its log; take a copy with chatd backup instead", name, name)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: "mode=ro&immutable=1"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return Summary{}, fmt.Errorf("inspect %s: %w", name, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	version, err := chatdVersion(ctx, db, name)
	if err != nil {
		return Summary{}, err
	}
	problems, err := integrityProblems(ctx, db, 5)
	if err != nil {
		return Summary{}, adminFail(name, err)
	}
	if len(problems) > 0 {
		return Summary{}, fmt.Errorf("%s: %w (integrity check: %s)", name, ErrCorrupt, strings.Join(problems, "; "))
	}
	if problems, err = foreignKeyProblems(ctx, db, 5); err != nil {
		return Summary{}, adminFail(name, err)
	}
	if len(problems) > 0 {
		return Summary{}, fmt.Errorf("%s: %w (foreign key check: %s)", name, ErrCorrupt, strings.Join(problems, "; "))
	}
	return summarize(ctx, db, abs, version)
}

// Backup writes a consistent copy of the database to dest, which must not exist, while a server
// may go on using it: VACUUM INTO reads one snapshot (every transaction committed before it
// began, none after) in a read transaction, which in WAL mode never blocks the server's writes.
// The copy is written beside dest under a temporary name, synced, checked with InspectFile, and
// only then linked to dest, so dest is never a partial file; it is readable by its owner only.
func (a *Admin) Backup(ctx context.Context, dest string) (Summary, error) {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return Summary{}, fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Lstat(dest); err == nil {
		return Summary{}, fmt.Errorf("backup: %w", existsError(dest))
	}
	// CreateTemp makes the file 0600: the copy holds people's keys and private messages.
	// VACUUM INTO writes into an existing file as long as it is empty.
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return Summary{}, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	f.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(tmp)
			os.Remove(tmp + "-journal")
		}
	}()
	if _, err := a.db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return Summary{}, fmt.Errorf("backup: %w", adminFail(a.path, err))
	}
	if err := syncFile(tmp); err != nil {
		return Summary{}, fmt.Errorf("backup: %w", err)
	}
	sum, err := InspectFile(ctx, tmp)
	if err != nil {
		return Summary{}, fmt.Errorf("backup: the copy does not check out: %w", err)
	}
	if err := linkNew(tmp, dest); err != nil {
		return Summary{}, fmt.Errorf("backup: %w", err)
	}
	done = true
	os.Remove(tmp)
	syncDir(filepath.Dir(dest))
	return sum, nil
}

// linkNew gives the file at tmp the name dest, failing if dest exists. A hard link cannot
// replace a file that appeared meanwhile; a file system without hard links gets a rename after
// a check.
func linkNew(tmp, dest string) error {
	err := os.Link(tmp, dest)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return existsError(dest)
	}
	if _, statErr := os.Lstat(dest); statErr == nil {
		return existsError(dest)
	}
	return os.Rename(tmp, dest)
}

// existsError is the refusal to write over the file it names; it is an fs.ErrExist.
type existsError string

func (e existsError) Error() string {
	return string(e) + " exists; chatd never overwrites a file: choose another name"
}
func (e existsError) Unwrap() error { return fs.ErrExist }

// syncFile makes the file at path durable: VACUUM INTO does not sync what it writes.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncDir makes dir's new entries durable. Some systems cannot sync a directory: ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Restored says what Restore did.
type Restored struct {
	Summary
	// Previous is where the database that was replaced went (with its write-ahead log, if it
	// had one, as Previous+"-wal"); "" when there was none.
	Previous string
}

// Restore makes the database file src (a backup) the database at dbPath. The caller must hold
// the data directory (no server may have dbPath open). src is copied beside dbPath and the
// copy checked with InspectFile (an older schema is fine: the server migrates it when it
// starts); then the database in place, with its write-ahead log, is moved aside to
// dbPath.before-restore-TIME, its shared-memory file removed, and the copy renamed into place.
// Each step is a rename, so an interrupted restore leaves either database whole.
func Restore(ctx context.Context, src, dbPath string) (Restored, error) {
	src, err := filepath.Abs(src)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	dbPath, err = filepath.Abs(dbPath)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	if sfi, err := os.Stat(src); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	} else if dfi, err := os.Stat(dbPath); err == nil && os.SameFile(sfi, dfi) {
		return Restored{}, fmt.Errorf("restore: %s is the database itself", src)
	}
	if wal, err := os.Stat(src + "-wal"); err == nil && wal.Size() > 0 {
		return Restored{}, fmt.Errorf("restore: %s has a write-ahead log beside it (%s-wal): it is a live database, or a copy taken "+
			"without its log; restore a copy made with chatd backup", src, src)
	}
	dir := filepath.Dir(dbPath)
	tmp, err := copyToTemp(src, dir, "."+filepath.Base(dbPath)+".restore-*")
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.Remove(tmp)
		}
	}()
	sum, err := inspectFile(ctx, tmp, src)
	if err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	var r Restored
	r.Summary = sum
	if _, err := os.Lstat(dbPath); err == nil {
		r.Previous = dbPath + ".before-restore-" + time.Now().Format("20060102-150405")
		if _, err := os.Lstat(r.Previous); err == nil {
			return Restored{}, fmt.Errorf("restore: %s exists: wait a second and try again", r.Previous)
		}
		// The log first: a database moved without it would lose what it holds, a log left
		// behind would be replayed into the restored database.
		for _, suffix := range []string{"-wal", "-journal"} {
			if err := os.Rename(dbPath+suffix, r.Previous+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Restored{}, fmt.Errorf("restore: move the old database aside: %w", err)
			}
		}
		if err := os.Remove(dbPath + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Restored{}, fmt.Errorf("restore: %w", err)
		}
		if err := os.Rename(dbPath, r.Previous); err != nil {
			return Restored{}, fmt.Errorf("restore: move the old database aside: %w", err)
		}
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return Restored{}, fmt.Errorf("restore: %w", err)
	}
	done = true
	syncDir(dir)
	return r, nil
}

// copyToTemp copies src into a new file (mode 0600) in dir, synced, and returns its name.
func copyToTemp(src, dir, pattern string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

// NameInfo is a registered name as the operator sees it.
type NameInfo struct {
	chat.Identity          // the name, when it was claimed, its keys and the pending ones
	Rooms         []string // the rooms it comes back to (memberships)
	Owns          []string // the rooms it owns (Name only)
	Invited       []string // the rooms it is invited to (Name only)
	QueuedDMs     int      // private messages waiting for it (Name only)
	WebTokens     int      // its unexpired web sessions, bot tokens and sign-in links (Name only)
}

// Names returns every registered name with its keys, pending keys (unexpired) and rooms, in
// name order.
func (a *Admin) Names(ctx context.Context) ([]NameInfo, error) {
	now := time.Now().UnixMilli()
	rows, err := a.db.QueryContext(ctx, `
		SELECT i.name_key, i.name, i.created, k.fingerprint, k.type, k.authorized_key, k.added, k.expires
		FROM identities i LEFT JOIN keys k ON k.identity = i.name_key AND (k.expires = 0 OR k.expires > ?)
		ORDER BY i.name_key, k.added, k.id`, now)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer rows.Close()
	var names []NameInfo
	index := map[string]int{}
	for rows.Next() {
		var nameKey, name string
		var created int64
		var fp, typ, ak sql.NullString
		var added, expires sql.NullInt64
		if err := rows.Scan(&nameKey, &name, &created, &fp, &typ, &ak, &added, &expires); err != nil {
			return nil, adminFail(a.path, err)
		}
		i, ok := index[nameKey]
		if !ok {
			i = len(names)
			index[nameKey] = i
			names = append(names, NameInfo{Identity: chat.Identity{Name: name, Created: fromMilli(created)}})
		}
		if !fp.Valid {
			continue
		}
		k := chat.Key{Fingerprint: fp.String, Type: typ.String, AuthorizedKey: ak.String, Added: fromMilli(added.Int64)}
		if expires.Int64 == 0 {
			names[i].Keys = append(names[i].Keys, k)
		} else {
			k.Expires = fromMilli(expires.Int64)
			names[i].Pending = append(names[i].Pending, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	rows.Close()
	if a.version < 4 {
		return names, nil
	}
	mrows, err := a.db.QueryContext(ctx, `SELECT name_key, room FROM memberships ORDER BY name_key, room`)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var nameKey, room string
		if err := mrows.Scan(&nameKey, &room); err != nil {
			return nil, adminFail(a.path, err)
		}
		if i, ok := index[nameKey]; ok {
			names[i].Rooms = append(names[i].Rooms, room)
		}
	}
	if err := mrows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	return names, nil
}

// Name returns everything about the registered name (compared case-insensitively), or false
// when nobody has registered it.
func (a *Admin) Name(ctx context.Context, name string) (NameInfo, bool, error) {
	if !chat.ValidName(name) {
		return NameInfo{}, false, nil
	}
	key := chat.Fold(name)
	id, ok, err := loadIdentity(a.db, key, time.Now().UnixMilli())
	if err != nil {
		return NameInfo{}, false, adminFail(a.path, err)
	}
	if !ok {
		return NameInfo{}, false, nil
	}
	info := NameInfo{Identity: id}
	if info.QueuedDMs, err = a.count(ctx, `SELECT count(*) FROM dms WHERE recipient_key = ?`, key); err != nil {
		return NameInfo{}, false, err
	}
	if a.version >= 4 {
		for _, q := range []struct {
			dst   *[]string
			query string
		}{
			{&info.Rooms, `SELECT room FROM memberships WHERE name_key = ? ORDER BY room`},
			{&info.Owns, `SELECT name FROM rooms WHERE lower(owner) = ? ORDER BY name`},
			{&info.Invited, `SELECT room FROM invitations WHERE name_key = ? ORDER BY room`},
		} {
			if *q.dst, err = a.list(ctx, q.query, key); err != nil {
				return NameInfo{}, false, err
			}
		}
	}
	if ok, err := a.hasTable(ctx, "web_tokens"); err != nil {
		return NameInfo{}, false, err
	} else if ok {
		if info.WebTokens, err = a.count(ctx, `SELECT count(*) FROM web_tokens WHERE name_key = ? AND (expires = 0 OR expires > ?)`,
			key, time.Now().UnixMilli()); err != nil {
			return NameInfo{}, false, err
		}
	}
	return info, true, nil
}

// Released says what ReleaseName removed.
type Released struct {
	Name        string   // the name as it was registered
	Keys        int      // its keys
	Pending     int      // keys proposed for it, not yet confirmed
	Memberships int      // rooms it would have come back to
	WebTokens   int      // web sessions, bot tokens and sign-in links
	QueuedDMs   int      // private messages that were waiting for it
	Owned       []string // rooms it owned, now without an owner (unless kept)
	Invited     []string // rooms it was invited to, invitations removed (unless kept)
	Messages    int      // history lines that keep the name as their sender
}

// ReleaseName frees a registered name (compared case-insensitively) so that the next key to log
// in with it claims it: the identity goes with its keys, pending keys, memberships, web tokens
// and the private messages waiting for it (they were for the old owner). Its rooms lose their
// owner and its invitations go too, unless keepRooms: whoever claims the name next need not be
// the same person. The history is untouched: each line keeps the name it was said under. It
// returns chat.ErrNotFound when nobody has registered name.
//
// A running server keeps the people online, and each room's owner and invitations, in memory:
// release the name with the server stopped (the caller holds the data directory).
func (a *Admin) ReleaseName(ctx context.Context, name string, keepRooms bool) (Released, error) {
	if !chat.ValidName(name) {
		return Released{}, fmt.Errorf("release %q: %w", name, chat.ErrNotFound)
	}
	if a.version < 4 {
		return Released{}, fmt.Errorf("release: the database has schema version %d: start chatd once to bring it to version %d", a.version, SchemaVersion())
	}
	key := chat.Fold(name)
	webTokens, err := a.hasTable(ctx, "web_tokens")
	if err != nil {
		return Released{}, err
	}
	tx, err := a.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return Released{}, adminFail(a.path, err)
	}
	defer tx.Rollback()
	var r Released
	err = tx.QueryRowContext(ctx, `SELECT name FROM identities WHERE name_key = ?`, key).Scan(&r.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return Released{}, fmt.Errorf("release %q: nobody has registered it: %w", name, chat.ErrNotFound)
	}
	if err != nil {
		return Released{}, adminFail(a.path, err)
	}
	counts := []struct {
		dst   *int
		query string
	}{
		{&r.Keys, `SELECT count(*) FROM keys WHERE identity = ?1 AND expires = 0`},
		{&r.Pending, `SELECT count(*) FROM keys WHERE identity = ?1 AND expires != 0`},
		{&r.Memberships, `SELECT count(*) FROM memberships WHERE name_key = ?1`},
		{&r.QueuedDMs, `SELECT count(*) FROM dms WHERE recipient_key = ?1`},
		{&r.Messages, `SELECT count(*) FROM messages WHERE lower(sender) = ?1`},
	}
	if webTokens {
		counts = append(counts, struct {
			dst   *int
			query string
		}{&r.WebTokens, `SELECT count(*) FROM web_tokens WHERE name_key = ?1`})
	}
	for _, c := range counts {
		if err := tx.QueryRowContext(ctx, c.query, key).Scan(c.dst); err != nil {
			return Released{}, adminFail(a.path, err)
		}
	}
	if r.Owned, err = queryStrings(ctx, tx, `SELECT name FROM rooms WHERE lower(owner) = ? ORDER BY name`, key); err != nil {
		return Released{}, adminFail(a.path, err)
	}
	if r.Invited, err = queryStrings(ctx, tx, `SELECT room FROM invitations WHERE name_key = ? ORDER BY room`, key); err != nil {
		return Released{}, adminFail(a.path, err)
	}
	// The foreign keys cascade from identities; said outright all the same, so that the release
	// does not depend on the connection's foreign_keys setting.
	deletes := []string{
		`DELETE FROM keys WHERE identity = ?`,
		`DELETE FROM memberships WHERE name_key = ?`,
		`DELETE FROM dms WHERE recipient_key = ?`,
	}
	if webTokens {
		deletes = append(deletes, `DELETE FROM web_tokens WHERE name_key = ?`)
	}
	if !keepRooms {
		deletes = append(deletes,
			`UPDATE rooms SET owner = '' WHERE lower(owner) = ?`,
			`DELETE FROM invitations WHERE name_key = ?`)
	}
	deletes = append(deletes, `DELETE FROM identities WHERE name_key = ?`)
	for _, q := range deletes {
		if _, err := tx.ExecContext(ctx, q, key); err != nil {
			return Released{}, adminFail(a.path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Released{}, adminFail(a.path, err)
	}
	return r, nil
}

// ExportFilter selects the messages Export writes; its zero value is every one.
type ExportFilter struct {
	Room  string    // one room (as chat.ParseRoom reads it); "" for every room
	Since time.Time // none older; zero for no bound
}

// exportChunk is how many messages one query of Export reads: each query is a short read
// transaction of its own, so that a long export never holds a snapshot (and the server's
// write-ahead log) for its whole length.
const exportChunk = 1000

// Export calls fn with every message f selects, oldest first (by id), as of the moment it
// starts: messages said during the export are left for the next one. Messages are read in
// chunks and never all held at once. It returns how many it passed to fn, and stops at fn's
// first error, or ctx's. A room that does not exist is chat.ErrNotFound.
func (a *Admin) Export(ctx context.Context, f ExportFilter, fn func(chat.Message) error) (int, error) {
	if a.version < 4 {
		return 0, fmt.Errorf("export: the database has schema version %d: start chatd once to bring it to version %d", a.version, SchemaVersion())
	}
	if f.Room != "" {
		room, err := chat.ParseRoom(f.Room)
		if err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
		f.Room = room
		var exists bool
		if err := a.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM rooms WHERE name = ?)`, room).Scan(&exists); err != nil {
			return 0, adminFail(a.path, err)
		}
		if !exists {
			return 0, fmt.Errorf("export: no room %s: %w", room, chat.ErrNotFound)
		}
	}
	var last int64
	if err := a.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM messages`).Scan(&last); err != nil {
		return 0, adminFail(a.path, err)
	}
	since := int64(math.MinInt64)
	if !f.Since.IsZero() {
		since = f.Since.UnixMilli()
	}
	// The history of a room being deleted (room_deletions) is gone already, whatever is left
	// of its rows.
	query := `SELECT id, at, kind, room, sender, text FROM messages
		WHERE id > ?1 AND id <= ?2 AND at >= ?3
		AND id > (SELECT coalesce(max(up_to), 0) FROM room_deletions d WHERE d.room = messages.room)
		ORDER BY id LIMIT ?4`
	args := []any{int64(0), last, since, exportChunk}
	if f.Room != "" {
		query = `SELECT id, at, kind, room, sender, text FROM messages INDEXED BY messages_room
			WHERE room = ?5 AND id > ?1 AND id <= ?2 AND at >= ?3
			AND id > (SELECT coalesce(max(up_to), 0) FROM room_deletions WHERE room = ?5)
			ORDER BY id LIMIT ?4`
		args = append(args, f.Room)
	}
	n := 0
	for {
		chunk, err := a.exportChunk(ctx, query, args)
		if err != nil {
			return n, err
		}
		for _, m := range chunk {
			if err := fn(m); err != nil {
				return n, err
			}
			n++
		}
		if len(chunk) < exportChunk {
			return n, nil
		}
		args[0] = chunk[len(chunk)-1].ID
	}
}

// exportChunk reads one chunk of Export.
func (a *Admin) exportChunk(ctx context.Context, query string, args []any) ([]chat.Message, error) {
	rows, err := a.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	defer rows.Close()
	msgs := make([]chat.Message, 0, exportChunk)
	for rows.Next() {
		var m chat.Message
		var at int64
		if err := rows.Scan(&m.ID, &at, &m.Kind, &m.Room, &m.From, &m.Text); err != nil {
			return nil, adminFail(a.path, err)
		}
		m.At = fromMilli(at)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, adminFail(a.path, err)
	}
	return msgs, nil
}

// hasTable reports whether the database has the table name (web_tokens came with version 5).
func (a *Admin) hasTable(ctx context.Context, name string) (bool, error) {
	var ok bool
	if err := a.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?)`, name).Scan(&ok); err != nil {
		return false, adminFail(a.path, err)
	}
	return ok, nil
}

// count runs a query of one number.
func (a *Admin) count(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	if err := a.db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, adminFail(a.path, err)
	}
	return n, nil
}

// list runs a query of one text column.
func (a *Admin) list(ctx context.Context, query string, args ...any) ([]string, error) {
	list, err := queryStrings(ctx, a.db, query, args...)
	if err != nil {
		return nil, adminFail(a.path, err)
	}
	return list, nil
}

// queryStrings runs a query of one text column, in a transaction or not.
func queryStrings(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		list = append(list, s)
	}
	return list, rows.Err()
}
