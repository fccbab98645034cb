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
	m.room.log.Info("operator: "+action, append([]any{"op", m.name, "op_key", fingerprintOf(m.opts.Key)}, kv...)...)
}

func (m *Member) cmdKick(args string) Action {
	if !m.requireOp("kick") {
		return Continue
	}
	name, reason := nameFields(args)
	if name == "" {
		m.reply(kindError, "usage: /kick NAME [reason]")
		return Continue
	}
	p := m.room.lookup(name)
	if p == nil {
		m.reply(kindError, chat.QuoteName(name)+" is not online")
		return Continue
	}
	m.opLog("kick", "user", p.name, "reason", reason)
	m.room.expel(p, ReasonKicked, "you were kicked by "+m.name+withReason(reason), p.name+" was kicked by "+m.name+withReason(reason))
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
	r := m.room
	if strings.TrimSpace(args) == "confirm" {
		m.mu.Lock()
		bans, at := m.pendingBan, m.pendingAt
		m.pendingBan = nil
		m.mu.Unlock()
		if bans == nil || r.cfg.Now().Sub(at) > time.Minute {
			m.reply(kindError, "no ban is waiting for confirmation")
			return Continue
		}
		r.applyBans(m, bans)
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
	now := r.now()
	var expires time.Time
	if dur > 0 {
		expires = now.Add(dur)
	}
	bans := []chat.Ban{{Kind: kind, Value: value, Reason: reason, By: m.name, Created: now, Expires: expires}}
	if kind == chat.BanName && r.cfg.Store != nil {
		// A name is a person: their keys are banned too, or they come back as someone else. Not
		// a key that another name holds as well, though: that would shut out whoever else holds
		// it, for something they may not have done. The operator is told, and can ban it by
		// fingerprint. (Pending keys are not the name's: a ban of it never covers them.)
		if id, ok, err := r.cfg.Store.Identity(value); err == nil && ok {
			bans[0].Value = id.Name
			for _, k := range id.Keys {
				if others := r.otherNamesOfKey(id.Name, k.Fingerprint); len(others) > 0 {
					m.reply(kindInfo, "key "+k.Fingerprint+" is also "+others+": not banned (ban it by fingerprint to keep it out)")
					continue
				}
				bans = append(bans, chat.Ban{Kind: chat.BanKey, Value: k.Fingerprint, Reason: reason, By: m.name, Created: now, Expires: expires})
			}
		}
	}
	if m.coveredBy(bans) {
		m.mu.Lock()
		m.pendingBan, m.pendingAt = bans, r.cfg.Now()
		m.mu.Unlock()
		m.reply(kindError, "this ban would cover you too ("+describeSelf(m)+"): send /ban confirm within a minute to go ahead")
		return Continue
	}
	r.applyBans(m, bans)
	return Continue
}

// otherNamesOfKey says whose key, besides name's, the key with fingerprint is: "bob's",
// "bob's and carol's", or "" when it is name's alone. When the store cannot tell, the key is
// treated as shared: not banning a key is the mistake an operator can put right.
func (r *Room) otherNamesOfKey(name, fingerprint string) string {
	names, err := r.cfg.Store.NamesOfKey(fingerprint)
	if err != nil {
		r.log.Error("store: names of key", "key", fingerprint, "err", err)
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
func (r *Room) applyBans(op *Member, bans []chat.Ban) {
	st, persistent := r.cfg.Store.(ModerationStore)
	for i, b := range bans {
		if persistent {
			stored, err := st.AddBan(b)
			if err != nil {
				r.log.Error("store: add ban", "err", err)
				op.reply(kindError, ErrUnavailable.Error())
				return
			}
			bans[i] = stored
		} else {
			r.mod.mu.Lock()
			r.mod.nextID++
			bans[i].ID = r.mod.nextID
			r.mod.mu.Unlock()
		}
	}
	r.mod.mu.Lock()
	r.mod.bans = append(r.mod.bans, bans...)
	r.mod.mu.Unlock()
	for _, b := range bans {
		op.opLog("ban", "ban", b.ID, "kind", string(b.Kind), "value", b.Value, "expires", expiry(b), "reason", b.Reason)
		op.reply(kindInfo, "banned "+describeBan(b, r.cfg.Location))
	}

	// Whoever the bans cover leaves now.
	r.mu.Lock()
	var covered []*person
	for _, m := range r.members {
		fp := ""
		if m.opts.Key != nil {
			fp = m.opts.Key.Fingerprint
		}
		ip := remoteIP(m.opts.Remote)
		if slices.ContainsFunc(bans, func(b chat.Ban) bool { return banMatches(b, ip, fp, m.key) }) && !slices.Contains(covered, m.person) {
			covered = append(covered, m.person)
		}
	}
	r.mu.Unlock()
	reason := withReason(bans[0].Reason)
	for _, p := range covered {
		r.expel(p, ReasonBanned, "you were banned by "+op.name+reason, p.name+" was banned by "+op.name+reason)
	}
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
	r := m.room
	if st, ok := r.cfg.Store.(ModerationStore); ok {
		if _, err := st.RemoveBan(id); err != nil && !errors.Is(err, chat.ErrNotFound) {
			r.log.Error("store: remove ban", "err", err)
			m.reply(kindError, ErrUnavailable.Error())
			return Continue
		}
	}
	r.mod.mu.Lock()
	i := slices.IndexFunc(r.mod.bans, func(b chat.Ban) bool { return b.ID == id })
	var b chat.Ban
	if i >= 0 {
		b = r.mod.bans[i]
		r.mod.bans = slices.Delete(r.mod.bans, i, i+1)
	}
	r.mod.mu.Unlock()
	if i < 0 {
		m.reply(kindError, fmt.Sprintf("no ban #%d (/bans lists them)", id))
		return Continue
	}
	m.opLog("unban", "ban", id, "kind", string(b.Kind), "value", b.Value)
	m.reply(kindInfo, "lifted "+describeBan(b, r.cfg.Location))
	return Continue
}

func (m *Member) cmdBans(string) Action {
	if !m.requireOp("bans") {
		return Continue
	}
	r := m.room
	now := r.cfg.Now()
	r.mod.mu.Lock()
	lines := []string{"bans:"}
	for _, b := range r.mod.bans {
		if b.Active(now) {
			lines = append(lines, "  "+describeBan(b, r.cfg.Location))
		}
	}
	r.mod.mu.Unlock()
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
	r := m.room
	var until time.Time
	if rest != "" {
		d, err := ParseDuration(rest)
		if err != nil {
			m.reply(kindError, "usage: /mute NAME [DURATION]: "+err.Error())
			return Continue
		}
		until = r.cfg.Now().Add(d)
	}
	p := r.lookup(name)
	display := name
	if p != nil {
		display = p.name
	} else if err := chat.ValidateName(name); err != nil {
		m.reply(kindError, err.Error())
		return Continue
	}
	r.mod.mu.Lock()
	r.mod.mutes[chat.Fold(name)] = until
	r.mod.mu.Unlock()
	howLong := "until unmuted"
	if !until.IsZero() {
		howLong = "until " + until.In(r.cfg.Location).Format("15:04")
	}
	m.opLog("mute", "user", display, "until", howLong)
	m.reply(kindInfo, display+" is muted "+howLong)
	if p != nil {
		r.deliverTo(p, newEvent(kindInfo, r.now(), "", "", "you were muted by "+m.name+" "+howLong+": nobody sees what you say"))
	}
	return Continue
}

func (m *Member) cmdUnmute(args string) Action {
	if !m.requireOp("unmute") {
		return Continue
	}
	name, _ := nameFields(args)
	r := m.room
	r.mod.mu.Lock()
	_, was := r.mod.mutes[chat.Fold(name)]
	delete(r.mod.mutes, chat.Fold(name))
	r.mod.mu.Unlock()
	if !was {
		m.reply(kindError, chat.QuoteName(name)+" is not muted")
		return Continue
	}
	m.opLog("unmute", "user", name)
	m.reply(kindInfo, name+" is no longer muted")
	if p := r.lookup(name); p != nil {
		r.deliverTo(p, newEvent(kindInfo, r.now(), "", "", "you were unmuted by "+m.name))
	}
	return Continue
}

func (m *Member) cmdMotd(args string) Action {
	r := m.room
	text := strings.TrimSpace(args)
	if text == "" {
		r.mod.mu.Lock()
		motd := r.mod.motd
		r.mod.mu.Unlock()
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
	if st, ok := r.cfg.Store.(ModerationStore); ok {
		if err := st.SetSetting("motd", text); err != nil {
			r.log.Error("store: set motd", "err", err)
			m.reply(kindError, ErrUnavailable.Error())
			return Continue
		}
	}
	r.mod.mu.Lock()
	r.mod.motd = text
	r.mod.mu.Unlock()
	m.opLog("motd", "text", text)
	m.reply(kindInfo, "message of the day set")
	return Continue
}

func (m *Member) cmdIgnore(args string) Action {
	name, _ := nameFields(args)
	r := m.room
	r.mu.Lock()
	p := m.person
	if name == "" {
		var names []string
		for _, n := range p.ignores {
			names = append(names, n)
		}
		r.mu.Unlock()
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
		r.mu.Unlock()
		m.reply(kindError, "you cannot ignore yourself")
		return Continue
	}
	if err := chat.ValidateName(name); err != nil {
		r.mu.Unlock()
		m.reply(kindError, err.Error())
		return Continue
	}
	if p.ignores == nil {
		p.ignores = make(map[string]string)
	}
	p.ignores[key] = name
	r.mu.Unlock()
	m.reply(kindInfo, "you ignore "+name+": you will not see what they say (/unignore "+name+" undoes it)")
	return Continue
}

func (m *Member) cmdUnignore(args string) Action {
	name, _ := nameFields(args)
	r := m.room
	r.mu.Lock()
	_, was := m.person.ignores[chat.Fold(name)]
	delete(m.person.ignores, chat.Fold(name))
	r.mu.Unlock()
	if !was {
		m.reply(kindError, "you do not ignore "+chat.QuoteName(name))
		return Continue
	}
	m.reply(kindInfo, "you see what "+name+" says again")
	return Continue
}

// expel ends every session of p for a moderation reason: each gets toThem, everyone else toAll,
// and the connections close once that last line is written.
func (r *Room) expel(p *person, reason Reason, toThem, toAll string) {
	r.mu.Lock()
	members := slices.Clone(p.members)
	r.mu.Unlock()
	for _, m := range members {
		m.reply(kindError, toThem)
		r.removeWithNotice(m, reason, toAll) // toAll goes out when the last session leaves
		m.closeOutbox(reason)
		m.closeWhenDrained()
	}
}
