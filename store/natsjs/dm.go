package natsjs

import (
	"fmt"

	"chatd/chat"
)

// QueueDM stores dm for its recipient (dm.To, compared case-insensitively) until TakeDMs, and
// returns it with its ID and its time as stored (a zero dm.At is now). The recipient's queue is
// one record, changed with compare-and-set, so that its caps hold between senders on every
// node: a *LimitError when MaxQueuedDMsPerSender of the waiting messages are from dm.From
// (ErrSenderQueueFull), MaxQueuedDMsPerAddr from dm.FromAddr (ErrAddrQueueFull; an empty
// address is not counted), or MaxQueuedDMs in all (ErrQueueFull), checked in that order.
func (s *Store) QueueDM(dm chat.DM) (chat.DM, error) {
	if s.isClosed() {
		return chat.DM{}, fmt.Errorf("queue dm: %w", errClosed)
	}
	if !chat.ValidName(dm.To) {
		return chat.DM{}, fmt.Errorf("queue dm: invalid recipient %q", dm.To)
	}
	at := ms(dm.At)
	if at == 0 {
		at = s.now()
	}
	ctx, cancel := s.call()
	defer cancel()
	id, err := s.nextID(ctx, "dm")
	if err != nil {
		return chat.DM{}, fmt.Errorf("queue dm: %w", err)
	}
	rec := dmRec{ID: id, At: at, From: dm.From, Addr: dm.FromAddr, To: dm.To, Text: dm.Text}
	sender := chat.Fold(dm.From)
	_, err = modify(ctx, s.dms, nameToken(chat.Fold(dm.To)), func(q *dmsRec, _ uint64) (action, error) {
		var fromSender, fromAddr int
		for _, d := range q.DMs {
			if chat.Fold(d.From) == sender {
				fromSender++
			}
			if dm.FromAddr != "" && d.Addr == dm.FromAddr {
				fromAddr++
			}
		}
		if limit := s.cfg.DMQueueFull(len(q.DMs), fromSender, fromAddr, dm.FromAddr != ""); limit != nil {
			return keep, fmt.Errorf("for %s: %w", dm.To, limit)
		}
		q.DMs = append(q.DMs, rec)
		return write, nil
	})
	if err != nil {
		return chat.DM{}, fmt.Errorf("queue dm: %w", err)
	}
	return rec.dm(), nil
}

// TakeDMs returns the private messages waiting for name (case-insensitively), oldest first, and
// deletes them: the queue is deleted with the revision it was read at, so that of concurrent
// takers, on any node, each message goes to exactly one, and none queued meanwhile is lost.
func (s *Store) TakeDMs(name string) ([]chat.DM, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("take dms: %w", errClosed)
	}
	if !chat.ValidName(name) {
		return nil, nil
	}
	ctx, cancel := s.call()
	defer cancel()
	var taken []chat.DM
	_, err := modify(ctx, s.dms, nameToken(chat.Fold(name)), func(q *dmsRec, _ uint64) (action, error) {
		taken = taken[:0]
		for _, d := range q.DMs {
			taken = append(taken, d.dm())
		}
		if len(taken) == 0 {
			return keep, nil
		}
		return remove, nil
	})
	if err != nil {
		return nil, fmt.Errorf("take dms: %w", err)
	}
	if len(taken) == 0 {
		return nil, nil
	}
	return taken, nil
}
