package natsjs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// errClosed is returned by every method called after Close.
var errClosed = errors.New("store is closed")

// Store is room.Store on NATS JetStream. Its methods are safe for concurrent use, in this
// process and with other processes' stores on the same prefix.
type Store struct {
	cfg Config
	log *log.Logger

	nc     *nats.Conn
	ownsNC bool // the store connected, so Close disconnects
	js     jetstream.JetStream

	// The history: one stream of every room's lines, its name and subject prefix.
	rooms      jetstream.Stream
	streamName string
	subjPrefix string // "chatd.room."

	// The ID allocator: a stream whose sequence numbers bans, private messages and web tokens.
	idStream string
	idSubj   string // "chatd.id."

	identities, keys, roomList, members, bans, settings, dms, tokens jetstream.KeyValue

	cache roomCache // the rooms, kept by a watcher of bucket rooms
	q     queue     // Append's queue, drained by the publisher
	dg    directGets

	ctx    context.Context // done at Close: every call to NATS ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // the publisher and the rooms watcher

	// msgIDPrefix starts the message ID of every line this store publishes.
	msgIDPrefix string
	// badRoomNoted and noRoomNoted: a line without a valid room, or to a room that does not
	// exist, was dropped and logged; later ones are dropped quietly.
	badRoomNoted, noRoomNoted atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// Open connects to NATS (or uses cfg.Conn), creates or updates the streams and buckets with
// cfg.Replicas copies, loads the rooms and starts the publisher of the history. logger may be
// nil. ctx bounds the start only.
func Open(ctx context.Context, cfg Config, logger *log.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open nats store: %w", err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = log.New(io.Discard)
	}
	s := &Store{
		cfg:         cfg,
		log:         logger,
		streamName:  cfg.Prefix + "_rooms",
		subjPrefix:  cfg.Prefix + ".room.",
		idStream:    cfg.Prefix + "_ids",
		idSubj:      cfg.Prefix + ".id.",
		msgIDPrefix: newMsgIDPrefix(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.connect(); err != nil {
		s.cancel()
		return nil, err
	}
	fail := func(err error) (*Store, error) {
		s.cancel()
		s.dg.close()
		if s.ownsNC {
			s.nc.Close()
		}
		return nil, err
	}
	js, err := jetstream.New(s.nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxInFlight),
		jetstream.WithPublishAsyncTimeout(cfg.Timeout),
		jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		return fail(fmt.Errorf("open nats store: %w", err))
	}
	s.js = js
	ctx, cancel := context.WithTimeout(ctx, 4*cfg.Timeout)
	defer cancel()
	if err := s.setup(ctx); err != nil {
		return fail(fmt.Errorf("open nats store: %w", err))
	}
	if err := s.dg.init(s.nc); err != nil {
		return fail(fmt.Errorf("open nats store: %w", err))
	}
	if err := s.startRoomWatch(ctx); err != nil {
		return fail(fmt.Errorf("open nats store: %w", err))
	}
	s.q.init(cfg.MaxBacklog)
	s.wg.Add(1)
	go s.publisher()
	s.log.Info("history retention", "stream", s.streamName, "replicas", cfg.Replicas,
		"keep_messages", cfg.KeepMessages, "keep_for", cfg.KeepFor)
	return s, nil
}

// connect dials cfg.URLs, or takes cfg.Conn. The connection retries for ever once made: a
// store outlives any one server of a cluster.
func (s *Store) connect() error {
	if s.cfg.Conn != nil {
		s.nc = s.cfg.Conn
		return nil
	}
	lg := s.log
	opts := []nats.Option{
		nats.Name(s.cfg.Name),
		nats.Timeout(s.cfg.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			lg.Warn("disconnected from NATS", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			lg.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			lg.Warn("NATS error", "subject", subj, "err", err)
		}),
	}
	if s.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(s.cfg.CredsFile))
	}
	if s.cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(s.cfg.CAFile))
	}
	nc, err := nats.Connect(strings.Join(s.cfg.URLs, ","), opts...)
	if err != nil {
		return fmt.Errorf("open nats store: connect to %s: %w", RedactURLs(s.cfg.URLs), err)
	}
	s.nc, s.ownsNC = nc, true
	s.log.Info("connected to NATS", "server", nc.ConnectedUrlRedacted())
	return nil
}

// setup creates the streams and buckets, or brings their settings up to date.
func (s *Store) setup(ctx context.Context) error {
	cfg := s.cfg
	rooms, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        s.streamName,
		Description: "chatd: every room's lines, in one order per room",
		Subjects:    []string{s.subjPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		// Each room's lines are one subject: the per-subject limit is store/sqlite's
		// per-room KeepMessages. -1 is JetStream's "no limit".
		MaxMsgsPerSubject: limit(cfg.KeepMessages),
		MaxAge:            cfg.KeepFor,
		MaxMsgSize:        maxLineSize,
		Duplicates:        2 * time.Minute, // Append's retries carry a message ID
		AllowDirect:       true,            // Recent and History read with direct gets
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.streamName, err)
	}
	s.rooms = rooms
	if _, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              s.idStream,
		Description:       "chatd: the IDs of bans, private messages and web tokens (the stream's sequence)",
		Subjects:          []string{s.idSubj + "*"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("stream %s: %w", s.idStream, err)
	}
	buckets := []struct {
		kv   *jetstream.KeyValue
		name string
		what string
	}{
		{&s.identities, "identities", "names and the keys that own them"},
		{&s.keys, "keys", "each key's names"},
		{&s.roomList, "roomlist", "the rooms, their settings and invitations"},
		{&s.members, "members", "the rooms each registered person is in"},
		{&s.bans, "bans", "bans"},
		{&s.settings, "settings", "run-time settings (the message of the day)"},
		{&s.dms, "dms", "private messages waiting for someone offline"},
		{&s.tokens, "tokens", "web sign-in tokens, by hash and by name"},
	}
	for _, b := range buckets {
		kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       cfg.Prefix + "_" + b.name,
			Description:  "chatd: " + b.what,
			Storage:      jetstream.FileStorage,
			Replicas:     cfg.Replicas,
			MaxValueSize: maxValueSize,
		})
		if err != nil {
			return fmt.Errorf("bucket %s_%s: %w", cfg.Prefix, b.name, err)
		}
		*b.kv = kv
	}
	return nil
}

const (
	// maxLineSize bounds one line in the stream: a message is at most 1000 bytes of text (the
	// room's limit), its sender's name 32; the rest is room to spare.
	maxLineSize = 16 << 10
	// maxValueSize bounds one record: the largest are a queue of 100 private messages and a
	// room's invitations, well below it; NATS's own default limit on a message is 1 MiB.
	maxValueSize = 1 << 20
)

// limit is n as a JetStream limit: 0 (none) is -1.
func limit(n int) int64 {
	if n <= 0 {
		return -1
	}
	return int64(n)
}

// call is a context for one call to NATS: Config.Timeout, and done at Close.
func (s *Store) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.Timeout)
}

// isClosed reports whether Close has been called.
func (s *Store) isClosed() bool { return s.ctx.Err() != nil }

// nextID allocates an ID: the sequence at which the ID stream stores an empty message on the
// subject of what (each subject keeps only its last). IDs increase, and are never given twice,
// across every process on the prefix.
func (s *Store) nextID(ctx context.Context, what string) (int64, error) {
	ack, err := s.js.Publish(ctx, s.idSubj+what, nil, jetstream.WithExpectStream(s.idStream))
	if err != nil {
		return 0, fmt.Errorf("allocate an id: %w", err)
	}
	return int64(ack.Sequence), nil
}

// Close publishes what is queued (for at most Config.Timeout), stops the publisher and the
// watcher and, if the store made it, closes the connection. Later calls do nothing and return
// nil; every other method then returns an error.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.q.close(s.cfg.Timeout)
		s.cancel()
		s.wg.Wait()
		s.dg.close()
		if s.ownsNC {
			s.nc.Close()
		}
		if lost := s.q.unpublished(); lost > 0 {
			s.closeErr = fmt.Errorf("close nats store: %d messages could not be published", lost)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// newMsgIDPrefix names this store's messages for JetStream's duplicate detection: unique per
// process and store, so that only a retry of the same message is taken for a duplicate.
func newMsgIDPrefix() string { return nuid.Next() + "-" }
