//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"chatd/internal/roomtest"
)

// runChatdOnce runs chatd with args, expecting it to stop by itself, and returns its exit code
// and output. attr, if set, is how the process starts (another user).
func runChatdOnce(t *testing.T, bin string, attr *syscall.SysProcAttr, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), roomtest.HangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--ssh-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	cmd.Dir = filepath.Dir(bin)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Skipf("cannot start chatd here: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("chatd %v did not stop by itself:\n%s", args, out)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestDataDirInUse: a second chatd on the same --data-dir stops at once and names the first,
// which keeps serving; the hostkeys commands still work beside it.
func TestDataDirInUse(t *testing.T) {
	dataDir := t.TempDir()
	first := startChatd(t, "--data-dir", dataDir)

	if out, err := exec.Command(chatdBin, "--data-dir", dataDir, "hostkeys", "list").CombinedOutput(); err != nil {
		t.Errorf("hostkeys list beside a running chatd: %v\n%s", err, out)
	}

	code, out := runChatdOnce(t, chatdBin, nil, "--data-dir", dataDir)
	want := fmt.Sprintf("data directory %s is in use by another chatd (pid %d); stop it or use another --data-dir", dataDir, first.cmd.Process.Pid)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("second chatd: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if strings.Contains(out, "listening") || strings.Contains(out, "host key") {
		t.Errorf("the second chatd went on past the lock:\n%s", out)
	}

	// The first one still serves, over SSH and TCP.
	if out, err := sshAs(t, first, clientKey(t), "alice", "who"); err != nil {
		t.Errorf("ssh to the first chatd: %v\n%s", err, out)
	}
	chat := startProc(t, chatBin, "-addr", first.tcpAddr, "-name", "bob")
	chat.stdout.WaitLine(t, "* bob joined #lobby (1 online)")
	if code, _ := first.stop(t); code != 0 {
		t.Errorf("the first chatd exited %d", code)
	}
	chat.wait(t)

	// Stopped, it leaves the directory free (a SIGKILL does too: TestKillKeepsWhatWasSaid).
	startChatd(t, "--data-dir", dataDir).stop(t)
}

// TestDataDirNotWritable: a data directory chatd cannot write is refused in words, not with
// SQLite's "unable to open database file (14)". Root may write anywhere, so as root chatd runs
// as nobody (65534).
func TestDataDirNotWritable(t *testing.T) {
	base, err := os.MkdirTemp("", "chatd-datadir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dataDir := filepath.Join(base, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	bin, uid := chatdBin, os.Geteuid()
	var attr *syscall.SysProcAttr
	if uid == 0 {
		// nobody reaches root's directories (0755) and runs a copy of chatd, but writes nothing.
		for _, d := range []string{base, dataDir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bin = filepath.Join(base, "chatd")
		b, err := os.ReadFile(chatdBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(bin, 0o755); err != nil { // past the umask
			t.Fatal(err)
		}
		uid = 65534
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	} else {
		if err := os.Chmod(dataDir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dataDir, 0o700) })
	}

	code, out := runChatdOnce(t, bin, attr, "--data-dir", dataDir)
	want := fmt.Sprintf("data directory %s is not writable: permission denied for uid %d", dataDir, uid)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("chatd on an unwritable directory: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("chatd wrote in a directory it could not write: %v", entries)
	}
}
