// Package connlimit decides whether a new connection, or a further session on one, may come in:
// a cap on all connections, a cap per IP address, and a cap on new connections and sessions per
// IP per minute, then the address bans (Gate). SSH and TCP share one Gate, so the caps hold for
// the server as a whole and every refusal counts toward the address's rate.
package connlimit

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Config holds the caps; 0 disables a cap.
type Config struct {
	MaxConns  int            // open connections in all
	MaxPerIP  int            // open connections from one address
	RatePerIP int            // new connections from one address per minute
	Exempt    []netip.Prefix // addresses no per-IP cap applies to
	Now       func() time.Time
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.MaxConns < 0 || c.MaxPerIP < 0 || c.RatePerIP < 0 {
		return fmt.Errorf("connection limits must be 0 (off) or more")
	}
	return nil
}

// Refusal says why a connection was not admitted, in words for the person connecting.
type Refusal struct {
	Reason string
	// Hard is set when the address is far over its rate: the caller should close the
	// connection at once rather than spend work (an SSH handshake) on telling it why.
	Hard bool
}

func (r *Refusal) Error() string { return r.Reason }

// Limiter counts connections. Every method is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu        sync.Mutex
	total     int
	ips       map[netip.Addr]*ipState
	lastSweep time.Time
}

// ipState is what the limiter knows about one address: its open connections and the start times
// of its recent ones, for the rate (a sliding window of one minute).
type ipState struct {
	open   int
	recent []time.Time
}

// New returns a Limiter. Config.Now defaults to time.Now.
func New(cfg Config) *Limiter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, ips: make(map[netip.Addr]*ipState)}
}

// Admit counts a new connection from addr, or refuses it. release must be called exactly once
// when an admitted connection closes. Every attempt counts toward the address's rate, refused
// ones included: an address that keeps knocking while at its cap, or while the server is full,
// ends up refused hard (closed before any work is spent on it) like any other flood.
func (l *Limiter) Admit(addr net.Addr) (release func(), err error) {
	ip := AddrIP(addr)
	exempt := l.exempt(ip)
	now := l.cfg.Now()

	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(ip, now)
	if !exempt {
		if ref := l.countLocked(st, now, "connections"); ref != nil {
			return nil, ref
		}
		if l.cfg.MaxPerIP > 0 && st.open >= l.cfg.MaxPerIP {
			return nil, &Refusal{Reason: fmt.Sprintf("too many connections from your address (at most %d at once)", l.cfg.MaxPerIP), Hard: l.floodingLocked(st)}
		}
	}
	if l.cfg.MaxConns > 0 && l.total >= l.cfg.MaxConns {
		hard := !exempt && l.floodingLocked(st)
		l.forgetIfIdle(ip, st, now)
		return nil, &Refusal{Reason: fmt.Sprintf("server is full (%d connections); try again later", l.cfg.MaxConns), Hard: hard}
	}
	st.open++
	l.total++
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, nil
}

// Charge counts one more session from addr on a connection that is already open (an SSH client
// may open several sessions on one connection): each costs the server about what a new
// connection does, so each counts toward the address's rate like one. It holds no slot.
func (l *Limiter) Charge(addr net.Addr) error {
	ip := AddrIP(addr)
	if l.exempt(ip) {
		return nil
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(ip, now)
	if ref := l.countLocked(st, now, "sessions"); ref != nil {
		l.forgetIfIdle(ip, st, now)
		return ref
	}
	return nil
}

// stateLocked returns what is known of ip, creating it; l.mu must be held.
func (l *Limiter) stateLocked(ip netip.Addr, now time.Time) *ipState {
	if now.Sub(l.lastSweep) > time.Minute {
		l.sweepLocked(now)
	}
	st := l.ips[ip]
	if st == nil {
		st = &ipState{}
		l.ips[ip] = st
	}
	return st
}

// countLocked records an attempt from st's address and refuses it when the address is over its
// rate. Attempts are counted while refused too, up to a bound that keeps the memory per address
// small, so that a flood stays refused; l.mu must be held.
func (l *Limiter) countLocked(st *ipState, now time.Time, what string) *Refusal {
	if l.cfg.RatePerIP <= 0 {
		return nil
	}
	st.recent = trimBefore(st.recent, now.Add(-time.Minute))
	if len(st.recent) < 4*l.cfg.RatePerIP {
		st.recent = append(st.recent, now)
	}
	if len(st.recent) <= l.cfg.RatePerIP {
		return nil
	}
	return &Refusal{
		Reason: fmt.Sprintf("too many new %s from your address (at most %d a minute); try again in a minute", what, l.cfg.RatePerIP),
		Hard:   l.floodingLocked(st),
	}
}

// floodingLocked reports an address far over its rate: twice as many attempts as it may make
// in a minute. l.mu must be held.
func (l *Limiter) floodingLocked(st *ipState) bool {
	return l.cfg.RatePerIP > 0 && len(st.recent) > 2*l.cfg.RatePerIP
}

func (l *Limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if st := l.ips[ip]; st != nil {
		st.open--
		l.forgetIfIdle(ip, st, l.cfg.Now())
	}
}

// forgetIfIdle drops what is known of an address with no open connection and no recent one, so
// that the map does not grow with every address that ever connected.
func (l *Limiter) forgetIfIdle(ip netip.Addr, st *ipState, now time.Time) {
	st.recent = trimBefore(st.recent, now.Add(-time.Minute))
	if st.open <= 0 && len(st.recent) == 0 {
		delete(l.ips, ip)
	}
}

// Sweep forgets addresses whose last connection is over a minute old. Admit does it once a
// minute by itself.
func (l *Limiter) Sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(l.cfg.Now())
}

func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for ip, st := range l.ips {
		l.forgetIfIdle(ip, st, now)
	}
}

// Open reports how many connections are open in all, and from addr.
func (l *Limiter) Open(addr net.Addr) (total, fromAddr int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.ips[AddrIP(addr)]; st != nil {
		fromAddr = st.open
	}
	return l.total, fromAddr
}

func (l *Limiter) exempt(ip netip.Addr) bool {
	for _, p := range l.cfg.Exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func trimBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	if i == 0 {
		return ts
	}
	n := copy(ts, ts[i:])
	return ts[:n]
}

// AddrIP is the IP address of a network address, IPv4-mapped addresses unmapped.
func AddrIP(addr net.Addr) netip.Addr {
	if addr == nil {
		return netip.Addr{}
	}
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ParsePrefixes reads a comma-separated list of CIDR ranges or single addresses, such as
// "10.0.0.0/8, 192.0.2.7, ::1".
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix reads one CIDR range or single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address range: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
