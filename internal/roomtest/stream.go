// Package roomtest holds what the tests of every transport share: a Stream that collects what a
// chat connection receives, so a test can wait for a line instead of sleeping.
package roomtest

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// HangGuard only stops a broken test from hanging; no test depends on how fast anything is.
const HangGuard = 20 * time.Second

// Stream collects everything a reader yields. Complete lines are stripped of escape codes and
// carriage returns once, as they arrive, so waiting stays cheap on megabytes of output.
type Stream struct {
	mu      sync.Mutex
	raw     bytes.Buffer
	text    strings.Builder     // stripped complete lines
	partial []byte              // an incomplete last line, raw
	lines   map[string]struct{} // every stripped complete line
	err     error
	changed chan struct{}
	done    chan struct{} // closed when the reader has failed
}

// NewStream reads r until it fails, collecting what it yields.
func NewStream(r io.Reader) *Stream {
	s := &Stream{changed: make(chan struct{}), lines: map[string]struct{}{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 32<<10)
		for {
			n, err := r.Read(b)
			s.mu.Lock()
			s.add(b[:n])
			if err != nil {
				s.err = err
			}
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *Stream) add(b []byte) {
	s.raw.Write(b)
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return
		}
		line := StripANSI(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
		s.text.WriteString(line)
		s.text.WriteByte('\n')
		s.lines[line] = struct{}{}
	}
}

// Raw is everything received so far, escape codes and all.
func (s *Stream) Raw() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// Text is what was received, with escape codes and carriage returns removed.
func (s *Stream) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String() + StripANSI(string(s.partial))
}

// HasLine reports whether a whole line equal to line has arrived.
func (s *Stream) HasLine(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.lines[line]
	return ok
}

// Closed reports whether the reader has failed or reached EOF.
func (s *Stream) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// Done is closed once the reader has failed or reached EOF and everything it gave is collected.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Wait waits until cond holds, re-checking whenever something arrives.
func (s *Stream) Wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(HangGuard)
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			text := s.Text()
			if len(text) > 4000 {
				text = "..." + text[len(text)-4000:]
			}
			t.Fatalf("timed out waiting for %s; got:\n%s", what, text)
		}
	}
}

// WaitContains waits until the text holds sub.
func (s *Stream) WaitContains(t testing.TB, sub string) {
	t.Helper()
	s.Wait(t, fmt.Sprintf("%q", sub), func() bool { return strings.Contains(s.Text(), sub) })
}

// WaitLine waits for a whole line equal to line.
func (s *Stream) WaitLine(t testing.TB, line string) {
	t.Helper()
	s.Wait(t, fmt.Sprintf("line %q", line), func() bool { return s.HasLine(line) })
}

// WaitClosed waits for EOF.
func (s *Stream) WaitClosed(t testing.TB) {
	t.Helper()
	s.Wait(t, "EOF", s.Closed)
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]|\a|\r`)

// StripANSI removes escape sequences, bells and carriage returns.
func StripANSI(s string) string { return ansiRE.ReplaceAllString(s, "") }
