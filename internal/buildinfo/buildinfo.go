// Package buildinfo says which build of chatd and chat is running: the version, the commit and
// when it was built, for --version and the server's start-up log line.
//
// The package script sets them at link time:
//
//	go build -ldflags "-X chatd/internal/buildinfo.version=1.2.0 \
//	  -X chatd/internal/buildinfo.commit=$(git rev-parse HEAD) \
//	  -X chatd/internal/buildinfo.date=2025-06-01T12:00:00Z \
//	  -X chatd/internal/buildinfo.modified=true" ./cmd/chatd
//
// What is not set that way comes from the Go build info: the module version (go install
// chatd/cmd/chatd@v1.2.0) and, when Go stamped them (-buildvcs=true in a git checkout), the
// commit and its time.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X by the package script. They are package variables because -X can only
// set those; nothing writes them at run time.
var (
	version  string
	commit   string
	date     string
	modified string // "true": built from a checkout with uncommitted changes
)

// Info is one build's identity. Empty fields are unknown.
type Info struct {
	Version  string // e.g. 1.2.0, or (devel) for a plain go build in a checkout
	Commit   string // the full commit hash
	Date     string // when it was built (the package script uses the commit's date), RFC 3339
	Modified bool   // Go saw uncommitted changes in the checkout it built from
	Go       string // the Go release that built it
}

// Read returns this binary's Info: what the linker was told, else what Go stamped.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return merge(Info{Version: version, Commit: commit, Date: date, Modified: modified == "true"}, bi)
}

// merge fills the fields ld leaves empty from the build info (nil: none).
func merge(ld Info, bi *debug.BuildInfo) Info {
	info := ld
	info.Go = runtime.Version()
	if bi == nil {
		return info
	}
	info.Go = bi.GoVersion
	if info.Version == "" && bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if info.Commit == "" {
				info.Commit = s.Value
			}
		case "vcs.time":
			if info.Date == "" {
				info.Date = s.Value
			}
		case "vcs.modified":
			// Only about the commit Go found: meaningless next to one set by -X.
			if ld.Commit == "" {
				info.Modified = s.Value == "true"
			}
		}
	}
	return info
}

// String is the --version line: "1.2.0, commit 0123abcd..., built 2025-06-01T12:00:00Z, go1.26.8".
func (i Info) String() string {
	parts := []string{orUnknown(i.Version)}
	c := orUnknown(i.Commit)
	if i.Modified {
		c += " (modified)"
	}
	parts = append(parts, "commit "+c, "built "+orUnknown(i.Date))
	if i.Go != "" {
		parts = append(parts, i.Go)
	}
	return strings.Join(parts, ", ")
}

// KeyVals is the Info as key/value pairs for a log line.
func (i Info) KeyVals() []any {
	c := orUnknown(i.Commit)
	if i.Modified {
		c += "+modified"
	}
	return []any{"version", orUnknown(i.Version), "commit", c, "built", orUnknown(i.Date), "go", i.Go}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Line is what NAME --version prints: "chatd 1.2.0, commit ..., built ..., go1.26.8".
func Line(name string) string {
	return fmt.Sprintf("%s %s", name, Read())
}
