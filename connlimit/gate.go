package connlimit

import (
	"errors"
	"net"
	"net/netip"
)

// Gate is the one admission path every transport takes for a new connection and for every
// further session on it: the limits first, then the address bans. The transports only carry out
// its decision, each in its own way (an SSH banner, a TCP error line), so a rule exists once.
type Gate struct {
	// Limiter caps connections; nil for no caps.
	Limiter *Limiter
	// Banned reports the ban that keeps an address out, if any; nil for no bans.
	Banned func(ip netip.Addr) error
	// Refused counts refusals by transport and reason; nil for none.
	Refused func(transport, reason string)
}

// Refusal reasons, for metrics and logs.
const (
	ReasonLimit  = "limit"  // over a cap or a rate
	ReasonFlood  = "flood"  // far over the rate: dropped without a word
	ReasonBanned = "banned" // the address is banned
)

// Ticket is the gate's decision about one connection.
type Ticket struct {
	// Refusal says why the connection is turned away, in words for the person connecting; ""
	// when it is admitted.
	Refusal string
	// Reason is ReasonLimit, ReasonFlood or ReasonBanned when refused.
	Reason string
	// Drop is set for a flood: close the connection at once, spending nothing on telling it why.
	Drop bool

	release func()
}

// Admitted reports whether the connection may go on.
func (t *Ticket) Admitted() bool { return t.Refusal == "" && !t.Drop }

// Release gives the connection's slot back; call it once the connection has closed. It is
// idempotent, and does nothing for a refused connection.
func (t *Ticket) Release() {
	if t.release != nil {
		t.release()
	}
}

// Admit decides on a new connection from addr over transport ("ssh", "tcp").
func (g *Gate) Admit(transport string, addr net.Addr) *Ticket {
	t := &Ticket{}
	if g == nil {
		return t
	}
	if g.Limiter != nil {
		rel, err := g.Limiter.Admit(addr)
		if err != nil {
			return g.refuse(transport, t, err)
		}
		t.release = rel
	}
	if g.Banned != nil {
		if err := g.Banned(AddrIP(addr)); err != nil {
			t.Release()
			t.release = nil
			t.Refusal, t.Reason = err.Error(), ReasonBanned
			g.count(transport, ReasonBanned)
		}
	}
	return t
}

// Session decides on one more session from addr on a connection that is already open. It
// returns nil when the session may start.
func (g *Gate) Session(transport string, addr net.Addr) *Ticket {
	if g == nil || g.Limiter == nil {
		return nil
	}
	if err := g.Limiter.Charge(addr); err != nil {
		return g.refuse(transport, &Ticket{}, err)
	}
	return nil
}

func (g *Gate) refuse(transport string, t *Ticket, err error) *Ticket {
	var ref *Refusal
	if errors.As(err, &ref) && ref.Hard {
		t.Drop, t.Reason = true, ReasonFlood
	} else {
		t.Reason = ReasonLimit
	}
	t.Refusal = err.Error()
	g.count(transport, t.Reason)
	return t
}

func (g *Gate) count(transport, reason string) {
	if g.Refused != nil {
		g.Refused(transport, reason)
	}
}
