package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Mark is a partition's mark in a Commit: opaque engine data (watermarks,
// outbox) written with every commit that touches the partition. Its write
// is the commit's fence check for the partition.
type Mark struct {
	Partition int
	Data      []byte
}

// Record is a customer record or a seen marker of a partition.
type Record struct {
	Partition int
	Kind      RecordKind // CustomerRecord or SeenRecord
	Key       string     // customer or marker id; the subject holds Token(Key)
	Data      []byte
	// TTL, when positive, makes the server remove the record that long
	// after it is stored (whole seconds, rounded up; at least 1s).
	TTL time.Duration
	// Delete writes a tombstone instead of Data: Load skips the key. With
	// a TTL the tombstone itself goes away after it.
	Delete bool
}

// CounterUpdate sets a global counter to Value if its sequence is still
// Expect (0: the counter must not exist), as read by Counter or left by the
// previous commit in Seq.
type CounterUpdate struct {
	Name   string
	Value  int64
	Expect uint64
	// Seq is set by a successful Commit: the counter's new sequence, to
	// expect in the next update.
	Seq uint64
}

// Commit is one atomic write to the changelog: the marks of the partitions
// it touches, counter updates and records. Each record's partition must
// have its mark in the same Commit.
//
// After a failure that is not ErrFenced, ErrConflict, ErrTooLarge,
// ErrNotTakenOver or ErrInvalid, retry with the same *Commit, unchanged:
// when the earlier attempt's reply was lost, the Commit remembers it and
// the retry finds out whether it was stored instead of writing it twice.
type Commit struct {
	Marks    []Mark
	Counters []CounterUpdate
	Records  []Record

	// Seq is set by a successful Commit: the stream sequence of the last
	// message. The batch's messages have the consecutive sequences
	// Seq-n+1 .. Seq, in the order marks, counters, records.
	Seq uint64

	unknown []string // ids of attempts whose reply was lost
}

// Len returns the number of messages of the commit's batch.
func (c *Commit) Len() int { return len(c.Marks) + len(c.Counters) + len(c.Records) }

// errNotSent wraps a failure to send a batch: nothing was committed.
var errNotSent = errors.New("cluster: batch not sent")

// fenceRef is what a commit expects of a partition's mark.
type fenceRef struct {
	p          int
	seq, epoch uint64
}

// Commit writes c as one JetStream atomic batch: all of it is stored or
// nothing. Each mark is written expecting its partition's fence (the mark's
// sequence as this Changelog last wrote or read it) and each counter
// expecting CounterUpdate.Expect. On success it advances the fences, and
// sets c.Seq and each CounterUpdate.Seq. Failures:
//
//   - *FencedError (ErrFenced): a partition's mark was moved by another
//     owner; ownership is lost. Later commits marking it fail at once.
//   - *ConflictError (ErrConflict): only counters moved. Re-read them,
//     update Value and Expect, and commit again.
//   - ErrTooLarge: split the commit.
//   - ErrNotTakenOver, ErrInvalid: the commit is wrong, or the stream does
//     not allow atomic batches; nothing was stored.
//   - anything else is transient (a leader election, a timeout, too many
//     batches in flight, a subject in process): retry the same *Commit.
//
// An empty Commit succeeds without I/O.
func (cl *Changelog) Commit(ctx context.Context, c *Commit) error {
	n := c.Len()
	if n == 0 {
		return nil
	}
	msgs, refs, err := cl.build(c)
	if err != nil {
		return err
	}
	if len(c.unknown) > 0 {
		last, ok, err := cl.findStored(ctx, c, n)
		if err != nil {
			return fmt.Errorf("cluster: commit of %d messages: outcome of an earlier attempt: %w", n, err)
		}
		if ok {
			cl.committed(c, refs, last)
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		// Nothing sent: a batch without its commit would hold one of the
		// stream's in-flight batch slots until the server drops it.
		return fmt.Errorf("cluster: commit of %d messages: %w", n, err)
	}
	id := cl.newID()
	ack, err := cl.publish(ctx, id, msgs, len(c.Marks)+len(c.Counters))
	if err == nil {
		cl.committed(c, refs, ack.Seq)
		return nil
	}
	return cl.failed(ctx, c, refs, id, err)
}

// build validates c and returns its messages, and what it expects of each
// mark, in batch order.
func (cl *Changelog) build(c *Commit) ([]*nats.Msg, []fenceRef, error) {
	n := c.Len()
	if n > cl.cfg.MaxBatch {
		return nil, nil, fmt.Errorf("%w: %d messages, at most %d", ErrTooLarge, n, cl.cfg.MaxBatch)
	}
	if len(c.Marks) == 0 && len(c.Records) > 0 {
		return nil, nil, fmt.Errorf("%w: records without marks are not fenced", ErrInvalid)
	}
	maxPayload := int(cl.nc.MaxPayload())
	msgs := make([]*nats.Msg, 0, n)
	refs := make([]fenceRef, 0, len(c.Marks))
	add := func(subject string, data []byte, h nats.Header) error {
		// 160 bytes cover the batch and commit headers added per attempt.
		if size := len(data) + headerLen(h) + 160; maxPayload > 0 && size > maxPayload {
			return fmt.Errorf("%w: %s: %d bytes, max payload %d", ErrTooLarge, subject, size, maxPayload)
		}
		msgs = append(msgs, &nats.Msg{Subject: subject, Data: data, Header: h})
		return nil
	}

	cl.mu.Lock()
	var fenced []int
	for _, mk := range c.Marks {
		if mk.Partition < 0 {
			cl.mu.Unlock()
			return nil, nil, fmt.Errorf("%w: partition %d", ErrInvalid, mk.Partition)
		}
		if slices.ContainsFunc(refs, func(r fenceRef) bool { return r.p == mk.Partition }) {
			cl.mu.Unlock()
			return nil, nil, fmt.Errorf("%w: partition %d marked twice", ErrInvalid, mk.Partition)
		}
		f := cl.fences[mk.Partition]
		switch {
		case f == nil:
			cl.mu.Unlock()
			return nil, nil, fmt.Errorf("%w: partition %d", ErrNotTakenOver, mk.Partition)
		case f.fenced:
			fenced = append(fenced, mk.Partition)
		}
		refs = append(refs, fenceRef{p: mk.Partition, seq: f.seq, epoch: f.epoch})
		if err := add(cl.MarkSubject(mk.Partition), mk.Data, nats.Header{
			hdrOwner:        {f.owner},
			hdrEpoch:        {strconv.FormatUint(f.epoch, 10)},
			hdrExpectSubSeq: {strconv.FormatUint(f.seq, 10)},
		}); err != nil {
			cl.mu.Unlock()
			return nil, nil, err
		}
	}
	cl.mu.Unlock()
	if len(fenced) > 0 {
		return nil, nil, &FencedError{Partitions: fenced}
	}

	for i, cu := range c.Counters {
		for _, prev := range c.Counters[:i] {
			if prev.Name == cu.Name {
				return nil, nil, fmt.Errorf("%w: counter %q updated twice", ErrInvalid, cu.Name)
			}
		}
		if err := add(cl.CounterSubject(cu.Name), appendCounter(nil, cu.Value), nats.Header{
			hdrExpectSubSeq: {strconv.FormatUint(cu.Expect, 10)},
		}); err != nil {
			return nil, nil, err
		}
	}

	for _, r := range c.Records {
		if r.Kind != CustomerRecord && r.Kind != SeenRecord {
			return nil, nil, fmt.Errorf("%w: record kind %q", ErrInvalid, rune(r.Kind))
		}
		if !slices.ContainsFunc(refs, func(f fenceRef) bool { return f.p == r.Partition }) {
			return nil, nil, fmt.Errorf("%w: record of partition %d without the partition's mark", ErrInvalid, r.Partition)
		}
		h := nats.Header{}
		data := r.Data
		if r.Delete {
			h[hdrOp] = []string{"del"}
			data = nil
		}
		if r.TTL > 0 {
			h[hdrTTL] = []string{formatTTL(r.TTL)}
		}
		if err := add(cl.RecordSubject(r.Partition, r.Kind, r.Key), data, h); err != nil {
			return nil, nil, err
		}
	}
	return msgs, refs, nil
}

// publish sends msgs as one atomic batch with id and returns the commit's
// acknowledgement. The first nID messages (marks and counters) carry the
// id in Kairos-Commit.
func (cl *Changelog) publish(ctx context.Context, id string, msgs []*nats.Msg, nID int) (*pubAck, error) {
	for i, m := range msgs {
		m.Header[hdrBatchID] = []string{id}
		m.Header[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
		if i < nID {
			m.Header[hdrCommit] = []string{id}
		}
	}
	last := msgs[len(msgs)-1]
	last.Header[hdrBatchCommit] = []string{"1"}
	// The server stages the messages before the last without replying to
	// them; a failure among them surfaces as the commit's error.
	for _, m := range msgs[:len(msgs)-1] {
		if err := cl.nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("%w: %w", errNotSent, err)
		}
	}
	rctx, cancel := withTimeout(ctx, cl.cfg.Timeout)
	defer cancel()
	resp, err := cl.nc.RequestMsgWithContext(rctx, last)
	if err != nil {
		return nil, err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, fmt.Errorf("cluster: decode batch ack: %w", err)
	}
	if ack.Error != nil {
		return nil, ack.Error
	}
	if ack.Batch != id || ack.Count != len(msgs) || ack.Seq < uint64(len(msgs)) {
		return nil, fmt.Errorf("cluster: batch %s of %d messages acknowledged as batch %q of %d at %d", id, len(msgs), ack.Batch, ack.Count, ack.Seq)
	}
	return &ack, nil
}

// committed records that c was stored with last as its last sequence.
func (cl *Changelog) committed(c *Commit, refs []fenceRef, last uint64) {
	first := last - uint64(c.Len()) + 1
	cl.mu.Lock()
	for i, r := range refs {
		if f := cl.fences[r.p]; f != nil && f.epoch == r.epoch && !f.fenced {
			f.seq = first + uint64(i)
		}
	}
	cl.mu.Unlock()
	for j := range c.Counters {
		c.Counters[j].Seq = first + uint64(len(c.Marks)+j)
	}
	c.Seq = last
	c.unknown = nil
}

// findStored looks for an earlier attempt of c whose reply was lost in its
// first mark (or counter): all of a batch's marks and counters carry its
// id. It returns the attempt's last sequence.
func (cl *Changelog) findStored(ctx context.Context, c *Commit, n int) (uint64, bool, error) {
	// A commit has marks or counters (build checks it); most have no
	// counter, so the counter's subject is taken only without marks.
	var subject string
	if len(c.Marks) > 0 {
		subject = cl.MarkSubject(c.Marks[0].Partition)
	} else {
		subject = cl.CounterSubject(c.Counters[0].Name)
	}
	m, err := cl.last(ctx, subject)
	if err != nil || m == nil {
		return 0, false, err
	}
	if slices.Contains(c.unknown, m.Header.Get(hdrCommit)) {
		return m.Seq + uint64(n) - 1, true, nil
	}
	return 0, false, nil
}

// failed classifies the failure of attempt id of c.
func (cl *Changelog) failed(ctx context.Context, c *Commit, refs []fenceRef, id string, err error) error {
	n := c.Len()
	code := apiCode(err)
	switch {
	case code == codeBatchTooLarge || code == codeMsgTooBig || errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %d messages: %w", ErrTooLarge, n, err)
	case code == codeWrongLastSeq:
		return cl.diagnose(ctx, c, refs, err)
	case code == codeAtomicDisabled:
		return fmt.Errorf("%w: stream %s does not allow atomic batches (EnsureChangelog configures it): %w", ErrInvalid, cl.cfg.Stream, err)
	case code != 0 || errors.Is(err, errNotSent) || errors.Is(err, nats.ErrNoResponders):
		// Refused, or the commit never reached a stream: nothing stored.
		return fmt.Errorf("cluster: commit of %d messages: %w", n, err)
	default:
		// No reply: the batch may have been stored.
		if len(c.unknown) == 16 {
			c.unknown = c.unknown[1:]
		}
		c.unknown = append(c.unknown, id)
		return fmt.Errorf("cluster: commit of %d messages, outcome unknown (retry the same Commit): %w", n, err)
	}
}

// diagnose finds out which expectation failed: a mark moved by another
// owner (fenced), or a counter. A mark moved by this owner means an
// earlier commit whose reply was lost was stored after all: if it is an
// attempt of c, c succeeded.
func (cl *Changelog) diagnose(ctx context.Context, c *Commit, refs []fenceRef, cause error) error {
	n := c.Len()
	var fenced []int
	own := false
	for i, r := range refs {
		m, err := cl.last(ctx, cl.MarkSubject(r.p))
		if err != nil {
			return fmt.Errorf("cluster: commit of %d messages failed a sequence check (%v); reading the marks: %w", n, cause, err)
		}
		if m != nil && slices.Contains(c.unknown, m.Header.Get(hdrCommit)) {
			cl.committed(c, refs, m.Seq-uint64(i)+uint64(n)-1)
			return nil
		}
		var seq uint64
		if m != nil {
			seq = m.Seq
		}
		switch {
		case seq == r.seq:
		case m != nil && epochOf(m) == r.epoch:
			own = true
			cl.mu.Lock()
			if f := cl.fences[r.p]; f != nil && f.epoch == r.epoch && f.seq < m.Seq {
				f.seq = m.Seq
			}
			cl.mu.Unlock()
		default:
			fenced = append(fenced, r.p)
		}
	}
	if len(fenced) > 0 {
		cl.mu.Lock()
		for _, p := range fenced {
			if f := cl.fences[p]; f != nil {
				f.fenced = true
			}
		}
		cl.mu.Unlock()
		slices.Sort(fenced)
		return &FencedError{Partitions: fenced}
	}
	conflict := &ConflictError{}
	for j, cu := range c.Counters {
		m, err := cl.last(ctx, cl.CounterSubject(cu.Name))
		if err != nil {
			return fmt.Errorf("cluster: commit of %d messages failed a sequence check (%v); reading the counters: %w", n, cause, err)
		}
		if m != nil && len(refs) == 0 && slices.Contains(c.unknown, m.Header.Get(hdrCommit)) {
			cl.committed(c, refs, m.Seq-uint64(j)+uint64(n)-1)
			return nil
		}
		var seq uint64
		if m != nil {
			seq = m.Seq
		}
		if seq != cu.Expect {
			conflict.Counters = append(conflict.Counters, cu.Name)
		}
	}
	if len(conflict.Counters) == 0 && !own {
		// Nothing visibly moved: what was checked changed and changed
		// back, or a replica lagged. Retrying is right either way.
		return fmt.Errorf("%w (%v)", conflict, cause)
	}
	slices.Sort(conflict.Counters)
	return conflict
}
