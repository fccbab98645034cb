package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// directGets asks a stream's servers for stored messages directly (JetStream's direct get,
// $JS.API.DIRECT.GET.<stream>), without a consumer: one request and its answers, from whichever
// replica is nearest. One subscription on a wildcard inbox serves every request; each has its
// own token.
type directGets struct {
	nc     *nats.Conn
	sub    *nats.Subscription
	prefix string // the inbox, "_INBOX.xxx."

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan *nats.Msg
}

func (d *directGets) init(nc *nats.Conn) error {
	d.nc = nc
	d.prefix = nc.NewInbox() + "."
	d.waiting = map[string]chan *nats.Msg{}
	sub, err := nc.Subscribe(d.prefix+"*", d.dispatch)
	if err != nil {
		return fmt.Errorf("subscribe to direct gets' answers: %w", err)
	}
	d.sub = sub
	return nil
}

func (d *directGets) close() {
	if d.sub != nil {
		d.sub.Unsubscribe()
	}
}

// dispatch hands an answer to its request. A request's channel has room for every answer it can
// get; an answer that does not fit (or is late) is dropped, and the request times out.
func (d *directGets) dispatch(m *nats.Msg) {
	token := m.Subject[len(d.prefix):]
	d.mu.Lock()
	ch := d.waiting[token]
	d.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- m:
	default:
	}
}

// directReq is JetStream's message get request (JSApiMsgGetRequest), the fields the store uses.
type directReq struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
}

// storedMsg is a message as a direct get returns it.
type storedMsg struct {
	seq     uint64
	pending uint64 // batches only: how many messages matching the request follow this one
	at      time.Time
	data    []byte
}

// errDirectGet is a direct get's failure status (not "not found").
var errDirectGet = errors.New("direct get failed")

// get sends req to stream and returns what it found (none for "not found"). A batch request's
// answers end with an end-of-batch status; another ends with its one message.
func (d *directGets) get(ctx context.Context, stream string, req directReq) ([]storedMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.next++
	token := strconv.FormatUint(d.next, 36)
	ch := make(chan *nats.Msg, req.Batch+2)
	d.waiting[token] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, token)
		d.mu.Unlock()
	}()
	if err := d.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, d.prefix+token, body); err != nil {
		return nil, fmt.Errorf("direct get: %w", err)
	}
	var out []storedMsg
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("direct get from %s: %w", stream, ctx.Err())
		case m := <-ch:
			switch status := m.Header.Get("Status"); status {
			case "":
				sm, err := parseStored(m)
				if err != nil {
					return nil, err
				}
				out = append(out, sm)
				if req.Batch == 0 {
					return out, nil
				}
			case "204": // end of batch
				return out, nil
			case "404":
				return out, nil
			case "503":
				return nil, fmt.Errorf("direct get from %s: %w: no stream answers (%s)", stream, errDirectGet, nats.ErrNoResponders)
			default:
				return nil, fmt.Errorf("direct get from %s: %w: %s %s", stream, errDirectGet, status, m.Header.Get("Description"))
			}
		}
	}
}

// parseStored reads a direct get's answer: the stored message and JetStream's headers about it.
func parseStored(m *nats.Msg) (storedMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return storedMsg{}, fmt.Errorf("direct get: answer without a sequence: %w", err)
	}
	sm := storedMsg{seq: seq, data: m.Data}
	if p := m.Header.Get("Nats-Num-Pending"); p != "" {
		if sm.pending, err = strconv.ParseUint(p, 10, 64); err != nil {
			return storedMsg{}, fmt.Errorf("direct get: bad pending count %q", p)
		}
	}
	if ts := m.Header.Get("Nats-Time-Stamp"); ts != "" {
		if sm.at, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(ts)); err != nil {
			return storedMsg{}, fmt.Errorf("direct get: bad time stamp %q", ts)
		}
	}
	return sm, nil
}
