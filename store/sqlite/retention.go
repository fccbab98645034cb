package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"chatd/chat"
	"chatd/internal/duration"
)

const (
	// pruneInterval is how often the history is pruned when nothing else asks: often enough
	// that an age limit is kept to the minute, cheap when there is nothing to delete (two
	// look-ups at the ends of an index).
	pruneInterval = time.Minute
	// pruneEvery: the writer asks for a prune once it has committed this many messages since the
	// last one, so that a flood overshoots KeepMessages by about this much, not by a minute's
	// worth.
	pruneEvery = 10_000
	// pruneChunk is the most rows one delete transaction removes (of the retention's, or of a
	// deleted room's history). Each chunk holds SQLite's write lock for a few milliseconds; the
	// writer's commits take turns with the chunks, so a prune of a million rows never delays the
	// history by more than one chunk.
	pruneChunk = 500
)

// pruneOptions are the pruner's knobs; tests turn them.
type pruneOptions struct {
	interval time.Duration // default pruneInterval
	every    int           // default pruneEvery
	chunk    int           // default pruneChunk; also the chunk of a deleted room's history
	// beforeChunk, if set, runs before each chunk's delete, with the store's write mutex held.
	beforeChunk func()
	// betweenChunks, if set, runs between two chunks of a deleted room's history, without the
	// write mutex.
	betweenChunks func()
	// done, if set, is told the outcome of every prune pass.
	done func(deleted int, err error)
}

// pruner is the state of the goroutine that deletes the history beyond Config.KeepMessages and
// Config.KeepFor, what is left of deleted rooms' histories, and pending keys and web tokens that
// expired.
type pruner struct {
	opts      pruneOptions
	wake      chan struct{} // capacity 1: asks for a pass now; sends never block
	committed int           // messages committed since the last request; the writer's only

	mu    sync.Mutex
	dirty map[string]bool // rooms with messages committed since their last count, when !all
	all   bool            // every room is to be counted: at start, and after a failed pass
}

func (p *pruner) init(opts pruneOptions) {
	if opts.interval <= 0 {
		opts.interval = pruneInterval
	}
	if opts.every <= 0 {
		opts.every = pruneEvery
	}
	if opts.chunk <= 0 {
		opts.chunk = pruneChunk
	}
	if opts.beforeChunk == nil {
		opts.beforeChunk = func() {}
	}
	if opts.betweenChunks == nil {
		opts.betweenChunks = func() {}
	}
	p.opts = opts
	p.wake = make(chan struct{}, 1)
	p.dirty = map[string]bool{}
	p.all = true
}

// request asks for a pass as soon as the pruner is free.
func (p *pruner) request() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// roomsToCount returns the rooms whose history may have outgrown KeepMessages since the last
// pass, or all true for every room, and starts afresh.
func (p *pruner) roomsToCount() (rooms []string, all bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	all, p.all = p.all, false
	for room := range p.dirty {
		rooms = append(rooms, room)
	}
	clear(p.dirty)
	return rooms, all
}

// recount has the next pass count every room, after a pass that failed.
func (p *pruner) recount() {
	p.mu.Lock()
	p.all = true
	p.mu.Unlock()
}

// noteCommitted is the writer's report of a committed batch: it marks the batch's rooms for
// counting, and asks for a pass every pruneEvery messages. Only the writer goroutine calls it.
func (s *SQLite) noteCommitted(batch []chat.Message) {
	if s.cfg.KeepMessages == 0 {
		return
	}
	s.p.mu.Lock()
	if !s.p.all {
		for i := range batch {
			s.p.dirty[batch[i].Room] = true
		}
	}
	s.p.mu.Unlock()
	s.p.committed += len(batch)
	if s.p.committed >= s.p.opts.every {
		s.p.committed = 0
		s.p.request()
	}
}

// pruneLoop runs a prune pass at start, every interval and whenever asked, until the store
// closes. It is a goroutine of its own, not the writer's work, so that Append and the writer's
// commits never wait for a prune: they only take turns with its chunks.
func (s *SQLite) pruneLoop() {
	defer s.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.q.closing:
			return
		case <-t.C:
		case <-s.p.wake:
			t.Stop()
		}
		deleted, err := s.prune()
		switch {
		case err != nil && !s.isClosed():
			s.log.Error("cannot prune the history; will retry", "retry_in", s.p.opts.interval, "err", err)
		case deleted > 0:
			s.log.Info("history pruned", "deleted", deleted, "keep", FormatKeep(s.cfg.KeepMessages, s.cfg.KeepFor))
		}
		if s.p.opts.done != nil {
			s.p.opts.done(deleted, err)
		}
		t.Reset(s.p.opts.interval)
	}
}

// prune finishes the deletion of deleted rooms' histories, deletes the pending keys and the web
// tokens that expired, then, oldest first and in chunks, the messages older than KeepFor and
// those of each room beyond its newest KeepMessages. It returns how many messages it deleted.
func (s *SQLite) prune() (int, error) {
	now := s.now()
	total, err := s.finishRoomDeletions()
	if err != nil {
		return total, err
	}
	if err := s.deleteExpiredKeys(now); err != nil {
		return total, err
	}
	if err := s.deleteExpiredWebTokens(now); err != nil {
		return total, err
	}
	if s.cfg.KeepFor > 0 {
		n, err := s.pruneByAge(now.Add(-s.cfg.KeepFor).UnixMilli())
		total += n
		if err != nil {
			return total, err
		}
	}
	if s.cfg.KeepMessages > 0 {
		n, err := s.pruneByCount()
		total += n
		if err != nil {
			s.p.recount()
			return total, err
		}
	}
	return total, nil
}

// pruneByAge deletes the messages, of every room, older than before (Unix ms). A read first: a
// pass with nothing to delete never takes the write lock.
func (s *SQLite) pruneByAge(before int64) (int, error) {
	var firstAt int64
	err := s.db.QueryRow(`SELECT at FROM messages ORDER BY id LIMIT 1`).Scan(&firstAt)
	if errors.Is(err, sql.ErrNoRows) || err == nil && firstAt >= before {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail("prune history", err)
	}
	total := 0
	for {
		n, err := s.deleteChunk("prune history", `DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?) AND at < ?`,
			s.p.opts.chunk, before)
		total += n
		// A short chunk is the last: the oldest rows left are to be kept. (A message dated in the
		// future by a clock that jumped holds the age limit up behind it until its time comes.)
		if err != nil || n < s.p.opts.chunk || s.isClosed() {
			return total, err
		}
	}
}

// pruneByCount deletes, room by room, the messages beyond each room's newest KeepMessages: of
// the rooms that had messages committed since the last pass, or of every room at the first.
func (s *SQLite) pruneByCount() (int, error) {
	rooms, all := s.p.roomsToCount()
	if all {
		var err error
		if rooms, err = s.roomNames(); err != nil {
			return 0, err
		}
	}
	total := 0
	for _, room := range rooms {
		// The newest message to go, found along messages_room: none when the room is within its
		// limit. The bound is fixed for the pass: what is appended meanwhile waits for the next.
		var upTo int64
		err := s.db.QueryRow(`SELECT id FROM messages WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?`, room, s.cfg.KeepMessages).Scan(&upTo)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return total, s.fail("prune history", err)
		}
		for {
			n, err := s.deleteChunk("prune history", `DELETE FROM messages WHERE id IN
				(SELECT id FROM messages WHERE room = ? AND id <= ? ORDER BY id LIMIT ?)`, room, upTo, s.p.opts.chunk)
			total += n
			if err != nil {
				return total, err
			}
			if s.isClosed() {
				return total, nil
			}
			if n < s.p.opts.chunk {
				break
			}
		}
	}
	return total, nil
}

// roomNames returns the names of every room.
func (s *SQLite) roomNames() ([]string, error) {
	rows, err := s.db.Query(`SELECT name FROM rooms`)
	if err != nil {
		return nil, s.fail("prune history", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, s.fail("prune history", err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("prune history", err)
	}
	return names, nil
}

// deleteChunk runs one chunk's DELETE in a transaction of its own, and returns how many rows
// it deleted. Between chunks the writer and everyone else get their turn.
func (s *SQLite) deleteChunk(what, query string, args ...any) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.p.opts.beforeChunk()
	res, err := s.db.Exec(query, args...)
	if err != nil {
		return 0, s.fail(what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.fail(what, err)
	}
	return int(n), nil
}

// deleteExpiredKeys forgets the pending keys whose time to be confirmed has passed (they are
// already ignored everywhere: this only keeps the table small).
func (s *SQLite) deleteExpiredKeys(now time.Time) error {
	var expired bool
	if err := s.db.QueryRow(`SELECT EXISTS (SELECT 1 FROM keys WHERE expires != 0 AND expires <= ?)`, now.UnixMilli()).Scan(&expired); err != nil {
		return s.fail("delete expired keys", err)
	}
	if !expired {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.Exec(`DELETE FROM keys WHERE expires != 0 AND expires <= ?`, now.UnixMilli()); err != nil {
		return s.fail("delete expired keys", err)
	}
	return nil
}

// deleteExpiredWebTokens deletes the web tokens past their expiry (already ignored everywhere:
// this keeps sign-in links that were never used, and sessions nobody came back to, from piling
// up). A read first: a pass with nothing to delete never takes the write lock.
func (s *SQLite) deleteExpiredWebTokens(now time.Time) error {
	var expired bool
	if err := s.db.QueryRow(`SELECT EXISTS (SELECT 1 FROM web_tokens WHERE expires != 0 AND expires <= ?)`, now.UnixMilli()).Scan(&expired); err != nil {
		return s.fail("delete expired web tokens", err)
	}
	if !expired {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.db.Exec(`DELETE FROM web_tokens WHERE expires != 0 AND expires <= ?`, now.UnixMilli()); err != nil {
		return s.fail("delete expired web tokens", err)
	}
	return nil
}

// ParseKeep reads a history retention setting, as the --history-keep flag takes it: a count of
// messages ("100000"), an age ("365d"), or both separated by a comma ("100000,365d"), or "all"
// to keep everything. An age is a whole number and a unit, s, m, h, d, w or y (365 days), and
// may combine several ("1y6w"). A limit left out is no limit: "365d" keeps every message of the
// last year, however many. It returns what Config.KeepMessages and Config.KeepFor take.
func ParseKeep(s string) (messages int, age time.Duration, err error) {
	orig := strings.TrimSpace(s)
	if strings.EqualFold(orig, "all") {
		return 0, 0, nil
	}
	if orig == "" {
		return 0, 0, errors.New(`history retention: empty (give a count, an age or both, like "100000,365d", or "all")`)
	}
	var haveCount, haveAge bool
	for part := range strings.SplitSeq(orig, ",") {
		part = strings.TrimSpace(part)
		if n, err := strconv.Atoi(part); err == nil {
			switch {
			case haveCount:
				return 0, 0, fmt.Errorf("history retention %q: two counts", orig)
			case n <= 0:
				return 0, 0, fmt.Errorf(`history retention %q: the count must be positive (keep everything with "all")`, orig)
			}
			messages, haveCount = n, true
			continue
		}
		d, err := parseAge(part)
		if err != nil {
			return 0, 0, fmt.Errorf("history retention %q: %w", orig, err)
		}
		if haveAge {
			return 0, 0, fmt.Errorf("history retention %q: two ages", orig)
		}
		age, haveAge = d, true
	}
	return messages, age, nil
}

// parseAge reads an age like 90s, 10m, 12h, 30d, 2w, 1y or 1y6w.
func parseAge(s string) (time.Duration, error) {
	d, err := duration.Parse(s)
	switch {
	case errors.Is(err, duration.ErrTooLong):
		return 0, fmt.Errorf("%q is more than 100 years", s)
	case errors.Is(err, duration.ErrNotPositive):
		return 0, errors.New(`the age must be positive (keep everything with "all")`)
	case err != nil:
		return 0, fmt.Errorf("%q is neither a count of messages nor an age (like 30d, 2w, 1y)", s)
	}
	return d, nil
}

// FormatKeep is the setting ParseKeep reads for messages and age: "100000,365d", "30d", "all".
func FormatKeep(messages int, age time.Duration) string {
	var parts []string
	if messages > 0 {
		parts = append(parts, strconv.Itoa(messages))
	}
	if age > 0 {
		parts = append(parts, formatAge(age))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, ",")
}

// formatAge writes d in the largest of d, h, m, s that divides it: 365d, 36h, 90m.
func formatAge(d time.Duration) string {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(d.Round(time.Second)/time.Second), 10) + "s"
}
