package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// Options are what a caller hands the engine besides the configuration.
type Options struct {
	Config Config
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Registry serves /metrics; nil creates one with the Go and process
	// collectors.
	Registry *prometheus.Registry
	// Now is the clock for decisions (decided_at, expires_at, the rules'
	// now); nil is time.Now.
	Now func() time.Time
}

// Engine consumes events, keeps customer state, evaluates rules and
// publishes offers. Create it with New, run it with Run, once.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *Metrics
	now     func() time.Time
	sub     subjects
	enc     connectors.Encoding

	rs       *rules.RuleSet
	plan     *state.Plan
	ruleByID map[string]*rules.Rule
	budgeted []*rules.Rule // rules with a budget
	pol      *policy
	// contactRetention is how long customers' contact history is kept.
	contactRetention time.Duration
	typeLbl          map[string]prometheus.Counter // event type -> events counter
	otherEv          prometheus.Counter
	typeCount        map[string]int // events of a committed batch by type (count)
	ruleM            []*ruleMetrics // by rules.Rule.Index

	store *state.Store
	ns    *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	pub   *connectors.Publisher

	// rt and bt are the real-time events and the batch events streams.
	// In cluster mode they only hold the channels the partitions' sources
	// share.
	rt, bt *source
	// srcs are the sources the batch in hand moves.
	srcs []*source
	// jobs are the two publishing stages in turn, nextJob the next one's
	// index, inflight the one publishing now (publish.go).
	jobs     [2]*pubJob
	nextJob  int
	inflight *pubJob
	ackSrcs  []*source // newPubJob's scratch
	// sc is cluster mode; nil in single-instance mode.
	sc              *scaleOut
	appliedPub      atomic.Uint64 // rt.applied, for other goroutines
	appliedBatchPub atomic.Uint64 // bt.applied, for other goroutines

	workers  []*worker
	ready    atomic.Bool
	readyCh  chan struct{}
	httpAddr atomic.Value // string
	natsURL  atomic.Value // string

	crash     crashPoints
	hard      context.Context // ends shutdown_timeout after the stop is asked for
	batch     *state.Batch
	prevKeys  [][]byte // outbox keys published, to delete in the next commit
	keys      [][]byte
	keyBuf    []byte
	recBuf    []byte
	pageBuf   []byte // the body of the batch's outbox page
	outboxSeq int    // distinguishes outbox keys of batches that share a watermark

	batchNow         time.Time // the clock of the batch in hand
	sequential       bool      // the batch in hand runs in stream order on one goroutine
	budgets          budgets
	sharedReserved   []int64
	spentBuf         []int64
	suppressed       atomic.Pointer[map[string]struct{}]
	suppressionStamp int64
	nextRelease      int64 // earliest release time of a deferred offer (unix ms)
	worklistState
	view       atomic.Pointer[ruleView]
	lastReload atomic.Pointer[reloadStatus]
	reloadReq  chan chan error
	rulesFP    uint64 // the rules directory's fingerprint when its rules were loaded in New
	swapCh     chan *ruleSwap
	// sink, when set, receives each committed batch's records instead of
	// the outbox and the streams: a simulation (sim.go).
	sink func([]outRecord)
}

type ruleMetrics struct {
	evals, matches, errors prometheus.Counter
	offers                 map[string]prometheus.Counter // by channel
}

func (rm *ruleMetrics) offer(channel string) {
	if c := rm.offers[channel]; c != nil {
		c.Inc()
	}
}

// New validates the configuration and loads the rules; it starts nothing.
// A bad configuration or rule set fails here with every problem listed.
func New(opts Options) (*Engine, error) {
	cfg := opts.Config
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(RuntimeCollectors()...)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	enc, _ := connectors.ParseEncoding(cfg.Engine.OfferEncoding)
	pol, _ := compilePolicy(&cfg.Policy) // validated above
	e := &Engine{
		cfg:       cfg,
		log:       log,
		reg:       reg,
		metrics:   NewMetrics(reg),
		now:       now,
		sub:       newSubjects(cfg.Streams.Prefix),
		enc:       enc,
		readyCh:   make(chan struct{}),
		crash:     crashPointsFromEnv(),
		reloadReq: make(chan chan error),
		swapCh:    make(chan *ruleSwap),
		pol:       pol,
	}
	// The fingerprint the watcher starts from is taken before the files
	// are read: a change made after it, even before Run, is reloaded.
	e.rulesFP = rulesFingerprint(cfg.Rules.Dir)
	rs, err := e.loadRules()
	if err != nil {
		return nil, err
	}
	if err := e.setRules(rs); err != nil {
		return nil, err
	}
	freeAfterLoad(rs)
	return e, nil
}

// setRules installs a rule set: its window plan and its metric series.
func (e *Engine) setRules(rs *rules.RuleSet) error {
	aggs := rs.Aggregates()
	specs := make([]state.AggSpec, len(aggs))
	for i, a := range aggs {
		specs[i] = state.AggSpec{Kind: aggKinds[a.Kind], Type: a.Type, Attr: a.Attr, Window: a.Window}
	}
	plan, err := state.NewPlan(specs, rs.Horizon())
	if err != nil {
		return fmt.Errorf("window plan: %w", err)
	}
	e.rs, e.plan = rs, plan
	e.view.Store(&ruleView{rs: rs, plan: plan, loadedAt: time.Now()})
	e.ruleByID = make(map[string]*rules.Rule, len(rs.Rules()))
	e.budgeted = nil
	for _, r := range rs.Rules() {
		e.ruleByID[r.ID] = r
		if r.Budget != nil && r.Enabled {
			e.budgeted = append(e.budgeted, r)
		}
	}
	e.contactRetention = max(e.pol.retention, rs.ContactHorizon())
	e.typeLbl = map[string]prometheus.Counter{}
	for _, t := range rs.Types() {
		e.typeLbl[t] = e.metrics.Events.WithLabelValues(t)
	}
	e.otherEv = e.metrics.Events.WithLabelValues("other")
	e.ruleM = make([]*ruleMetrics, len(rs.Rules()))
	for _, r := range rs.Rules() {
		rm := &ruleMetrics{
			evals:   e.metrics.RuleEvals.WithLabelValues(r.ID),
			matches: e.metrics.RuleMatches.WithLabelValues(r.ID),
			errors:  e.metrics.RuleErrors.WithLabelValues(r.ID),
			offers:  map[string]prometheus.Counter{},
		}
		for _, ch := range r.Offer.Channels {
			rm.offers[ch] = e.metrics.Offers.WithLabelValues(r.ID, ch)
		}
		if len(rs.Rules()) <= eagerSuppressedSeries {
			for _, reason := range e.pol.reasonsFor(r) {
				e.metrics.Suppressed.WithLabelValues(r.ID, reason, r.Mode.String())
			}
		}
		if r.Conversion != nil && r.Enabled {
			e.metrics.Conversions.WithLabelValues(r.ID, "treatment")
			e.metrics.Conversions.WithLabelValues(r.ID, "holdout")
		}
		e.ruleM[r.Index] = rm
	}
	e.metrics.evals.reset(rs, e.ruleM)
	e.metrics.RulesLoaded.Set(float64(len(rs.Rules())))
	return nil
}

// eagerSuppressedSeries is the largest rule set whose suppression series
// (rule × reason, about five per rule) are created when it loads; a larger
// set's are created at their first suppression, which keeps /metrics of
// 10,000 rules at about 45,000 series instead of 95,000.
const eagerSuppressedSeries = 1000

// aggKinds translates the rules' aggregate kinds to the state's.
var aggKinds = map[rules.AggKind]state.AggKind{
	rules.Count: state.Count, rules.Sum: state.Sum, rules.Min: state.Min, rules.Max: state.Max,
	rules.Avg: state.Avg, rules.Distinct: state.Distinct, rules.Since: state.Since,
}

// Applied is the highest events-stream sequence committed (and, once its
// batch finished, acknowledged).
func (e *Engine) Applied() uint64 { return e.appliedPub.Load() }

// AppliedBatch is Applied for the batch-events stream.
func (e *Engine) AppliedBatch() uint64 { return e.appliedBatchPub.Load() }

// Rules returns the loaded rule set.
func (e *Engine) Rules() *rules.RuleSet { return e.rs }

// Ready is closed once the engine consumes events.
func (e *Engine) Ready() <-chan struct{} { return e.readyCh }

// NATSURL is the URL outside clients use to reach the engine's NATS: the
// embedded server's client URL, or the configured one. Valid once Ready.
func (e *Engine) NATSURL() string { s, _ := e.natsURL.Load().(string); return s }

// HTTPAddr is the address /metrics and the health checks listen on. Valid once Ready.
func (e *Engine) HTTPAddr() string { s, _ := e.httpAddr.Load().(string); return s }

// Run starts everything, processes events until ctx ends, then stops
// gracefully: it stops fetching, finishes the batch in hand, commits,
// acknowledges, and closes the state, the connection and the embedded
// server. It returns nil after a graceful stop.
func (e *Engine) Run(ctx context.Context) (err error) {
	var stops, stopConsumes []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	// HTTP first, so /healthz answers while the rest starts.
	if e.cfg.HTTP.Listen != "off" {
		ln, err := net.Listen("tcp", e.cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		e.httpAddr.Store(ln.Addr().String())
		srv := &http.Server{Handler: e.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.log.Error("http server", "err", err)
			}
		}()
		stops = append(stops, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			<-done
		})
	}

	if err := os.MkdirAll(e.cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	workers := e.cfg.Engine.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	store, err := state.Open(state.Options{
		Dir:              filepath.Join(e.cfg.Data, "state"),
		CacheCustomers:   e.cfg.State.CacheCustomers,
		Shards:           workers,
		MaxSeriesEntries: e.cfg.State.MaxSeriesEntries,
		SyncWrites:       e.cfg.State.SyncWrites,
		Compression:      e.cfg.State.Compression,
		BlockCacheBytes:  mustBytes(e.cfg.State.BlockCache),
		IndexCacheBytes:  mustBytes(e.cfg.State.IndexCache),
		Replicate:        e.cfg.Cluster.Enabled,
		Logger:           e.log.With("component", "state"),
		Metrics:          state.NewMetrics(e.reg),
	})
	if err != nil {
		return fmt.Errorf("open state: %w", err)
	}
	e.store = store
	stops = append(stops, func() {
		if err := store.Close(); err != nil {
			e.log.Error("close state", "err", err)
		}
	})

	if e.cfg.NATS.URL == "" {
		ns, err := startEmbedded(&e.cfg, e.log)
		if err != nil {
			return err
		}
		e.ns = ns
		e.natsURL.Store(ns.ClientURL())
		stops = append(stops, func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		})
		e.log.Info("embedded NATS listening", "url", ns.ClientURL(), "store", filepath.Join(e.cfg.Data, "nats"))
	} else {
		e.natsURL.Store(e.cfg.NATS.URL)
	}
	nc, err := connect(&e.cfg, e.ns, "kairos-engine", e.log)
	if err != nil {
		return err
	}
	e.nc = nc
	stops = append(stops, func() { nc.Close() })
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(e.cfg.Engine.PublishInFlight))
	if err != nil {
		return err
	}
	e.js = js
	e.pub = connectors.NewPublisher(js, e.log, 5)

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	evInfo, btInfo, err := ensureStreams(sctx, js, &e.cfg, e.sub)
	if err != nil {
		return err
	}
	e.rt = &source{name: e.cfg.Streams.Events.Name, prefix: e.sub.eventsPrefix, durable: e.cfg.Consumer.Durable, maxAckPending: e.cfg.Consumer.MaxAckPending, part: -1}
	e.bt = &source{name: e.cfg.Streams.Batch.Name, prefix: e.sub.batchPrefix, durable: e.cfg.Consumer.BatchDurable, batch: true, maxAckPending: batchMaxAckPending(&e.cfg), part: -1}
	var runManager func(context.Context) error
	if e.cfg.Cluster.Enabled {
		if runManager, err = e.startCluster(sctx, evInfo, btInfo); err != nil {
			return err
		}
	}
	if err := e.loadBudgets(sctx); err != nil {
		return err
	}
	e.reloadSuppression()
	if e.cfg.Policy.SuppressionFile != "" && e.suppressed.Load() == nil {
		return fmt.Errorf("policy.suppression_file %s could not be loaded", e.cfg.Policy.SuppressionFile)
	}
	if err := e.recoverOutbox(sctx); err != nil {
		return err
	}
	if err := e.peekRelease(); err != nil {
		return fmt.Errorf("read deferred offers: %w", err)
	}

	e.workers = make([]*worker, workers)
	for i := range e.workers {
		e.workers[i] = newWorker(e, i, store.Shard(i))
	}
	e.batch = store.NewBatch()

	for _, src := range []*source{e.rt, e.bt} {
		if e.sc != nil {
			// The partitions' sources share these channels.
			src.in = make(chan inMsg, src.maxAckPending+e.cfg.Engine.BatchSize)
			continue
		}
		info := evInfo
		if src.batch {
			info = btInfo
		}
		stop, err := e.openSource(sctx, src, info)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		stopConsumes = append(stopConsumes, stop)
	}
	e.appliedPub.Store(e.rt.applied)
	e.appliedBatchPub.Store(e.bt.applied)
	e.metrics.Applied.Set(float64(e.rt.applied))
	stopConsume := func() {
		for _, f := range stopConsumes {
			f()
		}
	}

	stopConnectors, err := e.startConnectors(ctx)
	if err != nil {
		return err
	}
	stops = append(stops, stopConnectors)

	if e.sc != nil {
		stopJobs, err := e.serveClusterJobs(ctx)
		if err != nil {
			return err
		}
		stops = append(stops, stopJobs)
	}

	schedCtx, stopScheduler := context.WithCancel(ctx)
	schedDone := make(chan struct{})
	// A job new to the bucket starts from now, the start, not from the
	// scheduler goroutine's first check, which a loaded machine may run
	// after a scheduled time has passed.
	schedStart := e.now()
	go func() {
		defer close(schedDone)
		e.scheduler(schedCtx, mustDuration(e.cfg.Batch.CheckInterval), schedStart)
	}()
	stops = append(stops, func() { stopScheduler(); <-schedDone })

	rctx, stopReloader := context.WithCancel(ctx)
	reloaderDone := make(chan struct{})
	go func() { defer close(reloaderDone); e.reloader(rctx) }()
	stops = append(stops, func() { stopReloader(); <-reloaderDone })

	e.ready.Store(true)
	e.metrics.Ready.Set(1)
	close(e.readyCh)
	e.log.Info("kairos ready", "rules", len(e.rs.Rules()), "workers", workers, "applied_seq", e.rt.applied, "batch_applied_seq", e.bt.applied, "nats", e.NATSURL(), "http", e.HTTPAddr())

	// After a stop is asked for, the batch in hand may finish for up to
	// engine.shutdown_timeout; then hard cancels its rule evaluation and
	// publishing, leaving it unacknowledged for redelivery.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	stopHard := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(mustDuration(e.cfg.Engine.ShutdownTimeout), cancelHard)
		<-hard.Done()
		t.Stop()
	})
	defer stopHard()
	e.hard = hard
	lctx := ctx
	var mgrErr error
	mgrDone := make(chan struct{})
	stopManager := func() {}
	if runManager != nil {
		var cancelLoop context.CancelFunc
		lctx, cancelLoop = context.WithCancel(ctx)
		defer cancelLoop()
		mctx, cancel := context.WithCancel(ctx)
		stopManager = cancel
		defer cancel()
		go func() {
			defer close(mgrDone)
			if err := runManager(mctx); err != nil && mctx.Err() == nil {
				mgrErr = err
				cancelLoop()
			}
		}()
	} else {
		close(mgrDone)
	}
	err = e.loop(lctx)
	e.ready.Store(false)
	e.metrics.Ready.Set(0)
	stopConsume()
	if e.sc != nil {
		// Give the partitions up: the manager releases their leases once
		// each release is acknowledged.
		e.stopAll()
		stopManager()
		if changes := e.clusterChanges(); changes != nil {
			for ch := range changes {
				e.dropPartition(ch.Partition)
				ch.Ack()
			}
		}
		<-mgrDone
		if mgrErr != nil && err == nil {
			err = fmt.Errorf("cluster: %w", mgrErr)
		}
	}
	if ferr := e.finish(); ferr != nil && err == nil {
		err = ferr
	}
	e.log.Info("kairos stopped", "applied_seq", e.rt.applied, "batch_applied_seq", e.bt.applied)
	return err
}

// finish deletes the published outbox records so that a clean stop leaves
// an empty outbox.
func (e *Engine) finish() error {
	if len(e.prevKeys) == 0 {
		return nil
	}
	b := e.batch
	b.Reset()
	for _, k := range e.prevKeys {
		b.DeleteOutbox(k)
	}
	if err := e.store.Commit(b); err != nil {
		return fmt.Errorf("final commit: %w", err)
	}
	e.prevKeys = e.prevKeys[:0]
	return nil
}
