//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package datadir

import "fmt"

// readOnlyHelper needs Linux's namespaces; TestReadOnlyFileSystem is Linux only.
func readOnlyHelper(string) { fmt.Println("skip: Linux only") }
