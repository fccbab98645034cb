package web

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"chatd/room"
)

func TestTheJSONProtocol(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	alice, bob := e.join(t, "alice"), e.join(t, "bob")

	alice.say("hello <b>bob</b>")
	got := bob.waitFor("alice's message", func(m msg) bool { return m.Type == "message" && m.From == "alice" })
	if got.Room != "#lobby" || got.Text != "hello <b>bob</b>" || got.Colour == 0 || got.Time.IsZero() || got.History {
		t.Errorf("message %s: want alice's line in #lobby, with a colour and a time", got.raw)
	}
	echo := alice.waitFor("alice's own line back", func(m msg) bool { return m.Type == "message" && m.From == "alice" })
	if !echo.Time.Equal(got.Time) {
		t.Errorf("echo %s: want the time everyone saw, %s", echo.raw, got.Time)
	}

	t.Run("state", func(t *testing.T) {
		alice.send(map[string]string{"type": "state"})
		st := alice.waitFor("the state", func(m msg) bool { return m.Type == "state" })
		if st.Name != "alice" || st.Registered || st.Current != "#lobby" || len(st.Rooms) != 1 ||
			st.Rooms[0].Name != "#lobby" || !slices.Equal(st.Rooms[0].Members, []string{"alice", "bob"}) {
			t.Errorf("state %s", st.raw)
		}
	})

	t.Run("history", func(t *testing.T) {
		at := got.Time.Format(time.RFC3339Nano)
		for _, tc := range []struct {
			req  map[string]any
			want bool // the line is in the reply
		}{
			{map[string]any{"type": "history", "room": "#lobby", "limit": 10}, true},
			{map[string]any{"type": "history", "room": "lobby"}, true},
			// A bound takes in its own millisecond (several lines may share one): the client
			// drops the lines it already shows.
			{map[string]any{"type": "history", "room": "#lobby", "before": at}, true},
			{map[string]any{"type": "history", "room": "#lobby", "before": got.Time.Add(-time.Millisecond).Format(time.RFC3339Nano)}, false},
			{map[string]any{"type": "history", "room": "#lobby", "after": at}, true},
			{map[string]any{"type": "history", "room": "#lobby", "after": got.Time.Add(time.Millisecond).Format(time.RFC3339Nano)}, false},
		} {
			n := alice.count()
			alice.send(tc.req)
			h := alice.waitFrom(n, "a history reply", func(m msg) bool { return m.Type == "history" })
			found := slices.ContainsFunc(h.Events, func(ev room.Event) bool {
				return ev.Text == "hello <b>bob</b>" && ev.From == "alice" && ev.History && ev.Time.Equal(got.Time)
			})
			if h.Room != "#lobby" || found != tc.want || h.Before != stringOf(tc.req["before"]) || h.After != stringOf(tc.req["after"]) {
				t.Errorf("%v: reply %s; want the line: %v", tc.req, h.raw, tc.want)
			}
		}
	})

	t.Run("mistakes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			typ  websocket.MessageType
			send string
			want string
		}{
			{"not JSON", websocket.MessageText, `{"type":"say",`, "one JSON object"},
			{"not an object", websocket.MessageText, `["say","hi"]`, "one JSON object"},
			{"binary", websocket.MessageBinary, `{"type":"say","text":"hi"}`, "binary messages"},
			{"unknown type", websocket.MessageText, `{"type":"shout","text":"hi"}`, `unknown message type "shout"`},
			{"no type", websocket.MessageText, `{"text":"hi"}`, "unknown message type"},
			{"history without a room", websocket.MessageText, `{"type":"history"}`, "which room"},
			{"history of a room one is not in", websocket.MessageText, `{"type":"history","room":"#elsewhere"}`, "not in #elsewhere"},
			{"history with a bad time", websocket.MessageText, `{"type":"history","room":"#lobby","before":"yesterday"}`, "before must be a time"},
			{"a negative limit", websocket.MessageText, `{"type":"history","room":"#lobby","limit":-1}`, "limit must be"},
			{"an unknown command", websocket.MessageText, `{"type":"say","text":"/frobnicate"}`, "unknown command"},
		} {
			n := alice.count()
			alice.sendRaw(tc.typ, []byte(tc.send))
			alice.waitFrom(n, tc.name+": an error line", isError(tc.want))
		}
		// The connection stays.
		alice.say("still here")
		bob.waitFor("alice's next line", func(m msg) bool { return m.Text == "still here" })
	})

	t.Run("commands and pastes", func(t *testing.T) {
		alice.say("/join #go")
		alice.send(map[string]string{"type": "state"})
		alice.waitFor("the state in #go", func(m msg) bool { return m.Type == "state" && m.Current == "#go" })
		bob.say("/join go")
		alice.say("one\r\ntwo")
		for _, want := range []string{"one", "two"} {
			bob.waitFor("the pasted line "+want, func(m msg) bool { return m.Type == "message" && m.Room == "#go" && m.Text == want })
		}
		alice.say("/msg bob psst")
		bob.waitFor("the DM", func(m msg) bool { return m.Type == "dm" && m.From == "alice" && m.To == "bob" && m.Text == "psst" })
	})
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func TestAMessageOverTheReadLimitClosesWith1009(t *testing.T) {
	e := newEnv(t, envOptions{web: func(c *Config) { c.ReadLimit = 4 << 10 }})
	wc := e.join(t, "big")
	wc.say(strings.Repeat("a", 8<<10))
	wantClose(t, wc.waitClosed(), websocket.StatusMessageTooBig, "")
}

func TestStateAndHistoryRequestsAreRateLimited(t *testing.T) {
	e := newEnv(t, envOptions{web: func(c *Config) {
		c.RequestBurst = 3
		c.RequestRate = 1.0 / 3600 // none come back within the test
	}})
	wc := e.join(t, "greedy")
	for range 10 {
		wc.send(map[string]string{"type": "state"})
	}
	wc.say("a line still goes") // the marker: everything before it has been handled
	wc.waitFor("the marker", func(m msg) bool { return m.Type == "message" && m.Text == "a line still goes" })
	var states, warnings int
	for _, m := range wc.all() {
		switch {
		case m.Type == "state":
			states++
		case m.Type == "error" && strings.Contains(m.Text, "too many requests"):
			warnings++
		}
	}
	if states != 3 || warnings != 1 {
		t.Errorf("10 requests with a burst of 3: %d answered, %d warnings; want 3 and 1", states, warnings)
	}
}

func TestGuestsAndRegisteredNames(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	e.registered(t, "alice")

	guest := e.join(t, "carol")
	guest.send(map[string]string{"type": "state"})
	if st := guest.waitFor("the state", func(m msg) bool { return m.Type == "state" }); st.Name != "carol" || st.Registered {
		t.Errorf("a guest's state: %s", st.raw)
	}
	for _, tc := range []struct {
		name, query, err, reason string
	}{
		{"a registered name", "name=alice", "registered", closeRefused},
		{"the same name in other case", "name=ALICE", "registered", closeRefused},
		{"a name in use", "name=carol", "taken", closeRefused},
		{"an invalid name", "name=no%20spaces", "name", closeRefused},
		{"no name at all", "", "sign in", closeSignIn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wc, err := e.dial(t, e.wsURL(tc.query), nil)
			if err != nil {
				t.Fatal(err)
			}
			wc.waitFor("the refusal", isError(tc.err))
			wantClose(t, wc.waitClosed(), websocket.StatusPolicyViolation, tc.reason)
		})
	}
}

func TestABotSignsInWithItsToken(t *testing.T) {
	e := newEnv(t, envOptions{store: true})
	alice := e.registered(t, "alice")
	token := alice.botToken(t, "pingbot")

	bot, err := e.dial(t, e.wsURL(""), http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	bot.send(map[string]string{"type": "state"})
	if st := bot.waitFor("the state", func(m msg) bool { return m.Type == "state" }); st.Name != "alice" || !st.Registered {
		t.Errorf("the bot's state: %s", st.raw)
	}
	bot.say("beep")
	alice.out.WaitContains(t, "alice: beep")

	for _, tc := range []struct {
		name, query, auth, err string
	}{
		{"an unknown token", "", "Bearer " + strings.Repeat("A", 43), "not valid"},
		{"another name than the token's", "name=bob", "Bearer " + token, "signs in as alice, not bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wc, err := e.dial(t, e.wsURL(tc.query), http.Header{"Authorization": {tc.auth}})
			if err != nil {
				t.Fatal(err)
			}
			wc.waitFor("the refusal", isError(tc.err))
			wantClose(t, wc.waitClosed(), websocket.StatusPolicyViolation, closeRefused)
		})
	}
	for _, auth := range []string{"Basic YWxpY2U6cHc=", "Bearer", "Bearer <script>"} {
		wc, err := e.dial(t, e.wsURL(""), http.Header{"Authorization": {auth}})
		if err == nil || wc.resp == nil || wc.resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %v, want a 401 before the upgrade", auth, err)
		}
	}
}

func TestOnlyThePublicOriginMayOpenTheWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{web: func(c *Config) {
		// The page is at localhost: a page served as 127.0.0.1 (another name for the same
		// server, as DNS rebinding makes) is another origin.
		c.PublicURL = "http://localhost:" + c.Addr[strings.LastIndexByte(c.Addr, ':')+1:]
	}})
	public := e.srv.pub.origin
	i := 0
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true}, // a bot
		{public, true},
		{strings.ToUpper(public), true},
		{"http://evil.example", false},
		{"null", false},
		{e.base, false}, // the Host header's own origin: the library would allow it
		{"https://" + strings.TrimPrefix(public, "http://"), false},
		{public + ".evil.example", false},
	} {
		i++
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		wc, err := e.dial(t, e.wsURL("name=o"+strconv.Itoa(i)), h)
		if tc.ok {
			if err != nil {
				t.Errorf("Origin %q: %v, want the upgrade", tc.origin, err)
				continue
			}
			wc.waitFor("the welcome", func(m msg) bool { return m.Type == "info" })
			wc.c.CloseNow()
			<-wc.done
			continue
		}
		if err == nil || wc.resp == nil || wc.resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: %v, want 403 before the upgrade", tc.origin, err)
		}
	}
}

// dialNoRead opens a WebSocket that never reads, with a small receive buffer, so that what the
// server writes piles up quickly.
func (e *env) dialNoRead(t *testing.T, name string) *websocket.Conn {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.wsURL("name="+name), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func TestAClientThatNeverReadsIsDroppedAsTooSlow(t *testing.T) {
	e := newEnv(t, envOptions{room: func(c *room.Config) { c.OutboxSize = 64 }})
	watcher := e.join(t, "watcher")
	e.dialNoRead(t, "slowpoke")
	watcher.waitFor("slowpoke's arrival", func(m msg) bool { return slices.Contains(m.Joined, "slowpoke") })

	// The flood goes at the watcher's pace, so that only the one that does not read falls behind.
	flood := e.joinLocal(t, "flood", room.JoinOptions{})
	line := strings.Repeat("x", 900)
	var left msg
	seen := 0 // lines of the watcher's looked at for the leave notice
	for batch := 0; left.Type == ""; batch++ {
		n := watcher.count()
		for range 16 {
			flood.Handle(line)
		}
		marker := "batch " + strconv.Itoa(batch)
		flood.Handle(marker)
		watcher.waitFrom(n, marker, func(m msg) bool { return m.Text == marker })
		all := watcher.all()
		for _, m := range all[seen:] {
			if slices.Contains(m.Left, "slowpoke") {
				left = m
			}
		}
		seen = len(all)
	}
	if !strings.Contains(left.Text, "too slow") {
		t.Errorf("the leave notice %q does not say why", left.Text)
	}
	n := watcher.count()
	flood.Handle("after")
	watcher.waitFrom(n, "the room carrying on", func(m msg) bool { return m.Text == "after" })
	e.logs.waitFor(t, "too slow")
}

func TestAPeerThatDoesNotAnswerPingsIsDropped(t *testing.T) {
	e := newEnv(t, envOptions{web: func(c *Config) {
		// Pings often; a second to answer is long enough for the watcher on a busy machine, and
		// the ghost never answers at all.
		c.PingInterval = 20 * time.Millisecond
		c.PingTimeout = time.Second
	}})
	watcher := e.join(t, "watcher")
	e.dialNoRead(t, "ghost") // reads nothing, so it answers no ping
	watcher.waitFor("the ghost gone", func(m msg) bool { return slices.Contains(m.Left, "ghost") })
	e.logs.waitFor(t, "no pong")
	// A client that reads answers, and stays (the watcher has been pinged all along).
	watcher.say("still here")
	watcher.waitFor("the watcher's line", func(m msg) bool { return m.Text == "still here" })
}

func TestTheRoomsEndsAreSaidInTheCloseStatus(t *testing.T) {
	t.Run("bye", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		wc := e.join(t, "leaver")
		wc.say("bye")
		wc.waitFor("the goodbye", func(m msg) bool { return strings.Contains(m.Text, "goodbye") })
		wantClose(t, wc.waitClosed(), websocket.StatusNormalClosure, closeBye)
	})
	t.Run("banned", func(t *testing.T) {
		e := newEnv(t, envOptions{store: true})
		op := e.joinLocal(t, "op", room.JoinOptions{Operator: true})
		mallory := e.join(t, "mallory")
		op.Handle("/ban mallory spam")
		mallory.waitFor("why", func(m msg) bool { return strings.Contains(m.Text, "banned") })
		wantClose(t, mallory.waitClosed(), websocket.StatusPolicyViolation, closeBanned)
		again, err := e.dial(t, e.wsURL("name=mallory"), nil)
		if err != nil {
			t.Fatal(err)
		}
		again.waitFor("the refusal", isError("banned"))
		wantClose(t, again.waitClosed(), websocket.StatusPolicyViolation, closeRefused)
	})
	t.Run("kicked", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		op := e.joinLocal(t, "op", room.JoinOptions{Operator: true})
		wc := e.join(t, "kickme")
		op.Handle("/kick kickme out")
		err := wc.waitClosed()
		if t.Failed() || websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Log(e.logs.String())
		}
		wantClose(t, err, websocket.StatusPolicyViolation, closeKicked)
	})
	t.Run("idle", func(t *testing.T) {
		e := newEnv(t, envOptions{room: func(c *room.Config) { c.IdleTimeout = 50 * time.Millisecond }})
		wc := e.join(t, "sleepy")
		wantClose(t, wc.waitClosed(), websocket.StatusNormalClosure, closeIdle)
	})
	t.Run("shutdown", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		wc := e.join(t, "stayer")
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := e.hub.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		wantClose(t, wc.waitClosed(), websocket.StatusGoingAway, closeGoing)
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown after the room's: %v", err)
		}
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown again: %v", err)
		}
		if _, err := e.dial(t, e.wsURL("name=late"), nil); err == nil {
			t.Error("a WebSocket opened after Shutdown")
		}
	})
}

func TestAnInvitationOnlyServerRefusesGuests(t *testing.T) {
	e := newEnv(t, envOptions{store: true, web: func(c *Config) { c.RefuseGuests = "invited people only" }})
	guest, err := e.dial(t, e.wsURL("name=carol"), nil)
	if err != nil {
		t.Fatal(err)
	}
	guest.waitFor("the refusal", isError("invited people only"))
	wantClose(t, guest.waitClosed(), websocket.StatusPolicyViolation, closeRefused)

	token := e.registered(t, "alice").botToken(t, "bot")
	bot, err := e.dial(t, e.wsURL(""), http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatal(err)
	}
	bot.waitFor("the welcome", func(m msg) bool { return m.Type == "info" && strings.Contains(m.Text, "alice") })
}

// TestBytesSentWithTheUpgradeAreRead: a client may send its first message in the same packet as
// its upgrade request; the connection's own small buffers (smallBuffers) must not lose it.
func TestBytesSentWithTheUpgradeAreRead(t *testing.T) {
	e := newEnv(t, envOptions{})
	watcher := e.join(t, "watcher")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := []byte(`{"type":"say","text":"sent with the upgrade"}`)
	frame := []byte{0x81, 0x80 | byte(len(payload)), 1, 2, 3, 4} // a masked text frame
	for i, b := range payload {
		frame = append(frame, b^[]byte{1, 2, 3, 4}[i%4])
	}
	req := "GET /ws?name=eager HTTP/1.1\r\nHost: " + e.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	watcher.waitFor("the eager client's line", func(m msg) bool { return m.From == "eager" && m.Text == "sent with the upgrade" })
}
