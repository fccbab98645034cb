package datadir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadOnlyFileSystem mounts a real read-only file system, in a child with its own user and
// mount namespaces so that it needs no privilege and leaves the machine's mounts alone.
func TestReadOnlyFileSystem(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd(t, "", "rofs", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.Output()
	if err != nil && cmd.ProcessState == nil {
		t.Skipf("no user namespaces here, so no read-only mount without privilege: %v", err)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if skip, ok := strings.CutPrefix(string(out), "skip: "); ok {
		t.Skipf("cannot mount a read-only file system: %s", skip)
	}
	want := fmt.Sprintf("error: data directory %s is not writable: read-only file system\n", dir) +
		fmt.Sprintf("error: data directory %s is not writable: read-only file system\n", filepath.Join(dir, "data"))
	if string(out) != want {
		t.Errorf("got\n%swant\n%s", out, want)
	}
}

// readOnlyHelper is the child's side: it mounts an empty read-only tmpfs on dir, then tries the
// directory and a missing one inside it.
func readOnlyHelper(dir string) {
	// Nothing mounted here may reach the parent's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fmt.Printf("skip: make mounts private: %v\n", err)
		return
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=16k"); err != nil {
		fmt.Printf("skip: mount tmpfs: %v\n", err)
		return
	}
	for _, d := range []string{dir, filepath.Join(dir, "data")} {
		if l, err := Acquire(d); err != nil {
			fmt.Printf("error: %v\n", err)
		} else {
			l.Unlock()
			fmt.Println("locked")
		}
	}
}
