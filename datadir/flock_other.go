//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package datadir

import (
	"errors"
	"os"
)

// errHeld is never returned here.
var errHeld = errors.New("held by another process")

// lock does nothing on systems without flock: chatd is deployed on Linux (and developed on
// macOS); elsewhere it still runs, but nothing stops a second chatd on the same directory.
func lock(*os.File) error { return nil }

func isReadOnlyFS(error) bool { return false }
