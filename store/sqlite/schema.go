package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// migration is one step of the schema. Version N of the schema is what the first N migrations
// make; the version is kept in PRAGMA user_version.
type migration struct {
	name string
	sql  string // one or more statements, run in one transaction with the version bump
}

// schema returns the migrations, oldest first. Never edit or reorder a released migration: add a
// new one at the end.
func schema() []migration {
	return []migration{
		{"identities, keys, messages, dms", schemaV1},
		{"bans, settings", schemaV2},
		{"pending keys, dm senders", schemaV3},
		{"rooms, invitations, memberships, messages by room", schemaV4},
		{"web tokens, messages by time", schemaV5},
	}
}

// schemaV1: names are kept folded (ASCII lower case) for lookups beside their display form; times
// are Unix milliseconds (UTC). Newest-first history reads walk the messages' INTEGER PRIMARY KEY
// (the rowid b-tree) backwards, so they need no other index. AUTOINCREMENT keeps ids increasing
// even once old rows are pruned.
const schemaV1 = `
CREATE TABLE identities (
	name_key TEXT PRIMARY KEY,
	name     TEXT NOT NULL,
	created  INTEGER NOT NULL
) STRICT;

CREATE TABLE keys (
	id             INTEGER PRIMARY KEY,
	identity       TEXT NOT NULL REFERENCES identities(name_key) ON DELETE CASCADE,
	fingerprint    TEXT NOT NULL,
	type           TEXT NOT NULL,
	authorized_key TEXT NOT NULL,
	added          INTEGER NOT NULL,
	UNIQUE (identity, fingerprint)
) STRICT;

CREATE TABLE messages (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	at     INTEGER NOT NULL,
	kind   INTEGER NOT NULL,
	sender TEXT NOT NULL,
	text   TEXT NOT NULL
) STRICT;

CREATE TABLE dms (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	at            INTEGER NOT NULL,
	sender        TEXT NOT NULL,
	recipient_key TEXT NOT NULL,
	recipient     TEXT NOT NULL,
	text          TEXT NOT NULL
) STRICT;

CREATE INDEX dms_recipient ON dms (recipient_key, id);
`

// schemaV2: bans (a name, a key fingerprint or an address range; expires 0 means never) and
// settings that operators change at run time, such as the message of the day.
const schemaV2 = `
CREATE TABLE bans (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	kind    TEXT NOT NULL,
	value   TEXT NOT NULL,
	reason  TEXT NOT NULL,
	by      TEXT NOT NULL,
	created INTEGER NOT NULL,
	expires INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;
`

// schemaV3: a key added with /keys add is pending (expires != 0: Unix ms when the proposal
// lapses) until it logs in once, which proves its holder has it; active keys have expires 0.
// keys_fingerprint finds a key's names (the names-per-key cap, bans by name), keys_pending the
// lapsed proposals to delete. A queued private message records its sender folded and the
// sender's address, for the per-sender caps; rows of older versions get the folded name and no
// address.
const schemaV3 = `
ALTER TABLE keys ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
CREATE INDEX keys_fingerprint ON keys (fingerprint);
CREATE INDEX keys_pending ON keys (expires) WHERE expires != 0;

ALTER TABLE dms ADD COLUMN sender_key TEXT NOT NULL DEFAULT '';
ALTER TABLE dms ADD COLUMN sender_addr TEXT NOT NULL DEFAULT '';
UPDATE dms SET sender_key = lower(sender);
`

// schemaV4: rooms. A room is named as chat.ParseRoom returns it ("#go"); its owner is a display
// name (empty for none), private is 0 or 1. Invitations keep the name folded (unique per room) beside
// its display form, in the order given (id); memberships are registered people's (folded) names,
// and go with the identity or the room. Each message belongs to a room: messages_room is the
// index Recent walks backwards, and retention counts per room along it. The column's default puts
// every existing message in #lobby without rewriting the table, and #lobby is created (dated by its
// first message) only when there are messages to hold: an empty database gets no room, and the
// server creates its default room, whatever it is called. room_deletions records the history of a
// deleted room still to be deleted, in chunks, up to a message id: the room's name may be used
// again at once, and what a crash interrupted is finished at the next start.
const schemaV4 = `
CREATE TABLE rooms (
	name    TEXT PRIMARY KEY,
	owner   TEXT NOT NULL,
	topic   TEXT NOT NULL,
	private INTEGER NOT NULL CHECK (private IN (0, 1)),
	created INTEGER NOT NULL
) STRICT;

CREATE TABLE invitations (
	id       INTEGER PRIMARY KEY,
	room     TEXT NOT NULL REFERENCES rooms(name) ON DELETE CASCADE,
	name_key TEXT NOT NULL,
	name     TEXT NOT NULL,
	UNIQUE (room, name_key)
) STRICT;

CREATE TABLE memberships (
	name_key TEXT NOT NULL REFERENCES identities(name_key) ON DELETE CASCADE,
	room     TEXT NOT NULL REFERENCES rooms(name) ON DELETE CASCADE,
	PRIMARY KEY (name_key, room)
) STRICT, WITHOUT ROWID;

CREATE INDEX memberships_room ON memberships (room);

CREATE TABLE room_deletions (
	room  TEXT PRIMARY KEY,
	up_to INTEGER NOT NULL
) STRICT;

ALTER TABLE messages ADD COLUMN room TEXT NOT NULL DEFAULT '#lobby';
CREATE INDEX messages_room ON messages (room, id);

INSERT INTO rooms(name, owner, topic, private, created)
SELECT '#lobby', '', '', 0, at FROM messages ORDER BY id LIMIT 1;
`

// schemaV5: the web client. web_tokens are the secrets that sign a browser or a bot in, kept by
// their hash (unique, whatever the kind) and the folded name they sign in as, which must be
// registered: they go with the identity. expires 0 is never; web_tokens_name lists and counts a
// name's tokens oldest first, web_tokens_expires finds the expired ones to delete.
// messages_room_at serves History's time ranges, in both directions, from any point of a room's
// history: along messages_room a range far from the newest end would be a scan of the room.
const schemaV5 = `
CREATE TABLE web_tokens (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	hash     TEXT NOT NULL UNIQUE,
	kind     TEXT NOT NULL,
	name_key TEXT NOT NULL REFERENCES identities(name_key) ON DELETE CASCADE,
	name     TEXT NOT NULL,
	label    TEXT NOT NULL,
	created  INTEGER NOT NULL,
	expires  INTEGER NOT NULL
) STRICT;

CREATE INDEX web_tokens_name ON web_tokens (name_key, created);
CREATE INDEX web_tokens_expires ON web_tokens (expires) WHERE expires != 0;

CREATE INDEX messages_room_at ON messages (room, at);
`

// prepare checks the file and migrates it. It refuses, without writing anything, a file that is
// not an SQLite database, a damaged one, an SQLite database of some other program, and one whose
// schema is newer than this code's; only then does it switch the file to WAL and migrate it.
func (s *SQLite) prepare(migrations []migration) error {
	ctx := context.Background()
	version, err := s.inspect(ctx, len(migrations))
	if err != nil {
		return err
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode); err != nil {
		return s.fail("open store: set WAL mode", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open store: %s: journal mode is %q, not wal", s.path, mode)
	}
	for v := version; v < len(migrations); v++ {
		if err := s.migrate(ctx, v+1, migrations[v]); err != nil {
			return err
		}
	}
	switch {
	case version == 0:
		s.log.Info("database created", "path", s.path, "schema", len(migrations))
	case version < len(migrations):
		s.log.Info("database schema migrated", "path", s.path, "from", version, "to", len(migrations))
	}
	return nil
}

// inspect returns the file's schema version after checking that it is ours and intact. It only
// reads.
func (s *SQLite) inspect(ctx context.Context, known int) (int, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		if isCorrupt(err) {
			return 0, s.corruptError(err.Error())
		}
		return 0, fmt.Errorf("open store %s: %w", s.path, err)
	}
	defer conn.Close()

	var version int
	if err := conn.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		if isCorrupt(err) {
			return 0, s.corruptError(err.Error())
		}
		return 0, fmt.Errorf("open store %s: %w", s.path, err)
	}
	if err := quickCheck(ctx, conn); err != nil {
		if isCorrupt(err) || errors.Is(err, errCheckFailed) {
			return 0, s.corruptError(err.Error())
		}
		return 0, fmt.Errorf("open store %s: %w", s.path, err)
	}
	if version > known {
		return 0, fmt.Errorf("open store: %s: %w (schema version %d, this chatd knows up to %d): upgrade chatd or restore a backup",
			s.path, ErrNewerSchema, version, known)
	}
	if version < 0 {
		return 0, s.corruptError(fmt.Sprintf("schema version %d", version))
	}
	if version == 0 {
		// A new database has no tables. Tables without a version belong to something else.
		var name string
		err := conn.QueryRowContext(ctx, `SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\_%' ESCAPE '\' LIMIT 1`).Scan(&name)
		switch {
		case err == nil:
			return 0, s.corruptError(fmt.Sprintf("an SQLite database of another program: it has a table %q but no chatd schema version", name))
		case !errors.Is(err, sql.ErrNoRows):
			return 0, fmt.Errorf("open store %s: %w", s.path, err)
		}
	}
	return version, nil
}

// errCheckFailed is what quickCheck returns for a damaged database.
var errCheckFailed = errors.New("integrity check failed")

// quickCheck runs PRAGMA quick_check, which reads every page.
func quickCheck(ctx context.Context, conn *sql.Conn) error {
	rows, err := conn.QueryContext(ctx, `PRAGMA quick_check(5)`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", errCheckFailed, strings.Join(problems, "; "))
	}
	return nil
}

// migrate applies m, which makes schema version v, in one transaction with the version bump. It
// does nothing if another process got there first.
func (s *SQLite) migrate(ctx context.Context, v int, m migration) (err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock from here on
	if err != nil {
		return s.fail(fmt.Sprintf("open store: migrate to version %d", v), err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var current int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&current); err != nil {
		return s.fail(fmt.Sprintf("open store: migrate to version %d", v), err)
	}
	if current >= v {
		return tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("open store: migrate to version %d (%s): %w", v, m.name, err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v)); err != nil {
		return fmt.Errorf("open store: migrate to version %d: %w", v, err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail(fmt.Sprintf("open store: migrate to version %d", v), err)
	}
	return nil
}
