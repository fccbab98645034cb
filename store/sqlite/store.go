// Package sqlite is chatd's storage on one embedded SQLite file (modernc.org/sqlite, no cgo) in
// WAL mode: which SSH keys own which names (trust on first use), the rooms with their
// invitations and members, each room's message history, private messages waiting for someone
// offline, bans and settings, and the web client's sign-in tokens. It implements room.Store,
// with the types of package chat, and passes its conformance suite (package store/storetest).
//
// Public messages are written behind the caller's back: Append only queues, and a background
// writer commits the queue in batches, so that the room never waits for the disk. Everything else
// is synchronous.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"chatd/chat"

	"github.com/charmbracelet/log"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	// ErrNewerSchema: the database was written by a newer chatd.
	ErrNewerSchema = errors.New("database schema is newer than this chatd")
	// ErrCorrupt: the file is not a usable SQLite database.
	ErrCorrupt = errors.New("database is corrupt or not a chatd database")
)

// errClosed is returned by every method called after Close.
var errClosed = errors.New("store is closed")

// Config holds the store's settings. The zero value of each field but Path means its default.
type Config struct {
	// Path is the database file, e.g. <data-dir>/chat.db; required. It is created (mode 0600, its
	// directory 0700) when missing.
	Path string
	// FlushInterval is the most time an appended message waits before its commit. Default
	// 100ms; at most 500ms.
	FlushInterval time.Duration
	// MaxBatch is the most messages committed in one transaction. Default 1000.
	MaxBatch int
	// StoreLimits are the caps on what people can make the store hold (chat.StoreLimits).
	chat.StoreLimits
	// KeepMessages is how many of its newest messages each room's history keeps; older ones are
	// deleted in the background. KeepFor is how long a message is kept, in every room. Unlike
	// the other fields, 0 is no limit, not the default: DefaultConfig has the defaults (see
	// ParseKeep for the flag).
	KeepMessages int
	KeepFor      time.Duration
	// Now is the clock, for Identity.Created, Key.Added and zero timestamps. Default time.Now.
	Now func() time.Time
}

// maxFlushInterval keeps the durability promise: a message appended more than a second ago has
// been committed, and survives the process being killed.
const maxFlushInterval = 500 * time.Millisecond

const (
	// DefaultKeepMessages and DefaultKeepFor bound the history of each room of a community
	// server: a year of a lively room, or the last 100 000 lines of a busy one (10-20 MB of
	// database at typical line lengths, 100 MB at the longest), far more than anyone scrolls
	// back through (a room loads its newest 1000), while a flood can no longer grow the file
	// without end (the bound is per room: the file's is that times the rooms with a history).
	// Old conversations go after a year: a chat, not an archive kept for ever.
	DefaultKeepMessages = 100_000
	DefaultKeepFor      = 365 * 24 * time.Hour
)

// DefaultConfig returns the defaults; Path is left empty.
func DefaultConfig() Config {
	return Config{
		FlushInterval: 100 * time.Millisecond,
		MaxBatch:      1000,
		StoreLimits:   chat.DefaultStoreLimits(),
		KeepMessages:  DefaultKeepMessages,
		KeepFor:       DefaultKeepFor,
		Now:           time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.FlushInterval, d.FlushInterval)
	orDefault(&c.MaxBatch, d.MaxBatch)
	c.StoreLimits = c.StoreLimits.WithDefaults()
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports the first invalid setting. Zero values are valid (they mean the default),
// except for Path.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("store: path is required")
	case c.FlushInterval < 0 || c.FlushInterval > maxFlushInterval:
		return fmt.Errorf("store: flush interval %v out of range (0 for the default, at most %v)", c.FlushInterval, maxFlushInterval)
	case c.MaxBatch < 0:
		return fmt.Errorf("store: max batch %d is negative", c.MaxBatch)
	case c.StoreLimits.Validate() != nil:
		return fmt.Errorf("store: %w", c.StoreLimits.Validate())
	case c.KeepMessages < 0:
		return fmt.Errorf("store: keep messages %d is negative (0 keeps them all)", c.KeepMessages)
	case c.KeepFor < 0:
		return fmt.Errorf("store: keep for %v is negative (0 keeps messages for ever)", c.KeepFor)
	}
	return nil
}

const (
	// busyTimeout is how long a statement waits for another process's lock (a backup, the
	// sqlite3 shell). Within the process, writes never wait on SQLite's lock: see SQLite.writeMu.
	busyTimeout = 5 * time.Second
	// maxOpenConns: WAL lets readers run beside the one writer; more connections than cores buy
	// nothing but page caches.
	maxOpenConns = 4
	// defaultMaxBacklog bounds the messages waiting for the writer while the database fails.
	defaultMaxBacklog = 100_000
)

// SQLite is the store on one SQLite file. Its methods are safe for concurrent use.
type SQLite struct {
	cfg  Config
	log  *log.Logger
	db   *sql.DB
	path string

	// writeMu serialises this process's write transactions, so that they queue here rather than
	// poll in SQLite's busy handler.
	writeMu sync.Mutex

	q     queue // Append's queue, drained by the writer goroutine
	p     pruner
	stmts statements
	wg    sync.WaitGroup

	// badRoomNoted and noRoomNoted: a message without a valid room, or to a room that does not
	// exist, was dropped and logged; later ones are dropped quietly.
	badRoomNoted, noRoomNoted atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// options are the unexported knobs the tests turn.
type options struct {
	migrations []migration // default: schema()
	maxBacklog int         // default: defaultMaxBacklog
	prune      pruneOptions
}

// Open opens (creating it if need be) the database at cfg.Path, brings its schema up to date and
// starts the writer. A file that is not a usable chatd database is refused with an error wrapping
// ErrCorrupt or ErrNewerSchema, and left untouched. logger may be nil.
func Open(cfg Config, logger *log.Logger) (*SQLite, error) {
	return open(cfg, logger, options{})
}

func open(cfg Config, logger *log.Logger, opts options) (*SQLite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = log.New(io.Discard)
	}
	if opts.migrations == nil {
		opts.migrations = schema()
	}
	if opts.maxBacklog <= 0 {
		opts.maxBacklog = defaultMaxBacklog
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := createFile(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	s := &SQLite{cfg: cfg, log: logger, db: db, path: path, stmts: statements{db: db}}
	if err := s.prepare(opts.migrations); err != nil {
		db.Close()
		return nil, err
	}
	s.q.init(cfg.FlushInterval, cfg.MaxBatch, opts.maxBacklog)
	s.p.init(opts.prune)
	s.wg.Add(2)
	go s.writer()
	go s.pruneLoop()
	if cfg.KeepMessages > 0 || cfg.KeepFor > 0 {
		s.log.Info("history retention", "keep", FormatKeep(cfg.KeepMessages, cfg.KeepFor))
	}
	return s, nil
}

// createFile makes path's directory (0700) and path itself (0600) when they are missing.
// Existing ones keep their modes.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// dsn is the data source name for path. Only per-connection settings go here: journal_mode=WAL
// changes the file, so it is set once the file has been checked (see prepare). Write transactions
// BEGIN IMMEDIATE, so that they never fail to upgrade a read lock.
func dsn(path string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)} // escapes '?', '#' and '%' in the path
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return u.String() + "?" + q.Encode()
}

// isCorrupt reports whether err says the file is not a database, or a damaged one.
func isCorrupt(err error) bool {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // extended result codes are on
	case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
		return true
	}
	return false
}

// corruptError names the file and the way out.
func (s *SQLite) corruptError(reason string) error {
	return fmt.Errorf("open store: %s: %w (%s); restore a backup, or move the file away to start afresh", s.path, ErrCorrupt, reason)
}

// fail wraps an error in the store's context, turning SQLite's corruption codes into ErrCorrupt.
func (s *SQLite) fail(what string, err error) error {
	if isCorrupt(err) {
		return fmt.Errorf("%s: %s: %w: %v", what, s.path, ErrCorrupt, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isClosed reports whether Close has been called.
func (s *SQLite) isClosed() bool {
	s.q.mu.Lock()
	defer s.q.mu.Unlock()
	return s.q.closed
}

// Close commits everything queued, stops the writer and closes the database. Later calls do
// nothing and return nil; every other method then returns an error.
func (s *SQLite) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.q.close()
		s.wg.Wait() // the writer commits everything queued before it returns
		s.q.mu.Lock()
		lost := s.q.abandoned
		s.q.mu.Unlock()
		if lost > 0 {
			s.closeErr = fmt.Errorf("close store: %d messages could not be committed", lost)
		}
		s.stmts.close()
		if err := s.db.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// Flush returns once every message appended before the call is committed, or ctx is done. If
// messages were dropped since the last Flush that said so (the database failing for so long that
// the backlog overflowed), it returns an error saying how many.
func (s *SQLite) Flush(ctx context.Context) error {
	return s.q.flush(ctx)
}

// now is the store's clock.
func (s *SQLite) now() time.Time { return s.cfg.Now() }

// unixMilli turns t into what the db stores, t itself or now when t is zero.
func (s *SQLite) unixMilli(t time.Time) int64 {
	if t.IsZero() {
		t = s.now()
	}
	return t.UnixMilli()
}

// fromMilli is a stored time as the store returns it: local time, to the millisecond.
func fromMilli(ms int64) time.Time { return time.UnixMilli(ms) }

// orDefault sets *v to def when it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
