package web

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
)

// A WebSocket lives for hours, mostly idle, and net/http hands a hijacked connection over with
// its 4 KiB read and write buffers: 8 KiB of a session's ~30. Smaller ones cost nothing a chat
// needs: a client sends short lines; a batch of the room's lines under 2 KiB (most) is written
// from the buffer in one call as before, and a larger one in two, the rest going to the
// connection without a copy.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 2048
)

// smallBuffers is the ResponseWriter handed to websocket.Accept: its Hijack gives the connection
// with buffers of the sizes above, and lets the server's own go.
type smallBuffers struct {
	http.ResponseWriter
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What the server has written (the 101 response) goes out first, and what the client sent
	// after its request stays first in line.
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	// The early bytes must be in the new reader's buffer, not behind it: websocket.Accept resets
	// the reader onto the connection, keeping only what is buffered.
	br := bufio.NewReaderSize(conn, wsReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(n, wsReadBuffer))
		if _, err := br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("hijack: %w", err)
		}
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}
