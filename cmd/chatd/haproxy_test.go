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

	"chatd/internal/roomtest"
)

// haproxyBin is Debian's haproxy, or "" when it is not installed.
func haproxyBin() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return ""
}

// readmeRecipe is the HAProxy configuration in the README's "Behind a load balancer".
func readmeRecipe(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "# haproxy.cfg: chatd behind HAProxy"
	_, rest, ok := strings.Cut(string(b), "```\n"+start)
	if !ok {
		t.Fatal("the README has no HAProxy recipe (a block starting with " + start + ")")
	}
	recipe, _, ok := strings.Cut(start+rest, "```")
	if !ok {
		t.Fatal("the README's HAProxy recipe does not end")
	}
	return recipe
}

// recipeFor rewrites the README's recipe for this machine: HAProxy takes its listening sockets
// from the test (fd 3 for SSH, 4 for TCP: no port to guess), connects to the nodes from
// 127.0.0.3 (the address they trust), and the servers are the two chatd processes.
func recipeFor(t *testing.T, recipe string, nodes []*chatd) string {
	t.Helper()
	replace := func(old, new string) {
		t.Helper()
		if strings.Count(recipe, old) != 1 {
			t.Fatalf("the README's HAProxy recipe does not have %q once:\n%s", old, recipe)
		}
		recipe = strings.Replace(recipe, old, new, 1)
	}
	replace("\n    bind :22\n", "\n    bind fd@3\n")
	replace("\n    bind :2323\n", "\n    bind fd@4\n")
	replace("\ndefaults\n", "\ndefaults\n    source 127.0.0.3\n")
	servers := 0
	serverRE := regexp.MustCompile(`(?m)^(\s*server chatd([12]) )\S+:(2222|2323)( .*)$`)
	recipe = serverRE.ReplaceAllStringFunc(recipe, func(line string) string {
		m := serverRE.FindStringSubmatch(line)
		node := nodes[m[2][0]-'1']
		addr := node.sshAddr
		if m[3] == "2323" {
			addr = node.tcpAddr
		}
		servers++
		return m[1] + addr + m[4]
	})
	if servers != 4 {
		t.Fatalf("the README's HAProxy recipe has %d server lines for chatd1 and chatd2 on 2222 and 2323, want 4:\n%s", servers, recipe)
	}
	return recipe
}

// startHAProxy runs haproxy on config, serving the given listeners (fd 3, 4, ...).
func startHAProxy(t *testing.T, bin, config string, lns ...net.Listener) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var files []*os.File
	for _, ln := range lns {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	check := exec.Command(bin, "-c", "-q", "-f", path)
	check.ExtraFiles = files
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, config)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.ExtraFiles = files
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := roomtest.NewStream(stderr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// HAProxy has its own copies of the sockets: connections queue on them until it accepts.
	for i, f := range cmd.ExtraFiles {
		f.Close()
		lns[i].Close()
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-logs.Done()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", logs.Text())
		}
	})
}

// TestHAProxyRecipe runs the README's HAProxy recipe for real: Debian's haproxy in front of two
// chatd processes that share a host key, with the real OpenSSH client. Both nodes are reached
// under the one host key, each sees its clients' own address (not HAProxy's), and a ban by
// address holds through the proxy on each node while others behind it still get in. The two
// nodes run without --nats and share no rooms: the ban is made on each. TestClusterRecipe runs
// the same configuration in front of a cluster.
func TestHAProxyRecipe(t *testing.T) {
	bin := haproxyBin()
	if bin == "" {
		t.Skip("haproxy is not installed (Debian package haproxy)")
	}
	hostKey := filepath.Join(t.TempDir(), "ssh_host_ed25519_key")
	sshKeygen(t, "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	opKey, aliceKey, bobKey := clientKey(t), clientKey(t), clientKey(t)
	ops := filepath.Join(t.TempDir(), "ops")
	if err := os.WriteFile(ops, mustRead(t, opKey+".pub"), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*chatd
	for range 2 {
		nodes = append(nodes, startChatd(t, "--data-dir", t.TempDir(), "--hostkey", hostKey, "--ops", ops,
			"--proxy-protocol", "127.0.0.3", "--limit-exempt", "127.0.0.3", "--log-level", "debug"))
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

	// One host key for both nodes: ssh checks it strictly, under the proxy's one name.
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, append([]byte("[127.0.0.1]:"+sshPort+" "), mustRead(t, hostKey+".pub")...), 0o600); err != nil {
		t.Fatal(err)
	}
	viaHAProxy := func(key string, args ...string) []string { return opensshArgs(sshPort, key, known, args...) }

	// Two sessions through HAProxy: one on each node, each alone there.
	alice := startProc(t, "ssh", viaHAProxy(aliceKey, "-T", "alice@127.0.0.1")...)
	alice.stdout.WaitLine(t, "* alice joined #lobby (1 online)")
	bob := startProc(t, "ssh", viaHAProxy(bobKey, "-T", "bob@127.0.0.1")...)
	bob.stdout.WaitLine(t, "* bob joined #lobby (1 online)")
	// Each node logs the join under the client's address (the log line may follow the client's
	// notice by a moment).
	nodeOf := func(user string) int {
		t.Helper()
		re := regexp.MustCompile(`join user=` + user + ` transport=(ssh|tcp) remote=127\.0\.0\.1:\d+ `)
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
	if nodeOf("alice") == nodeOf("bob") {
		t.Error("alice and bob are on the same node")
	}

	// The TCP protocol through HAProxy too.
	tc, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tcOut := roomtest.NewStream(tc)
	tcOut.WaitLine(t, greeting)
	fmt.Fprintf(tc, "carol\n")
	tcOut.WaitContains(t, "* welcome to chatd, carol!")
	nodeOf("carol")

	// The operator comes straight to each node (127.0.0.1 is not the proxy: no header) and bans
	// 127.0.0.2 there.
	for _, node := range nodes {
		op := startProc(t, "ssh", opensshArgs(node.sshPort(), opKey, "", "-T", "op@127.0.0.1")...)
		op.stdout.WaitContains(t, "* op joined #lobby")
		op.send(t, "/ban 127.0.0.2 testing")
		op.stdout.WaitContains(t, "* banned #1 ")
	}

	// A client from 127.0.0.2 is refused through HAProxy, on whichever node it reaches, and told
	// why; leastconn takes turns between the two equally loaded nodes.
	bannedOnBothNodes(t, nodes, viaHAProxy, bobKey)
	// The ban is the client's address, not HAProxy's: 127.0.0.1 still gets in.
	if out, err := exec.Command("ssh", viaHAProxy(aliceKey, "alice@127.0.0.1", "who")...).CombinedOutput(); err != nil {
		t.Errorf("ssh from 127.0.0.1 through HAProxy after the ban: %v\n%s", err, out)
	}

	// HAProxy's health checks send headers chatd reads: nothing it sent was refused.
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

// bannedOnBothNodes connects from 127.0.0.2 through HAProxy, with ssh as sshArgs makes it, until
// both nodes have refused that address (leastconn takes turns between two equally loaded nodes),
// and checks that every attempt is refused with the reason told to the client.
func bannedOnBothNodes(t *testing.T, nodes []*chatd, sshArgs func(key string, args ...string) []string, key string) {
	t.Helper()
	refusedRE := regexp.MustCompile(`refused (?:node=\S+ )?remote=127\.0\.0\.2:\d+ reason="you are banned from this server`)
	for i := 0; ; i++ {
		args := sshArgs(key, "-b", "127.0.0.2", "mallory@127.0.0.1", "who")
		for j, a := range args {
			if a == "LogLevel=ERROR" {
				args[j] = "LogLevel=INFO" // ssh prints banners from INFO up
			}
		}
		out, err := exec.Command("ssh", args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "chatd: you are banned from this server") {
			t.Fatalf("ssh from 127.0.0.2 through HAProxy after the ban: %v\n%s", err, out)
		}
		if refusedRE.MatchString(nodes[0].logs.Text()) && refusedRE.MatchString(nodes[1].logs.Text()) {
			return
		}
		if i == 5 {
			t.Fatalf("after %d tries, the ban was not met on both nodes", i+1)
		}
	}
}
