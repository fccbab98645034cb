package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"chatd/internal/roomtest"
)

// TestVersion checks --version on the test binary and on one built as a git checkout builds it:
// Go's VCS stamp gives the commit, and -X sets what the package script sets.
func TestVersion(t *testing.T) {
	out, err := exec.Command(chatdBin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "chatd ") || !strings.Contains(string(out), ", commit ") {
		t.Fatalf("chatd --version: %v: %q", err, out)
	}
	// Also when the environment holds settings: it only asks a question.
	cmd := exec.Command(chatdBin, "--version")
	cmd.Env = append(os.Environ(), "CHAT_SSH_ADDR=127.0.0.1:1")
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "chatd ") {
		t.Errorf("chatd --version with CHAT_SSH_ADDR set: %v: %q", err, out)
	}

	head := func() string {
		out, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Skipf("no git checkout to stamp (git rev-parse HEAD: %v); needs the git package", err)
		}
		return strings.TrimSpace(string(out))
	}
	before := head()
	bin := filepath.Join(t.TempDir(), "chatd")
	build := exec.Command("go", "build", "-buildvcs=true", "-ldflags", "-X chatd/internal/buildinfo.version=9.8.7", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	after := head() // others may commit meanwhile in a shared checkout
	out, err = exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := string(out)
	if !strings.HasPrefix(line, "chatd 9.8.7, commit ") || !strings.Contains(line, before) && !strings.Contains(line, after) {
		t.Errorf("chatd --version = %q, want version 9.8.7 and commit %s", line, after)
	}
}

// TestNotifyReady runs chatd as systemd's Type=notify would, with a real datagram socket as
// NOTIFY_SOCKET: READY=1 comes once, and every address it names already accepts connections;
// STOPPING=1 comes on SIGTERM, before the process exits.
func TestNotifyReady(t *testing.T) {
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	next := func() string {
		t.Helper()
		_ = sock.SetReadDeadline(time.Now().Add(roomtest.HangGuard))
		b := make([]byte, 4096)
		n, err := sock.Read(b)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(b[:n])
	}

	cmd := exec.Command(chatdBin, "--ssh-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0",
		"--metrics-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "NO_COLOR=1")
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stream := roomtest.NewStream(logs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-stream.Done(); exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	ready := next()
	status, ok := strings.CutPrefix(ready, "READY=1\nSTATUS=listening: ")
	if !ok {
		t.Fatalf("first notification %q, want READY=1 and the addresses", ready)
	}
	addrs := map[string]string{}
	for _, f := range strings.Split(status, ", ") {
		name, addr, _ := strings.Cut(f, " ")
		addrs[name] = addr
	}
	if len(addrs) != 4 {
		t.Fatalf("status %q, want ssh, tcp, web and metrics", status)
	}
	// Straight away, no retries: each one answers.
	for name, want := range map[string]string{"ssh": "SSH-2.0-", "tcp": "*"} {
		c, err := net.Dial("tcp", addrs[name])
		if err != nil {
			t.Fatalf("%s at %s after READY: %v", name, addrs[name], err)
		}
		_ = c.SetReadDeadline(time.Now().Add(roomtest.HangGuard))
		got, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s greeted %q (%v), want %q...", name, got, err, want)
		}
	}
	resp, err := http.Get("http://" + addrs["metrics"] + "/healthz")
	if err != nil {
		t.Fatalf("metrics after READY: %v", err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + addrs["web"] + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the web page after READY: %v", err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "STOPPING=1" {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", got)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("chatd: %v\n%s", err, stream.Text())
		}
	case <-time.After(roomtest.HangGuard):
		t.Fatal("chatd did not exit after SIGTERM")
	}
	_ = sock.SetReadDeadline(time.Now())
	if n, err := sock.Read(make([]byte, 4096)); err == nil {
		t.Errorf("a third notification (%d bytes)", n)
	}
	if !strings.Contains(stream.Text(), "chatd starting version=") {
		t.Errorf("no start-up line with the version:\n%s", stream.Text())
	}
}

// TestJournalLogs checks the log's time stamps: dropped from text when stderr is the journal's
// stream (JOURNAL_STREAM names its device and inode), kept otherwise and in JSON.
func TestJournalLogs(t *testing.T) {
	// A data directory that is a file: chatd logs its start-up line and an error, and exits.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, journal string, args ...string) string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var st syscall.Stat_t
		if err := syscall.Fstat(int(w.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(chatdBin, append([]string{"--data-dir", notDir}, args...)...)
		cmd.Env = append(os.Environ(), "NO_COLOR=1")
		switch journal {
		case "this stream":
			cmd.Env = append(cmd.Env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
		case "another stream":
			cmd.Env = append(cmd.Env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino+1))
		}
		cmd.Stderr = w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		out, _ := io.ReadAll(r)
		if err := cmd.Wait(); err == nil {
			t.Fatalf("chatd ran on a file as its data directory:\n%s", out)
		}
		return string(out)
	}
	stamped := func(line string) bool {
		first, _, _ := strings.Cut(line, " ")
		_, err := time.Parse(time.RFC3339, first)
		return err == nil
	}
	for _, tt := range []struct {
		journal   string
		json      bool
		wantStamp bool
	}{
		{"this stream", false, false},
		{"another stream", false, true},
		{"none", false, true},
		{"this stream", true, true},
	} {
		t.Run(fmt.Sprintf("%s json=%v", tt.journal, tt.json), func(t *testing.T) {
			var args []string
			if tt.json {
				args = []string{"--log-format", "json"}
			}
			out := run(t, tt.journal, args...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) < 2 || !strings.Contains(lines[0], "chatd starting") {
				t.Fatalf("log:\n%s", out)
			}
			for _, l := range lines {
				var got bool
				if tt.json {
					got = strings.Contains(l, `"time":"`)
				} else {
					got = stamped(l)
				}
				if got != tt.wantStamp {
					t.Errorf("time stamp %v, want %v: %q", got, tt.wantStamp, l)
				}
			}
			if !tt.json && !tt.wantStamp && !strings.HasPrefix(lines[0], "INFO chatd starting") {
				t.Errorf("journal line %q, want it to start with the level", lines[0])
			}
		})
	}
}
