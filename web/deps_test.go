package web

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWebDependsOnNoOtherTransportOrEngine keeps the seams: web carries bytes between a socket
// and the room, as sshd and tcp do, and imports neither of them nor a storage engine.
func TestWebDependsOnNoOtherTransportOrEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"chatd/sshd", "chatd/tcp", "chatd/store", "modernc.org/sqlite",
			"github.com/charmbracelet/wish", "github.com/charmbracelet/ssh", "golang.org/x/crypto/ssh", "github.com/nats-io"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("web depends on %s", dep)
			}
		}
	}
}
