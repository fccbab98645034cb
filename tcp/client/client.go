// Package client is the client side of the TCP line protocol (see package tcp): it dials, gives
// a name, sends lines and reads them, and takes the server's lines apart (Parse). It links
// neither the room nor any storage, so the chat command stays small.
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"chatd/internal/linereader"
)

// MaxClientLine is the longest line a Client reads from the server; a longer one is skipped and
// ReadLine reports linereader.ErrTooLong. The room's lines are far shorter, save a /who of a very
// full room.
const MaxClientLine = 1 << 20

// ErrConnClosed is returned when the server closed the connection.
var ErrConnClosed = errors.New("connection closed by server")

// ServerError is a refusal the server explained in an "error:" line, during Dial (the server is
// full) or Join (the name is refused).
type ServerError struct {
	// Reason is the server's explanation, without the "error: " prefix.
	Reason string
	// Final is set when the server said goodbye: it has closed the connection, and another
	// Join cannot succeed. Otherwise the client may Join again with another name.
	Final bool
}

func (e *ServerError) Error() string { return e.Reason }

// Client is one connection to a chat server's TCP protocol. Send and ReadLine may be used from
// different goroutines at the same time; Send is safe for concurrent use.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	lr       *linereader.Reader
	greeting string

	rmu     sync.Mutex
	pending []string // lines read during Join that belong to the stream: the welcome line

	wmu sync.Mutex
}

// Dial connects to the server at addr and reads its greeting. ctx bounds both. When the server
// refuses the connection (it is full), the error is a *ServerError.
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, MaxClientLine+2)
	c := &Client{conn: conn, br: br, lr: linereader.New(br, MaxClientLine)}

	// The greeting read obeys ctx: its deadline, and its cancellation.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	line, err := c.readLine()
	stop()
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			// Only ctx sets deadlines here: its deadline, or its cancellation.
			<-ctx.Done()
			return nil, fmt.Errorf("reading the greeting: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("reading the greeting: %w", err)
	}
	if reason, ok := errorReason(line); ok {
		conn.Close()
		return nil, &ServerError{Reason: reason, Final: true}
	}
	c.greeting = line
	return c, nil
}

// Greeting is the server's first line, asking for a name.
func (c *Client) Greeting() string { return c.greeting }

// Join sends name and reads the server's answer. A refused name is a *ServerError carrying the
// server's reason; unless it is Final, Join may be called again with another name. On success
// the server's welcome line is the first line ReadLine returns.
func (c *Client) Join(name string) error {
	if strings.ContainsAny(name, "\r\n") {
		return errors.New("a name cannot contain a line break")
	}
	if err := c.Send(name); err != nil {
		return err
	}
	line, err := c.readLine()
	if err != nil {
		return err
	}
	reason, ok := errorReason(line)
	if !ok {
		c.rmu.Lock()
		c.pending = append(c.pending, line)
		c.rmu.Unlock()
		return nil
	}
	if isGoodbye(reason) {
		return &ServerError{Reason: reason, Final: true}
	}
	// The server writes its last refusal and its goodbye together: if the goodbye is already
	// here, this refusal is final. (If it is not here yet, the next Join reports it.)
	if c.br.Buffered() > 0 {
		if next, err := c.readLine(); err == nil {
			if r, ok := errorReason(next); ok && isGoodbye(r) {
				return &ServerError{Reason: reason + "; " + r, Final: true}
			}
			c.rmu.Lock()
			c.pending = append(c.pending, next)
			c.rmu.Unlock()
		}
	}
	return &ServerError{Reason: reason}
}

// Send sends one line: a message, a command, or "bye".
func (c *Client) Send(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return errors.New("a line cannot contain a line break")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write([]byte(line + "\n"))
	return err
}

// ReadLine returns the server's next line, without its line ending and exactly as sent: run it
// through chat.Sanitize before showing it to anyone. It returns ErrConnClosed once the server has
// closed the connection, and linereader.ErrTooLong (after which reading may go on) for a line over
// MaxClientLine.
func (c *Client) ReadLine() (string, error) {
	c.rmu.Lock()
	if len(c.pending) > 0 {
		line := c.pending[0]
		c.pending = c.pending[1:]
		c.rmu.Unlock()
		return line, nil
	}
	c.rmu.Unlock()
	return c.readLine()
}

func (c *Client) readLine() (string, error) {
	line, err := c.lr.ReadLine()
	if err != nil && !errors.Is(err, linereader.ErrTooLong) && isClosedByPeer(err) {
		return "", ErrConnClosed
	}
	return line, err
}

// isClosedByPeer reports the errors that mean the server ended the connection.
func isClosedByPeer(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false // we closed it ourselves
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF, or a reset
}

// Close closes the connection. A ReadLine in progress returns.
func (c *Client) Close() error { return c.conn.Close() }

// errorReason returns the text of an "error:" line.
func errorReason(line string) (string, bool) {
	if l := Parse(line); l.Kind == Error {
		return l.Text, true
	}
	return "", false
}

// isGoodbye reports a server error after which the server closes the connection.
func isGoodbye(reason string) bool { return strings.HasSuffix(reason, "; goodbye") }
