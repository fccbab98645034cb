package room

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRoomDependsOnNoTransportOrEngine keeps the core's seams: room declares the storage and
// delivery it needs and imports no transport, SSH library, storage engine or message bus.
func TestRoomDependsOnNoTransportOrEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "database/sql" { // its driver package comes in with a colour library, harmlessly
			t.Errorf("room depends on %s", dep)
		}
		for _, banned := range []string{"chatd/sshd", "chatd/tcp", "chatd/store", "modernc.org/sqlite",
			"github.com/charmbracelet/wish", "github.com/charmbracelet/ssh", "golang.org/x/crypto/ssh", "github.com/nats-io"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("room depends on %s", dep)
			}
		}
	}
}
