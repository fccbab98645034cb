//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// ownLike gives path the owner and group of ref when this process runs as root: a file an
// admin command creates as root in a service's data directory must stay the service's.
func ownLike(path, ref string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", ref, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give %s the owner of %s: %w", path, ref, err)
	}
	return nil
}
