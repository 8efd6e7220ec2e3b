package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// Hot reload: the rules directory is watched (and SIGHUP and
// POST /v1/rules/reload reload it). A new set is compiled completely off
// the batch loop; one with any error is rejected and the running set keeps
// running. A good set is handed to the batch loop, which swaps it in
// between two batches, so every event is decided by exactly one rule set.

// ruleView is what other goroutines (HTTP) may read of the rule set.
type ruleView struct {
	rs       *rules.RuleSet
	plan     *state.Plan
	loadedAt time.Time
}

// reloadStatus is the outcome of the last reload.
type reloadStatus struct {
	At     time.Time `json:"at"`
	Result string    `json:"result"`
	Error  string    `json:"error,omitempty"`
	Rules  int       `json:"rules"`
}

type ruleSwap struct {
	rs   *rules.RuleSet
	done chan error
}

// loadRules compiles the configured rules directory.
func (e *Engine) loadRules() (*rules.RuleSet, error) {
	opts := rules.Options{Horizon: mustDuration(e.cfg.Rules.Horizon), CostLimit: e.cfg.Rules.CostLimit}
	if e.cfg.Rules.Catalogue != "" {
		cat, err := rules.LoadCatalogue(e.cfg.Rules.Catalogue)
		if err != nil {
			return nil, err
		}
		opts.Catalogue = cat
	}
	rs, err := rules.Load(opts, e.cfg.Rules.Dir)
	if err != nil {
		return nil, err
	}
	// The engine evaluates; it never lints, so the files' text can go.
	rs.ReleaseSources()
	return rs, nil
}

// largeRuleSet is the rule count from which installing a rule set returns
// the garbage of its loading to the system.
const largeRuleSet = 1000

// freeAfterLoad returns the garbage of loading and installing a large rule
// set to the system: compiling thousands of rules and creating their
// metric series leaves a few hundred megabytes, which would otherwise stay
// resident until the heap needs it. It forces a collection, so it runs
// off the batch loop (at start, and in the reloader after the swap).
func freeAfterLoad(rs *rules.RuleSet) {
	if len(rs.Rules()) >= largeRuleSet {
		debug.FreeOSMemory()
	}
}

// Reload compiles the rules directory again and, when it has no error,
// swaps the new set in between two batches. It returns once the new set
// is in use, or with the errors that kept the old one running.
func (e *Engine) Reload(ctx context.Context) error {
	if !e.ready.Load() {
		return errors.New("reload: the engine is not running")
	}
	reply := make(chan error, 1)
	select {
	case e.reloadReq <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reloader serves reload requests and watches the rules directory.
func (e *Engine) reloader(ctx context.Context) {
	var tick <-chan time.Time
	if e.cfg.Rules.Watch != "off" {
		t := time.NewTicker(mustDuration(e.cfg.Rules.Watch))
		defer t.Stop()
		tick = t.C
	}
	fp := e.rulesFP
	for {
		select {
		case <-ctx.Done():
			return
		case reply := <-e.reloadReq:
			fp = rulesFingerprint(e.cfg.Rules.Dir)
			reply <- e.reloadOnce(ctx, "request")
		case <-tick:
			if f := rulesFingerprint(e.cfg.Rules.Dir); f != fp {
				fp = f
				_ = e.reloadOnce(ctx, "change")
			}
		}
	}
}

func (e *Engine) reloadOnce(ctx context.Context, why string) error {
	rs, err := e.loadRules()
	st := &reloadStatus{At: time.Now(), Result: ReloadSuccess}
	if err == nil {
		sw := &ruleSwap{rs: rs, done: make(chan error, 1)}
		select {
		case e.swapCh <- sw:
			if err = <-sw.done; err == nil {
				freeAfterLoad(rs)
			}
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		st.Result, st.Error = ReloadFailure, err.Error()
		e.metrics.RulesReloads.WithLabelValues(ReloadFailure).Inc()
		first, _, _ := strings.Cut(err.Error(), "\n")
		e.log.Error("rules reload rejected; the running rules keep running", "trigger", why, "err", first, "errors", strings.Count(err.Error(), "\n")+1)
		e.lastReload.Store(st)
		return err
	}
	st.Rules = len(rs.Rules())
	e.metrics.RulesReloads.WithLabelValues(ReloadSuccess).Inc()
	e.log.Info("rules reloaded", "trigger", why, "rules", st.Rules)
	e.lastReload.Store(st)
	return nil
}

// swapRules installs a new rule set; the batch loop calls it between
// batches, when no worker runs.
func (e *Engine) swapRules(rs *rules.RuleSet) error {
	old := e.rs
	if err := e.setRules(rs); err != nil {
		if serr := e.setRules(old); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	n := len(rs.Rules())
	for _, w := range e.workers {
		w.eval = rs.NewEvaluator()
		w.own = make([]int64, n)
		w.reserved = w.own
	}
	e.sharedReserved = make([]int64, n)
	e.spentBuf = nil
	if err := e.loadBudgets(e.hard); err != nil {
		return fmt.Errorf("budgets: %w", err)
	}
	// Forget the metric series of rules that are gone.
	for _, r := range old.Rules() {
		if e.ruleByID[r.ID] == nil {
			m := e.metrics
			m.RuleEvals.DeleteLabelValues(r.ID)
			m.RuleMatches.DeleteLabelValues(r.ID)
			m.RuleErrors.DeleteLabelValues(r.ID)
			m.Offers.DeletePartialMatch(map[string]string{"rule": r.ID})
			m.Suppressed.DeletePartialMatch(map[string]string{"rule": r.ID})
			m.BudgetRemaining.DeletePartialMatch(map[string]string{"rule": r.ID})
			m.Conversions.DeletePartialMatch(map[string]string{"rule": r.ID})
		}
	}
	return nil
}

// rulesFingerprint summarises the rule files' names, sizes and times.
func rulesFingerprint(dir string) uint64 {
	h := fnv.New64a()
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", n, st.Size(), st.ModTime().UnixNano())
	}
	return h.Sum64()
}

// RuleInfo is one loaded rule, as GET /v1/rules lists it.
type RuleInfo struct {
	ID       string   `json:"id"`
	Version  string   `json:"version"`
	Kind     string   `json:"kind"`
	Mode     string   `json:"mode"`
	Enabled  bool     `json:"enabled"`
	On       []string `json:"on"`
	Priority int      `json:"priority"`
	Source   string   `json:"source"` // file:line
}

// RulesView is what GET /v1/rules answers.
type RulesView struct {
	LoadedAt   time.Time     `json:"loaded_at"`
	Rules      []RuleInfo    `json:"rules"`
	LastReload *reloadStatus `json:"last_reload,omitempty"`
}

func (e *Engine) handleRules(w http.ResponseWriter, _ *http.Request) {
	v := e.view.Load()
	out := RulesView{LoadedAt: v.loadedAt, Rules: []RuleInfo{}, LastReload: e.lastReload.Load()}
	for _, r := range v.rs.Rules() {
		out.Rules = append(out.Rules, RuleInfo{ID: r.ID, Version: r.Version, Kind: r.Kind.String(), Mode: r.Mode.String(),
			Enabled: r.Enabled, On: r.On, Priority: r.Offer.Priority, Source: r.Pos.String()})
	}
	writeJSON(w, http.StatusOK, out)
}

func (e *Engine) handleReload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	if err := e.Reload(ctx); err != nil {
		code := http.StatusUnprocessableEntity
		if !e.ready.Load() {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"result": ReloadFailure, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": ReloadSuccess, "rules": len(e.view.Load().rs.Rules())})
}
