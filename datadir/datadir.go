// Package datadir owns chatd's data directory: it creates it, checks that chatd can write in it,
// and locks it so that one chatd at a time uses it. Two servers on one directory would each
// enforce only their own bans and settings, so the second is refused at start.
package datadir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LockFile is the name of the lock file inside the data directory. It holds the pid, host and
// start time of the chatd that last locked the directory; only the lock on it counts, so a file
// left by a killed chatd blocks nothing.
const LockFile = "chatd.lock"

// ErrInUse is what Acquire's error wraps when another process holds the directory: a command
// that must not run beside a server can say so.
var ErrInUse = errors.New("data directory in use")

// Lock is a data directory held by this process until Unlock, or until the process ends: the
// kernel drops the lock with the process, so even kill -9 leaves nothing to clean up.
type Lock struct {
	dir string
	f   *os.File
}

// Acquire creates dir (mode 0700) if it is missing, locks it for this process and checks that
// it is writable. It fails at once, without waiting, if another process holds the lock.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, describe(dir, "", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if _, statErr := os.Lstat(path); statErr == nil {
			// Perhaps left by a chatd run as another user: blame the file only if the
			// directory itself is fine.
			if dirErr := checkWritable(dir); dirErr != nil {
				return nil, dirErr
			}
			return nil, describe(dir, LockFile, err)
		}
		return nil, describe(dir, "", err)
	}
	if err := lock(f); err != nil {
		defer f.Close()
		if errors.Is(err, errHeld) {
			return nil, inUse(dir, f)
		}
		return nil, fmt.Errorf("data directory %s cannot be locked: %w", dir, err)
	}
	// The lock file may be writable in a directory that is not (chmod after a first run), and
	// the database and host keys need to create files beside it.
	if err := checkWritable(dir); err != nil {
		f.Close()
		return nil, err
	}
	if err := writeOwner(f); err != nil {
		f.Close()
		return nil, describe(dir, LockFile, err)
	}
	return &Lock{dir: dir, f: f}, nil
}

// Unlock releases the directory. Calling it again does nothing.
func (l *Lock) Unlock() error {
	if l.f == nil {
		return nil
	}
	// Closing the only descriptor of the lock file releases the lock. The file stays: removing it
	// would let a process that opened it just before lock a file nobody else can find.
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlock data directory %s: %w", l.dir, err)
	}
	return nil
}

// checkWritable creates and removes a file in dir.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".chatd-write-test-*")
	if err != nil {
		return describe(dir, "", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return describe(dir, "", err)
	}
	return nil
}

// describe says in words why dir cannot be used, rather than leaving the operator to decode an
// errno or, later, SQLite's "unable to open database file (14)". file names the file in dir
// that failed, if it is not the directory itself.
func describe(dir, file string, err error) error {
	var reason string
	switch {
	case isReadOnlyFS(err):
		reason = "read-only file system"
	case errors.Is(err, fs.ErrPermission):
		reason = fmt.Sprintf("permission denied for uid %d", os.Geteuid())
	default:
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if file != "" {
		reason += " on " + file
	}
	return &dirError{msg: fmt.Sprintf("data directory %s is not writable: %s", dir, reason), err: err}
}

// dirError is a message in words that still unwraps to the system's error.
type dirError struct {
	msg string
	err error
}

func (e *dirError) Error() string { return e.msg }
func (e *dirError) Unwrap() error { return e.err }

// writeOwner records who holds the lock, for the error the next process gets.
func writeOwner(f *os.File) error {
	host, _ := os.Hostname()
	owner := fmt.Sprintf("pid %d\nhost %s\nstarted %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(owner), 0)
	return err
}

// inUse is the error for a directory another process holds, naming that process from what it
// wrote in the lock file.
func inUse(dir string, f *os.File) error {
	var pid, host string
	// The holder may not have written its pid yet; then the message goes without it.
	sc := bufio.NewScanner(io.LimitReader(f, 4096))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "pid":
			if _, err := strconv.Atoi(v); err == nil {
				pid = v
			}
		case "host":
			host = v
		}
	}
	who := "another chatd"
	if pid != "" {
		who += " (pid " + pid
		if me, _ := os.Hostname(); host != "" && host != me {
			who += " on " + host
		}
		who += ")"
	}
	return &dirError{msg: fmt.Sprintf("data directory %s is in use by %s; stop it or use another --data-dir", dir, who), err: ErrInUse}
}
