package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chatd/chat"
	"chatd/room"

	"github.com/charmbracelet/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Relay is room.HistoryRelay on the store's stream of rooms: the cluster's relay. Publish stores
// a line on its room's subject and returns once JetStream has acknowledged it; one ordered
// consumer per node reads the stream from where it stood when the relay was made and hands each
// line to the hub in the stream's order. That order is the room's, on every node, and the stream
// is the history the store reads (KeepsHistory), so the hub appends nothing. The consumer
// reads every room's lines, not only those of rooms with members here: the hub keeps every
// room's newest lines in memory, and a consumer filtered to a changing set of rooms would have
// to be made again at each change.
//
// What the relay decides about a line:
//   - Subjects: messages and actions go to chatd.room.<room>.msg, which Recent and History
//     read; notices (a topic set) to chatd.room.<room>.notice, in the same sequence but not in
//     the history.
//   - Echo: a session's ID is unique in its hub only. Each line carries a header naming the
//     relay (a random ID per process) and the session; a line this relay published comes back
//     with its Origin, a line from another node with Origin 0, which is no session's.
//   - Time: a line comes back with the time the stream stored it (the stream leader's clock,
//     to the millisecond), not the sender's: that is the time the store's history gives it
//     ("at" is left out), so a line shows the same time live and in /history on every node,
//     and times grow along each room's order whatever the nodes' clocks say. It is later than
//     the sender's clock by the publication's latency (a millisecond or so).
//   - Trust: what the stream hands back was written by a node, or by anyone allowed to publish
//     on its subjects, so it is checked again: a bad subject, JSON, kind or name is dropped, and
//     the text and topic are sanitised once more.
type Relay struct {
	s   *Store
	cfg RelayConfig
	log *log.Logger
	id  string // this relay's tag on its lines

	cons jetstream.Consumer // ordered, from the stream's end when the relay was made

	// dmu is held while a line is handed to the hub, and by Close: once Close returns, deliver
	// is never called again.
	dmu     sync.Mutex
	deliver func(room.Line)
	cc      jetstream.ConsumeContext
	closed  bool
	shut    atomic.Bool // closed, for Publish

	published, publishErrors, delivered, dropped atomic.Uint64
	lastSeq, pending                             atomic.Uint64
}

// RelayConfig holds the relay's settings; the zero value of each field means its default.
type RelayConfig struct {
	// Timeout bounds how long Publish waits for JetStream to acknowledge a line; past it the
	// sender is told the line was not sent. Default 3s: a leader election in a NATS cluster
	// takes about a second or two.
	Timeout time.Duration
	// Heartbeat is how often the server tells the consumer it is alive while no line flows;
	// two missed ones make the consumer start afresh on another server, from the last line it
	// delivered. Default 1s.
	Heartbeat time.Duration
	// Buffer is how many lines the consumer asks the server for ahead of delivering them.
	// Default 500.
	Buffer int
	// OnPublish, if set, is told how long each Publish took and how it ended (for metrics).
	OnPublish func(took time.Duration, err error)
}

// DefaultRelayConfig returns the defaults.
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{Timeout: 3 * time.Second, Heartbeat: time.Second, Buffer: 500}
}

func (c RelayConfig) withDefaults() RelayConfig {
	d := DefaultRelayConfig()
	orDefault(&c.Timeout, d.Timeout)
	orDefault(&c.Heartbeat, d.Heartbeat)
	orDefault(&c.Buffer, d.Buffer)
	return c
}

// Validate reports the first invalid setting.
func (c RelayConfig) Validate() error {
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("nats relay: timeout %v is negative", c.Timeout)
	case c.Heartbeat < 0 || c.Heartbeat > time.Minute:
		return fmt.Errorf("nats relay: heartbeat %v out of range (up to a minute)", c.Heartbeat)
	case c.Buffer < 0 || c.Buffer > 100_000:
		return fmt.Errorf("nats relay: buffer %d out of range (up to 100000)", c.Buffer)
	}
	return nil
}

// RelayStats are the relay's counts since it was made.
type RelayStats struct {
	Published     uint64 // lines stored by Publish
	PublishErrors uint64 // Publish calls that failed: the sender was told
	Delivered     uint64 // lines handed to the hub
	Dropped       uint64 // lines read from the stream and refused (malformed, of a deleted room)
	LastSeq       uint64 // the stream sequence of the newest line handed to the hub
	// Lag is how many of the stream's lines were waiting behind the newest line handed to the
	// hub, when it was read.
	Lag uint64
}

// Stats returns the relay's counts.
func (r *Relay) Stats() RelayStats {
	return RelayStats{
		Published:     r.published.Load(),
		PublishErrors: r.publishErrors.Load(),
		Delivered:     r.delivered.Load(),
		Dropped:       r.dropped.Load(),
		LastSeq:       r.lastSeq.Load(),
		Lag:           r.pending.Load(),
	}
}

// Errors Publish returns, besides JetStream's.
var (
	errRelayClosed   = errors.New("relay is closed")
	errNotConnected  = errors.New("not connected to NATS")
	errBadRelayLine  = errors.New("not a line the relay carries")
	errRelayLineSize = errors.New("line too large")
)

// The headers a relayed line carries.
const (
	// originHeader names who published a line: the relay's ID, '.', the session's (base 36).
	originHeader = "Chatd-Origin"
)

// notice is the stream's kind of a notice; 1 and 2 are chat.KindMessage and chat.KindAction,
// the kinds the history keeps.
const kindNotice = 3

// relayLine is a line as the relay publishes it: the store's line, and the topic a notice sets.
type relayLine struct {
	line
	Topic *string `json:"topic,omitempty"`
}

// NewRelay makes the cluster's relay on s's stream and connection, and its consumer, which
// starts after the stream's newest line: every line stored from now on is delivered, none
// before (the hub reads those from the store). ctx bounds the set-up; logger may be nil. Close
// the relay before the store.
func NewRelay(ctx context.Context, s *Store, cfg RelayConfig, logger *log.Logger) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new nats relay: %w", err)
	}
	if s.isClosed() {
		return nil, fmt.Errorf("new nats relay: %w", errClosed)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = log.New(io.Discard)
	}
	r := &Relay{s: s, cfg: cfg, log: logger, id: nuid.Next()}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, err := s.rooms.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("new nats relay: stream %s: %w", s.streamName, err)
	}
	// A start sequence, not "new lines only": when the consumer starts afresh before it has
	// delivered anything (NATS restarted), it must not skip what was stored meanwhile.
	r.cons, err = s.rooms.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.subjPrefix + "*.msg", s.subjPrefix + "*.notice"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("new nats relay: consumer: %w", err)
	}
	return r, nil
}

// Connected reports whether the relay's connection to NATS is up: while it is not, Publish
// fails at once.
func (r *Relay) Connected() bool { return r.s.nc.IsConnected() }

// KeepsHistory reports that the stream is the history: the hub must not append what it relays.
func (r *Relay) KeepsHistory() bool { return true }

// Receive starts handing lines to deliver, one at a time, in the stream's order; the hub calls
// it once. deliver must not block.
func (r *Relay) Receive(deliver func(room.Line)) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	if r.closed || r.cc != nil {
		return
	}
	r.deliver = deliver
	cc, err := r.cons.Consume(r.handle,
		jetstream.PullMaxMessages(r.cfg.Buffer),
		jetstream.PullHeartbeat(r.cfg.Heartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.log.Warn("relay: consumer", "err", err)
		}))
	if err != nil {
		// The consumer exists already, so only a bad option fails here: a bug.
		r.log.Error("relay: cannot consume the rooms' stream: lines from other nodes will not arrive", "err", err)
		return
	}
	r.cc = cc
}

// Publish stores l on its room's subject and returns once JetStream acknowledged it, or an
// error: at once when NATS is not connected, after RelayConfig.Timeout when no acknowledgement
// came. An error means the line may not be stored (the sender is told it was not sent); a line
// whose acknowledgement was lost may still be stored, never the reverse.
func (r *Relay) Publish(l room.Line) error {
	start := time.Now()
	err := r.publish(l)
	if err != nil {
		r.publishErrors.Add(1)
	} else {
		r.published.Add(1)
	}
	if r.cfg.OnPublish != nil {
		r.cfg.OnPublish(time.Since(start), err)
	}
	return err
}

func (r *Relay) publish(l room.Line) error {
	s := r.s
	if r.shut.Load() || s.isClosed() {
		return fmt.Errorf("relay: %w", errRelayClosed)
	}
	name, err := chat.ParseRoom(l.Room)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	var kind uint8
	subj := s.subjPrefix + roomToken(name)
	switch l.Kind {
	case room.LineMessage:
		kind, subj = uint8(chat.KindMessage), subj+".msg"
	case room.LineAction:
		kind, subj = uint8(chat.KindAction), subj+".msg"
	case room.LineNotice:
		kind, subj = kindNotice, subj+".notice"
	default:
		return fmt.Errorf("relay: kind %d: %w", l.Kind, errBadRelayLine)
	}
	// The generation keeps a line in flight to a deleted room out of a room made again under
	// its name. A room this node made a moment ago may not be in the cache yet: 0, any.
	rec, _ := s.cache.get(name)
	data, err := json.Marshal(relayLine{line: line{Gen: rec.Gen, Kind: kind, From: l.From, Text: l.Text}, Topic: l.Topic})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if len(data) > maxLineSize {
		return fmt.Errorf("relay: %d bytes: %w", len(data), errRelayLineSize)
	}
	// While disconnected the client would buffer the line and wait out the timeout: say so now.
	if !s.nc.IsConnected() {
		return fmt.Errorf("relay: %w", errNotConnected)
	}
	m := nats.NewMsg(subj)
	m.Data = data
	m.Header.Set(originHeader, r.id+"."+strconv.FormatUint(l.Origin, 36))
	ctx, cancel := context.WithTimeout(s.ctx, r.cfg.Timeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectStream(s.streamName))
	if err != nil {
		return fmt.Errorf("relay: publish to %s: %w", name, err)
	}
	if kind != kindNotice {
		// This node's reads of the history wait for a replica that has it.
		s.cache.noteAcked(name, ack.Sequence)
	}
	return nil
}

// handle reads one line of the stream and hands it to the hub.
func (r *Relay) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		r.dropped.Add(1)
		return
	}
	r.lastSeq.Store(meta.Sequence.Stream)
	r.pending.Store(meta.NumPending)
	l, ok := r.decode(msg, meta)
	if !ok {
		r.dropped.Add(1)
		return
	}
	r.dmu.Lock()
	defer r.dmu.Unlock()
	if r.closed {
		return
	}
	r.delivered.Add(1)
	r.deliver(l)
}

// decode checks a line read from the stream and makes it a room.Line.
func (r *Relay) decode(msg jetstream.Msg, meta *jetstream.MsgMetadata) (room.Line, bool) {
	rest, ok := strings.CutPrefix(msg.Subject(), r.s.subjPrefix)
	if !ok {
		return room.Line{}, false
	}
	token, suffix, ok := strings.Cut(rest, ".")
	if !ok {
		return room.Line{}, false
	}
	name := roomOfKey(token)
	if !chat.IsRoom(name) {
		return room.Line{}, false
	}
	var rl relayLine
	if err := json.Unmarshal(msg.Data(), &rl); err != nil {
		return room.Line{}, false
	}
	l := room.Line{Room: name, Text: chat.Sanitize(rl.Text), At: time.UnixMilli(floorMilli(meta.Timestamp)), Seq: meta.Sequence.Stream}
	switch {
	case suffix == "msg" && rl.Kind == uint8(chat.KindMessage):
		l.Kind = room.LineMessage
	case suffix == "msg" && rl.Kind == uint8(chat.KindAction):
		l.Kind = room.LineAction
	case suffix == "notice" && rl.Kind == kindNotice:
		l.Kind = room.LineNotice
	default:
		return room.Line{}, false
	}
	if l.Kind != room.LineNotice {
		if !chat.ValidName(rl.From) || rl.Topic != nil {
			return room.Line{}, false
		}
		l.From = rl.From
	}
	if rl.Topic != nil {
		topic := chat.Sanitize(*rl.Topic)
		l.Topic = &topic
	}
	// A line of an earlier room of this name (deleted since) is not the current room's. An
	// unknown or newer generation may be a room this node has not heard of yet: the hub
	// decides.
	if rec, ok := r.s.cache.get(name); ok && rl.Gen != 0 && rl.Gen < rec.Gen {
		return room.Line{}, false
	}
	if id, session, ok := strings.Cut(msg.Headers().Get(originHeader), "."); ok && id == r.id {
		l.Origin, _ = strconv.ParseUint(session, 36, 64)
	}
	return l, true
}

// Close stops the consumer; once it returns, no line is handed to the hub any more, and Publish
// fails. It does not close the store.
func (r *Relay) Close() error {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.shut.Store(true)
	if r.cc != nil {
		r.cc.Stop()
	}
	// The server would drop the consumer once idle for a while; tidy up now, if NATS is there.
	if info := r.cons.CachedInfo(); info != nil && r.s.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = r.s.js.DeleteConsumer(ctx, r.s.streamName, info.Name)
	}
	return nil
}
