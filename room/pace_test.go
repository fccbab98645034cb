package room

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFloodIsPaced(t *testing.T) {
	// A real clock: the pacing waits for real. Rate 20/s, burst 10: 40 lines take ≈1.5 s, and
	// the sender is never kept waiting.
	r := newTestRoom(t, Config{MsgRate: 20, MsgBurst: 10, Now: time.Now})
	flooder, floodOut := join(t, r, "flooder", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})

	start := time.Now()
	for i := range 40 {
		flooder.Handle(fmt.Sprintf("flood %02d", i)) // never blocks: lines over the rate are held
	}
	if index(bobOut.lines(), "flooder: flood 39") >= 0 {
		t.Fatal("the last line went out at once: nothing was held back")
	}
	bobOut.waitLine(t, "flooder: flood 09") // the burst goes straight through
	lines := bobOut.waitLine(t, "flooder: flood 39")
	elapsed := time.Since(start)
	// Nothing is lost and the order holds.
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "flooder: flood ") {
			if l != fmt.Sprintf("flooder: flood %02d", n) {
				t.Fatalf("line %q out of order, want #%d", l, n)
			}
			n++
		}
	}
	if n != 40 {
		t.Fatalf("bob got %d lines, want 40", n)
	}
	// At most burst + rate × t lines can have gone through in the time it took.
	if max := 10 + int(20*elapsed.Seconds()) + 1; 40 > max {
		t.Errorf("40 lines in %s: more than burst + rate × t = %d", elapsed, max)
	}
	notices := strings.Count(strings.Join(floodOut.lines(), "\n"), "slow down: you may send 20 lines a second (10 at once)")
	if notices != 1 {
		t.Errorf("the flooder got %d notices, want 1", notices)
	}
}

func TestPasteOfBurstLinesGoesThrough(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)}
	r := newTestRoom(t, Config{MsgRate: 2, MsgBurst: 10, Now: clock.Now})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	for i := range 10 {
		alice.Handle(fmt.Sprintf("paste %d", i))
	}
	lines := bobOut.waitLine(t, "alice: paste 9")
	for i, l := range lines[len(lines)-10:] {
		if l != fmt.Sprintf("alice: paste %d", i) {
			t.Fatalf("paste line %d = %q", i, l)
		}
	}
	if strings.Contains(strings.Join(aliceOut.lines(), "\n"), "slow down") {
		t.Error("a paste of burst lines was slowed down")
	}
}

func TestLinesTooFarOverTheRateAreRefusedNotLost(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)}
	// 0.1 lines a second: after the burst of 1, the second line would wait 10 s, the third 20 s.
	r := newTestRoom(t, Config{MsgRate: 0.1, MsgBurst: 1, Now: clock.Now})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	alice.Handle("one")
	clock.Add(9 * time.Second) // the next token is 1 s away: this line waits
	alice.Handle("two")        // held back: Handle returns at once
	alice.Handle("three")      // would wait 11 s: refused, and said so
	aliceOut.waitLine(t, "error: slow down: this line was not sent: three")
	aliceOut.waitLine(t, "* slow down: you may send 0.1 lines a second (1 at once); your lines are delayed")
	bobOut.waitLine(t, "alice: two") // the held line goes out in its turn
}

// TestHeldLinesOfALeaverAreDropped: a line held back by the rate limit is not said once its
// session has left, and the person's other lines keep their order.
func TestHeldLinesOfALeaverAreDropped(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)}
	r := newTestRoom(t, Config{MsgRate: 10, MsgBurst: 1, Now: clock.Now})
	alice, _ := join(t, r, "alice", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	alice.Handle("first")
	alice.Handle("held") // 0.1 s away
	l := &alice.person.limit
	alice.Leave(ReasonQuit)
	bobOut.waitLine(t, "* alice left #lobby")
	// Wait for the held line's turn to have come and gone (polled: nothing announces it).
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		pending := len(l.held) > 0 || l.running || l.timer != nil
		l.mu.Unlock()
		if !pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held line was never handed on")
		}
		time.Sleep(5 * time.Millisecond)
	}
	carol, _ := join(t, r, "carol", JoinOptions{})
	carol.Handle("marker")
	lines := bobOut.waitLine(t, "carol: marker")
	if index(lines, "alice: first") < 0 || index(lines, "alice: held") >= 0 {
		t.Fatalf("bob got %q: want the first line and not the held one", lines)
	}
}
