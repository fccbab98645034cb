package chat

import "fmt"

// StoreLimits are the caps every room.Store keeps on what people can make it hold: queued
// private messages, names per key, keys per name, web tokens per name. store/sqlite and
// store/natsjs embed them in their configurations, so that one cluster and one process hold
// people to the same numbers; store/storetest checks their meaning. The zero value of a field
// means its default.
type StoreLimits struct {
	// MaxQueuedDMs is how many private messages may wait for one recipient. Default 100.
	MaxQueuedDMs int
	// MaxQueuedDMsPerSender is how many of them may come from one sender (by name). Default 10:
	// enough to leave a note and a follow-up or two, so that one sender cannot fill the queue
	// and lock everyone else out of it.
	MaxQueuedDMsPerSender int
	// MaxQueuedDMsPerAddr is how many of them may come from one address, whatever the names.
	// Default 20: names are free for keyless users, an address is not, so this is the cap that
	// holds against one machine sending under many names; a household or office sharing an
	// address still has room.
	MaxQueuedDMsPerAddr int
	// MaxNamesPerKey is how many names one key may hold (as an active key). Default 5: a person's
	// name, a nick or two and a bot, while one key cannot hoard names.
	MaxNamesPerKey int
	// MaxKeysPerName is how many keys, active and pending together, a name may have. Default
	// 20: every machine someone uses with room to spare, while /keys and a ban stay short.
	MaxKeysPerName int
	// MaxWebTokensPerName is how many unexpired web tokens a name may hold: browser sessions,
	// bot tokens and sign-in links together. Default 50: every browser and bot someone has,
	// while whoever holds a name cannot grow the table without end.
	MaxWebTokensPerName int
}

// DefaultStoreLimits returns the defaults.
func DefaultStoreLimits() StoreLimits {
	return StoreLimits{
		MaxQueuedDMs:          100,
		MaxQueuedDMsPerSender: 10,
		MaxQueuedDMsPerAddr:   20,
		MaxNamesPerKey:        5,
		MaxKeysPerName:        20,
		MaxWebTokensPerName:   50,
	}
}

// WithDefaults returns l with every zero field set to its default.
func (l StoreLimits) WithDefaults() StoreLimits {
	d := DefaultStoreLimits()
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&l.MaxQueuedDMs, d.MaxQueuedDMs},
		{&l.MaxQueuedDMsPerSender, d.MaxQueuedDMsPerSender},
		{&l.MaxQueuedDMsPerAddr, d.MaxQueuedDMsPerAddr},
		{&l.MaxNamesPerKey, d.MaxNamesPerKey},
		{&l.MaxKeysPerName, d.MaxKeysPerName},
		{&l.MaxWebTokensPerName, d.MaxWebTokensPerName},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return l
}

// Validate reports the first negative cap, by name.
func (l StoreLimits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max queued DMs", l.MaxQueuedDMs},
		{"max queued DMs per sender", l.MaxQueuedDMsPerSender},
		{"max queued DMs per address", l.MaxQueuedDMsPerAddr},
		{"max names per key", l.MaxNamesPerKey},
		{"max keys per name", l.MaxKeysPerName},
		{"max web tokens per name", l.MaxWebTokensPerName},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s %d is negative", f.name, f.v)
		}
	}
	return nil
}

// DMQueueFull says whether one more private message may wait for a recipient who has waiting
// messages already, fromSender of them from its sender and fromAddr from its address (hasAddr:
// the message has an address to count by): nil, or the cap it would pass. The sender's caps come
// first: a sender at its own cap is told so, whatever the others sent.
func (l StoreLimits) DMQueueFull(waiting, fromSender, fromAddr int, hasAddr bool) *LimitError {
	switch {
	case fromSender >= l.MaxQueuedDMsPerSender:
		return &LimitError{Err: ErrSenderQueueFull, Max: l.MaxQueuedDMsPerSender}
	case hasAddr && fromAddr >= l.MaxQueuedDMsPerAddr:
		return &LimitError{Err: ErrAddrQueueFull, Max: l.MaxQueuedDMsPerAddr}
	case waiting >= l.MaxQueuedDMs:
		return &LimitError{Err: ErrQueueFull, Max: l.MaxQueuedDMs}
	}
	return nil
}
