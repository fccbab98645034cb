package main

import (
	"fmt"
	"net"

	"github.com/charmbracelet/log"

	"chatd/connlimit"
	"chatd/proxied"
)

// listenChat listens for a chat transport ("ssh", "tcp", "web") on addr. With --proxy-protocol the
// listener takes the PROXY header from the listed load balancers: the servers, their limits and
// bans then see the clients behind them, from accept time on.
func listenChat(transport, addr string, cfg config, refused func(transport, reason string), logger *log.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", transport, err)
	}
	trusted, _ := connlimit.ParsePrefixes(cfg.ProxyProtocol) // checked by validate
	if len(trusted) == 0 {
		return ln, nil
	}
	pcfg := proxied.DefaultConfig()
	pcfg.Trusted, pcfg.Transport, pcfg.Refused = trusted, transport, refused
	pl, err := proxied.Listen(ln, pcfg, logger.WithPrefix("proxy"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	logger.Info("PROXY protocol", "transport", transport, "from", cfg.ProxyProtocol, "header_timeout", pcfg.HeaderTimeout.String())
	return pl, nil
}
