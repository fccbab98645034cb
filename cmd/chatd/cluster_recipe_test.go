package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"chatd/internal/roomtest"
	"chatd/store/natsjs/natstest"
)

// readmeBlock is the code block of the README whose first line is first (a comment naming what
// the block is), without the indentation of the list item it may be in.
func readmeBlock(t *testing.T, first string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^( *)```\n( *)" + regexp.QuoteMeta(first))
	m := re.FindStringSubmatchIndex(string(b))
	if m == nil {
		t.Fatalf("the README has no code block starting with %q", first)
	}
	indent := string(b[m[2]:m[3]])
	rest := string(b[m[4]:])
	block, _, ok := strings.Cut(rest, "\n"+indent+"```")
	if !ok {
		t.Fatalf("the README's block starting with %q does not end", first)
	}
	lines := strings.Split(block, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, indent)
	}
	return strings.Join(lines, "\n") + "\n"
}

// replaceOnce replaces old with new in s, which must hold old exactly once.
func replaceOnce(t *testing.T, what, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("the README's %s does not have %q once:\n%s", what, old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// startNATSRecipe runs the README's nats.conf as three NATS servers in this process, rewritten
// for loopback (ports of their own, a temporary store), and returns their client URLs once the
// cluster has a JetStream leader.
func startNATSRecipe(t *testing.T, conf string) []string {
	t.Helper()
	const size = 3
	clientPorts, routePorts := natstest.FreePorts(t, size), natstest.FreePorts(t, size)
	var servers []*natsserver.Server
	var urls []string
	for i := range size {
		c := conf
		c = replaceOnce(t, "nats.conf", c, "server_name: n1\n", fmt.Sprintf("server_name: n%d\n", i+1))
		c = replaceOnce(t, "nats.conf", c, "listen: 0.0.0.0:4222\n", fmt.Sprintf("listen: 127.0.0.1:%d\n", clientPorts[i]))
		c = replaceOnce(t, "nats.conf", c, "listen: 0.0.0.0:6222\n", fmt.Sprintf("listen: 127.0.0.1:%d\n", routePorts[i]))
		c = replaceOnce(t, "nats.conf", c, "store_dir: /var/lib/nats\n", fmt.Sprintf("store_dir: %q\n", t.TempDir()))
		for j := range size {
			c = replaceOnce(t, "nats.conf", c, fmt.Sprintf("nats-route://10.0.0.%d:6222\n", 21+j), fmt.Sprintf("nats-route://127.0.0.1:%d\n", routePorts[j]))
		}
		path := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(path, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := natsserver.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("the README's nats.conf: %v\n%s", err, c)
		}
		if !opts.JetStream || opts.Cluster.Name == "" {
			t.Fatalf("the README's nats.conf has JetStream %v, cluster name %q: want both", opts.JetStream, opts.Cluster.Name)
		}
		opts.NoLog, opts.NoSigs = true, true
		srv, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatalf("nats server %d: %v", i+1, err)
		}
		go srv.Start()
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
		if !srv.ReadyForConnections(roomtest.HangGuard) {
			t.Fatalf("nats server %d did not start", i+1)
		}
		servers = append(servers, srv)
		urls = append(urls, srv.ClientURL())
	}
	settle(t, "the NATS cluster's JetStream leader", func() bool {
		leader, current := false, true
		for _, srv := range servers {
			leader = leader || srv.JetStreamIsLeader()
			current = current && srv.JetStreamIsCurrent()
		}
		return leader && current
	})
	return urls
}

// recipeSettings turns the README's /etc/default/chatd lines into chatd's flags, each value
// replaced by set[NAME] when there is one. Every setting must be chatd's.
func recipeSettings(t *testing.T, block string, set map[string]string) []string {
	t.Helper()
	flags := map[string]string{}
	for _, o := range (&config{}).options() {
		flags[o.env] = o.flag
	}
	var args []string
	for line := range strings.SplitSeq(block, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		flag, known := flags[name]
		if !ok || !known {
			t.Fatalf("the README's /etc/default/chatd has %q: not a chatd setting", line)
		}
		if v, ok := set[name]; ok {
			value = v
		}
		args = append(args, "--"+flag+"="+value)
	}
	return args
}

// TestClusterRecipe runs the README's cluster recipe for real: three NATS servers on its
// nats.conf, one host key made with chatd hostkeys and copied to every node, two chatd nodes with
// its /etc/default/chatd settings, and Debian's haproxy with the configuration of "Behind a load
// balancer" in front. Through HAProxy, OpenSSH users land on both nodes under the one host key,
// and what is said on one node reaches the other; TCP works through it too; and a ban of an
// address made on one node holds through the proxy on both.
func TestClusterRecipe(t *testing.T) {
	bin := haproxyBin()
	if bin == "" {
		t.Skip("haproxy is not installed (Debian package haproxy)")
	}
	urls := startNATSRecipe(t, readmeBlock(t, "# nats.conf:"))

	// The host key, made once and copied into each node's data directory.
	keys := t.TempDir()
	if out, err := exec.Command(chatdBin, "--data-dir", keys, "hostkeys", "generate").CombinedOutput(); err != nil {
		t.Fatalf("chatd hostkeys generate: %v\n%s", err, out)
	}
	keyFiles, _ := filepath.Glob(filepath.Join(keys, "hostkeys", "*"))
	if len(keyFiles) != 2 || !strings.HasSuffix(keyFiles[1], ".pub") {
		t.Fatalf("chatd hostkeys generate made %v, want a key and its .pub", keyFiles)
	}

	opKey, aliceKey, bobKey := clientKey(t), clientKey(t), clientKey(t)
	ops := filepath.Join(t.TempDir(), "ops")
	if err := os.WriteFile(ops, mustRead(t, opKey+".pub"), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := readmeBlock(t, "# /etc/default/chatd on node chat1")
	var nodes []*chatd
	fingerprints := map[string]bool{}
	for i := range 2 {
		dataDir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dataDir, "hostkeys"), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range keyFiles {
			if err := os.WriteFile(filepath.Join(dataDir, "hostkeys", filepath.Base(f)), mustRead(t, f), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(chatdBin, "--data-dir", dataDir, "hostkeys", "list").Output()
		if err != nil {
			t.Fatalf("chatd hostkeys list: %v", err)
		}
		fingerprints[regexp.MustCompile(`SHA256:\S+`).FindString(string(out))] = true

		args := recipeSettings(t, settings, map[string]string{
			"CHAT_NATS":           strings.Join(urls, ","),
			"CHAT_NODE":           fmt.Sprintf("chat%d", i+1),
			"CHAT_PROXY_PROTOCOL": "127.0.0.3",
			"CHAT_LIMIT_EXEMPT":   "127.0.0.3",
			"CHAT_OPS":            ops,
		})
		nodes = append(nodes, startChatd(t, append([]string{"--data-dir", dataDir, "--log-level", "debug"}, args...)...))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, node := range nodes {
				t.Logf("node %d:\n%s", i+1, node.logs.Text())
			}
		}
	})
	if len(fingerprints) != 1 {
		t.Errorf("chatd hostkeys list shows %v on the nodes, want one fingerprint", fingerprints)
	}
	for i, node := range nodes {
		if !strings.Contains(node.logs.Text(), "replicas=3") {
			t.Errorf("node %d does not keep 3 replicas:\n%s", i+1, node.logs.Text())
		}
		if strings.Contains(node.logs.Text(), "generated a new host key") {
			t.Errorf("node %d generated a host key of its own", i+1)
		}
	}

	var lns []net.Listener
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	_, sshPort, _ := net.SplitHostPort(lns[0].Addr().String())
	tcpAddr := lns[1].Addr().String()
	startHAProxy(t, bin, recipeFor(t, readmeRecipe(t), nodes), lns...)

	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, append([]byte("[127.0.0.1]:"+sshPort+" "), mustRead(t, keyFiles[1])...), 0o600); err != nil {
		t.Fatal(err)
	}
	viaHAProxy := func(key string, args ...string) []string { return opensshArgs(sshPort, key, known, args...) }

	// The node a user's session landed on, from the nodes' logs, which name the client's address.
	nodeFrom := func(user, addr string) int {
		t.Helper()
		re := regexp.MustCompile(`join (?:node=\S+ )?user=` + user + ` transport=(ssh|tcp) remote=` + regexp.QuoteMeta(addr) + `:\d+ `)
		at := -1
		settle(t, user+"'s join from 127.0.0.1 in a node's log", func() bool {
			for i, node := range nodes {
				if re.MatchString(node.logs.Text()) {
					at = i
				}
			}
			return at >= 0
		})
		return at
	}
	nodeOf := func(user string) int { t.Helper(); return nodeFrom(user, "127.0.0.1") }
	alice := startProc(t, "ssh", viaHAProxy(aliceKey, "-T", "alice@127.0.0.1")...)
	alice.stdout.WaitContains(t, "* alice joined #lobby (")
	nodeOf("alice")
	bob := startProc(t, "ssh", viaHAProxy(bobKey, "-T", "bob@127.0.0.1")...)
	bob.stdout.WaitContains(t, "* bob joined #lobby (")
	if nodeOf("alice") == nodeOf("bob") {
		t.Fatal("alice and bob are on the same node: leastconn should have spread them")
	}

	// One server: what alice says on her node reaches bob on his, and back.
	alice.send(t, "hello from one node")
	bob.stdout.WaitLine(t, "alice: hello from one node")
	bob.send(t, "hello from the other")
	alice.stdout.WaitLine(t, "bob: hello from the other")

	// TCP through HAProxy too, with the history of both nodes.
	tc, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tcOut := roomtest.NewStream(tc)
	tcOut.WaitLine(t, greeting)
	fmt.Fprintf(tc, "carol\n")
	tcOut.WaitContains(t, "* welcome to chatd, carol!")
	tcOut.WaitContains(t, "alice: hello from one node")
	tcOut.WaitContains(t, "bob: hello from the other")
	fmt.Fprintf(tc, "hello from carol\n")
	alice.stdout.WaitLine(t, "carol: hello from carol")
	bob.stdout.WaitLine(t, "carol: hello from carol")

	// A ban made on one node holds on every node, through the proxy: dave, from 127.0.0.2, is on
	// one node; an operator on the other bans his address; dave is put out, and whichever node
	// HAProxy picks refuses 127.0.0.2 from then on.
	daveKey := clientKey(t)
	dave := startProc(t, "ssh", viaHAProxy(daveKey, "-b", "127.0.0.2", "-T", "dave@127.0.0.1")...)
	dave.stdout.WaitContains(t, "* dave joined #lobby (")
	opNode := nodes[1-nodeFrom("dave", "127.0.0.2")]
	op := startProc(t, "ssh", opensshArgs(opNode.sshPort(), opKey, "", "-T", "op@127.0.0.1")...)
	op.stdout.WaitContains(t, "* op joined #lobby")
	op.send(t, "/ban 127.0.0.2 testing")
	op.stdout.WaitContains(t, "* banned #1 ")
	dave.stdout.WaitContains(t, "you were banned by op")
	dave.wait(t)
	bannedOnBothNodes(t, nodes, viaHAProxy, daveKey)

	for i, node := range nodes {
		if strings.Contains(node.logs.Text(), "proxy: refused") {
			t.Errorf("node %d refused something HAProxy sent:\n%s", i+1, node.logs.Text())
		}
	}
	alice.stdin.Close()
	bob.stdin.Close()
	alice.wait(t)
	bob.wait(t)
}
