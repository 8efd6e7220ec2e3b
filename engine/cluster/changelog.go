package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Changelog defaults.
const (
	DefaultChangelogStream = "KAIROS_CHANGELOG"
	DefaultPrefix          = "kairos"
	// DefaultMaxBatch is nats-server's default limit of messages in one
	// atomic batch (jetstream.limits.max_batch_size).
	DefaultMaxBatch = 1000
	// DefaultTimeout bounds each request of a Changelog whose context has
	// no deadline.
	DefaultTimeout = 5 * time.Second
)

// ChangelogConfig configures the changelog stream and a Changelog.
type ChangelogConfig struct {
	// Stream is the stream's name; DefaultChangelogStream when empty.
	Stream string
	// Prefix is the first token(s) of every subject; DefaultPrefix when
	// empty. The stream holds <Prefix>.changelog.>.
	Prefix string
	// Replicas of the stream; 1 when zero.
	Replicas int
	// MaxBatch is the most messages a Commit may hold; it must not exceed
	// the server's max_batch_size. DefaultMaxBatch when zero.
	MaxBatch int
	// Timeout bounds each request made under a context without deadline;
	// DefaultTimeout when zero.
	Timeout time.Duration
}

func (c ChangelogConfig) withDefaults() ChangelogConfig {
	if c.Stream == "" {
		c.Stream = DefaultChangelogStream
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// StreamConfig returns the configuration EnsureChangelog gives the stream.
func (c ChangelogConfig) StreamConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:               c.Stream,
		Description:        "Kairos partition changelog: marks, customer records, seen markers and counters",
		Subjects:           []string{c.Prefix + ".changelog.>"},
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		MaxMsgsPerSubject:  1,
		Storage:            jetstream.FileStorage,
		Replicas:           c.Replicas,
		AllowAtomicPublish: true,
		AllowMsgTTL:        true,
		AllowDirect:        true,
	}
}

// EnsureChangelog creates the changelog stream, or updates it to
// cfg.StreamConfig() when it exists.
func EnsureChangelog(ctx context.Context, js jetstream.JetStream, cfg ChangelogConfig) (jetstream.Stream, error) {
	s, err := CreateOrUpdateStream(ctx, js, cfg.StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("cluster: ensure changelog stream %s: %w", cfg.withDefaults().Stream, err)
	}
	return s, nil
}

// Changelog writes and reads the changelog stream for one instance. It
// keeps the fence table: for every partition this instance took over, the
// sequence of the partition's mark as it last wrote it. Its methods are
// safe for concurrent use, but commits touching the same partition must be
// serialized by the caller (they would fence each other out).
type Changelog struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	cfg     ChangelogConfig
	msgGet  string // STREAM.MSG.GET API subject
	base    string // <prefix>.changelog.
	idStem  string
	idSeq   atomic.Uint64
	mu      sync.Mutex
	fences  map[int]*fence
	nowFunc func() time.Time
}

// fence is what a Changelog knows of a partition it took over.
type fence struct {
	seq    uint64 // sequence of the partition's mark as last written or read
	epoch  uint64 // sequence of this instance's takeover mark
	owner  string // instance that took it over
	fenced bool   // a commit found the mark moved by another owner
}

// NewChangelog returns a Changelog on the stream of cfg; it does no I/O.
// Call EnsureChangelog once before.
func NewChangelog(js jetstream.JetStream, cfg ChangelogConfig) *Changelog {
	cfg = cfg.withDefaults()
	var stem [8]byte
	_, _ = rand.Read(stem[:])
	return &Changelog{
		js:      js,
		nc:      js.Conn(),
		cfg:     cfg,
		msgGet:  apiPrefix(js) + "STREAM.MSG.GET." + cfg.Stream,
		base:    cfg.Prefix + ".changelog.",
		idStem:  hex.EncodeToString(stem[:]),
		fences:  make(map[int]*fence),
		nowFunc: time.Now,
	}
}

// newID returns an id unique to this attempt: 16 hex digits of this
// Changelog and a counter, far under the 64 characters a batch id may have.
func (cl *Changelog) newID() string {
	return cl.idStem + "." + strconv.FormatUint(cl.idSeq.Add(1), 36)
}

// MarkSubject returns the subject of partition p's mark.
func (cl *Changelog) MarkSubject(p int) string { return cl.base + strconv.Itoa(p) + ".mark" }

// RecordSubject returns the subject of a record of partition p.
func (cl *Changelog) RecordSubject(p int, kind RecordKind, key string) string {
	return cl.base + strconv.Itoa(p) + "." + string(rune(kind)) + "." + Token(key)
}

// CounterSubject returns the subject of a global counter.
func (cl *Changelog) CounterSubject(name string) string { return cl.base + "g." + Token(name) }

func (cl *Changelog) last(ctx context.Context, subject string) (*storedMsg, error) {
	return getLast(ctx, cl.nc, cl.msgGet, subject, cl.cfg.Timeout)
}

// epochOf returns the epoch of a stored mark: its Kairos-Epoch header, or
// its own sequence for a takeover mark.
func epochOf(m *storedMsg) uint64 {
	if v := m.Header.Get(hdrEpoch); v != "" {
		if e, err := strconv.ParseUint(v, 10, 64); err == nil {
			return e
		}
	}
	return m.Seq
}

// Takeover makes this instance the owner of partition p in the changelog:
// it reads the partition's mark (sequence S, 0 when there is none) and
// writes it again, same data, with a Kairos-Owner header naming instance,
// expecting S; when another writer raced it, it reads and tries again. It
// returns the mark's data (nil when the partition has no mark yet). From
// then on this Changelog's fence for p is the takeover mark's sequence, so
// every later commit of a former owner, which expects an older sequence,
// fails with ErrFenced.
//
// Takeover retries transient errors until ctx is done: bound it. Call it
// only while holding p's lease (Manager), and before Load.
func (cl *Changelog) Takeover(ctx context.Context, p int, instance string) ([]byte, error) {
	if p < 0 {
		return nil, fmt.Errorf("%w: partition %d", ErrInvalid, p)
	}
	if !safeToken(instance) {
		return nil, fmt.Errorf("%w: instance id %q is not [A-Za-z0-9_-]+", ErrInvalid, instance)
	}
	subject := cl.MarkSubject(p)
	id := cl.newID()
	sent := false
	var lastErr error
	for wait := time.Duration(0); ; wait = backoff(wait) {
		if wait > 0 {
			if err := sleepCtx(ctx, wait); err != nil {
				return nil, fmt.Errorf("cluster: takeover of partition %d: %w (last error: %v)", p, err, lastErr)
			}
		}
		cur, err := cl.last(ctx, subject)
		if err != nil {
			lastErr = err
			continue
		}
		var seq uint64
		var data []byte
		if cur != nil {
			if sent && cur.Header.Get(hdrCommit) == id {
				// An earlier attempt whose reply was lost was stored.
				cl.setFence(p, &fence{seq: cur.Seq, epoch: cur.Seq, owner: instance})
				return cur.Data, nil
			}
			seq, data = cur.Seq, cur.Data
		}
		m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{
			hdrOwner:        {instance},
			hdrCommit:       {id},
			hdrExpectSubSeq: {strconv.FormatUint(seq, 10)},
		}}
		ack, err := cl.js.PublishMsg(ctx, m)
		if err == nil {
			cl.setFence(p, &fence{seq: ack.Sequence, epoch: ack.Sequence, owner: instance})
			return data, nil
		}
		// Raced (wrong last sequence), busy (subject in process) or no
		// reply: read again. Without a reply the mark may have been stored.
		lastErr = err
		if apiCode(err) == 0 {
			sent = true
		}
	}
}

func (cl *Changelog) setFence(p int, f *fence) {
	cl.mu.Lock()
	cl.fences[p] = f
	cl.mu.Unlock()
}

// Forget drops partition p from the fence table: commits marking p fail
// with ErrNotTakenOver until the next Takeover. Call it when the partition
// is released or lost.
func (cl *Changelog) Forget(p int) {
	cl.mu.Lock()
	delete(cl.fences, p)
	cl.mu.Unlock()
}

// Fence returns the sequence of partition p's mark as this Changelog last
// wrote or read it, and whether p is taken over and not fenced.
func (cl *Changelog) Fence(p int) (seq uint64, ok bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	f := cl.fences[p]
	if f == nil {
		return 0, false
	}
	return f.seq, !f.fenced
}

// RecordKind is the kind of a partition record, the token after the
// partition in its subject.
type RecordKind byte

// Record kinds.
const (
	// CustomerRecord is a customer's state: <prefix>.changelog.<p>.c.<token>.
	CustomerRecord RecordKind = 'c'
	// SeenRecord is a seen marker, usually with a TTL:
	// <prefix>.changelog.<p>.s.<token>.
	SeenRecord RecordKind = 's'
)

// LoadFunc receives one record of a partition during Load: its kind, its
// key (Token decoded), its data (which fn may keep) and, for a record
// written with a TTL, the time it has left (0 for none).
type LoadFunc func(kind RecordKind, key string, data []byte, ttlLeft time.Duration) error

// Load reads the latest record of every key of partition p, customer
// records and seen markers, and calls fn for each in stream order; it skips
// tombstones and records whose TTL has run out. An error from fn stops Load
// and is returned.
//
// It reads through an ephemeral consumer (last message per subject) and
// stops once it has seen the partition's mark at this Changelog's fence or
// later and nothing is pending, so when p is taken over it returns all that
// was committed before the takeover, even when the consumer sits on a
// lagging replica. A key may then be reported more than once, as it may
// when a lost delivery makes Load start over: the last call for a key wins.
// When the mark was moved by a newer owner, Load fails with a *FencedError.
// A partition not taken over is read as it is. Load waits for the mark
// until ctx is done: bound it.
func (cl *Changelog) Load(ctx context.Context, p int, fn LoadFunc) error {
	if p < 0 {
		return fmt.Errorf("%w: partition %d", ErrInvalid, p)
	}
	cl.mu.Lock()
	var want *fence
	if f := cl.fences[p]; f != nil {
		c := *f
		want = &c
	}
	cl.mu.Unlock()
	pfx := cl.base + strconv.Itoa(p) + "."
	mark := pfx + "mark"
	var markSeen bool
	now := cl.nowFunc()
	start := func() { markSeen = want == nil }
	return cl.scan(ctx, pfx+">", start, func(m jetstream.Msg, seq uint64, ts time.Time) (bool, error) {
		if m == nil { // nothing stored
			return markSeen, nil
		}
		subject := m.Subject()
		if subject == mark {
			if want != nil && seq >= want.seq {
				if seq > want.seq && epochOfMsg(m, seq) != want.epoch {
					cl.mu.Lock()
					if f := cl.fences[p]; f != nil && f.epoch == want.epoch {
						f.fenced = true
					}
					cl.mu.Unlock()
					return false, &FencedError{Partitions: []int{p}}
				}
				markSeen = true
			}
			return markSeen, nil
		}
		rest := subject[len(pfx):]
		if len(rest) < 3 || rest[1] != '.' || (rest[0] != byte(CustomerRecord) && rest[0] != byte(SeenRecord)) {
			return markSeen, nil // not a record this package writes
		}
		h := m.Headers()
		if h.Get(hdrOp) == "del" {
			return markSeen, nil
		}
		key, err := ParseToken(rest[2:])
		if err != nil {
			return false, fmt.Errorf("%w (subject %s)", err, subject)
		}
		var left time.Duration
		if v := h.Get(hdrTTL); v != "" {
			ttl, err := parseTTL(v)
			if err != nil {
				return false, fmt.Errorf("%w (subject %s)", err, subject)
			}
			if ttl > 0 {
				if left = ttl - now.Sub(ts); left <= 0 {
					return markSeen, nil
				}
			}
		}
		return markSeen, fn(RecordKind(rest[0]), key, m.Data(), left)
	})
}

func epochOfMsg(m jetstream.Msg, seq uint64) uint64 {
	if v := m.Headers().Get(hdrEpoch); v != "" {
		if e, err := strconv.ParseUint(v, 10, 64); err == nil {
			return e
		}
	}
	return seq
}

// errGap means the scan consumer skipped a delivery, or its pull got no
// answer; the scan restarts.
var errGap = errors.New("cluster: scan consumer skipped a message")

// scanHeartbeat is the idle heartbeat of a scan's pulls. A pull sent right
// after its consumer was created is now and then lost (about 1 in 100 on a
// 3-node cluster: the client's server does not know the new consumer's
// interest yet) and nothing ever comes: the missed heartbeats tell within
// 2*scanHeartbeat and the scan starts over, instead of after the 30s of
// the default heartbeat, with a takeover (Load) waiting all along.
const scanHeartbeat = time.Second

// scan delivers the last message of every subject matching filter to fn,
// in stream order, until fn reports done and nothing is pending; fn gets a
// nil message when nothing matches. A scan that loses a delivery starts
// over, calling start first, as it does before the first.
func (cl *Changelog) scan(ctx context.Context, filter string, start func(), fn func(m jetstream.Msg, seq uint64, ts time.Time) (done bool, err error)) error {
	for wait := time.Duration(0); ; wait = backoff(wait) {
		if wait > 0 {
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
		}
		start()
		err := cl.scanOnce(ctx, filter, fn)
		if !errors.Is(err, errGap) {
			return err
		}
	}
}

func (cl *Changelog) scanOnce(ctx context.Context, filter string, fn func(m jetstream.Msg, seq uint64, ts time.Time) (bool, error)) error {
	cctx, cancel := withTimeout(ctx, cl.cfg.Timeout)
	cons, err := cl.js.CreateConsumer(cctx, cl.cfg.Stream, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     filter,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("cluster: read %s: create consumer: %w", filter, err)
	}
	info := cons.CachedInfo()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cl.cfg.Timeout)
		defer cancel()
		_ = cl.js.DeleteConsumer(dctx, cl.cfg.Stream, info.Name) // else removed when inactive
	}()
	if info.NumPending == 0 {
		if done, err := fn(nil, 0, time.Time{}); err != nil || done {
			return err
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048), jetstream.PullHeartbeat(scanHeartbeat))
	if err != nil {
		return fmt.Errorf("cluster: read %s: %w", filter, err)
	}
	defer it.Stop()
	var delivered uint64
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if errors.Is(err, jetstream.ErrNoHeartbeat) {
			return errGap
		}
		if err != nil {
			return fmt.Errorf("cluster: read %s: %w", filter, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("cluster: read %s: %w", filter, err)
		}
		if delivered++; md.Sequence.Consumer != delivered {
			return errGap
		}
		done, err := fn(m, md.Sequence.Stream, md.Timestamp)
		if err != nil {
			return err
		}
		if done && md.NumPending == 0 {
			return nil
		}
	}
}

// Counter reads a global counter from the stream leader: its value and the
// sequence to expect when updating it (CounterUpdate.Expect), both 0 when
// the counter was never written.
func (cl *Changelog) Counter(ctx context.Context, name string) (value int64, seq uint64, err error) {
	subject := cl.CounterSubject(name)
	m, err := cl.last(ctx, subject)
	if err != nil || m == nil {
		return 0, 0, err
	}
	v, err := parseCounter(m.Data)
	if err != nil {
		return 0, 0, fmt.Errorf("%w (subject %s)", err, subject)
	}
	return v, m.Seq, nil
}

// CounterValue is a counter read by Counters.
type CounterValue struct {
	Value int64
	Seq   uint64 // to expect when updating it
}

// Counters reads every global counter whose name starts with prefix
// ("" for all).
func (cl *Changelog) Counters(ctx context.Context, prefix string) (map[string]CounterValue, error) {
	pfx := cl.base + "g."
	var out map[string]CounterValue
	start := func() { out = make(map[string]CounterValue) }
	err := cl.scan(ctx, pfx+"*", start, func(m jetstream.Msg, seq uint64, _ time.Time) (bool, error) {
		if m == nil {
			return true, nil
		}
		name, err := ParseToken(m.Subject()[len(pfx):])
		if err != nil {
			return false, fmt.Errorf("%w (subject %s)", err, m.Subject())
		}
		if !strings.HasPrefix(name, prefix) {
			return true, nil
		}
		v, err := parseCounter(m.Data())
		if err != nil {
			return false, fmt.Errorf("%w (subject %s)", err, m.Subject())
		}
		out[name] = CounterValue{Value: v, Seq: seq}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// backoff grows a retry pause from 20ms to 1s.
func backoff(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return 20 * time.Millisecond
	case d >= 500*time.Millisecond:
		return time.Second
	default:
		return 2 * d
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
