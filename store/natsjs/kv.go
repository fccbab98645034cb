package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// getJSON reads the record under key: its value, its revision, and whether it is there.
func getJSON[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, uint64, bool, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, 0, false, nil
	}
	if err != nil {
		return v, 0, false, fmt.Errorf("read %s %s: %w", kv.Bucket(), key, err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, false, fmt.Errorf("read %s %s: %w", kv.Bucket(), key, err)
	}
	return v, e.Revision(), true, nil
}

// action is what a read-modify-write does with the record it read.
type action int

const (
	keep   action = iota // nothing to write
	write                // write the changed record
	remove               // delete the record
)

// modify changes the record under key with compare-and-set: it reads it (rev is its revision,
// 0 when it is not there, *v then the zero value), lets f change *v and say what to do, and
// writes with the revision it read, so that a write in between, from this process or another, makes
// it read and decide again. f may run several times: whatever it reports must be reset at its
// start. modify returns the revision written, or 0 when nothing was.
func modify[T any](ctx context.Context, kv jetstream.KeyValue, key string, f func(v *T, rev uint64) (action, error)) (uint64, error) {
	for attempt := 0; ; attempt++ {
		v, rev, found, err := getJSON[T](ctx, kv, key)
		if err != nil {
			return 0, err
		}
		act, err := f(&v, rev)
		if err != nil || act == keep || act == remove && !found {
			return 0, err
		}
		var written uint64
		if act == remove {
			err = kv.Delete(ctx, key, jetstream.LastRevision(rev))
		} else {
			data, merr := json.Marshal(v)
			if merr != nil {
				return 0, merr
			}
			if found {
				written, err = kv.Update(ctx, key, data, rev)
			} else {
				written, err = kv.Create(ctx, key, data)
			}
		}
		if err == nil {
			return written, nil
		}
		if !isConflict(err) {
			return 0, fmt.Errorf("write %s %s: %w", kv.Bucket(), key, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, fmt.Errorf("write %s %s: %w", kv.Bucket(), key, err)
		}
	}
}

// isConflict reports whether a write lost a compare-and-set to another writer.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// backoff waits before attempt+1 of a compare-and-set that lost: not at all for the first few
// (the winner is done, the read will see it), then a few random milliseconds, so that writers
// racing for one record, or a replica a moment behind its leader, do not spin.
func backoff(ctx context.Context, attempt int) error {
	if attempt < 3 {
		return ctx.Err()
	}
	d := time.Duration(1+rand.IntN(min(attempt, 20))) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
