package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"chatd/internal/roomtest"
	"chatd/tcp/client"
)

var webListeningRE = regexp.MustCompile(`web: listening (?:node=\S+ )?addr=(\S+)`)

// webAddr waits for chatd's web listener and returns its address.
func (c *chatd) webAddr(t *testing.T) string {
	t.Helper()
	var addr string
	c.logs.Wait(t, "the web listening", func() bool {
		if m := webListeningRE.FindStringSubmatch(c.logs.Text()); m != nil {
			addr = m[1]
		}
		return addr != "" || c.logs.Closed()
	})
	if addr == "" {
		t.Fatalf("chatd serves no web:\n%s", c.logs.Text())
	}
	return addr
}

// TestWebSharesTheRoom: the binary serves the page and the WebSocket, whose sessions share the
// room with TCP ones, and SIGTERM says goodbye to them as it does to everyone.
func TestWebSharesTheRoom(t *testing.T) {
	srv := startChatd(t, "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0")
	addr := srv.webAddr(t)

	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "/app.js") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET /: status %d, CSP %q:\n%s", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), page)
	}

	ctx, cancel := context.WithTimeout(context.Background(), roomtest.HangGuard)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?name=webby", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	events := make(chan map[string]any, 100)
	closed := make(chan error, 1)
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				closed <- err
				close(events)
				return
			}
			for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
				var ev map[string]any
				if json.Unmarshal([]byte(l), &ev) == nil {
					events <- ev
				}
			}
		}
	}()
	waitEvent := func(what string, match func(map[string]any) bool) {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("the WebSocket ended before %s", what)
				}
				if match(ev) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s", what)
			}
		}
	}
	waitEvent("the welcome", func(ev map[string]any) bool { return ev["type"] == "info" })

	tc, err := client.Dial(ctx, srv.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Join("tcpy"); err != nil {
		t.Fatal(err)
	}
	lines := roomtest.NewStream(readerOf(tc))
	waitEvent("tcpy's arrival", func(ev map[string]any) bool {
		return ev["type"] == "notice" && strings.Contains(ev["text"].(string), "tcpy joined")
	})

	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"say","text":"hello from a browser"}`)); err != nil {
		t.Fatal(err)
	}
	lines.WaitLine(t, "webby: hello from a browser")
	if err := tc.Send("hello from tcp"); err != nil {
		t.Fatal(err)
	}
	waitEvent("tcpy's line", func(ev map[string]any) bool {
		return ev["type"] == "message" && ev["from"] == "tcpy" && ev["text"] == "hello from tcp"
	})

	if code, _ := srv.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	err = <-closed
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("the WebSocket ended with %v, want 1001 (going away)", err)
	}
}

// readerOf turns a TCP client's lines back into a stream.
func readerOf(c *client.Client) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		for {
			line, err := c.ReadLine()
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.WriteString(pw, line+"\n"); err != nil {
				return
			}
		}
	}()
	return pr
}
