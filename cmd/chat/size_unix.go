//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// watchSize tells set the terminal's size now and whenever the window changes, until stop.
func watchSize(fd int, set func(width, height int)) (stop func()) {
	apply := func() {
		if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
			set(w, h)
		}
	}
	apply()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				apply()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
