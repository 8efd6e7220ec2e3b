package engine

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/state"
)

// Budgets are kept as state counters, committed with the batch that
// spends them: "budget/<rule id>/total" and "budget/<rule id>/day/<yyyymmdd>"
// (the day in the policy's time zone). A crash loses a batch's spending
// together with its offers, so a budget is never overspent nor leaked.

const budgetPrefix = "budget/"

func budgetTotalName(rule string) string { return budgetPrefix + rule + "/total" }
func budgetDayName(rule, day string) string {
	return budgetPrefix + rule + "/day/" + day
}

// loadBudgets reads what the budgeted rules have spent: from the state's
// counters, or in cluster mode from the changelog's, which the instances
// share.
func (e *Engine) loadBudgets(ctx context.Context) error {
	n := len(e.rs.Rules())
	e.budgets = budgets{total: make([]int64, n), daily: make([]int64, n), day: e.now().In(e.pol.loc).Format("20060102")}
	e.sharedReserved = make([]int64, n)
	var counters map[string]int64
	if e.sc != nil {
		cs, err := e.sc.cl.Counters(ctx, budgetPrefix)
		if err != nil {
			return fmt.Errorf("read budgets: %w", err)
		}
		counters = make(map[string]int64, len(cs))
		for name, c := range cs {
			counters[name] = c.Value
			e.sc.counters[name] = c.Seq
		}
	} else {
		var err error
		if counters, err = e.store.Counters(budgetPrefix); err != nil {
			return fmt.Errorf("read budgets: %w", err)
		}
	}
	for name, v := range counters {
		if !e.setBudgetCounter(name, v) && e.sc == nil {
			e.budgets.stale = append(e.budgets.stale, name)
		}
	}
	e.budgetGauges()
	return nil
}

// setBudgetCounter puts a budget counter's value into e.budgets. It
// reports false for the counter of a day other than the budgets' day.
func (e *Engine) setBudgetCounter(name string, v int64) bool {
	rest := strings.TrimPrefix(name, budgetPrefix)
	if i := strings.LastIndex(rest, "/total"); i > 0 && i == len(rest)-len("/total") {
		if r := e.ruleByID[rest[:i]]; r != nil {
			e.budgets.total[r.Index] = v
		}
		return true
	}
	rule, day, ok := strings.Cut(rest, "/day/")
	if !ok {
		return true
	}
	if day != e.budgets.day {
		return false
	}
	if r := e.ruleByID[rule]; r != nil {
		e.budgets.daily[r.Index] = v
	}
	return true
}

// rollBudgetDay starts a new day's budgets when the policy's date changes.
func (e *Engine) rollBudgetDay(now time.Time) {
	day := now.In(e.pol.loc).Format("20060102")
	if day == e.budgets.day {
		return
	}
	for _, r := range e.rs.Rules() {
		if e.budgets.daily[r.Index] > 0 {
			e.budgets.stale = append(e.budgets.stale, budgetDayName(r.ID, e.budgets.day))
		}
	}
	clear(e.budgets.daily)
	e.budgets.day = day
	e.budgetGauges()
}

// spent sums the batch's reservations by rule. Only budgeted rules reserve,
// and only their entries are read: the others stay 0. It runs twice a
// batch, so it touches the budgeted rules alone, not every rule.
func (e *Engine) spent() []int64 {
	if e.sequential {
		return e.sharedReserved
	}
	if n := len(e.rs.Rules()); len(e.spentBuf) != n {
		e.spentBuf = make([]int64, n)
	}
	for _, r := range e.budgeted {
		var s int64
		for _, w := range e.workers {
			s += w.own[r.Index]
		}
		e.spentBuf[r.Index] = s
	}
	return e.spentBuf
}

// budgetReached reports whether the workers' reservations together used
// up a budget in this batch. Each worker saw only its own reservations, so
// then a worker may have overspent, or judged a later event (in stream
// order) as having budget when it had none: the batch must run again in
// stream order. Below the limit every worker's view was exact.
func (e *Engine) budgetReached() bool {
	sum := e.spent()
	for _, r := range e.budgeted {
		s := sum[r.Index]
		if s == 0 {
			continue
		}
		b := r.Budget
		if (b.Total > 0 && e.budgets.total[r.Index]+s >= b.Total) || (b.PerDay > 0 && e.budgets.daily[r.Index]+s >= b.PerDay) {
			return true
		}
	}
	return false
}

// budgetUse writes the batch's budget spending into its commit.
func (e *Engine) budgetUse(b *state.Batch) []int64 {
	sum := e.spent()
	for _, r := range e.budgeted {
		if s := sum[r.Index]; s > 0 {
			b.SetCounter(budgetTotalName(r.ID), e.budgets.total[r.Index]+s)
			b.SetCounter(budgetDayName(r.ID, e.budgets.day), e.budgets.daily[r.Index]+s)
		}
	}
	for _, name := range e.budgets.stale {
		b.SetCounter(name, 0)
	}
	return sum
}

// applyBudgetUse records a committed batch's spending.
func (e *Engine) applyBudgetUse(sum []int64) {
	e.budgets.stale = e.budgets.stale[:0]
	changed := false
	for _, r := range e.budgeted {
		if s := sum[r.Index]; s > 0 {
			e.budgets.total[r.Index] += s
			e.budgets.daily[r.Index] += s
			changed = true
		}
	}
	clear(sum)
	if changed {
		e.budgetGauges()
	}
}

func (e *Engine) budgetGauges() {
	for _, r := range e.budgeted {
		if r.Budget.Total > 0 {
			e.metrics.BudgetRemaining.WithLabelValues(r.ID, "total").Set(float64(max(0, r.Budget.Total-e.budgets.total[r.Index])))
		}
		if r.Budget.PerDay > 0 {
			e.metrics.BudgetRemaining.WithLabelValues(r.ID, "day").Set(float64(max(0, r.Budget.PerDay-e.budgets.daily[r.Index])))
		}
	}
}

// reloadSuppression reads the suppression file again when it changed.
func (e *Engine) reloadSuppression() {
	path := e.cfg.Policy.SuppressionFile
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		e.log.Error("suppression file", "err", err)
		return
	}
	stamp := st.ModTime().UnixNano() ^ st.Size()
	if stamp == e.suppressionStamp {
		return
	}
	m, err := loadSuppression(path)
	if err != nil {
		e.log.Error("suppression file: keeping the previous list", "err", err)
		return
	}
	e.suppressed.Store(&m)
	e.suppressionStamp = stamp
	e.log.Info("suppression list loaded", "customers", len(m), "file", path)
}
