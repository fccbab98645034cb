package sqlite

import (
	"errors"
	"testing"
	"time"

	"chatd/chat"
)

// TestConfiguredCaps: caps set in Config replace the defaults (the suite checks the defaults,
// and how each cap behaves as it fills).
func TestConfiguredCaps(t *testing.T) {
	clk := newClock()
	s, _ := openTest(t, Config{Now: clk.Now, StoreLimits: chat.StoreLimits{MaxNamesPerKey: 2, MaxKeysPerName: 3, MaxQueuedDMs: 6, MaxQueuedDMsPerSender: 2, MaxQueuedDMsPerAddr: 3}})
	limit := func(err error, sentinel error, max int) bool {
		var le *chat.LimitError
		return errors.Is(err, sentinel) && errors.As(err, &le) && le.Max == max
	}
	for _, name := range []string{"a", "b"} {
		if _, claimed, err := s.Claim(name, testKey(1)); err != nil || !claimed {
			t.Fatal(claimed, err)
		}
	}
	if _, _, err := s.Claim("c", testKey(1)); !limit(err, chat.ErrNameLimit, 2) {
		t.Errorf("a third name for one key = %v, want ErrNameLimit at 2", err)
	}
	for i := 2; i <= 3; i++ {
		if err := s.ProposeKey("a", testKey(i), clk.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ProposeKey("a", testKey(4), clk.Now().Add(time.Hour)); !limit(err, chat.ErrKeyLimit, 3) {
		t.Errorf("a fourth key = %v, want ErrKeyLimit at 3", err)
	}
	queue := func(from, addr string) error {
		_, err := s.QueueDM(chat.DM{From: from, FromAddr: addr, To: "a", Text: "x"})
		return err
	}
	for i, st := range []struct {
		from, addr string
		sentinel   error
		max        int
	}{
		{"s1", "192.0.2.1", nil, 0},
		{"s1", "192.0.2.1", nil, 0},
		{"s1", "192.0.2.2", chat.ErrSenderQueueFull, 2},
		{"s2", "192.0.2.1", nil, 0},
		{"s3", "192.0.2.1", chat.ErrAddrQueueFull, 3},
		{"s3", "", nil, 0},
		{"s4", "", nil, 0},
		{"s4", "", nil, 0},
		{"s5", "", chat.ErrQueueFull, 6},
	} {
		err := queue(st.from, st.addr)
		if st.sentinel == nil && err != nil || st.sentinel != nil && !limit(err, st.sentinel, st.max) {
			t.Fatalf("step %d: QueueDM from %s at %q = %v, want %v at %d", i, st.from, st.addr, err, st.sentinel, st.max)
		}
	}
	if dms, err := s.TakeDMs("a"); err != nil || len(dms) != 6 {
		t.Fatalf("TakeDMs = %d, %v; want 6", len(dms), err)
	}
}
