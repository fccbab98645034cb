package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"chatd/room"
)

func TestMetricsFollowEvents(t *testing.T) {
	m := New()
	m.Joined("ssh")
	m.Joined("ssh")
	m.Joined("tcp")
	m.Left("ssh", room.ReasonSlow)
	m.Said("message")
	m.Delivered(3 * time.Millisecond)
	m.RateLimited(false)
	m.RateLimited(true)
	m.AuthFailed("banned")
	m.Refused("tcp", "limit")
	m.Handshake(20 * time.Millisecond)
	m.Closed("early-input")

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func(path string) string {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := get("/metrics")
	for _, want := range []string{
		`chatd_sessions{transport="ssh"} 1`,
		`chatd_sessions{transport="tcp"} 1`,
		`chatd_leaves_total{reason="too slow: outbox full",transport="ssh"} 1`,
		`chatd_slow_disconnects_total{reason="too slow: outbox full"} 1`,
		`chatd_messages_total{kind="message"} 1`,
		`chatd_deliveries_total 1`,
		`chatd_delivery_seconds_count 1`,
		`chatd_rate_limited_total{outcome="delayed"} 1`,
		`chatd_rate_limited_total{outcome="refused"} 1`,
		`chatd_auth_failures_total{reason="banned"} 1`,
		`chatd_connections_refused_total{reason="limit",transport="tcp"} 1`,
		`chatd_ssh_handshake_seconds_count 1`,
		`chatd_ssh_closed_total{reason="early-input"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if got := get("/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}
}
