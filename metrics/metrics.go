// Package metrics counts what the chat server does, for Prometheus: sessions, joins and leaves,
// messages and deliveries, slow members, rate limits, refused logins, and how long handshakes
// and deliveries take, and on a cluster node its NATS connection and relay. It serves them, with
// a health check, over HTTP.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"chatd/room"
)

// Metrics is the set of the server's metrics, on its own registry (no global state). Its methods
// are what room, sshd and tcp report to; every one is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	sessions      *prometheus.GaugeVec
	joins         *prometheus.CounterVec
	leaves        *prometheus.CounterVec
	messages      *prometheus.CounterVec
	deliveries    prometheus.Counter
	slow          *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	refused       *prometheus.CounterVec
	closed        *prometheus.CounterVec
	handshake     prometheus.Histogram
	deliveryDelay prometheus.Histogram
	publish       prometheus.Histogram // a cluster node's only (registered by Node)
}

// New builds the metrics, with the Go runtime's and the process's beside them.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatd_sessions", Help: "Sessions in the room, by transport.",
		}, []string{"transport"}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_joins_total", Help: "Sessions that joined the room, by transport.",
		}, []string{"transport"}),
		leaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_leaves_total", Help: "Sessions that left the room, by transport and reason.",
		}, []string{"transport", "reason"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_messages_total", Help: "Lines people sent, by kind (message, action, dm).",
		}, []string{"kind"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_deliveries_total", Help: "Lines written to members.",
		}),
		slow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_slow_disconnects_total", Help: "Members disconnected for not keeping up, by reason.",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_rate_limited_total", Help: "Lines over the message rate: delayed, or refused.",
		}, []string{"outcome"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_auth_failures_total", Help: "SSH logins refused, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_connections_refused_total", Help: "Connections refused before a login, by transport and reason.",
		}, []string{"transport", "reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_ssh_closed_total", Help: "SSH connections closed for breaking the session policy, by rule.",
		}, []string{"reason"}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chatd_ssh_handshake_seconds", Help: "From accepting an SSH connection to its session starting.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		deliveryDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chatd_delivery_seconds", Help: "From a line being said to its being written to a member.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		publish: newPublishHistogram(),
	}
	m.reg.MustRegister(m.sessions, m.joins, m.leaves, m.messages, m.deliveries, m.slow, m.rateLimited,
		m.authFailures, m.refused, m.closed, m.handshake, m.deliveryDelay,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Joined counts a session joining.
func (m *Metrics) Joined(transport string) {
	m.sessions.WithLabelValues(transport).Inc()
	m.joins.WithLabelValues(transport).Inc()
}

// Left counts a session leaving.
func (m *Metrics) Left(transport string, reason room.Reason) {
	m.sessions.WithLabelValues(transport).Dec()
	m.leaves.WithLabelValues(transport, reason.String()).Inc()
	if reason.Slow() {
		m.slow.WithLabelValues(reason.String()).Inc()
	}
}

// Said counts a line someone sent: "message", "action" or "dm".
func (m *Metrics) Said(kind string) { m.messages.WithLabelValues(kind).Inc() }

// Delivered counts one line written to a member, said delay ago.
func (m *Metrics) Delivered(delay time.Duration) {
	m.deliveries.Inc()
	m.deliveryDelay.Observe(delay.Seconds())
}

// RateLimited counts a line over the rate, delayed or refused.
func (m *Metrics) RateLimited(refused bool) {
	outcome := "delayed"
	if refused {
		outcome = "refused"
	}
	m.rateLimited.WithLabelValues(outcome).Inc()
}

// AuthFailed counts an SSH login refused: "banned", "registered", "allowlist", "refused".
func (m *Metrics) AuthFailed(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// Refused counts a connection refused before anyone logged in.
func (m *Metrics) Refused(transport, reason string) {
	m.refused.WithLabelValues(transport, reason).Inc()
}

// Handshake records how long an SSH connection took to start a session.
func (m *Metrics) Handshake(d time.Duration) { m.handshake.Observe(d.Seconds()) }

// Closed counts an SSH connection closed for breaking a rule of the session policy.
func (m *Metrics) Closed(reason string) { m.closed.WithLabelValues(reason).Inc() }

// Handler serves /metrics (Prometheus text format) and /healthz ("ok").
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
