package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Manager defaults.
const (
	DefaultBucket   = "KAIROS_CLUSTER"
	DefaultLeaseTTL = 6 * time.Second
)

// metaPartitions is the bucket metadata key holding the partition count.
const metaPartitions = "kairos_partitions"

// ManagerConfig configures a Manager. Every instance of a cluster must use
// the same Bucket, Partitions and LeaseTTL.
type ManagerConfig struct {
	// JetStream is the handle the manager uses; required.
	JetStream jetstream.JetStream
	// Bucket is the KV bucket of members and leases; DefaultBucket when
	// empty.
	Bucket string
	// Instance is this instance's id, unique in the cluster and stable
	// across restarts: [A-Za-z0-9_-]+. Required.
	Instance string
	// Partitions is the partition count; DefaultPartitions when zero.
	Partitions int
	// LeaseTTL is how long a member key or a lease lives without renewal
	// (the bucket's max age); at least one second, DefaultLeaseTTL when
	// zero. Keys are renewed every LeaseTTL/3.
	LeaseTTL time.Duration
	// Replicas of the bucket; 1 when zero.
	Replicas int
	// ReleaseTimeout bounds the graceful release when Run's context ends;
	// LeaseTTL when zero.
	ReleaseTimeout time.Duration
	// Logger receives the manager's logs; discarded when nil.
	Logger *slog.Logger
	// Advertise is stored as the value of the instance's member key
	// ("members.<instance>") for others to read: the engine puts its HTTP
	// address there. The instance id when empty.
	Advertise string
}

// Kind is the kind of a Change.
type Kind int

// Change kinds.
const (
	// Acquired: the manager holds the partition's lease. Take the partition
	// over (Changelog.Takeover, then Load), start processing it, then Ack.
	Acquired Kind = iota + 1
	// Release: the manager wants to give the partition up (rebalance or
	// shutdown). Stop processing it, finish or abandon the batch in flight,
	// then Ack; only then does the manager delete the lease.
	Release
	// Lost: the lease could not be renewed and may be held by another
	// instance. Stop processing the partition at once (its commits will
	// fail with ErrFenced anyway), then Ack.
	Lost
)

func (k Kind) String() string {
	switch k {
	case Acquired:
		return "acquired"
	case Release:
		return "release"
	case Lost:
		return "lost"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Change tells the engine about a partition. The manager sends the next
// Change of a partition only after the previous one was acknowledged, so
// the engine may handle the changes of different partitions concurrently.
type Change struct {
	Partition int
	Kind      Kind
	ack       func()
}

// Ack acknowledges the change. It never blocks, may be called from any
// goroutine, and more than once (later calls do nothing).
func (c Change) Ack() {
	if c.ack != nil {
		c.ack()
	}
}

// Stats are a Manager's counters since it started.
type Stats struct {
	Members       int    // members in the manager's view, itself included
	Owned         int    // leases held
	Acquired      uint64 // Acquired changes sent
	Released      uint64 // leases given up gracefully
	Lost          uint64 // Lost changes sent
	Renewals      uint64 // successful lease and member renewals
	RenewErrors   uint64 // renewals that failed
	AcquireErrors uint64 // acquisitions that failed for another reason than a held lease
	// RenewRound is how long the last renewal of the member key and every
	// lease took; it must stay well under LeaseTTL/3.
	RenewRound time.Duration
}

// Manager keeps this instance's membership and the leases of the partitions
// assigned to it in a JetStream KV bucket, and reports every change of
// ownership on Changes. See the package documentation for the protocol.
type Manager struct {
	cfg     ManagerConfig
	log     *slog.Logger
	changes chan Change
	started atomic.Bool

	ackMu   sync.Mutex
	acks    []uint64
	ackNote chan struct{}

	snapMu  sync.Mutex
	owned   []int
	members int

	acquired, released, lost     atomic.Uint64
	renewals, renewErrs, acqErrs atomic.Uint64
	renewRound                   atomic.Int64 // nanoseconds

	// Clock and test hooks.
	now       func() time.Time
	newTicker func(time.Duration) (<-chan time.Time, func())
	pauseCh   chan chan struct{} // receives a channel the loop waits on
	crashed   atomic.Bool        // when set, Run returns at ctx end without releasing
	muteWatch atomic.Bool        // when set, the watcher's updates are dropped, as by a stalled one, until it restarts
}

// NewManager checks cfg and returns a Manager; it does no I/O.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.JetStream == nil {
		return nil, fmt.Errorf("%w: manager needs a JetStream handle", ErrInvalid)
	}
	if !safeToken(cfg.Instance) {
		return nil, fmt.Errorf("%w: instance id %q is not [A-Za-z0-9_-]+", ErrInvalid, cfg.Instance)
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.Partitions < 0 || cfg.Partitions > 1<<16 {
		return nil, fmt.Errorf("%w: %d partitions", ErrInvalid, cfg.Partitions)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.LeaseTTL < time.Second {
		return nil, fmt.Errorf("%w: lease TTL %v under one second", ErrInvalid, cfg.LeaseTTL)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.ReleaseTimeout == 0 {
		cfg.ReleaseTimeout = cfg.LeaseTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		cfg:     cfg,
		log:     log.With("component", "cluster", "instance", cfg.Instance),
		changes: make(chan Change),
		ackNote: make(chan struct{}, 1),
		now:     time.Now,
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
		pauseCh: make(chan chan struct{}),
	}, nil
}

// Changes returns the channel of ownership changes. Read it until it is
// closed, which Run does when it returns, and Ack every change.
func (m *Manager) Changes() <-chan Change { return m.changes }

// Owned returns the partitions whose lease the manager holds, sorted,
// including those with an Acquired or Release change not yet acknowledged.
func (m *Manager) Owned() []int {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	return slices.Clone(m.owned)
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats {
	m.snapMu.Lock()
	s := Stats{Members: m.members, Owned: len(m.owned)}
	m.snapMu.Unlock()
	s.Acquired, s.Released, s.Lost = m.acquired.Load(), m.released.Load(), m.lost.Load()
	s.Renewals, s.RenewErrors, s.AcquireErrors = m.renewals.Load(), m.renewErrs.Load(), m.acqErrs.Load()
	s.RenewRound = time.Duration(m.renewRound.Load())
	return s
}

func (m *Manager) ack(id uint64) {
	m.ackMu.Lock()
	m.acks = append(m.acks, id)
	m.ackMu.Unlock()
	select {
	case m.ackNote <- struct{}{}:
	default:
	}
}

// Run joins the cluster and keeps this instance's membership and leases
// until ctx ends; then it gives every partition up gracefully (Release
// changes, bounded by ReleaseTimeout), leaves, closes Changes and returns
// nil. It returns an error only when the bucket cannot be opened or does
// not match the configuration (ErrConfigMismatch); NATS failures while
// running are retried. Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(m.changes)
	kv, err := m.openBucket(ctx)
	if err != nil {
		return err
	}
	l := newLoop(m, kv)
	return l.run(ctx)
}

// bucketConfig is the configuration openBucket creates the bucket with.
func (m *Manager) bucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         m.cfg.Bucket,
		Description:    "Kairos cluster members and partition leases",
		History:        1,
		TTL:            m.cfg.LeaseTTL,
		LimitMarkerTTL: m.cfg.LeaseTTL,
		Replicas:       m.cfg.Replicas,
		Storage:        jetstream.FileStorage,
		Metadata:       map[string]string{metaPartitions: strconv.Itoa(m.cfg.Partitions)},
	}
}

// openBucket creates the bucket, or opens it and checks that its lease TTL
// and partition count are this manager's.
func (m *Manager) openBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := m.cfg.JetStream.CreateKeyValue(ctx, m.bucketConfig())
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) {
		return nil, fmt.Errorf("cluster: create bucket %s: %w", m.cfg.Bucket, err)
	}
	if kv, err = m.cfg.JetStream.KeyValue(ctx, m.cfg.Bucket); err != nil {
		return nil, fmt.Errorf("cluster: open bucket %s: %w", m.cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: open bucket %s: %w", m.cfg.Bucket, err)
	}
	if st.TTL() != m.cfg.LeaseTTL || st.LimitMarkerTTL() == 0 || st.Metadata()[metaPartitions] != strconv.Itoa(m.cfg.Partitions) {
		return nil, fmt.Errorf("%w: bucket %s has TTL %v, marker TTL %v, %q partitions; this instance wants TTL %v, %d partitions",
			ErrConfigMismatch, m.cfg.Bucket, st.TTL(), st.LimitMarkerTTL(), st.Metadata()[metaPartitions], m.cfg.LeaseTTL, m.cfg.Partitions)
	}
	return kv, nil
}

// phase is where a partition is in its lifecycle on this instance.
type phase int

const (
	idle      phase = iota // lease not held
	acquiring              // lease held, Acquired not acknowledged
	active                 // lease held, the engine processes the partition
	releasing              // lease held, Release not acknowledged
	losing                 // lease lost, Lost not acknowledged
	deleting               // released by the engine, the lease's delete is retried
)

type part struct {
	phase      phase
	rev        uint64    // lease revision while held
	validUntil time.Time // when the lease may expire: last renewal sent + TTL
	out        uint64    // id of the change waiting for its Ack, 0 for none
	gone       bool      // lease lost while a change was outstanding
	unsure     bool      // the last renewal got no answer: it may have been stored
}

// held reports whether the lease is held and renewed.
func (p *part) held() bool {
	return (p.phase == acquiring || p.phase == active || p.phase == releasing) && !p.gone
}

// event is a watcher update forwarded to the loop.
type event struct {
	entry  jetstream.KeyValueEntry // nil with init: the initial values are all in
	init   bool
	closed bool
}

// eventQueue is an unbounded queue, so the watcher never waits on the loop.
type eventQueue struct {
	mu     sync.Mutex
	events []event
	note   chan struct{}
}

func (q *eventQueue) push(e event) {
	q.mu.Lock()
	q.events = append(q.events, e)
	q.mu.Unlock()
	select {
	case q.note <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.events
	q.events = nil
	return e
}

// loop is the state of Run; only its goroutine touches it.
type loop struct {
	m            *Manager
	kv           jetstream.KeyValue
	self         string
	n            int
	ttl          time.Duration
	opTime       time.Duration
	parts        []part
	queue        []Change // changes not yet delivered
	nextID       uint64
	events       *eventQueue
	watcher      jetstream.KeyWatcher
	watchCancel  context.CancelFunc
	fwdDone      chan struct{}
	ready        bool                // the watcher delivered its initial values
	lastEvent    time.Time           // when the watcher started or last delivered
	members      map[string]struct{} // member ids, from the watcher
	owners       []string            // lease owner per partition, from the watcher
	member       uint64              // revision of our member key, 0 when not a member
	memberUnsure bool                // the last member renewal got no answer
	waitOld      bool                // our member key exists from a previous incarnation
	stopping     bool
	retry        bool // a renewal or acquisition failed transiently: retry soon
}

func newLoop(m *Manager, kv jetstream.KeyValue) *loop {
	op := m.cfg.LeaseTTL / 3
	if op > 2*time.Second {
		op = 2 * time.Second
	}
	return &loop{
		m:       m,
		kv:      kv,
		self:    m.cfg.Instance,
		n:       m.cfg.Partitions,
		ttl:     m.cfg.LeaseTTL,
		opTime:  op,
		parts:   make([]part, m.cfg.Partitions),
		events:  &eventQueue{note: make(chan struct{}, 1)},
		members: make(map[string]struct{}),
		owners:  make([]string, m.cfg.Partitions),
	}
}

func leaseKey(p int) string { return "lease." + strconv.Itoa(p) }

func (l *loop) memberKey() string { return "members." + l.self }

// memberValue is what the member key holds: the advertised address.
func (l *loop) memberValue() []byte {
	if l.m.cfg.Advertise != "" {
		return []byte(l.m.cfg.Advertise)
	}
	return []byte(l.self)
}

// LeaseKey is the bucket key of partition p's lease; its value is the
// owner's instance id.
func LeaseKey(p int) string { return leaseKey(p) }

// MemberKey is the bucket key of an instance's membership; its value is
// ManagerConfig.Advertise.
func MemberKey(instance string) string { return "members." + instance }

// opCtx bounds one KV operation; the operations outlive Run's context so
// that the graceful release can still talk to NATS.
func (l *loop) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), l.opTime)
}

func (l *loop) run(ctx context.Context) error {
	tick, stopTick := l.m.newTicker(l.ttl / 3)
	defer stopTick()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	defer l.stopWatcher()

	l.startWatcher(ctx)
	l.join(ctx)

	done := ctx.Done()
	var deadline <-chan time.Time
	for {
		var out chan Change
		var next Change
		if len(l.queue) > 0 {
			out, next = l.m.changes, l.queue[0]
		}
		select {
		case out <- next:
			l.queue = l.queue[1:]
		case <-tick:
			l.tick(ctx)
		case <-retry.C:
			l.tick(ctx)
		case <-l.events.note:
			l.handleEvents(ctx)
		case <-l.m.ackNote:
			l.handleAcks(ctx)
		case <-done:
			if l.m.crashed.Load() {
				return nil
			}
			done = nil
			t := time.NewTimer(l.m.cfg.ReleaseTimeout)
			defer t.Stop()
			deadline = t.C
			l.beginStop(ctx)
		case <-deadline:
			l.m.log.Warn("release timed out; remaining leases expire by themselves", "partitions", l.ownedList())
			return nil
		case c := <-l.m.pauseCh:
			select { // test hook: stall as under SIGSTOP
			case <-c:
			case <-ctx.Done():
			}
		}
		if l.retry {
			l.retry = false
			retry.Reset(l.ttl / 12)
		}
		l.snapshot()
		if l.stopping && l.allIdle() {
			l.m.log.Info("left the cluster")
			return nil
		}
	}
}

func (l *loop) allIdle() bool {
	for i := range l.parts {
		if l.parts[i].phase != idle {
			return false
		}
	}
	return true
}

func (l *loop) ownedList() []int {
	var o []int
	for p := range l.parts {
		if l.parts[p].held() {
			o = append(o, p)
		}
	}
	return o
}

func (l *loop) snapshot() {
	o := l.ownedList()
	members := len(l.members)
	if _, ok := l.members[l.self]; !ok && l.member != 0 {
		members++
	}
	l.m.snapMu.Lock()
	l.m.owned, l.m.members = o, members
	l.m.snapMu.Unlock()
}

func (l *loop) startWatcher(ctx context.Context) {
	l.ready = false
	// The watcher lives as long as its context (nats.go unsubscribes when
	// it ends), so it gets its own, cancelled by stopWatcher, or by the
	// timer if creating the watcher hangs.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	abort := time.AfterFunc(3*l.opTime, cancel)
	w, err := l.kv.WatchAll(wctx)
	abort.Stop()
	if err != nil {
		cancel()
		l.m.log.Warn("watching the bucket failed; retrying", "error", err)
		l.retry = true
		return
	}
	l.watcher, l.watchCancel = w, cancel
	l.lastEvent = l.m.now()
	l.members = make(map[string]struct{})
	clear(l.owners)
	done := make(chan struct{})
	l.fwdDone = done
	q := l.events
	m := l.m
	m.muteWatch.Store(false)
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if m.muteWatch.Load() {
				continue
			}
			q.push(event{entry: e, init: e == nil})
		}
		q.push(event{closed: true})
	}()
}

func (l *loop) stopWatcher() {
	if l.watcher == nil {
		return
	}
	_ = l.watcher.Stop()
	l.watchCancel()
	<-l.fwdDone
	l.watcher, l.watchCancel, l.fwdDone = nil, nil, nil
}

// join creates our member key.
func (l *loop) join(ctx context.Context) {
	if l.member != 0 || l.stopping {
		return
	}
	octx, cancel := l.opCtx(ctx)
	defer cancel()
	rev, err := l.kv.Create(octx, l.memberKey(), l.memberValue())
	switch {
	case err == nil:
		l.member, l.waitOld = rev, false
		l.m.log.Info("joined the cluster", "revision", rev)
		l.reconcile(ctx, false)
	case errors.Is(err, jetstream.ErrKeyExists):
		if !l.waitOld {
			l.m.log.Warn("member key exists, from a previous run or another instance with this id; waiting for it to expire", "ttl", l.ttl)
		}
		l.waitOld = true
	default:
		l.m.log.Warn("joining failed; retrying", "error", err)
		l.retry = true
	}
}

func (l *loop) tick(ctx context.Context) {
	if l.watcher != nil && !l.stopping && l.member != 0 && l.m.now().Sub(l.lastEvent) > 2*l.ttl {
		// Our own member renewals, every TTL/3, come back through the
		// watcher: nothing for two TTLs means it stalled. nats.go's
		// ordered consumer behind it can stop delivering without
		// closing it, when a NATS node shuts down: the view of members
		// and leases would freeze, and the partitions of a member that
		// left would stay without an owner.
		l.m.log.Warn("bucket watcher stalled; restarting", "quiet_for", l.m.now().Sub(l.lastEvent).Round(time.Millisecond))
		l.stopWatcher()
		l.events.take() // its last updates and its closed mark
	}
	if l.watcher == nil && !l.stopping {
		l.startWatcher(ctx)
	}
	l.renew(ctx)
	l.join(ctx)
	l.reconcile(ctx, true)
}

// renew renews the member key and every held lease; a lease not renewed in
// time or whose revision moved is lost.
func (l *loop) renew(ctx context.Context) {
	start := time.Now()
	defer func() { l.m.renewRound.Store(int64(time.Since(start))) }()
	if l.member != 0 && !l.stopping {
		octx, cancel := l.opCtx(ctx)
		rev, err := l.kv.Update(octx, l.memberKey(), l.memberValue(), l.member)
		cancel()
		switch {
		case err == nil:
			l.member, l.memberUnsure = rev, false
			l.m.renewals.Add(1)
		case apiCode(err) == codeWrongLastSeq:
			// Expired (we were paused) or deleted: join again.
			l.m.renewErrs.Add(1)
			l.m.log.Warn("member key lost; joining again", "error", err)
			l.member = 0
		default:
			l.m.renewErrs.Add(1)
			l.memberUnsure = true
			l.retry = true
		}
	}
	for p := range l.parts {
		st := &l.parts[p]
		if st.phase == deleting {
			l.deleteLease(ctx, p)
			continue
		}
		if !st.held() {
			continue
		}
		sent := l.m.now()
		if sent.After(st.validUntil) {
			l.lose(p, "not renewed within the lease TTL")
			continue
		}
		octx, cancel := l.opCtx(ctx)
		rev, err := l.kv.Update(octx, leaseKey(p), []byte(l.self), st.rev)
		cancel()
		switch {
		case err == nil:
			st.rev, st.validUntil, st.unsure = rev, sent.Add(l.ttl), false
			l.m.renewals.Add(1)
		case apiCode(err) == codeWrongLastSeq:
			l.m.renewErrs.Add(1)
			l.lose(p, "renewal refused: "+err.Error())
		default:
			l.m.renewErrs.Add(1)
			l.m.log.Debug("lease renewal failed; retrying", "partition", p, "error", err)
			st.unsure = true
			l.retry = true
		}
	}
}

// reconcile acquires the partitions assigned to this instance and releases
// the others. On ticks it tries to acquire even leases the watcher shows
// held, in case it missed their expiry.
func (l *loop) reconcile(ctx context.Context, force bool) {
	if !l.ready && !l.stopping {
		return
	}
	var assign []string
	if l.member != 0 && !l.stopping {
		members := make([]string, 0, len(l.members)+1)
		for id := range l.members {
			members = append(members, id)
		}
		members = append(members, l.self)
		assign = Assign(members, l.n)
	}
	for p := range l.parts {
		mine := assign != nil && assign[p] == l.self
		switch st := &l.parts[p]; st.phase {
		case idle:
			if mine && (force || l.owners[p] == "") {
				l.acquire(ctx, p)
			}
		case active:
			if !mine {
				l.send(p, Release)
				st.phase = releasing
			}
		}
	}
}

func (l *loop) acquire(ctx context.Context, p int) {
	sent := l.m.now()
	octx, cancel := l.opCtx(ctx)
	rev, err := l.kv.Create(octx, leaseKey(p), []byte(l.self))
	cancel()
	switch {
	case err == nil:
		l.parts[p] = part{phase: acquiring, rev: rev, validUntil: sent.Add(l.ttl)}
		l.owners[p] = l.self
		l.send(p, Acquired)
		l.m.acquired.Add(1)
		l.m.log.Info("partition acquired", "partition", p, "revision", rev)
	case errors.Is(err, jetstream.ErrKeyExists):
	default:
		l.m.acqErrs.Add(1)
		l.m.log.Debug("acquiring failed; retrying", "partition", p, "error", err)
		l.retry = true
	}
}

// lose handles a lease that is no longer ours.
func (l *loop) lose(p int, why string) {
	st := &l.parts[p]
	l.m.log.Warn("partition lease lost", "partition", p, "reason", why)
	switch st.phase {
	case active:
		st.phase = losing
		l.send(p, Lost)
		l.m.lost.Add(1)
	case acquiring, releasing:
		st.gone = true // Lost follows the Ack of Acquired; a Release needs none
	}
}

func (l *loop) send(p int, k Kind) {
	l.nextID++
	id := l.nextID
	l.parts[p].out = id
	l.queue = append(l.queue, Change{Partition: p, Kind: k, ack: func() { l.m.ack(id) }})
}

func (l *loop) handleAcks(ctx context.Context) {
	l.m.ackMu.Lock()
	ids := l.m.acks
	l.m.acks = nil
	l.m.ackMu.Unlock()
	for _, id := range ids {
		p := slices.IndexFunc(l.parts, func(st part) bool { return st.out == id })
		if p < 0 {
			continue // acknowledged twice
		}
		st := &l.parts[p]
		st.out = 0
		switch st.phase {
		case acquiring:
			st.phase = active
			if st.gone {
				st.gone = false
				st.phase = losing
				l.send(p, Lost)
				l.m.lost.Add(1)
			}
		case releasing:
			if st.gone {
				*st = part{}
				continue
			}
			st.phase = deleting
			l.deleteLease(ctx, p)
		case losing:
			*st = part{}
		}
	}
	l.reconcile(ctx, false)
}

// deleteLease deletes a released lease, if it is still ours.
func (l *loop) deleteLease(ctx context.Context, p int) {
	st := &l.parts[p]
	octx, cancel := l.opCtx(ctx)
	err := l.kv.Delete(octx, leaseKey(p), jetstream.LastRevision(st.rev))
	cancel()
	switch {
	case err == nil:
		l.m.released.Add(1)
		l.m.log.Info("partition released", "partition", p)
		*st = part{}
	case apiCode(err) == codeWrongLastSeq || l.m.now().After(st.validUntil):
		*st = part{} // expired or taken meanwhile: nothing to delete
	default:
		l.m.log.Debug("deleting a released lease failed; retrying", "partition", p, "error", err)
		l.retry = true
	}
}

func (l *loop) handleEvents(ctx context.Context) {
	for _, e := range l.events.take() {
		if !e.closed {
			l.lastEvent = l.m.now()
		}
		switch {
		case e.closed:
			if !l.stopping {
				l.m.log.Warn("bucket watcher closed; restarting")
				l.stopWatcher()
				l.retry = true
			}
		case e.init:
			l.ready = true
		default:
			l.apply(e.entry)
		}
	}
	l.reconcile(ctx, false)
}

// apply updates the view with a watcher entry.
func (l *loop) apply(e jetstream.KeyValueEntry) {
	key, rev := e.Key(), e.Revision()
	put := e.Operation() == jetstream.KeyValuePut
	if id, ok := strings.CutPrefix(key, "members."); ok {
		if put {
			l.members[id] = struct{}{}
			if id == l.self && l.memberUnsure && rev > l.member {
				l.member, l.memberUnsure = rev, false // our renewal whose reply was lost
			}
			return
		}
		delete(l.members, id)
		if id == l.self && l.member != 0 && rev > l.member {
			l.m.log.Warn("member key removed; joining again")
			l.member = 0
			l.retry = true
		}
		if id == l.self && l.waitOld {
			l.retry = true
		}
		return
	}
	ps, ok := strings.CutPrefix(key, "lease.")
	if !ok {
		return
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p >= l.n {
		return
	}
	if put {
		l.owners[p] = string(e.Value())
	} else {
		l.owners[p] = ""
	}
	if st := &l.parts[p]; st.held() && rev > st.rev {
		if put && st.unsure && string(e.Value()) == l.self {
			// Our renewal whose reply was lost: the lease is still ours,
			// valid from the renewal before it.
			st.rev, st.unsure = rev, false
			return
		}
		if put {
			l.lose(p, "lease taken by "+string(e.Value()))
		} else {
			l.lose(p, "lease expired or deleted")
		}
	}
}

// beginStop leaves the cluster: it deletes the member key first, so the
// other members reassign this instance's partitions at once and acquire
// each as soon as its lease is released, then releases every partition.
func (l *loop) beginStop(ctx context.Context) {
	l.stopping = true
	l.m.log.Info("leaving the cluster", "partitions", l.ownedList())
	if l.member != 0 {
		octx, cancel := l.opCtx(ctx)
		err := l.kv.Delete(octx, l.memberKey(), jetstream.LastRevision(l.member))
		cancel()
		if err != nil {
			l.m.log.Warn("deleting the member key failed; it expires by itself", "error", err)
		}
		l.member = 0
	}
	for p := range l.parts {
		if st := &l.parts[p]; st.phase == active {
			l.send(p, Release)
			st.phase = releasing
		}
	}
}
