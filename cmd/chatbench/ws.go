package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// The web transport's WebSocket speaks JSON: the client sends {"type":"say","text":LINE} and gets
// text messages of one or more JSON lines, each an event (message, action, notice, info, error,
// dm). A WebSocket client here is the same client as the others behind an adapter: its reader
// turns the events into the plain text lines a TCP client gets ("NAME: TEXT", "* TEXT",
// "error: TEXT"), and its writer turns each line written into a say message. The token scanner,
// the join and room waits and the accounting then work unchanged, and latency is measured the
// same way: the time a read returns minus the time in the token.

// wsReadLimit bounds one message from the server. The room gathers what a member missed while its
// writes were slow into one write, so a message may be far larger than the library's default
// 32 KiB; chatbench talks to a server its operator runs.
const wsReadLimit = 64 << 20

// wsEvent is what the adapter reads of an event. Time and colour are left out: decoding them
// would cost the load generator CPU that it shares with the server.
type wsEvent struct {
	Type string `json:"type"`
	Room string `json:"room"`
	From string `json:"from"`
	To   string `json:"to"`
	Text string `json:"text"`
}

// decodeEvent reads an event's type, room, from, to and text. chatd writes an event's fields in
// room.Event's order (type, room, from, to, text, time, ..., joined, left), so what chatbench
// needs comes first and decodeEvent stops after the text, before a join storm's list of names:
// a gathered notice names everyone who joined, and decoding a thousand names for each of a
// thousand clients would cost the load generator, on the server's cores, more than the server
// spends sending them. Anything else (another order, another key before the text: a state or
// history reply) goes to encoding/json.
func decodeEvent(line []byte, ev *wsEvent) error {
	if fastDecode(line, ev) > 0 {
		return nil
	}
	*ev = wsEvent{}
	return json.Unmarshal(line, ev)
}

// fastDecode reads `{"type":...,["room":...,]["from":...,]["to":...,]"text":...` at the start
// of b and returns where the text's value ends; 0 if b does not start so.
func fastDecode(b []byte, ev *wsEvent) int {
	*ev = wsEvent{}
	if len(b) == 0 || b[0] != '{' {
		return 0
	}
	i, last := 1, -1
	for {
		key, n, ok := jsonString(b[i:])
		if !ok || i+n >= len(b) || b[i+n] != ':' {
			return 0
		}
		i += n + 1
		fields := [...]struct {
			name string
			dst  *string
		}{{"type", &ev.Type}, {"room", &ev.Room}, {"from", &ev.From}, {"to", &ev.To}, {"text", &ev.Text}}
		k := last + 1
		for k < len(fields) && fields[k].name != key {
			k++
		}
		if k == len(fields) || k > 0 && last < 0 {
			return 0 // not one of them, out of order, or no type first
		}
		val, n, ok := jsonString(b[i:])
		if !ok || i+n >= len(b) {
			return 0
		}
		*fields[k].dst, last = val, k
		i += n
		if key == "text" {
			if b[i] != ',' && b[i] != '}' {
				return 0
			}
			return i
		}
		if b[i] != ',' {
			return 0
		}
		i++
	}
}

// jsonString reads the JSON string at the start of b and returns it and its length.
func jsonString(b []byte) (string, int, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", 0, false
	}
	escaped := false
	for j := 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j++ // whatever follows is escaped, a quote included
		case c < 0x20:
			return "", 0, false
		case c == '"':
			if !escaped && utf8.Valid(b[1:j]) {
				return string(b[1:j]), j + 1, true
			}
			var s string
			if err := json.Unmarshal(b[:j+1], &s); err != nil {
				return "", 0, false
			}
			return s, j + 1, true
		}
	}
	return "", 0, false
}

// wsConn is a client's WebSocket, as the io.Reader, io.Writer and io.Closer the other transports
// give. Read is for one goroutine at a time (the connect phase, then the client's reader), and so
// is Write (the connect phase, then the sender).
type wsConn struct {
	conn *websocket.Conn
	name string // the client's name: which DMs are its own
	room string // with -rooms, the client's room: every other room's lines are tagged with theirs

	msg []byte // the current message, JSON
	out []byte // its lines as text, out[off:] not read yet
	off int
	say []byte // a say message being built

	mu      sync.Mutex
	lastErr string // the text of the last error event: why a join was refused
}

// Read returns the text of the events the server sent, rendered as plain lines.
func (w *wsConn) Read(p []byte) (int, error) {
	for w.off == len(w.out) {
		if err := w.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, w.out[w.off:])
	w.off += n
	return n, nil
}

// next reads one message and renders its lines into w.out.
func (w *wsConn) next() error {
	typ, r, err := w.conn.Reader(context.Background())
	if err != nil {
		return err
	}
	w.msg = w.msg[:0]
	for {
		if len(w.msg) == cap(w.msg) {
			w.msg = append(w.msg, 0)[:len(w.msg)]
		}
		n, err := r.Read(w.msg[len(w.msg):cap(w.msg)])
		w.msg = w.msg[:len(w.msg)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	w.out, w.off = w.out[:0], 0
	if typ != websocket.MessageText {
		w.out = append(w.out, "error: (a binary message)\n"...)
		return nil
	}
	data := w.msg
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > 0 {
			w.render(line)
		}
	}
	return nil
}

// render appends one JSON line as the text a TCP client would get for it, without the time.
// A room's line is tagged with the room ("#go NAME: ...") when it is not the client's own room
// of the run (with -rooms), as chatd tags the lines of a terminal's other rooms; without
// -rooms every line is the client's room's. State and history replies are not lines: skipped.
func (w *wsConn) render(line []byte) {
	var ev wsEvent
	if err := decodeEvent(line, &ev); err != nil {
		w.out = append(w.out, "error: (not JSON) "...)
		w.out = append(w.out, line[:min(len(line), 200)]...)
		w.out = append(w.out, '\n')
		return
	}
	switch ev.Type {
	case "message", "action":
		if w.room != "" && ev.Room != "" && ev.Room != w.room {
			w.out = append(w.out, ev.Room...)
			w.out = append(w.out, ' ')
		}
		if ev.Type == "action" {
			w.out = append(w.out, "** "...)
			w.out = append(w.out, ev.From...)
			w.out = append(w.out, ' ')
		} else {
			w.out = append(w.out, ev.From...)
			w.out = append(w.out, ": "...)
		}
		w.out = append(w.out, ev.Text...)
		w.out = append(w.out, '\n')
	case "notice", "info":
		for l := range strings.SplitSeq(ev.Text, "\n") {
			w.out = append(w.out, "* "...)
			w.out = append(w.out, l...)
			w.out = append(w.out, '\n')
		}
	case "error":
		w.mu.Lock()
		w.lastErr = "error: " + firstLine(ev.Text)
		w.mu.Unlock()
		w.out = append(w.out, "error: "...)
		w.out = append(w.out, ev.Text...)
		w.out = append(w.out, '\n')
	case "dm":
		if ev.From == w.name {
			w.out = append(w.out, "[dm to "+ev.To+"] "...)
		} else {
			w.out = append(w.out, "[dm from "+ev.From+"] "...)
		}
		w.out = append(w.out, ev.Text...)
		w.out = append(w.out, '\n')
	}
}

// lastError is the last error line the server sent, "" if none.
func (w *wsConn) lastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Write sends each line of p (ended by a line feed; a last unended one too) as a say message.
func (w *wsConn) Write(p []byte) (int, error) {
	rest := p
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		text, err := json.Marshal(string(line))
		if err != nil {
			return 0, err
		}
		w.say = append(append(append(w.say[:0], `{"type":"say","text":`...), text...), '}')
		if err := w.conn.Write(context.Background(), websocket.MessageText, w.say); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close drops the connection without a closing handshake, as the other clients hang up.
func (w *wsConn) Close() error { return w.conn.CloseNow() }

// wsHTTPClient dials the WebSocket clients: straight to the address, never through a proxy the
// environment names. The connection it dials is put where the dial's context says (dialedKey),
// for the client to know its own connection as the others do.
func wsHTTPClient() *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if p, ok := ctx.Value(dialedKey{}).(*net.Conn); ok && err == nil {
				*p = nc
			}
			return nc, err
		},
		DisableKeepAlives: true,
	}}
}

// dialedKey is the context key under which a WebSocket dial finds where to put its connection.
type dialedKey struct{}

// wsURL is the WebSocket endpoint of the web listener at addr, for a guest called name.
func wsURL(addr, name string) string {
	return "ws://" + addr + "/ws?name=" + url.QueryEscape(name)
}

// connectWS opens the client's WebSocket as a guest, with no Origin header (as a bot), and waits
// for its welcome (and, with -rooms, its room's join notice). It returns how many bytes that
// followed the notice are in c.buf.
func (b *bench) connectWS(ctx context.Context, c *client) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	var nc net.Conn
	conn, resp, err := websocket.Dial(context.WithValue(dctx, dialedKey{}, &nc), wsURL(c.addr, c.name), &websocket.DialOptions{HTTPClient: b.httpClient})
	if err != nil {
		return 0, dialError(resp, err)
	}
	conn.SetReadLimit(wsReadLimit)
	// The deadline bounds everything up to the join notice.
	stop := context.AfterFunc(dctx, func() { conn.CloseNow() })
	wc := &wsConn{conn: conn, name: c.name, room: c.roomName}
	fail := func(err error) (int, error) {
		stop()
		conn.CloseNow()
		return 0, err
	}
	c.buf = make([]byte, readBufSize)
	keep, err := awaitJoin(wc, c.buf, 0, c.joinPats)
	if err != nil {
		// A refused join is an error line, then a close: the line says why.
		if e := wc.lastError(); e != "" && ctx.Err() == nil {
			err = errors.New(e)
		}
		return fail(fmt.Errorf("waiting to join: %w", err))
	}
	if keep, err = c.joinRoom(wc, wc, keep); err != nil {
		return fail(fmt.Errorf("joining %s: %w", c.roomName, err))
	}
	if !stop() {
		return fail(context.Cause(dctx))
	}
	c.closer, c.r, c.w, c.netConn = wc, wc, wc, nc
	return keep, nil
}

// dialError is why a WebSocket could not be opened: for a refusal before the upgrade, the HTTP
// status and the start of what the server said.
func dialError(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return err
	}
	var body [1024]byte
	n, _ := io.ReadFull(resp.Body, body[:])
	msg := strings.TrimSpace(stripANSI(strings.Join(strings.Fields(htmlText(string(body[:n]))), " ")))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		return fmt.Errorf("http %s", resp.Status)
	}
	return fmt.Errorf("http %s: %s", resp.Status, msg)
}

// htmlText drops the tags from an HTML error page, keeping its text.
func htmlText(s string) string {
	var sb strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			sb.WriteByte(' ')
		case r == '>':
			in = false
		case !in:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// describeWSClose says how the server closed a WebSocket, when it did with a close frame.
func describeWSClose(err error) (string, bool) {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return "", false
	}
	s := fmt.Sprintf("closed by the server: status %d", int(ce.Code))
	if ce.Reason != "" {
		s += " (" + ce.Reason + ")"
	}
	return s, true
}

var _ io.ReadWriteCloser = (*wsConn)(nil)
