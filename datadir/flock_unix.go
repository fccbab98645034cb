//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package datadir

import (
	"errors"
	"os"
	"syscall"
)

// errHeld is lock's answer when another open file description holds the lock.
var errHeld = errors.New("held by another process")

// lock takes an exclusive flock on f without waiting. flock locks belong to the open file
// description, so a second Acquire in the same process is refused too, and the kernel drops
// the lock when the process ends, however it ends.
func lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errHeld
		}
		return err
	}
}

func isReadOnlyFS(err error) bool { return errors.Is(err, syscall.EROFS) }
