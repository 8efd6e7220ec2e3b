package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/engine/cluster"
	"github.com/kairos-engine/kairos/state"
)

// Cluster mode (docs/scaling.md). The events and batch streams store
// <prefix>.part.<events|batch>.<partition>.<type>.<customer>: a subject
// transform of the stream partitions what publishers send to
// <prefix>.<events|batch>.<type>.<customer> by customer, on the server. A
// cluster.Manager holds the leases of the partitions assigned to this
// instance; for each partition it holds, the engine runs two consumers
// (events, batch events), and partition 0's owner also consumes what stays
// under <prefix>.events.> and <prefix>.batch.> — subjects that are not
// <type>.<customer> — to dead-letter it.
//
// Every commit is first written to the changelog (engine/cluster): the
// whole record of each changed customer, the seen markers, the budget
// counters (compare-and-set) and the mark of each partition it touches
// (watermarks, the commit's outbox), as one atomic batch whose marks are
// fenced: after another instance took a partition over, a commit touching
// it fails, and the engine drops the partition and runs the batch again
// without it. Only then is the commit written to the local Badger, the
// records published and the events acknowledged. A new owner loads the
// partition's records from the changelog into its Badger (unless the mark
// carries its own last commit token: then its local state is current),
// publishes the mark's outbox again (the message ids make that harmless)
// and consumes from the mark's watermarks.

// scaleOut is the cluster-mode part of an engine; nil in single-instance
// mode.
type scaleOut struct {
	n        int
	instance string
	mgr      *cluster.Manager
	cl       *cluster.Changelog
	parts    []*partState // by partition; nil when not owned
	owned    int
	nonce    uint64
	seq      uint64            // commits made, for tokens
	counters map[string]uint64 // sequences of the budget counters, to expect
	changes  <-chan cluster.Change
	// ownedSnap is which partitions are taken over (state loaded, being
	// consumed), for other goroutines: the scheduler, the HTTP handlers.
	ownedSnap atomic.Pointer[[]bool]
	evInfo    *jetstream.StreamInfo
	btInfo    *jetstream.StreamInfo
	// per batch
	commit  cluster.Commit
	touched []int
	recBuf  []byte
}

// partState is a partition this instance owns.
type partState struct {
	p       int
	srcs    []*source
	stops   []func()
	inBatch bool
	outbox  [][]byte // encoded records of the batch in hand
}

// partPrefix is where a partitioned stream stores the subjects under kind
// (events or batch).
func partPrefix(prefix, kind string) string { return prefix + ".part." + kind + "." }

// partitionTransform is the subject transform of the events (kind
// "events") or batch stream in cluster mode.
func partitionTransform(prefix, kind string, n int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      prefix + "." + kind + ".*.*",
		Destination: partPrefix(prefix, kind) + "{{partition(" + strconv.Itoa(n) + ",2)}}.{{wildcard(1)}}.{{wildcard(2)}}",
	}
}

// defaultInstance is the host name and a random suffix.
func defaultInstance() string {
	h, _ := os.Hostname()
	clean := make([]byte, 0, len(h))
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			clean = append(clean, c)
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", clean, b)
}

// tokenMark is the local watermark name that holds the token of the last
// commit this instance wrote for partition p.
func tokenMark(p int) string { return "cluster/token/" + strconv.Itoa(p) }

// startCluster opens the changelog and the manager. The manager runs until
// ctx ends; run returns its error.
func (e *Engine) startCluster(ctx context.Context, evInfo, btInfo *jetstream.StreamInfo) (run func(context.Context) error, err error) {
	cc := e.cfg.Cluster
	inst := cc.Instance
	if inst == "" {
		inst = defaultInstance()
	}
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	sc := &scaleOut{
		n:        cc.Partitions,
		instance: inst,
		parts:    make([]*partState, cc.Partitions),
		nonce:    binary.LittleEndian.Uint64(nb[:]),
		counters: map[string]uint64{},
		evInfo:   evInfo,
		btInfo:   btInfo,
	}
	clCfg := cluster.ChangelogConfig{Stream: cc.Changelog, Prefix: e.cfg.Streams.Prefix, Replicas: e.cfg.Streams.Replicas}
	if _, err := cluster.EnsureChangelog(ctx, e.js, clCfg); err != nil {
		return nil, err
	}
	sc.cl = cluster.NewChangelog(e.js, clCfg)
	sc.mgr, err = cluster.NewManager(cluster.ManagerConfig{
		JetStream:  e.js,
		Bucket:     cc.Bucket,
		Instance:   inst,
		Partitions: cc.Partitions,
		LeaseTTL:   mustDuration(cc.LeaseTTL),
		Replicas:   e.cfg.Streams.Replicas,
		Logger:     e.log.With("component", "cluster"),
		Advertise:  e.advertise(),
	})
	if err != nil {
		return nil, err
	}
	sc.changes = sc.mgr.Changes()
	e.sc = sc
	e.log.Info("cluster mode", "instance", inst, "partitions", cc.Partitions, "lease_ttl", cc.LeaseTTL)
	return sc.mgr.Run, nil
}

// advertise is the HTTP address this instance tells the others, for
// GET /v1/customers/{id} of a customer it owns: cluster.advertise, else the
// address the HTTP server listens on, with a wildcard host replaced by the
// host name; "" when HTTP is off.
func (e *Engine) advertise() string {
	if a := e.cfg.Cluster.Advertise; a != "" {
		return a
	}
	host, port, err := net.SplitHostPort(e.HTTPAddr())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			return ""
		}
	}
	return net.JoinHostPort(host, port)
}

// customerOwner names the instance that holds the lease of the customer's
// partition and its advertised HTTP address, from the cluster bucket;
// empty when the partition has no owner (a takeover in progress).
func (e *Engine) customerOwner(ctx context.Context, customer string) (p int, instance, addr string, err error) {
	p = cluster.Partition(customer, e.sc.n)
	kv, err := e.js.KeyValue(ctx, e.cfg.Cluster.Bucket)
	if err != nil {
		return p, "", "", err
	}
	le, err := kv.Get(ctx, cluster.LeaseKey(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return p, "", "", nil
	}
	if err != nil {
		return p, "", "", err
	}
	instance = string(le.Value())
	me, err := kv.Get(ctx, cluster.MemberKey(instance))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return p, instance, "", nil
	}
	if err != nil {
		return p, instance, "", err
	}
	if v := string(me.Value()); v != instance {
		addr = v
	}
	return p, instance, addr, nil
}

// clusterChanges is the manager's channel, nil in single-instance mode
// and once the manager stopped.
func (e *Engine) clusterChanges() <-chan cluster.Change {
	if e.sc == nil {
		return nil
	}
	return e.sc.changes
}

// handleChange applies an ownership change, between batches.
func (e *Engine) handleChange(ctx context.Context, ch cluster.Change, ok bool) {
	if !ok {
		e.sc.changes = nil // the manager stopped
		return
	}
	defer ch.Ack()
	switch ch.Kind {
	case cluster.Acquired:
		start := time.Now()
		backoff := 100 * time.Millisecond
		for {
			err := e.takeOver(ctx, ch.Partition)
			if err == nil {
				e.metrics.ClusterTakeovers.WithLabelValues("ok").Inc()
				e.metrics.ClusterTakeoverSeconds.Observe(time.Since(start).Seconds())
				return
			}
			e.metrics.ClusterTakeovers.WithLabelValues("error").Inc()
			e.dropPartition(ch.Partition)
			if errors.Is(err, cluster.ErrFenced) || ctx.Err() != nil {
				// Another instance has it already; the manager will
				// find the lease lost.
				e.log.Warn("partition taken over by another instance meanwhile", "partition", ch.Partition, "err", err)
				return
			}
			e.log.Error("taking a partition over failed; retrying", "partition", ch.Partition, "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	case cluster.Release, cluster.Lost:
		if e.sc.parts[ch.Partition] != nil {
			e.log.Info("partition given up", "partition", ch.Partition, "how", ch.Kind.String())
		}
		e.dropPartition(ch.Partition)
	}
}

// takeOver makes this instance the owner of partition p: it fences the
// former owner out, brings the local state of p up to the changelog,
// publishes the mark's outbox again and starts consuming p.
func (e *Engine) takeOver(ctx context.Context, p int) error {
	sc := e.sc
	data, err := sc.cl.Takeover(ctx, p, sc.instance)
	if err != nil {
		return fmt.Errorf("take over partition %d: %w", p, err)
	}
	m, err := decodePartMark(data)
	if err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	local, err := e.store.Watermark(tokenMark(p))
	if err != nil {
		return err
	}
	loaded := 0
	if m.Token == (markToken{}) || local.Seq != m.Token.Seq || uint64(local.StreamCreated) != m.Token.Nonce {
		if loaded, err = e.loadPartition(ctx, p, m.Token); err != nil {
			return err
		}
	}
	// The records of the former owner's last commit may not all have been
	// published: publish them again.
	var recs []*outRecord
	for _, raw := range m.Outbox {
		r, err := decodeOutRecord(raw)
		if err != nil {
			e.log.Error("dropping a corrupt outbox record of a partition mark", "partition", p, "err", err)
			continue
		}
		recs = append(recs, r)
	}
	republished, err := e.republish(ctx, recs)
	if err != nil {
		return err
	}
	ps := &partState{p: p}
	type spec struct {
		name, prefix, durable string
		batch                 bool
		info                  *jetstream.StreamInfo
		maxAck                int
		stray                 bool
	}
	maxAck := max(2*e.cfg.Engine.BatchSize, 4*e.cfg.Consumer.MaxAckPending/sc.n)
	bmaxAck := max(2*e.cfg.Batch.MaxPerBatch, 4*batchMaxAckPending(&e.cfg)/sc.n)
	pfx := e.cfg.Streams.Prefix
	ps1 := strconv.Itoa(p)
	specs := []spec{
		{"rt", partPrefix(pfx, "events") + ps1 + ".", e.cfg.Consumer.Durable + "-p" + ps1, false, sc.evInfo, maxAck, false},
		{"bt", partPrefix(pfx, "batch") + ps1 + ".", e.cfg.Consumer.BatchDurable + "-p" + ps1, true, sc.btInfo, bmaxAck, false},
	}
	if p == 0 {
		specs = append(specs,
			spec{"stray-rt", e.sub.eventsPrefix, e.cfg.Consumer.Durable + "-stray", false, sc.evInfo, maxAck, true},
			spec{"stray-bt", e.sub.batchPrefix, e.cfg.Consumer.BatchDurable + "-stray", true, sc.btInfo, bmaxAck, true})
	}
	markInit := false
	for _, sp := range specs {
		s := &source{name: sp.info.Config.Name, prefix: sp.prefix, durable: sp.durable, batch: sp.batch,
			maxAckPending: sp.maxAck, part: p, markName: sp.name}
		s.created = sp.info.Created.UnixNano()
		s.incarnation = strconv.FormatInt(sp.info.Created.Unix(), 36)
		w := m.mark(sp.name)
		if w.Seq > 0 && w.Created != s.created {
			e.log.Warn("the stream was recreated since the partition was written; starting from its beginning", "stream", s.name, "partition", p)
			w.Seq = 0
		}
		if sp.stray && w.Created == 0 {
			// The first owner of partition 0 dead-letters strays from
			// now on, not those sent before cluster mode.
			st, err := e.js.Stream(ctx, s.name)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			w.Seq = info.State.LastSeq
			markInit = true
		}
		s.applied = w.Seq
		if s.batch {
			s.in = e.bt.in
		} else {
			s.in = e.rt.in
		}
		cons, err := resetConsumer(ctx, e.js, &e.cfg, s, w.Seq)
		if err != nil {
			e.stopPart(ps)
			return err
		}
		stop, err := e.consume(s, cons)
		if err != nil {
			e.stopPart(ps)
			return err
		}
		ps.srcs = append(ps.srcs, s)
		ps.stops = append(ps.stops, stop)
	}
	sc.parts[p] = ps
	sc.owned++
	sc.publishOwned()
	e.metrics.ClusterPartitions.Set(float64(sc.owned))
	if markInit {
		// Record the strays' starting point at once, so a later owner
		// starts there too.
		if err := e.commitMark(ctx, ps, m); err != nil {
			return err
		}
	}
	if err := e.peekRelease(); err != nil {
		return err
	}
	e.log.Info("partition taken over", "partition", p, "customers_loaded", loaded, "republished", republished,
		"events_from", ps.srcs[0].applied+1)
	return nil
}

// commitMark writes partition ps's mark alone: its sources' watermarks,
// an empty outbox and the token of m (nothing else changed).
func (e *Engine) commitMark(ctx context.Context, ps *partState, m *partMark) error {
	nm := partMark{Token: m.Token}
	for _, s := range ps.srcs {
		nm.Marks = append(nm.Marks, namedMark{Name: s.markName, Created: s.created, Seq: s.applied})
	}
	c := &cluster.Commit{Marks: []cluster.Mark{{Partition: ps.p, Data: appendPartMark(nil, &nm)}}}
	for {
		err := e.sc.cl.Commit(ctx, c)
		if err == nil || errors.Is(err, cluster.ErrFenced) || errors.Is(err, cluster.ErrInvalid) || ctx.Err() != nil {
			return err
		}
		e.log.Warn("changelog commit failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopAll stops consuming every partition, at shutdown.
func (e *Engine) stopAll() {
	for _, ps := range e.sc.parts {
		if ps != nil {
			e.stopPart(ps)
		}
	}
}

// loadPartition replaces the local state of partition p with the
// changelog's. It returns the number of customers loaded.
func (e *Engine) loadPartition(ctx context.Context, p int, tok markToken) (int, error) {
	type rec struct {
		id   string
		data []byte
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan rec, 256)
	type seen struct {
		key string
		ttl time.Duration
	}
	var seens []seen
	errc := make(chan error, 1)
	go func() {
		defer close(recs)
		errc <- e.sc.cl.Load(lctx, p, func(kind cluster.RecordKind, key string, data []byte, ttl time.Duration) error {
			switch kind {
			case cluster.CustomerRecord:
				select {
				case recs <- rec{key, data}:
				case <-lctx.Done():
					return lctx.Err()
				}
			case cluster.SeenRecord:
				seens = append(seens, seen{key, ttl})
			}
			return nil
		})
	}()
	n, err := e.store.ImportRecords(func() (string, []byte, bool, error) {
		r, ok := <-recs
		if !ok {
			return "", nil, false, nil
		}
		return r.id, r.data, true, nil
	})
	cancel()
	for range recs {
	}
	lerr := <-errc
	if err != nil {
		return n, fmt.Errorf("load partition %d: %w", p, err)
	}
	if lerr != nil {
		return n, fmt.Errorf("load partition %d: %w", p, lerr)
	}
	b := e.store.NewBatch()
	now := time.Now()
	for _, s := range seens {
		exp := now.Add(s.ttl)
		if s.ttl == 0 {
			exp = now.Add(mustDuration(e.cfg.Batch.SeenTTL))
		}
		b.MarkSeenUntil(s.key, exp)
	}
	b.SetWatermark(tokenMark(p), state.Watermark{Stream: "cluster", StreamCreated: int64(tok.Nonce), Seq: tok.Seq})
	if err := e.store.Commit(b); err != nil {
		return n, fmt.Errorf("load partition %d: %w", p, err)
	}
	return n, nil
}

// stopPart stops consuming a partition's sources; events of the partition
// still queued are dropped unacknowledged when they come up.
func (e *Engine) stopPart(ps *partState) {
	for _, s := range ps.srcs {
		s.gone = true
	}
	for _, stop := range ps.stops {
		stop()
	}
}

// dropPartition gives partition p up locally: its consumers stop, its
// queued events are dropped and the changelog forgets its fence.
func (e *Engine) dropPartition(p int) {
	sc := e.sc
	if ps := sc.parts[p]; ps != nil {
		e.stopPart(ps)
		sc.parts[p] = nil
		sc.owned--
		sc.publishOwned()
		e.metrics.ClusterPartitions.Set(float64(sc.owned))
	}
	sc.cl.Forget(p)
}

// publishOwned refreshes the snapshot of the partitions taken over.
func (sc *scaleOut) publishOwned() {
	snap := make([]bool, sc.n)
	for p, ps := range sc.parts {
		snap[p] = ps != nil
	}
	sc.ownedSnap.Store(&snap)
}

// ownedSnapshot returns which partitions are taken over; safe on any
// goroutine.
func (sc *scaleOut) ownedSnapshot() []bool {
	if p := sc.ownedSnap.Load(); p != nil {
		return *p
	}
	return nil
}

// ownedNow returns a filter of the customers of the partitions taken over,
// for other goroutines; nil (everyone) in single-instance mode.
func (e *Engine) ownedNow() func(string) bool {
	if e.sc == nil {
		return nil
	}
	owned, n := e.sc.ownedSnapshot(), e.sc.n
	return func(id string) bool {
		p := cluster.Partition(id, n)
		return p < len(owned) && owned[p]
	}
}

// owns reports whether this instance owns the customer's partition (always
// in single-instance mode).
func (e *Engine) owns(customer string) bool {
	return e.sc == nil || e.sc.parts[cluster.Partition(customer, e.sc.n)] != nil
}

// ownsFunc is owns for DueDeferredOf: nil (everyone) in single-instance
// mode.
func (e *Engine) ownsFunc() func(string) bool {
	if e.sc == nil {
		return nil
	}
	return e.owns
}

// errRetryNow asks processWithRetry to run the batch again at once: a
// partition was lost or a budget moved under the commit.
var errRetryNow = errors.New("run the batch again")

// commitChangelog writes the batch to the changelog, as the first step of
// commit in cluster mode: the records of the customers b holds, the seen
// markers, the budget counters and the marks of the touched partitions
// (with srcs' new watermarks and the records of items). On success it
// stores the commit's token in b for each touched partition.
func (e *Engine) commitChangelog(ctx context.Context, b *state.Batch, items []item, srcs []*source, used []int64) error {
	sc := e.sc
	c := &sc.commit
	c.Marks, c.Counters, c.Records = c.Marks[:0], c.Counters[:0], c.Records[:0]
	sc.touched = sc.touched[:0]
	touch := func(p int) *partState {
		ps := sc.parts[p]
		if ps != nil && !ps.inBatch {
			ps.inBatch = true
			ps.outbox = ps.outbox[:0]
			sc.touched = append(sc.touched, p)
		}
		return ps
	}
	defer func() {
		for _, p := range sc.touched {
			if ps := sc.parts[p]; ps != nil {
				ps.inBatch = false
			}
		}
	}()
	sc.recBuf = sc.recBuf[:0]
	b.Records(func(id string, rec []byte) {
		p := cluster.Partition(id, sc.n)
		touch(p)
		start := len(sc.recBuf)
		sc.recBuf = append(sc.recBuf, rec...)
		c.Records = append(c.Records, cluster.Record{Partition: p, Kind: cluster.CustomerRecord, Key: id, Data: sc.recBuf[start:len(sc.recBuf):len(sc.recBuf)]})
	})
	ttl := mustDuration(e.cfg.Batch.SeenTTL)
	for _, wk := range e.workers {
		for i, k := range wk.seenKeys {
			p := cluster.Partition(wk.seenCust[i], sc.n)
			touch(p)
			c.Records = append(c.Records, cluster.Record{Partition: p, Kind: cluster.SeenRecord, Key: k, Data: []byte{1}, TTL: ttl})
		}
	}
	for i := range items {
		it := &items[i]
		if it.dropped || (it.dup && len(it.records) == 0) {
			continue
		}
		p := it.part()
		if p < 0 {
			p = cluster.Partition(it.customer, sc.n)
		}
		ps := touch(p)
		if ps == nil {
			continue
		}
		for j := range it.records {
			start := len(sc.recBuf)
			sc.recBuf = appendOutRecord(sc.recBuf, &it.records[j])
			ps.outbox = append(ps.outbox, sc.recBuf[start:len(sc.recBuf):len(sc.recBuf)])
		}
	}
	for _, s := range srcs {
		touch(s.part)
	}
	sc.seq++
	tok := markToken{sc.nonce, sc.seq}
	for _, p := range sc.touched {
		ps := sc.parts[p]
		if ps == nil {
			return fmt.Errorf("partition %d: %w", p, cluster.ErrFenced)
		}
		m := partMark{Token: tok, Outbox: ps.outbox}
		for _, s := range ps.srcs {
			seq := s.applied
			if s.pending > seq {
				seq = s.pending
			}
			m.Marks = append(m.Marks, namedMark{Name: s.markName, Created: s.created, Seq: seq})
		}
		start := len(sc.recBuf)
		sc.recBuf = appendPartMark(sc.recBuf, &m)
		c.Marks = append(c.Marks, cluster.Mark{Partition: p, Data: sc.recBuf[start:len(sc.recBuf):len(sc.recBuf)]})
	}
	for _, r := range e.budgeted {
		if s := used[r.Index]; s > 0 {
			for _, u := range []struct {
				name string
				v    int64
			}{{budgetTotalName(r.ID), e.budgets.total[r.Index] + s}, {budgetDayName(r.ID, e.budgets.day), e.budgets.daily[r.Index] + s}} {
				c.Counters = append(c.Counters, cluster.CounterUpdate{Name: u.name, Value: u.v, Expect: sc.counters[u.name]})
			}
		}
	}
	start := time.Now()
	backoff := 20 * time.Millisecond
	for {
		err := sc.cl.Commit(ctx, c)
		e.metrics.ChangelogCommitSeconds.Observe(time.Since(start).Seconds())
		var fe *cluster.FencedError
		var ce *cluster.ConflictError
		switch {
		case err == nil:
			for _, u := range c.Counters {
				sc.counters[u.Name] = u.Seq
			}
			for _, p := range sc.touched {
				b.SetWatermark(tokenMark(p), state.Watermark{Stream: "cluster", StreamCreated: int64(tok.Nonce), Seq: tok.Seq})
			}
			return nil
		case errors.As(err, &fe):
			e.metrics.ClusterFenced.Add(float64(len(fe.Partitions)))
			for _, p := range fe.Partitions {
				e.log.Warn("partition lost to another instance: dropping it and running the batch again without it", "partition", p)
				e.dropPartition(p)
			}
			return errRetryNow
		case errors.As(err, &ce):
			e.metrics.BudgetConflicts.Inc()
			if err := e.refreshCounters(ctx, ce.Counters); err != nil {
				return err
			}
			return errRetryNow
		case errors.Is(err, cluster.ErrTooLarge):
			return fmt.Errorf("%w: %w", state.ErrBatchTooBig, err)
		case errors.Is(err, cluster.ErrInvalid), errors.Is(err, cluster.ErrNotTakenOver):
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		// Transient: the same Commit again, which finds out whether
		// a lost reply's attempt was stored.
		e.log.Warn("changelog commit failed; retrying", "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// refreshCounters reads budget counters another instance moved.
func (e *Engine) refreshCounters(ctx context.Context, names []string) error {
	for _, name := range names {
		v, seq, err := e.sc.cl.Counter(ctx, name)
		if err != nil {
			return fmt.Errorf("read budget counter %s: %w", name, err)
		}
		e.sc.counters[name] = seq
		e.setBudgetCounter(name, v)
	}
	e.budgetGauges()
	return nil
}
