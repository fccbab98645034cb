//go:build !unix

package main

import "golang.org/x/term"

// watchSize tells set the terminal's size now; window changes are not followed here.
func watchSize(fd int, set func(width, height int)) (stop func()) {
	if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
		set(w, h)
	}
	return func() {}
}
