// Command webbot is a small chatd bot that speaks the web transport's JSON protocol: it signs in
// with a bot token, prints every event it gets, one a line, and answers "!ping" with "pong" in the
// room it was asked in (or by private message, when asked so).
//
// Its owner makes the token in an SSH session of their registered name; the bot then speaks as
// that name:
//
//	/weblogin token pingbot
//	CHATD_BOT_TOKEN=... go run ./examples/webbot -url ws://localhost:8080/ws
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	url := flag.String("url", "ws://localhost:8080/ws", "the server's WebSocket (wss:// with HTTPS)")
	flag.Parse()
	token := os.Getenv("CHATD_BOT_TOKEN")
	if token == "" {
		fmt.Fprintln(os.Stderr, "webbot: set CHATD_BOT_TOKEN to a token from /weblogin token LABEL")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, token, os.Stdout); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "webbot: %v\n", err)
		os.Exit(1)
	}
}

// event is one line from the server: an event (message, action, notice, info, error, dm) or the
// answer to a state request. The protocol has more fields; a bot reads those it needs.
type event struct {
	Type    string    `json:"type"`
	Room    string    `json:"room"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Text    string    `json:"text"`
	Time    time.Time `json:"time"`
	History bool      `json:"history"` // replayed, not live: never answer those
	Name    string    `json:"name"`    // state: who the bot is
	Current string    `json:"current"` // state: where a plain line goes
}

// run connects and answers until ctx ends or the server closes the connection.
func run(ctx context.Context, url, token string, out io.Writer) error {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20) // the server's lines come batched; a history page is the biggest

	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return c.Write(ctx, websocket.MessageText, b)
	}
	say := func(text string) error { return send(map[string]string{"type": "say", "text": text}) }
	if err := send(map[string]string{"type": "state"}); err != nil {
		return err
	}

	var me, current string
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return nil
			}
			return err
		}
		// One message may hold several lines.
		for line := range bytes.SplitSeq(bytes.TrimSpace(data), []byte("\n")) {
			var ev event
			if err := json.Unmarshal(line, &ev); err != nil {
				return fmt.Errorf("a line that is not JSON: %w", err)
			}
			fmt.Fprintln(out, format(ev))
			ping := !ev.History && ev.From != me && strings.TrimSpace(ev.Text) == "!ping"
			switch {
			case ev.Type == "state":
				me, current = ev.Name, ev.Current
			case ping && ev.Type == "message":
				// A plain line goes to the current room: joining a room the bot is in makes it
				// current.
				if ev.Room != current {
					if err = say("/join " + ev.Room); err == nil {
						current = ev.Room
					}
				}
				if err == nil {
					err = say("pong")
				}
			case ping && ev.Type == "dm":
				err = say("/msg " + ev.From + " pong")
			}
			if err != nil {
				return err
			}
		}
	}
}

// format is an event as a line for people to read.
func format(ev event) string {
	at := ev.Time.Local().Format("15:04:05")
	switch ev.Type {
	case "message":
		return fmt.Sprintf("%s %s %s: %s", at, ev.Room, ev.From, ev.Text)
	case "action":
		return fmt.Sprintf("%s %s ** %s %s", at, ev.Room, ev.From, ev.Text)
	case "dm":
		return fmt.Sprintf("%s [dm %s -> %s] %s", at, ev.From, ev.To, ev.Text)
	case "state":
		return fmt.Sprintf("state: %s, talking in %s", ev.Name, ev.Current)
	case "error":
		return fmt.Sprintf("%s error: %s", at, ev.Text)
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s * %s", at, ev.Room, ev.Text)) // notice, info
}
