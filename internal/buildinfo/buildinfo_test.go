package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestMerge(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "chatd", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "aaaa"},
			{Key: "vcs.time", Value: "2025-01-02T03:04:05Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	plain := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "chatd", Version: "(devel)"}}
	tests := []struct {
		name string
		ld   Info
		bi   *debug.BuildInfo
		want string
	}{
		{"linker wins", Info{Version: "1.2.0", Commit: "bbbb", Date: "2025-06-01T00:00:00Z"}, vcs,
			"1.2.0, commit bbbb, built 2025-06-01T00:00:00Z, go1.26.8"},
		{"vcs stamp", Info{}, vcs, "(devel), commit aaaa (modified), built 2025-01-02T03:04:05Z, go1.26.8"},
		{"go install", Info{}, &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.3.0"}},
			"v1.3.0, commit unknown, built unknown, go1.26.8"},
		{"nothing known", Info{}, plain, "(devel), commit unknown, built unknown, go1.26.8"},
		{"a modified checkout, from the linker", Info{Version: "1.2.0", Commit: "bbbb", Modified: true}, plain,
			"1.2.0, commit bbbb (modified), built unknown, go1.26.8"},
		{"only a commit from the linker", Info{Commit: "cccc"}, vcs, "(devel), commit cccc, built 2025-01-02T03:04:05Z, go1.26.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := merge(tt.ld, tt.bi).String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := merge(Info{}, nil); got.Go == "" || got.Version != "" {
		t.Errorf("without build info: %+v", got)
	}
}
