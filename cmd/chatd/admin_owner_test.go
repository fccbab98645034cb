//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRestoreAsRootKeepsTheServiceOwner: root restoring into a service's data directory leaves
// the database and the lock file to the directory's owner, or the service could not open them.
func TestRestoreAsRootKeepsTheServiceOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it checks that restore gives its files the data directory's owner")
	}
	src := t.TempDir()
	startChatd(t, "--data-dir", src).stop(t)
	backup := filepath.Join(t.TempDir(), "b.db")
	if code, out, errOut := adminRun(t, "--data-dir", src, "backup", backup); code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	const nobody = 65534
	dataDir := filepath.Join(t.TempDir(), "service")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := adminRun(t, "--data-dir", dataDir, "restore", backup); code != 0 || !strings.Contains(out, "restored") {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"chat.db", "chatd.lock"} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != nobody {
			t.Errorf("%s belongs to %d:%d, want the directory's owner %d:%d", name, st.Uid, st.Gid, nobody, nobody)
		}
	}
}
