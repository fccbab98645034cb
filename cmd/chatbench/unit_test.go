package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestAppendMessage(t *testing.T) {
	m := string(appendMessage(nil, "ab12", 3, 17, 1764000000123456789, 64))
	if want := "~ab12.3.17.1764000000123456789~"; !strings.HasPrefix(m, want) {
		t.Errorf("message %q does not start with %q", m, want)
	}
	if len(m) != 64 || !strings.HasPrefix(m[len("~ab12.3.17.1764000000123456789~"):], " .") || strings.Trim(m[len("~ab12.3.17.1764000000123456789~ "):], ".") != "" {
		t.Errorf("message %q is not the token, a space and dots to 64 bytes", m)
	}
	// A size below the token's length gives the bare token.
	if m := string(appendMessage(nil, "ab12", 0, 0, 5, 1)); m != "~ab12.0.0.5~" {
		t.Errorf("short message = %q", m)
	}
	// Only printable ASCII, no '-' (names have one: no mention), no leading '/'.
	for _, c := range []byte(m) {
		if c < 0x20 || c > 0x7e || c == '-' {
			t.Errorf("message %q has %q", m, c)
		}
	}
}

// scanAll feeds chunks to the scanner the way a reader does, carrying the tail of each chunk
// into the next, and returns every token found.
func scanAll(sc scanner, chunks ...string) []token {
	var all []token
	var carry []byte
	for _, ch := range chunks {
		data := append(carry, ch...)
		toks, k := sc.scan(data, nil)
		all = append(all, toks...)
		if k > sc.maxTail() {
			panic(fmt.Sprintf("tail of %d bytes", k))
		}
		carry = append([]byte(nil), data[len(data)-k:]...)
	}
	return all
}

func TestScan(t *testing.T) {
	sc := newScanner("ab12")
	tok := func(s, q int32, n int64) token { return token{sender: s, seq: q, nanos: n, room: roomUntagged} }
	plain := "15:04 bench-s1: " + string(appendMessage(nil, "ab12", 1, 2, 1764000000000000001, 60)) + "\n"
	ansi := "\x1b[2m15:04\x1b[0m \x1b[1;38;5;31mbench-s1\x1b[0m: " + string(appendMessage(nil, "ab12", 0, 9, 42, 50)) + "\r\n"
	for _, tc := range []struct {
		name   string
		chunks []string
		want   []token
	}{
		{"plain line", []string{plain}, []token{tok(1, 2, 1764000000000000001)}},
		{"ansi line", []string{ansi}, []token{tok(0, 9, 42)}},
		{"two lines in one read", []string{ansi + plain}, []token{tok(0, 9, 42), tok(1, 2, 1764000000000000001)}},
		{"bare token, not after a name", []string{"~ab12.1.2.3~\n"}, nil},
		{"the sender's typing echoed after the prompt", []string{"\x1b[1mbench-s1\x1b[0m> ~ab12.1.2.3~..."}, nil},
		{"history from another run", []string{"[history 2026-11-25 09:41] bench-s1: ~zz99.1.2.3~\n"}, nil},
		{"history from this run", []string{"[history 2026-11-25 09:41] bench-s1: ~ab12.1.2.3~\n"}, []token{tok(1, 2, 3)}},
		{"malformed: letter", []string{"x: ~ab12.1.x.3~\n"}, nil},
		{"malformed: empty field", []string{"x: ~ab12..2.3~\n"}, nil},
		{"malformed: wrong end", []string{"x: ~ab12.1.2.3.\n"}, nil},
		{"malformed: too many digits", []string{"x: ~ab12.1.1234567890.3~\n"}, nil},
		{"malformed then good", []string{"x: ~ab12.1.2: ~ab12.4.5.6~"}, []token{tok(4, 5, 6)}},
		{"nanos overflow", []string{"x: ~ab12.1.2.9999999999999999999~"}, nil},
		{"cut in the marker", []string{"bench-s1: ~ab", "12.7.8.9~..."}, []token{tok(7, 8, 9)}},
		{"cut after the colon", []string{"bench-s1:", " ~ab12.7.8.9~"}, []token{tok(7, 8, 9)}},
		{"cut in three", []string{"bench-s1: ~ab12.7", ".8.", "9~\n"}, []token{tok(7, 8, 9)}},
		{"incomplete forever", []string{"x: ~ab12.1.2.3"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scanAll(sc, tc.chunks...); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// A token split across two reads at any point is found exactly once.
func TestScanSplitEverywhere(t *testing.T) {
	sc := newScanner("ab12")
	stream := "* bench-s0 joined (3 online)\n15:04 bench-s1: " + string(appendMessage(nil, "ab12", 12, 345, 1764000000987654321, 64)) +
		"\n15:04 bench-t0: " + string(appendMessage(nil, "ab12", 3, 0, 1764000000000000000, 40)) + "\n"
	want := []token{{12, 345, 1764000000987654321, roomUntagged}, {3, 0, 1764000000000000000, roomUntagged}}
	for i := 0; i <= len(stream); i++ {
		if got := scanAll(sc, stream[:i], stream[i:]); !slices.Equal(got, want) {
			t.Fatalf("split at %d (%q | %q): got %v, want %v", i, stream[:i], stream[i:], got, want)
		}
	}
	// And a byte at a time.
	chunks := make([]string, len(stream))
	for i := range stream {
		chunks[i] = stream[i : i+1]
	}
	if got := scanAll(sc, chunks...); !slices.Equal(got, want) {
		t.Fatalf("byte by byte: got %v, want %v", got, want)
	}
}

// A token counts for the room its line is tagged with ("#room NAME: ~..."), and for the
// receiver's current room when the line has no tag; escape codes, timestamps and the line
// editor's prompt and cursor movements in front of the line do not change that.
func TestScanRooms(t *testing.T) {
	sc := newScanner("ab12")
	msg := string(appendMessage(nil, "ab12", 1, 2, 3, 64))
	const (
		dim   = "\x1b[2m"
		reset = "\x1b[0m"
		name  = "\x1b[1;38;5;31mbench-s1\x1b[0m"
	)
	for _, tc := range []struct {
		name string
		line string
		room int32
	}{
		{"untagged", "bench-s1: " + msg + "\n", roomUntagged},
		{"untagged with a time", "15:04 bench-s1: " + msg + "\n", roomUntagged},
		{"the run's room", "#ab12-r3 bench-s1: " + msg + "\n", 3},
		{"the run's room, after the time", "15:04 #ab12-r17 bench-s1: " + msg + "\n", 17},
		{"the run's room, before the time", "#ab12-r17 15:04 bench-s1: " + msg + "\n", 17},
		{"the run's room, coloured", dim + "15:04" + reset + " " + dim + "#ab12-r3" + reset + " " + name + ": " + msg + "\r\n", 3},
		{"the default room", "#lobby bench-s1: " + msg + "\n", roomElsewhere},
		{"the default room, coloured", dim + "15:04" + reset + " " + dim + "#lobby" + reset + " " + name + ": " + msg + "\r\n", roomElsewhere},
		{"another run's room", "#zz99-r3 bench-s1: " + msg + "\n", roomElsewhere},
		{"not a room index", "#ab12-r007 bench-s1: " + msg + "\n", roomElsewhere},
		{"no index", "#ab12-r bench-s1: " + msg + "\n", roomElsewhere},
		{"not a room name", "#AB12-r3 bench-s1: " + msg + "\n", roomUntagged},
		{"history", "[history 2026-11-25 09:41] bench-s1: " + msg + "\n", roomUntagged},
		{"after a line before it", "#ab12-r3 bench-s0: hi\nbench-s1: " + msg + "\n", roomUntagged},
		{"after the prompt, moved over", "\x1b[1mbench-s0\x1b[0m> \x1b[10D\x1b[K15:04 #ab12-r4 " + name + ": " + msg + "\r\n", 4},
		{"after a prompt naming a room, moved over", "#ab12-r4 bench-s0> \x1b[19D\x1b[K15:04 " + name + ": " + msg + "\r\n", roomUntagged},
		{"after a prompt naming a room, CR", "#ab12-r4 bench-s0> \r\x1b[K" + name + ": " + msg + "\r\n", roomUntagged},
		{"after a typed line was erased", "\x1b[1A\r\x1b[J#ab12-r5 " + name + ": " + msg + "\r\n", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := []token{{sender: 1, seq: 2, nanos: 3, room: tc.room}}
			if got := scanAll(sc, tc.line); !slices.Equal(got, want) {
				t.Errorf("%q: got %v, want %v", tc.line, got, want)
			}
		})
	}
}

// A line's room tag is found however the stream is cut, a tag and its token in different reads.
func TestScanRoomsSplitEverywhere(t *testing.T) {
	sc := newScanner("ab12")
	stream := "\x1b[2m* bench-s0 joined #ab12-r2 (3 online)\x1b[0m\r\n" +
		"\x1b[2m15:04\x1b[0m \x1b[2m#ab12-r2\x1b[0m \x1b[1;38;5;31mbench-s1\x1b[0m: " + string(appendMessage(nil, "ab12", 12, 345, 1764000000987654321, 64)) + "\r\n" +
		"\x1b[1mbench-s0\x1b[0m> \x1b[10D\x1b[K15:04 bench-t0: " + string(appendMessage(nil, "ab12", 3, 0, 1764000000000000000, 40)) + "\r\n" +
		"15:04 #lobby bench-t1: " + string(appendMessage(nil, "ab12", 4, 1, 1764000000000000002, 40)) + "\n"
	want := []token{{12, 345, 1764000000987654321, 2}, {3, 0, 1764000000000000000, roomUntagged}, {4, 1, 1764000000000000002, roomElsewhere}}
	for i := 0; i <= len(stream); i++ {
		if got := scanAll(sc, stream[:i], stream[i:]); !slices.Equal(got, want) {
			t.Fatalf("split at %d (%q | %q): got %v, want %v", i, stream[:i], stream[i:], got, want)
		}
	}
	chunks := make([]string, len(stream))
	for i := range stream {
		chunks[i] = stream[i : i+1]
	}
	if got := scanAll(sc, chunks...); !slices.Equal(got, want) {
		t.Fatalf("byte by byte: got %v, want %v", got, want)
	}
}

// The room join waits for the room's join notice, however a terminal wrapped it, and fails at an
// error line.
func TestAwaitRoom(t *testing.T) {
	pat := []byte(" joined #ab12-r3 (")
	for _, tc := range []struct {
		name   string
		stream string
		rest   string // what follows the notice's line
		err    string
	}{
		{"own notice", "* bench-s3 joined #lobby (9 online)\n/join #ab12-r3\n* bench-s3 joined #ab12-r3 (1 online)\nnext", "next", ""},
		{"gathered, coloured and wrapped", "\x1b[2m15:04\x1b[0m \x1b[2m* bench-s0, bench-s1, bench-s2, bench-s4, bench-s5 and 3 others joined\x1b[0m\r\n      \x1b[2m#ab12-r3 (9 online)\x1b[0m\r\nx: y\r\n", "x: y\r\n", ""},
		{"another room's notice", "* bench-s1 joined #ab12-r33 (2 online)\n", "", "EOF"},
		{"the typed command, echoed", "\x1b[1mbench-s3\x1b[0m> /join #ab12-r3\x1b[1A\r\x1b[J", "", "EOF"},
		{"an error", "\x1b[2m15:04\x1b[0m \x1b[1;31merror:\x1b[0m unknown command /join\r\n* bench-s3 joined #ab12-r3 (1 online)\n", "", "error: unknown command /join"},
		{"an error without a line feed", "error: no such thing", "", "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte a read: a notice cut anywhere.
			r := strings.NewReader(tc.stream)
			buf := make([]byte, readBufSize)
			keep, err := awaitRoom(iotest.OneByteReader(r), buf, 0, pat)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err == "EOF" && !errors.Is(err, io.EOF):
				t.Fatalf("error %v, want EOF", err)
			case tc.err != "" && tc.err != "EOF" && (err == nil || err.Error() != tc.err):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if err != nil {
				return
			}
			// What is kept in buf and left in the reader is what followed the notice's line.
			unread, _ := io.ReadAll(r)
			if got := string(buf[:keep]) + string(unread); got != tc.rest {
				t.Errorf("after the notice: %q, want %q", got, tc.rest)
			}
		})
	}
	// In one read, with more after the notice.
	buf := make([]byte, readBufSize)
	n := copy(buf, "* a joined #ab12-r3 (2 online)\r\nbench-s1: hi\r\n")
	keep, err := awaitRoom(strings.NewReader(""), buf, n, pat)
	if err != nil || string(buf[:keep]) != "bench-s1: hi\r\n" {
		t.Errorf("awaitRoom = %q, %v", buf[:keep], err)
	}
}

// The lobby join accepts the welcome and both forms of the join notice, old and new.
func TestAwaitJoin(t *testing.T) {
	c := &client{name: "bench-s3"}
	c.joinPats = [][]byte{[]byte(", " + c.name + "! "), []byte("* " + c.name + " joined ("), []byte("* " + c.name + " joined #")}
	for stream, rest := range map[string]string{
		"* welcome to chatd, bench-s3! /help lists the commands; bye leaves.\nafter": "/help lists the commands; bye leaves.\nafter",
		"* bench-s3 joined (3 online)\nafter":                                        "3 online)\nafter",
		"\x1b[2m* bench-s3 joined #lobby (3 online)\x1b[0m\nafter":                   "lobby (3 online)\x1b[0m\nafter",
	} {
		r := strings.NewReader(stream)
		buf := make([]byte, readBufSize)
		keep, err := awaitJoin(iotest.OneByteReader(r), buf, 0, c.joinPats)
		if err != nil {
			t.Errorf("%q: %v", stream, err)
			continue
		}
		if unread, _ := io.ReadAll(r); string(buf[:keep])+string(unread) != rest {
			t.Errorf("%q: after the join %q, want %q", stream, string(buf[:keep])+string(unread), rest)
		}
	}
	for _, stream := range []string{"* bench-s33 joined (3 online)\n", "* bench-s1 joined #lobby (3 online)\n"} {
		if _, err := awaitJoin(strings.NewReader(stream), make([]byte, readBufSize), 0, c.joinPats); !errors.Is(err, io.EOF) {
			t.Errorf("%q: %v, want EOF", stream, err)
		}
	}
}

// The figures are counted room by room: a receiver expects its room's senders only; a token
// tagged with the default room is not counted, one tagged with another of the run's rooms, or
// from a sender in another room, is foreign; the run's figures are the rooms' sums.
func TestRoomAccounting(t *testing.T) {
	b := &bench{cfg: Config{TCPClients: 6, Senders: 4, Rooms: 2, NamePrefix: "bx"}, runID: "ab12", notices: map[string]string{}}
	b.scanner = newScanner(b.runID)
	b.setRooms()
	if err := b.makeClients(); err != nil {
		t.Fatal(err)
	}
	b.clients[0].pty, b.clients[0].echo = true, true // gets its own messages back
	b.live = b.clients
	b.pickSenders()
	// Clients bx-t0..bx-t5 are in rooms 0, 1, 0, 1, 0, 1; the first four send.
	for i, c := range b.clients {
		if want := int32(i % 2); c.room != want || c.roomName != roomName("ab12", int(want)) {
			t.Fatalf("client %d in room %d (%s), want %d", i, c.room, c.roomName, want)
		}
	}
	if !slices.Equal(b.roomSenders[0], []int{0, 2}) || !slices.Equal(b.roomSenders[1], []int{1, 3}) {
		t.Fatalf("senders by room = %v", b.roomSenders)
	}
	for s, n := range []int64{3, 2, 1, 0} {
		b.senders[s].sent.Store(n)
	}
	now := time.Now().UnixNano()
	line := func(prefix string, sender, seq int) string {
		return prefix + ": " + string(appendMessage(nil, "ab12", sender, seq, now-int64(time.Millisecond), 64)) + "\r\n"
	}
	streams := map[int]string{
		// room 0
		0: line("bx-t0", 0, 0) + line("bx-t2", 2, 0), // its own echo, and s2's
		2: line("bx-t0", 0, 0) + line("bx-t0", 0, 1) + line("15:04 #ab12-r0 bx-t0", 0, 2),
		4: line("bx-t0", 0, 0) + line("bx-t0", 0, 1) +
			line("#lobby bx-t0", 0, 2) + // the default room: not counted (so lost)
			line("#ab12-r1 bx-t1", 1, 0) + // another room of the run: foreign
			line("bx-t1", 1, 1) + // untagged, but its sender is in room 1: foreign
			line("#zz99-r0 bx-t2", 2, 0) + // another run's room: not counted
			line("#ab12-r0 bx-t2", 2, 0), // its own room, tagged: counted
		// room 1
		3: line("bx-t1", 1, 0) + line("bx-t1", 1, 1),
		5: line("bx-t1", 1, 0) + line("bx-t1", 1, 1) + line("#ab12-r0 bx-t0", 0, 0),
	}
	for id, stream := range streams {
		toks, _ := b.scanner.scan([]byte(stream), nil)
		b.record(b.clients[id], toks, now)
	}
	rep := b.newReport()
	b.tally(rep)

	want := []RoomFigures{
		// c0 expects s2's 1, c2 s0's 3, c4 s0's 3 and s2's 1.
		{Room: "#ab12-r0", Clients: 3, Senders: 2, MessagesSent: 4, Expected: 8, Received: 7, Lost: 1, Foreign: 2},
		// c1 expects s3's 0, c3 s1's 2, c5 s1's 2 and s3's 0.
		{Room: "#ab12-r1", Clients: 3, Senders: 2, MessagesSent: 2, Expected: 4, Received: 4, Lost: 0, Foreign: 1},
	}
	if len(rep.RoomFigures) != len(want) {
		t.Fatalf("room figures: %+v", rep.RoomFigures)
	}
	for k, got := range rep.RoomFigures {
		if got.LatencyP50 <= 0 || got.LatencyP99 < got.LatencyP50 {
			t.Errorf("%s: latency p50 %v, p99 %v", got.Room, got.LatencyP50, got.LatencyP99)
		}
		got.LatencyP50, got.LatencyP99, got.LatencyMax = 0, 0, 0
		if got != want[k] {
			t.Errorf("room %d:\n got %+v\nwant %+v", k, got, want[k])
		}
	}
	if rep.MessagesSent != 6 || rep.Expected != 12 || rep.Received != 11 || rep.Lost != 1 || rep.Foreign != 3 {
		t.Errorf("run: sent %d, expected %d, received %d, lost %d, foreign %d; want 6, 12, 11, 1, 3",
			rep.MessagesSent, rep.Expected, rep.Received, rep.Lost, rep.Foreign)
	}
	if rep.Echoes != 1 || rep.EchoesExpected != 3 || rep.Duplicates != 0 {
		t.Errorf("echoes %d of %d, duplicates %d; want 1 of 3, 0", rep.Echoes, rep.EchoesExpected, rep.Duplicates)
	}
	if b.allDelivered() {
		t.Error("allDelivered with a delivery missing")
	}
	var sb strings.Builder
	if err := rep.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rooms        2 of 3 clients (#ab12-r0 to #ab12-r1)", "foreign      3 deliveries", "losses in 1 room: #ab12-r0 (1)"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("the text report has no %q:\n%s", want, sb.String())
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	seq := func(from, to int64) []int64 {
		var v []int64
		for i := from; i <= to; i++ {
			v = append(v, i)
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		values []int64
		p      float64
		want   int64
		tol    float64 // relative
	}{
		{"empty", nil, 50, 0, 0},
		{"one value", []int64{7}, 50, 7, 0},
		{"one large value is exact (clamped to max)", []int64{123456}, 99, 123456, 0},
		{"1..100 p50", seq(1, 100), 50, 50, 0},
		{"1..100 p90", seq(1, 100), 90, 90, 0},
		{"1..100 p99", seq(1, 100), 99, 99, 0},
		{"1..100 p100", seq(1, 100), 100, 100, 0},
		{"1..100 p0 is the minimum", seq(1, 100), 0, 1, 0},
		{"1..10000 p50", seq(1, 10000), 50, 5000, 1.0 / histSub},
		{"1..10000 p99", seq(1, 10000), 99, 9900, 1.0 / histSub},
		{"1..10000 p99.9", seq(1, 10000), 99.9, 9990, 1.0 / histSub},
		{"bimodal p50", append(slices.Repeat([]int64{200}, 90), slices.Repeat([]int64{50000}, 10)...), 50, 200, 1.0 / histSub},
		{"bimodal p90", append(slices.Repeat([]int64{200}, 90), slices.Repeat([]int64{50000}, 10)...), 90, 200, 1.0 / histSub},
		{"bimodal p91", append(slices.Repeat([]int64{200}, 90), slices.Repeat([]int64{50000}, 10)...), 91, 50000, 0},
		{"negative counts as 0", []int64{-5, -1}, 50, 0, 0},
		{"huge", []int64{math.MaxInt64 / 2}, 50, math.MaxInt64 / 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			for _, v := range tc.values {
				h.record(v)
			}
			got := h.percentile(tc.p)
			if diff := math.Abs(float64(got - tc.want)); diff > tc.tol*float64(tc.want) {
				t.Errorf("p%v = %d, want %d (±%.1f%%)", tc.p, got, tc.want, 100*tc.tol)
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value lies within its bucket, buckets are contiguous and at most 1/histSub wide.
	prevUpper := int64(-1)
	for i := range histBuckets - 1 {
		up := histUpper(i)
		lo := prevUpper + 1
		if histBucket(lo) != i || histBucket(up) != i {
			t.Fatalf("bucket %d = [%d, %d], but those values go to %d and %d", i, lo, up, histBucket(lo), histBucket(up))
		}
		if i >= histLinear && float64(up-lo+1) > float64(lo)/histSub {
			t.Fatalf("bucket %d = [%d, %d] is too wide", i, lo, up)
		}
		prevUpper = up
	}
}

func TestHistogramMergeAndSince(t *testing.T) {
	var a, b histogram
	for i := int64(1); i <= 50; i++ {
		a.record(i)
	}
	for i := int64(51); i <= 100; i++ {
		b.record(i)
	}
	var m histogram
	m.merge(&a)
	snap := m
	m.merge(&b)
	if m.n != 100 || m.min != 1 || m.max != 100 || m.percentile(50) != 50 {
		t.Errorf("merged: n %d, min %d, max %d, p50 %d", m.n, m.min, m.max, m.percentile(50))
	}
	d := m.since(&snap)
	if d.n != 50 || d.percentile(0) != 51 || d.percentile(100) != 100 {
		t.Errorf("since: n %d, p0 %d, p100 %d", d.n, d.percentile(0), d.percentile(100))
	}
}

func TestParseProc(t *testing.T) {
	stat := "4242 (chat d) (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 3.25 {
		t.Errorf("parseStatCPU = %v, %v; want 3.25 s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
	status := "Name:\tchatd\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	rss, err := parseStatusRSS([]byte(status))
	if err != nil || rss != 20480 {
		t.Errorf("parseStatusRSS = %v, %v; want 20480", rss, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseStatusRSS accepted a status without VmRSS")
	}
}

func TestLastLine(t *testing.T) {
	c := &client{}
	c.keepTail([]byte("15:04 a: hello\n"))
	c.keepTail([]byte("\x1b[2m* server is shutting down, goodbye\x1b[0m\r\n"))
	if got := c.lastLine(); got != "* server is shutting down, goodbye" {
		t.Errorf("lastLine = %q", got)
	}
	// A PTY session's stream ends with the repainted prompt: not a line.
	c.keepTail([]byte("\x1b[1mbench-s1\x1b[0m> "))
	if got := c.lastLine(); got != "* server is shutting down, goodbye" {
		t.Errorf("lastLine after a prompt = %q", got)
	}
	c.keepTail([]byte(strings.Repeat("x", 1000) + "\nlast\n"))
	if got := c.lastLine(); got != "last" {
		t.Errorf("lastLine after a long read = %q", got)
	}
	// Many small reads keep the end of the stream.
	for _, s := range []string{"* bob", " left (too", " slow)", "\n"} {
		c.keepTail([]byte(s))
	}
	if got := c.lastLine(); got != "* bob left (too slow)" {
		t.Errorf("lastLine after small reads = %q", got)
	}
}

func TestWatchNotices(t *testing.T) {
	b := &bench{noticePat: []byte("* bx-"), notices: map[string]string{}}
	b.watchNotices([]byte("\x1b[2m15:04\x1b[0m \x1b[2m* bx-s3 left (too slow)\x1b[0m\r\n* bx-t1 joined (3 online)\n* bx-t2 left\n* other left\n"))
	want := map[string]string{"bx-s3": "bx-s3 left (too slow)", "bx-t2": "bx-t2 left"}
	if fmt.Sprint(b.notices) != fmt.Sprint(want) {
		t.Errorf("notices = %v, want %v", b.notices, want)
	}
}

func TestProgressLine(t *testing.T) {
	b := &bench{clients: make([]*client, 10), t0: time.Now().Add(-time.Second)}
	b.setRooms()
	b.connected.Store(4)
	if got := b.progressLine(&progress{}); !strings.HasPrefix(got, "connect  4/10 in the room, 0 failed") {
		t.Errorf("connect line = %q", got)
	}
	s := &client{}
	s.sent.Store(7)
	b.senders = []*client{s}
	b.deadln.Store(time.Now().Add(3 * time.Second).UnixNano())
	b.phase.Store(phaseRun)
	for v := int64(1000); v <= 100000; v += 1000 {
		b.shards[v%int64(len(b.shards))].hist[v/1000%2].record(v) // the progress line counts both
		b.shards[v%int64(len(b.shards))].delivered++
	}
	var p progress
	if got, want := b.progressLine(&p), "run      sent 7, delivered 100 (100/s), p99 99."; !strings.HasPrefix(got, want) {
		t.Errorf("run line = %q, want it to start with %q", got, want)
	}
	b.shards[0].hist[crossNode].record(5000)
	b.shards[0].delivered++
	b.phase.Store(phaseDrain)
	if got, want := b.progressLine(&p), "drain    sent 7, delivered 101 (1/s), p99 5.0"; !strings.HasPrefix(got, want) {
		t.Errorf("drain line = %q, want it to start with %q", got, want)
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"bench1a2b-s17": true, "a": true, "9_x.y-z": true,
		"": false, "-a": false, ".a": false, "a b": false, "a:b": false, strings.Repeat("a", 33): false,
	} {
		if err := checkName(name); (err == nil) != ok {
			t.Errorf("checkName(%q) = %v", name, err)
		}
	}
}

func TestTextHints(t *testing.T) {
	rep := &Report{ConnectErrors: []ErrorCount{{Error: `chatd: too many connections from your address (at most 16 at once) (ssh: handshake failed)`, Count: 3}}}
	var sb strings.Builder
	if err := rep.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "--limit-exempt 127.0.0.1") {
		t.Errorf("no hint about --limit-exempt:\n%s", sb.String())
	}
	rep = &Report{Rooms: 100, ConnectErrors: []ErrorCount{{Error: `joining #ROOM: error: room limit: you may create 10 rooms an hour; join an existing one`, Count: 90}}}
	sb.Reset()
	if err := rep.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "--rooms-per-hour 0") {
		t.Errorf("no hint about --rooms-per-hour:\n%s", sb.String())
	}
}

// A WebSocket client's events read as the plain lines a TCP client gets; with -rooms, the lines
// of rooms other than the client's own are tagged with their room.
func TestWSRender(t *testing.T) {
	for _, tc := range []struct {
		room, json, want string
	}{
		{"", `{"type":"message","room":"#lobby","from":"bob","text":"hi: there","time":"2026-12-01T17:40:00.123Z","colour":33}`, "bob: hi: there\n"},
		{"#ab12-r0", `{"type":"message","room":"#lobby","from":"bob","text":"hi"}`, "#lobby bob: hi\n"},
		{"#ab12-r0", `{"type":"message","room":"#ab12-r0","from":"bob","text":"hi"}`, "bob: hi\n"},
		{"", `{"type":"action","room":"#lobby","from":"bob","text":"waves"}`, "** bob waves\n"},
		{"", `{"type":"notice","room":"#lobby","text":"bob joined #lobby (2 online)","joined":["bob"]}`, "* bob joined #lobby (2 online)\n"},
		{"", `{"type":"info","text":"one\ntwo"}`, "* one\n* two\n"},
		{"", `{"type":"error","text":"no such room"}`, "error: no such room\n"},
		{"", `{"type":"dm","from":"bob","to":"me","text":"psst"}`, "[dm from bob] psst\n"},
		{"", `{"type":"dm","from":"me","to":"bob","text":"psst"}`, "[dm to bob] psst\n"},
		{"", `{"type":"state","name":"me","rooms":[]}`, ""},
		{"", `{"type":"history","room":"#lobby","events":[{"type":"message","from":"x","text":"old"}]}`, ""},
		{"", `not json`, "error: (not JSON) not json\n"},
	} {
		w := &wsConn{name: "me", room: tc.room}
		w.render([]byte(tc.json))
		if got := string(w.out); got != tc.want {
			t.Errorf("%s (room %q): %q, want %q", tc.json, tc.room, got, tc.want)
		}
	}
	w := &wsConn{name: "me"}
	w.render([]byte(`{"type":"error","text":"name taken\nmore"}`))
	if got := w.lastError(); got != "error: name taken" {
		t.Errorf("lastError = %q", got)
	}
}

// decodeEvent reads what encoding/json reads, stopping before a storm's list of names.
func TestDecodeEvent(t *testing.T) {
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("bench-w%d", i)
	}
	topic := "a <b> & \"c\" \u00e9\n"
	lines := []any{
		map[string]any{"type": "message", "room": "#lobby", "from": "bob", "text": "hi \"there\" <3 \\ é 日本 \U0001F600", "time": time.Now(), "colour": 33},
		map[string]any{"type": "notice", "room": "#lobby", "text": "a, b and 998 others joined #lobby (1000 online)", "time": time.Now(), "joined": names},
		map[string]any{"type": "notice", "room": "#go", "text": "bob set the topic", "topic": &topic},
		map[string]any{"type": "dm", "from": "bob", "to": "me", "text": "psst"},
		map[string]any{"type": "info", "text": "one\ntwo"},
		map[string]any{"type": "state", "name": "me", "rooms": []any{}},
		map[string]any{"type": "history", "room": "#lobby", "events": []any{map[string]any{"type": "message", "text": "old"}}},
	}
	for _, l := range lines {
		// Marshal writes a map's keys sorted, not in room.Event's order: write them in that order.
		line := orderedJSON(t, l.(map[string]any))
		var fast, slow wsEvent
		if err := decodeEvent(line, &fast); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if err := json.Unmarshal(line, &slow); err != nil {
			t.Fatal(err)
		}
		if fast != slow {
			t.Errorf("%.80s: decodeEvent %+v, encoding/json %+v", line, fast, slow)
		}
	}
	var ev wsEvent
	if fastDecode(orderedJSON(t, lines[1].(map[string]any)), &ev) == 0 {
		t.Error("a join storm's notice took the slow way")
	}
	for _, bad := range []string{``, `{`, `{"type":"message","text":"x`, `{"type":1,"text":"x"}`, `{"text":"x","type":"message"}`, "{\"type\":\"m\",\"text\":\"\x01\"}"} {
		if fastDecode([]byte(bad), &ev) > 0 {
			t.Errorf("fastDecode accepted %q: %+v", bad, ev)
		}
	}
}

// orderedJSON marshals m with its keys in room.Event's order, then the others sorted.
func orderedJSON(t *testing.T, m map[string]any) []byte {
	t.Helper()
	order := []string{"type", "room", "from", "to", "text", "time", "history", "colour", "joined", "left", "topic"}
	var keys []string
	for _, k := range order {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range m {
		if !slices.Contains(order, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	keys = append(keys, rest...)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(m[k])
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(append(b, kb...), ':'), vb...)
	}
	return append(b, '}')
}

// Whenever the fast way takes a line, it reads what encoding/json reads of the object it read,
// up to the text.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"message","room":"#a","from":"b","text":"c","time":"2026-12-01T17:40:00.123Z"}`,
		`{"type":"notice","text":"x \u003c \"y\"","joined":["a","b"]}`,
		`{"type":"dm","from":"a","to":"b","text":"\ud83d\ude00"}`,
		`{"type":"state","name":"me"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast, slow wsEvent
		end := fastDecode(line, &fast)
		if end == 0 {
			return
		}
		prefix := append(line[:end:end], '}')
		if err := json.Unmarshal(prefix, &slow); err != nil {
			t.Fatalf("%q: fast %+v, but encoding/json: %v", prefix, fast, err)
		}
		if fast != slow {
			t.Errorf("%q: fast %+v, encoding/json %+v", line, fast, slow)
		}
	})
}

// -ssh, -tcp and -ws name one node or several; a transport without clients names none, and
// every transport with clients must name the same number.
func TestNodeAddrs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SSHAddr, cfg.TCPAddr, cfg.TCPClients = "a:1, b:1", "a:2,b:2", 3
	cfg.WSAddr = "x:1,y:1,z:1" // no WebSocket clients: not a node count
	addrs, n, err := cfg.nodeAddrs()
	if err != nil || n != 2 {
		t.Fatalf("nodeAddrs = %v, %d, %v; want 2 nodes", addrs, n, err)
	}
	if !slices.Equal(addrs[overSSH], []string{"a:1", "b:1"}) || !slices.Equal(addrs[overTCP], []string{"a:2", "b:2"}) || addrs[overWS] != nil {
		t.Errorf("addrs = %q", addrs)
	}
	if _, n, err := DefaultConfig().nodeAddrs(); n != 1 || err != nil {
		t.Errorf("the defaults: %d nodes, %v; want 1", n, err)
	}
	cfg.SSHAddr, cfg.SSHClients = "", 0
	if _, n, err := cfg.nodeAddrs(); n != 2 || err != nil {
		t.Errorf("TCP only: %d nodes, %v; want 2", n, err)
	}
	for _, bad := range []struct{ ssh, tcp, want string }{
		{"a:1,b:1", "a:2", "-ssh names 2 nodes and -tcp 1"},
		{"a:1", "a:2,b:2,c:2", "-ssh names 1 nodes and -tcp 3"},
		{"a:1,,b:1", "a:2,b:2", "an empty address"},
		{"a:1,b:1,", "a:2,b:2", "an empty address"},
	} {
		cfg := DefaultConfig()
		cfg.SSHAddr, cfg.TCPAddr, cfg.TCPClients = bad.ssh, bad.tcp, 1
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("-ssh %q -tcp %q: %v, want an error with %q", bad.ssh, bad.tcp, err, bad.want)
		}
	}
}

// The clients are dealt to the nodes in turn, each transport's to its own address of the node;
// the senders are taken from the nodes in turn, and on each node from the transports in turn.
func TestNodeSpreading(t *testing.T) {
	b := &bench{cfg: Config{SSHAddr: "s0,s1", SSHClients: 3, TCPAddr: "t0,t1", TCPClients: 3, Senders: 4, NamePrefix: "bx"}, runID: "ab12"}
	b.scanner = newScanner(b.runID)
	b.setRooms()
	if err := b.makeClients(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range b.clients {
		got = append(got, fmt.Sprintf("%s@%d:%s", c.name, c.node, c.addr))
	}
	want := []string{"bx-s0@0:s0", "bx-s1@1:s1", "bx-s2@0:s0", "bx-t0@1:t1", "bx-t1@0:t0", "bx-t2@1:t1"}
	if !slices.Equal(got, want) {
		t.Errorf("clients:\n got %q\nwant %q", got, want)
	}
	b.live = b.clients
	b.pickSenders()
	got = got[:0]
	for _, c := range b.senders {
		got = append(got, fmt.Sprintf("%s@%d", c.name, c.node))
	}
	// Node 0 has s0, s2, t1; node 1 s1, t0, t2: each node's SSH client, then its TCP one.
	if want := []string{"bx-s0@0", "bx-s1@1", "bx-t1@0", "bx-t0@1"}; !slices.Equal(got, want) {
		t.Errorf("senders:\n got %q\nwant %q", got, want)
	}
	for i, c := range b.senders {
		if b.senderNode[i].Load() != c.node {
			t.Errorf("sender %d's node = %d, want %d", i, b.senderNode[i].Load(), c.node)
		}
	}

	// Two senders on two nodes: one on each.
	b = &bench{cfg: Config{SSHAddr: "s0,s1", SSHClients: 1000, Senders: 2, NamePrefix: "bx"}, runID: "ab12"}
	b.setRooms()
	if err := b.makeClients(); err != nil {
		t.Fatal(err)
	}
	b.live = b.clients
	b.pickSenders()
	if b.senders[0].node != 0 || b.senders[1].node != 1 {
		t.Errorf("2 senders on nodes %d and %d, want 0 and 1", b.senders[0].node, b.senders[1].node)
	}

	// One node: the transports in turn, as before there were nodes.
	b = &bench{cfg: Config{SSHAddr: "s", SSHClients: 3, WSAddr: "w", WSClients: 1, Senders: 4, NamePrefix: "bx"}, runID: "ab12"}
	b.setRooms()
	if err := b.makeClients(); err != nil {
		t.Fatal(err)
	}
	b.live = b.clients
	b.pickSenders()
	got = got[:0]
	for _, c := range b.senders {
		got = append(got, c.name+"@"+c.addr)
	}
	if want := []string{"bx-s0@s", "bx-w0@w", "bx-s1@s", "bx-s2@s"}; !slices.Equal(got, want) {
		t.Errorf("senders with one node:\n got %q\nwant %q", got, want)
	}
}

// With rooms, every room's members are dealt to the nodes in turn, and the nodes get as many
// clients each (give or take one).
func TestNodeOfRooms(t *testing.T) {
	for _, tc := range []struct{ clients, rooms, nodes int }{
		{1000, 0, 2}, {1000, 0, 3}, {1000, 100, 2}, {1000, 100, 3}, {10, 2, 2}, {12, 3, 3}, {7, 7, 2},
	} {
		perNode := make([]int, tc.nodes)
		perRoom := map[[2]int]int{} // (room, node) -> members
		for id := range tc.clients {
			k := nodeOf(id, tc.rooms, tc.nodes)
			perNode[k]++
			perRoom[[2]int{id % max(tc.rooms, 1), k}]++
		}
		if slices.Max(perNode)-slices.Min(perNode) > 1 {
			t.Errorf("%+v: clients per node %v", tc, perNode)
		}
		for r := range max(tc.rooms, 1) {
			counts := make([]int, tc.nodes)
			for k := range tc.nodes {
				counts[k] = perRoom[[2]int{r, k}]
			}
			if slices.Max(counts)-slices.Min(counts) > 1 {
				t.Errorf("%+v: room %d's members per node %v", tc, r, counts)
			}
		}
	}
}

// Deliveries are counted by where they were received: on the sender's node or another, each
// with its own latency; the overall figures are the two together.
func TestNodeAccounting(t *testing.T) {
	b := &bench{cfg: Config{TCPAddr: "n0,n1", TCPClients: 4, Senders: 2, NamePrefix: "bx"}, runID: "ab12", notices: map[string]string{}}
	b.scanner = newScanner(b.runID)
	b.setRooms()
	if err := b.makeClients(); err != nil {
		t.Fatal(err)
	}
	b.live = b.clients
	b.pickSenders()
	// bx-t0 and bx-t2 on node 0, bx-t1 and bx-t3 on node 1; t0 (sender 0) and t1 (sender 1) send.
	b.senders[0].sent.Store(2)
	b.senders[1].sent.Store(2)
	now := time.Now().UnixNano()
	line := func(sender, seq int, ago time.Duration) string {
		return fmt.Sprintf("bx-t%d: %s\n", sender, appendMessage(nil, "ab12", sender, seq, now-int64(ago), 64))
	}
	const same, cross = time.Millisecond, 20 * time.Millisecond
	streams := map[int]string{
		0: line(1, 0, cross) + line(1, 1, cross),
		1: line(0, 0, cross) + line(0, 1, cross),
		2: line(0, 0, same) + line(0, 1, same) + line(1, 0, cross), // misses s1's second
		3: line(1, 0, same) + line(1, 1, same) + line(0, 0, cross) + line(0, 1, cross),
	}
	for id, stream := range streams {
		toks, _ := b.scanner.scan([]byte(stream), nil)
		b.record(b.clients[id], toks, now)
	}
	rep := b.newReport()
	b.tally(rep)
	if rep.Nodes != 2 || !slices.Equal(rep.NodeClients, []int{2, 2}) {
		t.Errorf("nodes %d, clients %v; want 2, [2 2]", rep.Nodes, rep.NodeClients)
	}
	if rep.Expected != 12 || rep.Received != 11 || rep.Lost != 1 {
		t.Errorf("run: expected %d, received %d, lost %d; want 12, 11, 1", rep.Expected, rep.Received, rep.Lost)
	}
	if s := rep.SameNode; s.Expected != 4 || s.Received != 4 || s.Lost != 0 || s.LatencyP50 != 1 || s.LatencyMax != 1 {
		t.Errorf("same node: %+v; want 4 of 4, 1 ms", s)
	}
	if s := rep.CrossNode; s.Expected != 8 || s.Received != 7 || s.Lost != 1 || s.LatencyP50 < 19.5 || s.LatencyMax > 20.5 {
		t.Errorf("cross node: %+v; want 7 of 8, 20 ms", s)
	}
	if rep.LatencyP50 < 19.5 || rep.LatencyMax > 20.5 || rep.LatencyP90 < 19.5 {
		t.Errorf("overall: p50 %v, p90 %v, max %v; want 20 ms (7 of the 11 deliveries)", rep.LatencyP50, rep.LatencyP90, rep.LatencyMax)
	}
	var sb strings.Builder
	if err := rep.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nodes        2, clients connected to each: 2 2", "same node    4 expected, 4 received, 0 lost; p50 1.000 ms", "cross node   8 expected, 7 received, 1 lost; p50 "} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("the text report has no %q:\n%s", want, sb.String())
		}
	}
}

// With several -pid, the server figures are their sums, and each one's are kept.
func TestSetServerSeveral(t *testing.T) {
	r := &Report{Connected: 100, ServerPIDs: []int{10, 20}}
	r.setServer(
		[]procSample{{cpu: 1, rssKiB: 1000}, {cpu: 2, rssKiB: 2000}},
		[]procSample{{cpu: 1.5, rssKiB: 3000}, {cpu: 3, rssKiB: 5000}},
		[]procSample{{cpu: 4.5, rssKiB: 3500}, {cpu: 4, rssKiB: 5500}},
	)
	if *r.ServerCPUConnect != 1.5 || *r.ServerCPURun != 4 || *r.ServerRSSBefore != 3000 || *r.ServerRSSAfterConnect != 8000 || *r.ServerRSSEnd != 9000 || *r.ServerRSSPerSession != 50 {
		t.Errorf("sums: cpu %v/%v, rss %v/%v/%v, per session %v", *r.ServerCPUConnect, *r.ServerCPURun, *r.ServerRSSBefore, *r.ServerRSSAfterConnect, *r.ServerRSSEnd, *r.ServerRSSPerSession)
	}
	if len(r.Servers) != 2 || r.Servers[1].PID != 20 || *r.Servers[1].CPUConnect != 1 || *r.Servers[1].CPURun != 1 || *r.Servers[1].RSSAfterConnect != 5000 {
		t.Errorf("servers = %+v", r.Servers)
	}
	r = &Report{Connected: 1, ServerPIDs: []int{10, 20}}
	r.setServer([]procSample{{}, {}}, nil, nil) // the second sample failed
	if r.ServerCPUConnect != nil || r.ServerRSSBefore == nil || len(r.Servers) != 2 || r.Servers[0].RSSAfterConnect != nil {
		t.Errorf("with a sample missing: %+v", r)
	}
}
