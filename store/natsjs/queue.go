package natsjs

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// queued is a line waiting to be published.
type queued struct {
	ticket uint64 // its place among every Append, from 1
	room   string
	subj   string
	data   []byte
}

// queue holds Append's lines until the publisher has them acknowledged, within MaxBacklog. A
// ticket numbers every line accepted; done is the highest ticket below which every line is
// settled (acknowledged, or given up at Close), which is what Flush waits for.
type queue struct {
	mu      sync.Mutex
	items   []queued
	max     int
	next    uint64        // the next ticket
	done    uint64        // every ticket <= done is settled
	settled chan struct{} // closed, and replaced, whenever done moves
	wake    chan struct{} // capacity 1: there are items, or the queue is closing
	closing bool
	// dropped counts the lines refused as over the backlog since the last Flush that said so;
	// abandoned, those the publisher gave up at Close.
	dropped   int
	abandoned int
	// dropNoted: a drop was logged and no line has been accepted since; the next drop of a
	// new episode is logged again.
	dropNoted bool
}

func (q *queue) init(max int) {
	q.max = max
	q.next = 1
	q.settled = make(chan struct{})
	q.wake = make(chan struct{}, 1)
}

// push queues a line, or reports false (and counts it) when the backlog is full or the queue
// closing. firstDrop is true for the first drop after an accepted line, which is worth a log.
func (q *queue) push(room, subj string, data []byte) (ok, firstDrop bool) {
	q.mu.Lock()
	if q.closing || len(q.items) >= q.max {
		q.dropped++
		firstDrop = !q.dropNoted
		q.dropNoted = true
		q.mu.Unlock()
		return false, firstDrop
	}
	q.items = append(q.items, queued{ticket: q.next, room: room, subj: subj, data: data})
	q.next++
	q.dropNoted = false
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true, false
}

// take removes and returns up to n of the oldest lines; none once the queue is empty.
func (q *queue) take(n int) []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.items))
	if n == 0 {
		return nil
	}
	batch := make([]queued, n)
	copy(batch, q.items)
	q.items = append(q.items[:0], q.items[n:]...)
	return batch
}

// settle records that every line up to ticket is done with; gaveUp of them were given up.
func (q *queue) settle(ticket uint64, gaveUp int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.abandoned += gaveUp
	if ticket > q.done {
		q.done = ticket
		close(q.settled)
		q.settled = make(chan struct{})
	}
}

// last is the ticket of the newest line accepted.
func (q *queue) last() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.next - 1
}

// wait returns once every line up to ticket is settled, or ctx is done.
func (q *queue) wait(ctx context.Context, ticket uint64) error {
	for {
		q.mu.Lock()
		done, settled := q.done, q.settled
		q.mu.Unlock()
		if done >= ticket {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-settled:
		}
	}
}

// flush waits for every line accepted before the call, then reports the lines dropped since the
// last report.
func (q *queue) flush(ctx context.Context) error {
	if err := q.wait(ctx, q.last()); err != nil {
		return err
	}
	q.mu.Lock()
	dropped := q.dropped
	q.dropped = 0
	q.mu.Unlock()
	if dropped > 0 {
		return fmt.Errorf("flush: %d messages were dropped: NATS was too slow or unreachable and the backlog was full", dropped)
	}
	return nil
}

// close refuses further lines and waits, for at most timeout, until the publisher has settled
// what is queued.
func (q *queue) close(timeout time.Duration) {
	q.mu.Lock()
	q.closing = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	q.wait(ctx, q.last())
}

// unpublished is how many lines were accepted and never published: still queued, or given up.
// It is final once the publisher has stopped.
func (q *queue) unpublished() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) + q.abandoned
}

// isClosing reports whether close was called.
func (q *queue) isClosing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closing
}
