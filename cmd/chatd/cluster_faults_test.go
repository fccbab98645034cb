package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"chatd/internal/roomtest"
	"chatd/store/natsjs/natstest"
)

// TestClusterNodeKilled: a node killed outright (SIGKILL: no goodbye) loses only its own
// connections. Its people are shown as left on the other node once it is gone, everything said
// before the kill is in the history, and the others go on chatting.
func TestClusterNodeKilled(t *testing.T) {
	nats := natstest.Start(t)
	a, _ := startNode(t, nats.URL(), "node-a")
	b, _ := startNode(t, nats.URL(), "node-b")
	alice := joinOverTCP(t, a, "alice")
	bob := joinOverTCP(t, b, "bob")
	alice.out.WaitContains(t, "* bob joined #lobby (2 online)")

	const lines = 20
	for i := range lines {
		bob.send(t, fmt.Sprintf("before the kill %d", i))
	}
	alice.out.WaitLine(t, fmt.Sprintf("bob: before the kill %d", lines-1))

	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-b.exited
	alice.out.WaitContains(t, "* bob left #lobby")
	// The bound is the cluster's GoneAfter (10 s) and a heartbeat: logged, not asserted, as
	// this machine's timing is not the test's to judge.
	t.Logf("node-b's people were shown as left %v after SIGKILL", time.Since(killed).Round(100*time.Millisecond))

	carol := joinOverTCP(t, a, "carol")
	carol.send(t, "/history 50")
	carol.out.Wait(t, "every line bob said before the kill in carol's /history", func() bool {
		text := carol.out.Text()
		for i := range lines {
			if !strings.Contains(text, fmt.Sprintf("bob: before the kill %d", i)) {
				return false
			}
		}
		return true
	})
	alice.send(t, "still chatting")
	carol.out.WaitLine(t, "alice: still chatting")
}

// TestClusterNATSServerStopped: on a 3-server NATS cluster with every stream and bucket on 3
// servers, one NATS server stops in the middle of a conversation between two nodes. The chat
// goes on, and no line whose sender was not told it failed is missing, live or in the history.
func TestClusterNATSServerStopped(t *testing.T) {
	nc := natstest.StartCluster(t, 3)
	urls := strings.Join(nc.URLs(), ",")
	a, _ := startNode(t, urls, "node-a", "--nats-replicas", "3")
	b, _ := startNode(t, urls, "node-b", "--nats-replicas", "3")
	alice := joinOverTCP(t, a, "alice")
	bob := joinOverTCP(t, b, "bob")
	alice.out.WaitContains(t, "* bob joined #lobby (2 online)")

	// One line at a time: each either reaches bob or is refused to alice, so that each refusal
	// is known to be that line's.
	const lines = 40
	var sent []string
	refusals := func() int {
		return strings.Count(alice.out.Text(), "was not sent") + strings.Count(alice.out.Text(), "could not be sent")
	}
	for i := range lines {
		if i == lines/2 {
			nc.Nodes[0].Stop()
		}
		text := fmt.Sprintf("line %d", i)
		before := refusals()
		alice.send(t, text)
		// Two streams to watch: poll them.
		for deadline := time.Now().Add(roomtest.HangGuard); !bob.out.HasLine("alice: "+text) && refusals() == before; {
			if time.Now().After(deadline) {
				t.Fatalf("%s neither delivered nor refused; alice got:\n%s", text, alice.out.Text())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if refusals() == before {
			sent = append(sent, text)
		}
	}
	t.Logf("%d of %d lines sent; %d refused while the cluster recovered", len(sent), lines, lines-len(sent))
	if len(sent) < lines/2 {
		t.Errorf("only %d of %d lines went through: the chat did not go on", len(sent), lines)
	}

	carol := joinOverTCP(t, b, "carol")
	carol.send(t, "/history 100")
	carol.out.Wait(t, "every sent line in carol's /history", func() bool {
		for _, text := range sent {
			if !strings.Contains(carol.out.Text(), "alice: "+text) {
				return false
			}
		}
		return true
	})
}
