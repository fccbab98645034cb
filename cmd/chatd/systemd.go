package main

import (
	"strings"

	"github.com/charmbracelet/log"
	"github.com/coreos/go-systemd/v22/daemon"
)

// notify tells systemd (Type=notify) how the service is doing. Outside systemd, without
// NOTIFY_SOCKET, it does nothing.
func notify(logger *log.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		logger.Warn("sd_notify", "state", strings.ReplaceAll(state, "\n", " "), "err", err)
	}
}

// notifyReady says chatd is ready, with the addresses it listens on (and, for a cluster node,
// its name) as the status that systemctl status shows.
func notifyReady(servers []server, node string, logger *log.Logger) {
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.name + " " + s.ln.Addr().String()
	}
	status := "listening: " + strings.Join(addrs, ", ")
	if node != "" {
		status = "node " + node + ", " + status
	}
	notify(logger, daemon.SdNotifyReady+"\nSTATUS="+status)
}
