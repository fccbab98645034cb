package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/charmbracelet/log"

	"chatd/store/natsjs/natstest"
)

func TestClusterConfig(t *testing.T) {
	host := func(h string, err error) func() (string, error) {
		return func() (string, error) { return h, err }
	}
	parse := func(t *testing.T, env map[string]string, args ...string) (config, error) {
		t.Helper()
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		var stdout, stderr bytes.Buffer
		c, _, err := parseConfig(args, lookup, &stdout, &stderr)
		return c, err
	}

	t.Run("single node by default", func(t *testing.T) {
		c, err := parse(t, nil)
		if err != nil || c.NATS != "" || c.Node != "" || c.NATSReplicas != 1 {
			t.Fatalf("defaults: %+v, %v", c, err)
		}
	})
	t.Run("flags", func(t *testing.T) {
		c, err := parse(t, nil, "--nats", "nats://n1:4222, tls://n2:4222", "--node", "chat-1", "--nats-replicas", "3",
			"--nats-creds", "/etc/chatd/nats.creds", "--nats-ca", "/etc/chatd/ca.pem", "--history-keep", "5000,30d")
		if err != nil {
			t.Fatal(err)
		}
		sc := c.natsConfig()
		got := strings.Join([]string{strings.Join(sc.URLs, "|"), sc.Name, c.Node, sc.CredsFile, sc.CAFile}, " ")
		if want := "nats://n1:4222|tls://n2:4222 chatd-chat-1 chat-1 /etc/chatd/nats.creds /etc/chatd/ca.pem"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if sc.Replicas != 3 || sc.KeepMessages != 5000 || sc.KeepFor.Hours() != 30*24 {
			t.Errorf("replicas %d, keep %d for %v", sc.Replicas, sc.KeepMessages, sc.KeepFor)
		}
		if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), " file: stat /etc/chatd/") {
			t.Errorf("the store checks the files itself: %v", err)
		}
	})
	t.Run("env", func(t *testing.T) {
		c, err := parse(t, map[string]string{"CHAT_NATS": "nats://10.0.0.5:4222", "CHAT_NODE": "n2", "CHAT_NATS_REPLICAS": "5", "CHAT_HISTORY_KEEP": "all"})
		if err != nil {
			t.Fatal(err)
		}
		if sc := c.natsConfig(); c.Node != "n2" || sc.Replicas != 5 || sc.KeepMessages != 0 || sc.KeepFor != 0 {
			t.Errorf("node %q, store %+v", c.Node, sc)
		}
	})
	t.Run("node from the host name", func(t *testing.T) {
		c, err := parse(t, nil, "--nats", "nats://127.0.0.1:4222")
		if err != nil || checkNode(c.Node) != nil {
			t.Fatalf("node %q: %v", c.Node, err)
		}
	})
	for _, tt := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"creds without nats", nil, []string{"--nats-creds", "/x"}, "--nats-creds only apply to cluster mode: give --nats"},
		{"several without nats", map[string]string{"CHAT_NATS_CA": "/ca.pem", "CHAT_NODE": "a"}, []string{"--nats-replicas", "3"},
			"--nats-ca, --nats-replicas, --node only apply to cluster mode"},
		{"empty nats flag over the env", map[string]string{"CHAT_NATS": "nats://a:4222", "CHAT_NODE": "a"}, []string{"--nats="}, "--node only apply"},
		{"no url", nil, []string{"--nats", " , "}, `--nats " , ": no URL`},
		{"http url", nil, []string{"--nats", "http://n1:4222"}, `--nats: "http://n1:4222": want nats://HOST:PORT or tls://HOST:PORT`},
		{"no scheme", nil, []string{"--nats", "n1:4222"}, "want nats://HOST:PORT"},
		{"no host", nil, []string{"--nats", "nats://:4222"}, "no host"},
		{"spaces instead of commas", nil, []string{"--nats", "nats://a:4222 nats://b:4222"}, "--nats"},
		{"a password is not repeated", nil, []string{"--nats", "ftp://u:secret@a:4222"}, `"ftp://u:xxxxx@a:4222"`},
		{"bad node", nil, []string{"--nats", "nats://a:4222", "--node", "chat one"}, `--node: nats cluster: node name "chat one": want 1-64 of A-Z a-z 0-9`},
		{"long node", nil, []string{"--nats", "nats://a:4222", "--node", strings.Repeat("n", maxNodeLen+1)}, "--node: nats cluster: node name"},
		{"no replicas", nil, []string{"--nats", "nats://a:4222", "--nats-replicas", "0"}, "--nats-replicas 0: want 1 to 5"},
		{"too many replicas", map[string]string{"CHAT_NATS": "nats://a:4222", "CHAT_NATS_REPLICAS": "7"}, nil, "--nats-replicas 7: want 1 to 5"},
		{"replicas not a number", nil, []string{"--nats", "nats://a:4222", "--nats-replicas", "three"}, "not a whole number"},
		{"history kept too briefly", nil, []string{"--nats", "nats://a:4222", "--history-keep", "30s"}, `--history-keep "30s": with --nats, keep messages at least 1m0s`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.env, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error repeats the password: %v", err)
			}
		})
	}

	t.Run("resolveNode", func(t *testing.T) {
		for _, tt := range []struct{ flag, host, want, wantErr string }{
			{"", "chat1", "chat1", ""},
			{"", "chat1.example.org", "chat1.example.org", ""},
			{"", "ip-10-0-0-11.eu-west-1.compute.internal", "ip-10-0-0-11.eu-west-1.compute.internal", ""},
			{"", strings.Repeat("a", 70), strings.Repeat("a", maxNodeLen), ""},
			{"", "-a b-", "a-b", ""},
			{"", "añb", "a-b", ""},
			{"", ". -", "", "has nothing a node's name can use"},
			{"n_1", "whatever", "n_1", ""},
		} {
			got, err := resolveNode(tt.flag, host(tt.host, nil))
			if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolveNode(%q) on host %q = %q, %v; want %q, %q", tt.flag, tt.host, got, err, tt.want, tt.wantErr)
			}
			if err == nil && checkNode(got) != nil {
				t.Errorf("resolveNode(%q) on host %q = %q, not a valid node name", tt.flag, tt.host, got)
			}
		}
		if _, err := resolveNode("", host("", errors.New("no uts namespace"))); err == nil || !strings.Contains(err.Error(), "give --node NAME") {
			t.Errorf("without a host name: %v", err)
		}
	})
}

// TestClusterAdminCommandsRefuse: the commands that work on <data-dir>/chat.db say that a
// cluster's data is not there, rather than act on a file the cluster never reads.
func TestClusterAdminCommandsRefuse(t *testing.T) {
	for _, args := range [][]string{{"backup", "/tmp/x.db"}, {"restore", "/tmp/x.db"}, {"names", "list"}, {"export"}, {"check"}} {
		cmd := exec.Command(chatdBin, append([]string{"--nats", "nats://127.0.0.1:4222", "--data-dir", t.TempDir()}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("chatd --nats ... %s: %v, want exit status 2", args[0], err)
		}
		if want := "chatd " + args[0] + ": --nats is set"; !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "--nats=") {
			t.Errorf("chatd --nats ... %s said %q, want %q and how to act on the local file", args[0], stderr.String(), want)
		}
	}
}

// TestClusterNeedsNATSAtStart: a node that cannot reach NATS when it starts stops, saying so,
// rather than serve people it could not keep.
func TestClusterNeedsNATSAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cmd := exec.Command(chatdBin, "--ssh-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--nats", "nats://"+addr, "--node", "lonely")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("chatd with NATS unreachable: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"chatd stopped", "connect to nats://" + addr, "node=lonely"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "listening") {
		t.Errorf("chatd listened without NATS:\n%s", out)
	}
}

// startNode runs chatd as node name of the cluster on the NATS servers at url. Its data
// directory holds no database.
func startNode(t *testing.T, url, name string, args ...string) (*chatd, string) {
	t.Helper()
	dataDir := t.TempDir()
	srv, base := withMetrics(t, append([]string{"--data-dir", dataDir, "--nats", url, "--node", name}, args...)...)
	t.Cleanup(func() {
		if files, _ := filepath.Glob(filepath.Join(dataDir, "chat.db*")); len(files) > 0 {
			t.Errorf("node %s made %v: a node keeps no database", name, files)
		}
	})
	return srv, base
}

// TestClusterTwoNodes runs two chatd processes as one cluster on an embedded NATS server: TCP
// clients on node A and on node B see each other's lines, B's history holds what was said on A
// before B even started, and each node's metrics and logs name it.
func TestClusterTwoNodes(t *testing.T) {
	nats := natstest.Start(t)
	a, aMetrics := startNode(t, nats.URL(), "node-a")
	alice := joinOverTCP(t, a, "alice")
	alice.send(t, "said before node B started")

	b, bMetrics := startNode(t, nats.URL(), "node-b")
	// Joining on B replays the room's history: what A put in the stream.
	bob := joinOverTCP(t, b, "bob")
	bob.out.WaitContains(t, "alice: said before node B started")
	if !strings.Contains(bob.out.Text(), "[history ") {
		t.Errorf("bob's replay is not marked as history:\n%s", bob.out.Text())
	}

	// One room across the nodes: alice on A sees bob arrive on B, and B counts her in.
	alice.out.WaitContains(t, "* bob joined #lobby (2 online)")

	// Live, both ways.
	alice.send(t, "hello from A")
	bob.out.WaitLine(t, "alice: hello from A")
	bob.send(t, "hello from B")
	alice.out.WaitLine(t, "bob: hello from B")
	bob.send(t, "/me waves from B")
	alice.out.WaitLine(t, "** bob waves from B")

	// /history on B, by someone who joined after it all.
	carol := joinOverTCP(t, b, "carol")
	carol.send(t, "/history 10")
	carol.out.Wait(t, "carol's /history with A's and B's lines", func() bool {
		text := carol.out.Text()
		return strings.Count(text, "alice: hello from A") >= 2 && strings.Count(text, "bob: hello from B") >= 2
	})

	// Who is online spans the cluster.
	carol.send(t, "/who")
	carol.out.WaitContains(t, "* 3 online in #lobby: ")
	if who := carol.out.Text(); !regexp.MustCompile(`\* 3 online in #lobby: .*alice`).MatchString(who) {
		t.Errorf("carol's /who on B does not name alice, on A:\n%s", who)
	}

	// Each node's metrics: its name, NATS up, its own publishes and the lines it delivered.
	for _, n := range []struct {
		name, base string
		published  float64
	}{{"node-a", aMetrics, 2}, {"node-b", bMetrics, 2}} {
		if got := metric(t, n.base, `chatd_node_info{node="`+n.name+`"}`); got != 1 {
			t.Errorf("%s: chatd_node_info = %v, want 1", n.name, got)
		}
		if got := metric(t, n.base, "chatd_nats_connected"); got != 1 {
			t.Errorf("%s: chatd_nats_connected = %v, want 1", n.name, got)
		}
		if got := metric(t, n.base, "chatd_relay_published_total"); got != n.published {
			t.Errorf("%s: chatd_relay_published_total = %v, want %v", n.name, got, n.published)
		}
		if got := metric(t, n.base, "chatd_relay_publish_seconds_count"); got != n.published {
			t.Errorf("%s: chatd_relay_publish_seconds_count = %v, want %v", n.name, got, n.published)
		}
		if got := metric(t, n.base, "chatd_relay_publish_errors_total"); got != 0 {
			t.Errorf("%s: chatd_relay_publish_errors_total = %v", n.name, got)
		}
		// A delivered every line said from its start (4); B those after its start (3).
		if got := metric(t, n.base, "chatd_relay_delivered_total"); got < 3 {
			t.Errorf("%s: chatd_relay_delivered_total = %v, want at least 3", n.name, got)
		}
		// The cluster: one other node, heard from, and told of this one's people.
		if got := metric(t, n.base, "chatd_cluster_nodes"); got != 1 {
			t.Errorf("%s: chatd_cluster_nodes = %v, want 1", n.name, got)
		}
		for _, dir := range []string{"sent", "received"} {
			if got := metric(t, n.base, `chatd_cluster_presence_messages_total{direction="`+dir+`"}`); got < 1 {
				t.Errorf("%s: chatd_cluster_presence_messages_total{direction=%q} = %v, want some", n.name, dir, got)
			}
		}
		body := get(t, n.base+"/metrics")
		for _, want := range []string{"chatd_relay_lag ", "chatd_relay_dropped_total 0"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: /metrics lacks %q", n.name, want)
			}
		}
	}

	// Every line a node logs names it.
	for _, n := range []struct {
		name string
		srv  *chatd
	}{{"node-a", a}, {"node-b", b}} {
		logs := n.srv.logs.Text()
		for _, re := range []string{`chatd starting .*node=` + n.name, `sshd: listening .*node=` + n.name, `cluster mode .*nats=nats://127\.0\.0\.1:\d+`} {
			if !regexp.MustCompile(re).MatchString(logs) {
				t.Errorf("%s's log has no line matching %s:\n%s", n.name, re, logs)
			}
		}
	}

	// SIGTERM: the node stops cleanly and says goodbye: its people leave the other node's rooms
	// at once, and the other node goes on.
	if code, _ := a.stop(t); code != 0 {
		t.Errorf("node A exited with %d:\n%s", code, a.logs.Text())
	}
	bob.out.WaitContains(t, "* alice left #lobby")
	if got := metric(t, bMetrics, "chatd_cluster_nodes_gone_total"); got != 1 {
		t.Errorf("node-b: chatd_cluster_nodes_gone_total = %v, want 1", got)
	}
	bob.send(t, "still here")
	carol.out.WaitLine(t, "bob: still here")
}

// get returns the body of url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := scraper.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// TestNotifyReadyNamesTheNode: systemctl status shows which node a cluster's chatd is.
func TestNotifyReadyNamesTheNode(t *testing.T) {
	sockPath := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", sockPath)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	notifyReady([]server{{name: "ssh", ln: ln}}, "chat1", log.New(io.Discard))
	b := make([]byte, 4096)
	n, err := sock.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b[:n]), "READY=1\nSTATUS=node chat1, listening: ssh "+ln.Addr().String(); got != want {
		t.Errorf("notified %q, want %q", got, want)
	}
}
