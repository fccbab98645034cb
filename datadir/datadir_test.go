//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package datadir

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The tests run this binary again as a child that holds or tries a lock, so that a lock is
// held by another process, and one that can be killed.
const (
	helperEnv    = "DATADIR_TEST_HELPER" // hold, acquire or rofs
	helperDirEnv = "DATADIR_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperDirEnv)))
	}
	os.Exit(m.Run())
}

// runHelper is the child's side. It writes "locked" or "error: ..." on a line of its own.
func runHelper(mode, dir string) int {
	switch mode {
	case "hold", "acquire":
		l, err := Acquire(dir)
		if err != nil {
			fmt.Printf("error: %v\n", err)
			return 0
		}
		fmt.Println("locked")
		if mode == "hold" {
			_, _ = io.Copy(io.Discard, os.Stdin) // until the test kills this process
		}
		_ = l.Unlock()
	case "rofs":
		readOnlyHelper(dir)
	default:
		fmt.Printf("unknown helper mode %q\n", mode)
		return 2
	}
	return 0
}

// helperCmd is a child running runHelper(mode, dir). The caller starts it.
func helperCmd(t *testing.T, bin, mode, dir string) *exec.Cmd {
	t.Helper()
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

func inUseMsg(dir string, pid int) string {
	return fmt.Sprintf("data directory %s is in use by another chatd (pid %d); stop it or use another --data-dir", dir, pid)
}

func TestAcquireCreatesTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "data")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	fi, err := os.Stat(filepath.Join(dir, LockFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil || !strings.HasPrefix(string(b), fmt.Sprintf("pid %d\n", os.Getpid())) {
		t.Errorf("lock file holds %q, %v", b, err)
	}
	// The write check cleans up after itself.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the data directory holds %v, want only %s", entries, LockFile)
	}
}

// TestSecondLockFails: flock locks belong to open file descriptions, so even the same process
// cannot take the directory twice.
func TestSecondLockFails(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := Acquire(dir); err == nil {
		second.Unlock()
		t.Fatal("a second Acquire on a held directory succeeded")
	} else if want := inUseMsg(dir, os.Getpid()); err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := first.Unlock(); err != nil {
		t.Errorf("a second Unlock: %v", err)
	}
	again, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Unlock: %v", err)
	}
	again.Unlock()
}

// TestKilledHolderFreesTheDirectory: a chatd killed with SIGKILL leaves its lock file behind,
// and the next one starts anyway.
func TestKilledHolderFreesTheDirectory(t *testing.T) {
	dir := t.TempDir()
	child := helperCmd(t, "", "hold", dir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("the child said %q, %v", line, err)
	}
	if l, err := Acquire(dir); err == nil {
		l.Unlock()
		t.Error("Acquire succeeded while another process held the directory")
	} else if want := inUseMsg(dir, child.Process.Pid); err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait() // the kernel has closed its files once it can be waited for
	if b, _ := os.ReadFile(filepath.Join(dir, LockFile)); !strings.Contains(string(b), fmt.Sprintf("pid %d\n", child.Process.Pid)) {
		t.Errorf("the killed child's lock file holds %q", b)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	l.Unlock()
}

// TestNotWritable: a directory chatd cannot write in is refused in words, whether it is empty,
// holds the lock file of an earlier run, or is the parent of a missing data directory. Root
// ignores permissions, so as root the check runs in a child as nobody (65534).
func TestNotWritable(t *testing.T) {
	asNobody := os.Geteuid() == 0
	uid := os.Geteuid()
	base, err := os.MkdirTemp("", "datadir-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		os.RemoveAll(base)
	})
	var bin string
	if asNobody {
		uid = 65534
		// nobody must be able to reach the directories and run a copy of this binary.
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(base, "datadir.test")
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		copyFile(t, self, bin, 0o755)
	}
	acquire := func(t *testing.T, dir string) string {
		t.Helper()
		if !asNobody {
			l, err := Acquire(dir)
			if err != nil {
				return err.Error()
			}
			l.Unlock()
			return "locked"
		}
		cmd := helperCmd(t, bin, "acquire", dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil && cmd.ProcessState == nil {
			t.Skipf("running as root, and cannot start a child as uid 65534 to meet permissions: %v", err)
		}
		if err != nil {
			t.Fatalf("child as nobody: %v\n%s", err, out)
		}
		return strings.TrimPrefix(strings.TrimSpace(string(out)), "error: ")
	}
	// readOnly makes dir one the test's user cannot write: root's 0755 for nobody, 0500 for others.
	readOnly := func(t *testing.T, dir string) {
		t.Helper()
		mode := os.FileMode(0o500)
		if asNobody {
			mode = 0o755
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	denied := func(dir string) string {
		return fmt.Sprintf("data directory %s is not writable: permission denied for uid %d", dir, uid)
	}

	t.Run("empty", func(t *testing.T) {
		dir := filepath.Join(base, "empty")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		readOnly(t, dir)
		if got := acquire(t, dir); got != denied(dir) {
			t.Errorf("got  %q\nwant %q", got, denied(dir))
		}
	})
	t.Run("after a run", func(t *testing.T) {
		dir := filepath.Join(base, "used")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if asNobody {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			copyFile(t, "/dev/null", filepath.Join(dir, LockFile), 0o600)
			if err := os.Chown(filepath.Join(dir, LockFile), 65534, 65534); err != nil {
				t.Fatal(err)
			}
		} else {
			l, err := Acquire(dir)
			if err != nil {
				t.Fatal(err)
			}
			l.Unlock()
		}
		readOnly(t, dir)
		if got := acquire(t, dir); got != denied(dir) {
			t.Errorf("got  %q\nwant %q", got, denied(dir))
		}
	})
	t.Run("lock file of another user", func(t *testing.T) {
		// The directory is fine; the lock file is not this user's to write.
		dir := filepath.Join(base, "theirs")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil { // past the umask
			t.Fatal(err)
		}
		copyFile(t, "/dev/null", filepath.Join(dir, LockFile), 0o400)
		want := denied(dir) + " on " + LockFile
		if got := acquire(t, dir); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	})
	t.Run("missing below", func(t *testing.T) {
		parent := filepath.Join(base, "parent")
		if err := os.Mkdir(parent, 0o700); err != nil {
			t.Fatal(err)
		}
		readOnly(t, parent)
		dir := filepath.Join(parent, "data")
		if got := acquire(t, dir); got != denied(dir) {
			t.Errorf("got  %q\nwant %q", got, denied(dir))
		}
	})
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
