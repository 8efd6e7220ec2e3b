package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// dupWindow is the duplicate window of one of the engine's output streams.
func (e *Engine) dupWindow(stream string) time.Duration {
	for _, sc := range []StreamConfig{e.cfg.Streams.Offers, e.cfg.Streams.DLQ, e.cfg.Streams.Decisions} {
		if sc.Name == stream {
			return mustDuration(sc.DuplicateWindow)
		}
	}
	return 0
}

// recoverOutbox publishes what a previous run committed but may not have
// published. Records younger than their stream's duplicate window are
// simply published again: the stream drops those it already has. For
// older ones the stream's last message on the subject tells which were
// stored (a subject's messages are stored in publish order).
func (e *Engine) recoverOutbox(ctx context.Context) error {
	var recs []*outRecord
	var keys [][]byte
	err := e.store.Outbox(func(k, v []byte) error {
		rs, err := decodeOutValue(v)
		if err != nil {
			e.log.Error("dropping a corrupt outbox record", "err", err)
		} else {
			recs = append(recs, rs...)
		}
		keys = append(keys, append([]byte(nil), k...))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	n, err := e.republish(ctx, recs)
	if err != nil {
		return fmt.Errorf("recover outbox: %w", err)
	}
	b := e.store.NewBatch()
	for _, k := range keys {
		b.DeleteOutbox(k)
	}
	if err := e.store.Commit(b); err != nil {
		return fmt.Errorf("recover outbox: %w", err)
	}
	e.log.Info("recovered the outbox", "records", len(recs), "published", n, "already_stored", len(recs)-n)
	return nil
}

// republish publishes records of an outbox again: those decided less than
// 90% of their stream's duplicate window ago blindly (the stream drops what
// it holds already), older ones only when the stream does not hold them
// (the last message on their subject tells). It returns how many it
// published.
func (e *Engine) republish(ctx context.Context, recs []*outRecord) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	now := time.Now().UnixMilli()
	skip := map[string]bool{} // msg ids already stored
	last := map[string]string{}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if now-r.DecidedAt < e.dupWindow(r.Stream).Milliseconds()*9/10 {
			continue
		}
		if _, seen := last[r.Subject]; !seen {
			last[r.Subject] = ""
			if m, err := e.js.Stream(ctx, r.Stream); err == nil {
				if raw, err := m.GetLastMsgForSubject(ctx, r.Subject); err == nil {
					last[r.Subject] = raw.Header.Get(jetstream.MsgIDHeader)
				}
			}
		}
	}
	for subj, id := range last {
		stored := false
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].Subject != subj {
				continue
			}
			if recs[i].MsgID == id {
				stored = true
			}
			if stored {
				skip[recs[i].MsgID] = true
			}
		}
	}
	n := 0
	for _, r := range recs {
		if skip[r.MsgID] {
			continue
		}
		if err := e.pub.Publish(r.natsMsg()); err != nil {
			return 0, err
		}
		n++
	}
	if err := e.pub.Flush(ctx); err != nil {
		return 0, err
	}
	return n, nil
}
