package store

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// helperEnv switches the test binary into TestHelperProcess's child role; it holds the database
// path.
const helperEnv = "CHATD_STORE_HELPER_DB"

const helperMessages = 500

// TestHelperProcess is the child of TestDurabilityAfterSIGKILL, not a test by itself: it opens
// the store, appends a burst of messages, says "appended" and waits to be killed (or for its
// stdin to close, should the parent die first).
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("the child process of TestDurabilityAfterSIGKILL")
	}
	s, err := Open(Config{Path: path}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	for i := range helperMessages {
		s.Append(Message{Kind: KindMessage, From: "child", Text: fmt.Sprintf("m%d", i)})
	}
	fmt.Println("appended")
	io.Copy(io.Discard, os.Stdin)
	os.Exit(3) // the parent died: never reached when it kills us
}

// TestDurabilityAfterSIGKILL checks the durability contract for real: no message appended more
// than a second before the process is killed is missing from the database.
func TestDurabilityAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "chat.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // held open: the child waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if sc.Text() == "appended" {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Wait()
		killed = true
		t.Fatalf("the child ended without appending: %v\n%s", sc.Err(), stderr.Bytes())
	}
	// This sleep is the contract under test, not a guess at readiness: a message appended more
	// than 1 s before a SIGKILL must survive it.
	time.Sleep(time.Second)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	killed = true
	if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
		t.Fatalf("the child was not killed by the signal: %v\n%s", err, stderr.Bytes())
	}

	s, _ := openAt(t, path, Config{}, options{})
	got := recent(t, s, 2*helperMessages)
	if want := seqTexts(0, helperMessages); !slices.Equal(texts(got), want) {
		t.Fatalf("after SIGKILL: %d messages (%v...), want all %d in order", len(got), texts(got)[:min(3, len(got))], len(want))
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID <= got[i-1].ID {
			t.Fatalf("ids not increasing: %d after %d", got[i].ID, got[i-1].ID)
		}
	}
}
