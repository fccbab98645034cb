package main

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// underJournal reports whether stderr goes to the journal. systemd sets JOURNAL_STREAM to the
// device and inode of the stream it connected; stderr is still that stream only if they match
// its own (a shell redirect inherits the variable, not the stream), as systemd.exec(5) advises.
func underJournal(lookupEnv func(string) (string, bool), stderr io.Writer) bool {
	want, ok := lookupEnv("JOURNAL_STREAM")
	if !ok || want == "" {
		return false
	}
	f, ok := stderr.(*os.File)
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
