package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// Simulator runs the engine's own code — windows, rules, contact policy,
// budgets, quiet hours — over events in virtual time, on an isolated
// in-memory state, without NATS. Rule unit tests (kairos rules test) and
// backtests (kairos replay) use it, so what they show is what the live
// engine would decide. A Simulator is not safe for concurrent use.
type Simulator struct {
	e       *Engine
	now     time.Time
	out     []connectors.Decision
	offers  []connectors.Offer
	decErr  error
	applied int
}

// SimOptions configure a Simulator.
type SimOptions struct {
	Rules  *rules.RuleSet
	Policy PolicyConfig // unset fields take their defaults
	// MaxEventBytes and MaxSeriesEntries as in the engine's config; zero
	// takes the defaults.
	MaxSeriesEntries int
	Logger           *slog.Logger
}

// SimEvent is an event and the moment (virtual decision time) it is
// processed at.
type SimEvent struct {
	Event Event
	At    time.Time
}

// NewSimulator returns a simulator of rs under the policy.
func NewSimulator(opts SimOptions) (*Simulator, error) {
	var cfg Config
	cfg.Policy = opts.Policy
	cfg.State.MaxSeriesEntries = opts.MaxSeriesEntries
	cfg.Defaults()
	if probs := cfg.Policy.validate(); len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pol, _ := compilePolicy(&cfg.Policy)
	s := &Simulator{}
	e := &Engine{
		cfg:         cfg,
		log:         log,
		metrics:     NewMetrics(nil),
		now:         func() time.Time { return s.now },
		sub:         newSubjects(cfg.Streams.Prefix),
		enc:         connectors.Msgpack,
		pol:         pol,
		hard:        context.Background(),
		nextRelease: math.MaxInt64,
	}
	e.sink = s.collect
	e.rt = &source{name: cfg.Streams.Events.Name, prefix: e.sub.eventsPrefix}
	e.bt = &source{name: cfg.Streams.Batch.Name, prefix: e.sub.batchPrefix, batch: true}
	if err := e.setRules(opts.Rules); err != nil {
		return nil, err
	}
	store, err := state.Open(state.Options{InMemory: true, MaxSeriesEntries: cfg.State.MaxSeriesEntries, Logger: log})
	if err != nil {
		return nil, err
	}
	e.store = store
	e.workers = []*worker{newWorker(e, 0, store.Shard(0))}
	e.batch = store.NewBatch()
	if err := e.loadBudgets(context.Background()); err != nil {
		store.Close()
		return nil, err
	}
	s.e = e
	return s, nil
}

// Close releases the simulator's state.
func (s *Simulator) Close() error { return s.e.store.Close() }

// Engine gives read access to the simulated engine's parts (rule set,
// explain).
func (s *Simulator) Explain(customerID string) (*Explanation, error) { return s.e.Explain(customerID) }

func (s *Simulator) collect(recs []outRecord) {
	for i := range recs {
		r := &recs[i]
		switch r.tag.kind {
		case tagDecision:
			d, err := connectors.DecodeDecision(r.Data)
			if err != nil {
				s.decErr = errors.Join(s.decErr, err)
				continue
			}
			s.out = append(s.out, *d)
		case tagOffer:
			o, err := connectors.DecodeOffer(r.Data)
			if err != nil {
				s.decErr = errors.Join(s.decErr, err)
				continue
			}
			s.offers = append(s.offers, *o)
		}
	}
}

// Result is what a simulation step decided.
type Result struct {
	Decisions []connectors.Decision // in decision order, releases first
	Offers    []connectors.Offer    // the emitted offers
	Invalid   []error               // events rejected as they would be dead-lettered
	EvalErrs  []string              // rule evaluation errors ("rule: message")
}

// Process applies events in order, each at its At (which must not go
// back in time). Offers deferred by quiet hours whose release comes at or
// before an event's At are released first. Events are committed in
// batches, as the engine would, that never span a policy day or a release.
func (s *Simulator) Process(evs []SimEvent) (*Result, error) {
	res := &Result{}
	e := s.e
	w := e.workers[0]
	var items []item
	day := ""
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		if err := e.commit(items, nil); err != nil {
			return err
		}
		s.applied += len(items)
		items = items[:0]
		s.take(res)
		return s.decErr
	}
	for k := range evs {
		at := evs[k].At
		if at.Before(s.now) {
			return res, fmt.Errorf("event %s at %s is before the simulation's clock %s", evs[k].Event.ID, at.Format(time.RFC3339), s.now.Format(time.RFC3339))
		}
		d := at.In(e.pol.loc).Format("20060102")
		if len(items) > 0 && (d != day || len(items) == 512 || min(e.nextRelease, w.minRelease) <= at.UnixMilli()) {
			if err := flush(); err != nil {
				return res, err
			}
		}
		if len(items) == 0 {
			if err := s.advance(at, res); err != nil {
				return res, err
			}
			e.beginBatch(true)
			day = d
		}
		s.now = at
		ev := evs[k].Event
		items = append(items, item{now: at, customer: ev.CustomerID, subject: e.sub.eventsPrefix + ev.Type + "." + ev.CustomerID, inMsg: inMsg{src: e.rt}})
		it := &items[len(items)-1]
		if err := validateEvent(&ev, ev.Type, ev.CustomerID); err != nil {
			res.Invalid = append(res.Invalid, fmt.Errorf("event %q: %w", ev.ID, err))
			continue
		}
		if err := w.apply(it, &ev); err != nil {
			e.invalidate()
			return res, err
		}
		for _, r := range it.records {
			if r.tag.kind == tagDeadLetter {
				res.EvalErrs = append(res.EvalErrs, r.tag.rule.ID+": "+headerValue(r.Header, HeaderError))
			}
		}
	}
	return res, flush()
}

// Advance moves the clock to now, releasing the deferred offers due by then.
func (s *Simulator) Advance(now time.Time) (*Result, error) {
	res := &Result{}
	if now.Before(s.now) {
		return res, fmt.Errorf("cannot go back in time to %s", now.Format(time.RFC3339))
	}
	return res, s.advance(now, res)
}

func (s *Simulator) advance(now time.Time, res *Result) error {
	if s.e.nextRelease <= now.UnixMilli() {
		// Release at each due time in turn, so each is decided at its own
		// release time.
		for s.e.nextRelease <= now.UnixMilli() {
			s.now = time.UnixMilli(s.e.nextRelease)
			if err := s.e.release(context.Background()); err != nil {
				return err
			}
		}
		s.take(res)
	}
	s.now = now
	return nil
}

func (s *Simulator) take(res *Result) {
	res.Decisions = append(res.Decisions, s.out...)
	res.Offers = append(res.Offers, s.offers...)
	s.out, s.offers = s.out[:0], s.offers[:0]
}

func headerValue(h []string, key string) string {
	for i := 0; i+1 < len(h); i += 2 {
		if h[i] == key {
			return h[i+1]
		}
	}
	return ""
}

// SetProfile merges attributes into a customer's profile, as a profile
// import would, without an event.
func (s *Simulator) SetProfile(customerID string, attrs map[string]any) error {
	e := s.e
	w := e.workers[0]
	e.beginBatch(true)
	c, err := w.shard.Load(customerID)
	if err != nil {
		return err
	}
	wasDirty := c.Dirty()
	c.MergeProfile(NormalizeAttrs(attrs))
	w.track(c, wasDirty)
	return e.commit(nil, nil)
}

// NormalizeAttrs gives YAML- or JSON-read values the types decoded events
// have: whole numbers as int64, nested alike.
func NormalizeAttrs(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = normalizeValue(v)
	}
	return out
}

func normalizeValue(v any) any {
	switch t := v.(type) {
	case int:
		return int64(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalizeValue(e)
		}
		return out
	case map[string]any:
		return NormalizeAttrs(t)
	}
	return v
}
