package room

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"chatd/chat"
)

// requireOp tells a member who is not an operator that the command is not theirs.
func (m *Member) requireOp(cmd string) bool {
	if m.opts.Operator {
		return true
	}
	m.reply(kindError, "/"+cmd+" is for operators")
	return false
}

// opLog records what an operator did, and who.
func (m *Member) opLog(action string, kv ...any) {
	m.hub.log.Info("operator: "+action, append([]any{"op", m.name, "op_key", fingerprintOf(m.opts.Key)}, kv...)...)
}

func (m *Member) cmdKick(args string) Action {
	if !m.requireOp("kick") {
		return Continue
	}
	name, reason := nameFields(args)
	if name == "" {
		m.reply(kindError, "usage: /kick NAME [#ROOM] [reason]")
		return Continue
	}
	h := m.hub
	p := h.lookup(name)
	if p == nil {
		return m.kickElsewhere(name, reason)
	}
	if strings.HasPrefix(reason, "#") { // out of one room only
		arg, why := nameFields(reason)
		ch, err := m.hub.roomNamed(arg)
		if err == nil {
			err = m.hub.kickFromRoom(p, ch, m.name, why)
		}
		if err != nil {
			m.reply(kindError, err.Error())
			return Continue
		}
		m.opLog("kick", "user", p.name, "room", ch.name, "reason", why)
		m.reply(kindInfo, p.name+" is out of "+ch.name)
		return Continue
	}
	m.opLog("kick", "user", p.name, "reason", reason)
	h.send(ClusterEvent{Kind: EventKick, Name: p.name, By: m.name, Text: reason, Reason: ReasonKicked}) // their other nodes' sessions
	h.expel(p, ReasonKicked, "you were kicked by "+m.name+withReason(reason), p.name+" was kicked by "+m.name+withReason(reason))
	return Continue
}

// kickElsewhere is /kick for someone online on other nodes only: those nodes do it.
func (m *Member) kickElsewhere(name, reason string) Action {
	h := m.hub
	h.mu.Lock()
	s := h.peers.people[chat.Fold(name)]
	display := ""
	if s != nil {
		display = s.name
	}
	h.mu.Unlock()
	if s == nil {
		m.reply(kindError, chat.QuoteName(name)+" is not online")
		return Continue
	}
	ev := ClusterEvent{Kind: EventKick, Name: display, By: m.name, Text: reason, Reason: ReasonKicked}
	if strings.HasPrefix(reason, "#") {
		arg, why := nameFields(reason)
		ch, err := h.roomNamed(arg)
		if err != nil {
			m.reply(kindError, err.Error())
			return Continue
		}
		ev = ClusterEvent{Kind: EventRoomKick, Name: display, RoomName: ch.name, By: m.name, Text: why}
		m.opLog("kick", "user", display, "room", ch.name, "reason", why)
		m.reply(kindInfo, display+" is out of "+ch.name)
	} else {
		m.opLog("kick", "user", display, "reason", reason)
		m.reply(kindInfo, display+" is kicked (on another node)")
	}
	h.send(ev)
	return Continue
}

func withReason(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func (m *Member) cmdBan(args string) Action {
	if !m.requireOp("ban") {
		return Continue
	}
	h := m.hub
	if strings.TrimSpace(args) == "confirm" {
		m.mu.Lock()
		bans, at := m.pendingBan, m.pendingAt
		m.pendingBan = nil
		m.mu.Unlock()
		if bans == nil || h.cfg.Now().Sub(at) > time.Minute {
			m.reply(kindError, "no ban is waiting for confirmation")
			return Continue
		}
		h.applyBans(m, bans)
		return Continue
	}
	target, rest := nameFields(args)
	if target == "" {
		m.reply(kindError, "usage: /ban NAME|FINGERPRINT|ADDRESS[/BITS] [DURATION] [reason]")
		return Continue
	}
	kind, value, err := banTarget(target)
	if err != nil {
		m.reply(kindError, "usage: /ban NAME|FINGERPRINT|ADDRESS[/BITS] [DURATION] [reason]: "+err.Error())
		return Continue
	}
	dur, reason := splitDuration(rest)
	now := h.now()
	var expires time.Time
	if dur > 0 {
		expires = now.Add(dur)
	}
	bans := []chat.Ban{{Kind: kind, Value: value, Reason: reason, By: m.name, Created: now, Expires: expires}}
	if kind == chat.BanName && h.cfg.Store != nil {
		// A name is a person: their keys are banned too, or they come back as someone else. Not
		// a key that another name holds as well, though: that would shut out whoever else holds
		// it, for something they may not have done. The operator is told, and can ban it by
		// fingerprint. (Pending keys are not the name's: a ban of it never covers them.)
		if id, ok, err := h.cfg.Store.Identity(value); err == nil && ok {
			bans[0].Value = id.Name
			for _, k := range id.Keys {
				if others := h.otherNamesOfKey(id.Name, k.Fingerprint); len(others) > 0 {
					m.reply(kindInfo, "key "+k.Fingerprint+" is also "+others+": not banned (ban it by fingerprint to keep it out)")
					continue
				}
				bans = append(bans, chat.Ban{Kind: chat.BanKey, Value: k.Fingerprint, Reason: reason, By: m.name, Created: now, Expires: expires})
			}
		}
	}
	if m.coveredBy(bans) {
		m.mu.Lock()
		m.pendingBan, m.pendingAt = bans, h.cfg.Now()
		m.mu.Unlock()
		m.reply(kindError, "this ban would cover you too ("+describeSelf(m)+"): send /ban confirm within a minute to go ahead")
		return Continue
	}
	h.applyBans(m, bans)
	return Continue
}

// otherNamesOfKey says whose key, besides name's, the key with fingerprint is: "bob's",
// "bob's and carol's", or "" when it is name's alone. When the store cannot tell, the key is
// treated as shared: not banning a key is the mistake an operator can put right.
func (h *Hub) otherNamesOfKey(name, fingerprint string) string {
	names, err := h.cfg.Store.NamesOfKey(fingerprint)
	if err != nil {
		h.log.Error("store: names of key", "key", fingerprint, "err", err)
		return "maybe someone else's (the server cannot tell right now)"
	}
	var others []string
	for _, n := range names {
		if chat.Fold(n) != chat.Fold(name) {
			others = append(others, n+"'s")
		}
	}
	switch len(others) {
	case 0:
		return ""
	case 1:
		return others[0]
	}
	return strings.Join(others[:len(others)-1], ", ") + " and " + others[len(others)-1]
}

// coveredBy reports whether any of the bans would shut out the operator's own session.
func (m *Member) coveredBy(bans []chat.Ban) bool {
	ip, fp := remoteIP(m.opts.Remote), fingerprintOf(m.opts.Key)
	if m.opts.Key == nil {
		fp = ""
	}
	return slices.ContainsFunc(bans, func(b chat.Ban) bool { return banMatches(b, ip, fp, m.key) })
}

func describeSelf(m *Member) string {
	s := "you are " + m.name
	if ip := remoteIP(m.opts.Remote); ip.IsValid() {
		s += " from " + ip.String()
	}
	return s
}

// applyBans stores the bans and ends the sessions they cover.
func (h *Hub) applyBans(op *Member, bans []chat.Ban) {
	st := h.cfg.Store
	persistent := st != nil
	for i, b := range bans {
		if persistent {
			stored, err := st.AddBan(b)
			if err != nil {
				h.log.Error("store: add ban", "err", err)
				op.reply(kindError, ErrUnavailable.Error())
				return
			}
			bans[i] = stored
		} else {
			h.mod.mu.Lock()
			h.mod.nextID++
			bans[i].ID = h.mod.nextID
			h.mod.mu.Unlock()
		}
	}
	h.mod.mu.Lock()
	h.mod.bans = append(h.mod.bans, bans...)
	h.mod.mu.Unlock()
	for _, b := range bans {
		op.opLog("ban", "ban", b.ID, "kind", string(b.Kind), "value", b.Value, "expires", expiry(b), "reason", b.Reason)
		op.reply(kindInfo, "banned "+describeBan(b, h.cfg.Location))
	}

	// Whoever the bans cover leaves now, on every node.
	h.send(ClusterEvent{Kind: EventBans, By: op.name, Text: bans[0].Reason, Bans: bans})
	reason := withReason(bans[0].Reason)
	for _, p := range h.coveredBy(bans) {
		h.expel(p, ReasonBanned, "you were banned by "+op.name+reason, p.name+" was banned by "+op.name+reason)
	}
}

// coveredBy are the people online here with a session that one of bans covers.
func (h *Hub) coveredBy(bans []chat.Ban) []*person {
	h.mu.Lock()
	defer h.mu.Unlock()
	var covered []*person
	for _, m := range h.sessions {
		fp := ""
		if m.opts.Key != nil {
			fp = m.opts.Key.Fingerprint
		}
		ip := remoteIP(m.opts.Remote)
		if slices.ContainsFunc(bans, func(b chat.Ban) bool { return banMatches(b, ip, fp, m.key) }) && !slices.Contains(covered, m.person) {
			covered = append(covered, m.person)
		}
	}
	return covered
}

func expiry(b chat.Ban) string {
	if b.Expires.IsZero() {
		return "never"
	}
	return b.Expires.Format(time.RFC3339)
}

func describeBan(b chat.Ban, loc *time.Location) string {
	s := fmt.Sprintf("#%d %s %s by %s", b.ID, b.Kind, b.Value, b.By)
	if b.Expires.IsZero() {
		s += ", for ever"
	} else {
		s += ", until " + b.Expires.In(loc).Format("2006-01-02 15:04")
	}
	return s + withReason(b.Reason)
}

func (m *Member) cmdUnban(args string) Action {
	if !m.requireOp("unban") {
		return Continue
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(args), "#"), 10, 64)
	if err != nil {
		m.reply(kindError, "usage: /unban ID (/bans lists them)")
		return Continue
	}
	h := m.hub
	if st := h.cfg.Store; st != nil {
		if _, err := st.RemoveBan(id); err != nil && !errors.Is(err, chat.ErrNotFound) {
			h.log.Error("store: remove ban", "err", err)
			m.reply(kindError, ErrUnavailable.Error())
			return Continue
		}
	}
	h.mod.mu.Lock()
	i := slices.IndexFunc(h.mod.bans, func(b chat.Ban) bool { return b.ID == id })
	var b chat.Ban
	if i >= 0 {
		b = h.mod.bans[i]
		h.mod.bans = slices.Delete(h.mod.bans, i, i+1)
	}
	h.mod.mu.Unlock()
	if i < 0 {
		m.reply(kindError, fmt.Sprintf("no ban #%d (/bans lists them)", id))
		return Continue
	}
	h.send(ClusterEvent{Kind: EventBans, By: m.name, ID: id})
	m.opLog("unban", "ban", id, "kind", string(b.Kind), "value", b.Value)
	m.reply(kindInfo, "lifted "+describeBan(b, h.cfg.Location))
	return Continue
}

func (m *Member) cmdBans(string) Action {
	if !m.requireOp("bans") {
		return Continue
	}
	h := m.hub
	now := h.cfg.Now()
	h.mod.mu.Lock()
	lines := []string{"bans:"}
	for _, b := range h.mod.bans {
		if b.Active(now) {
			lines = append(lines, "  "+describeBan(b, h.cfg.Location))
		}
	}
	h.mod.mu.Unlock()
	if len(lines) == 1 {
		lines[0] = "no bans"
	}
	m.reply(kindInfo, strings.Join(lines, "\n"))
	return Continue
}

func (m *Member) cmdMute(args string) Action {
	if !m.requireOp("mute") {
		return Continue
	}
	name, rest := nameFields(args)
	if name == "" {
		m.reply(kindError, "usage: /mute NAME [DURATION]")
		return Continue
	}
	h := m.hub
	var until time.Time
	if rest != "" {
		d, err := ParseDuration(rest)
		if err != nil {
			m.reply(kindError, "usage: /mute NAME [DURATION]: "+err.Error())
			return Continue
		}
		until = h.cfg.Now().Add(d)
	}
	p := h.lookup(name)
	display := name
	if p != nil {
		display = p.name
	} else if err := chat.ValidateName(name); err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	h.mod.mu.Lock()
	h.mod.mutes[chat.Fold(name)] = until
	h.mod.mu.Unlock()
	h.send(ClusterEvent{Kind: EventMute, Name: display, By: m.name, Until: until})
	howLong := "until unmuted"
	if !until.IsZero() {
		howLong = "until " + until.In(h.cfg.Location).Format("15:04")
	}
	m.opLog("mute", "user", display, "until", howLong)
	m.reply(kindInfo, display+" is muted "+howLong)
	if p != nil {
		h.deliverTo(p, newEvent(kindInfo, h.now(), "", "", "you were muted by "+m.name+" "+howLong+": nobody sees what you say"))
	}
	return Continue
}

func (m *Member) cmdUnmute(args string) Action {
	if !m.requireOp("unmute") {
		return Continue
	}
	name, _ := nameFields(args)
	h := m.hub
	h.mod.mu.Lock()
	_, was := h.mod.mutes[chat.Fold(name)]
	delete(h.mod.mutes, chat.Fold(name))
	h.mod.mu.Unlock()
	if !was {
		m.reply(kindError, chat.QuoteName(name)+" is not muted")
		return Continue
	}
	h.send(ClusterEvent{Kind: EventUnmute, Name: name, By: m.name})
	m.opLog("unmute", "user", name)
	m.reply(kindInfo, name+" is no longer muted")
	if p := h.lookup(name); p != nil {
		h.deliverTo(p, newEvent(kindInfo, h.now(), "", "", "you were unmuted by "+m.name))
	}
	return Continue
}

func (m *Member) cmdMotd(args string) Action {
	h := m.hub
	text := strings.TrimSpace(args)
	if text == "" {
		h.mod.mu.Lock()
		motd := h.mod.motd
		h.mod.mu.Unlock()
		if motd == "" {
			motd = "(no message of the day)"
		}
		m.reply(kindInfo, motd)
		return Continue
	}
	if !m.requireOp("motd TEXT") {
		return Continue
	}
	if text == "-" {
		text = ""
	}
	if st := h.cfg.Store; st != nil {
		if err := st.SetSetting("motd", text); err != nil {
			h.log.Error("store: set motd", "err", err)
			m.reply(kindError, ErrUnavailable.Error())
			return Continue
		}
	}
	h.mod.mu.Lock()
	h.mod.motd = text
	h.mod.mu.Unlock()
	h.send(ClusterEvent{Kind: EventMotd, Text: text, By: m.name})
	m.opLog("motd", "text", text)
	m.reply(kindInfo, "message of the day set")
	return Continue
}

func (m *Member) cmdIgnore(args string) Action {
	name, _ := nameFields(args)
	h := m.hub
	h.mu.Lock()
	p := m.person
	if name == "" {
		var names []string
		for _, n := range p.ignores {
			names = append(names, n)
		}
		h.mu.Unlock()
		slices.Sort(names)
		if len(names) == 0 {
			m.reply(kindInfo, "you ignore nobody; /ignore NAME hides what NAME says")
		} else {
			m.reply(kindInfo, "you ignore: "+strings.Join(names, ", "))
		}
		return Continue
	}
	key := chat.Fold(name)
	if key == p.key {
		h.mu.Unlock()
		m.reply(kindError, "you cannot ignore yourself")
		return Continue
	}
	if err := chat.ValidateName(name); err != nil {
		h.mu.Unlock()
		m.reply(kindError, err.Error())
		return Continue
	}
	if p.ignores == nil {
		p.ignores = make(map[string]string)
	}
	p.ignores[key] = name
	h.mu.Unlock()
	m.reply(kindInfo, "you ignore "+name+": you will not see what they say (/unignore "+name+" undoes it)")
	return Continue
}

func (m *Member) cmdUnignore(args string) Action {
	name, _ := nameFields(args)
	h := m.hub
	h.mu.Lock()
	_, was := m.person.ignores[chat.Fold(name)]
	delete(m.person.ignores, chat.Fold(name))
	h.mu.Unlock()
	if !was {
		m.reply(kindError, "you do not ignore "+chat.QuoteName(name))
		return Continue
	}
	m.reply(kindInfo, "you see what "+name+" says again")
	return Continue
}

// expel ends every session of p for a moderation reason: each gets toThem, the rooms p was in
// toAll, and the connections close once that last line is written.
func (h *Hub) expel(p *person, reason Reason, toThem, toAll string) {
	h.mu.Lock()
	sessions := slices.Clone(p.sessions)
	h.mu.Unlock()
	for _, m := range sessions {
		m.end(reason, newEvent(kindError, h.now(), "", "", toThem), toAll) // toAll: when the last one goes
	}
}
