package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/time/rate"

	"github.com/kairos-engine/kairos/engine/batchgen"
	"github.com/kairos-engine/kairos/engine/cluster"
	"github.com/kairos-engine/kairos/engine/schedule"
	"github.com/kairos-engine/kairos/state"
)

// Batch jobs select customers from Kairos's own state (profiles, the last
// day each event type was seen) or a campaign list, and publish one
// synthetic event each to kairos.batch.<type>.<customer>, paced at
// batch.rate, with deterministic ids: the engine applies each id once
// (docs/batch.md).

// JobResult is the outcome of one job run.
type JobResult struct {
	Job     string    `json:"job"`
	Type    string    `json:"type"`
	At      time.Time `json:"at"` // the scheduled (or requested) time the events are for
	Events  int       `json:"events"`
	Skipped int       `json:"skipped"` // customers whose attributes could not be read
	// Duplicates were dropped by the stream (sent before within its
	// duplicate window); older repeats are dropped by the engine.
	Duplicates int     `json:"duplicates"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
}

func (e *Engine) batchLoc() *time.Location {
	if e.cfg.Batch.Timezone != "" {
		if loc, err := time.LoadLocation(e.cfg.Batch.Timezone); err == nil {
			return loc
		}
	}
	return e.pol.loc
}

// RunJob runs a batch job now, for the time at, over every customer (in
// cluster mode: of the partitions this instance owns).
func (e *Engine) RunJob(ctx context.Context, job BatchJob, at time.Time) (*JobResult, error) {
	return e.runJob(ctx, job, at, e.ownedNow())
}

// runJob runs a job over the customers keep reports true for (all when
// keep is nil); list jobs take every row of their list.
func (e *Engine) runJob(ctx context.Context, job BatchJob, at time.Time, keep func(customer string) bool) (*JobResult, error) {
	if !e.ready.Load() {
		return nil, errors.New("batch: the engine is not running")
	}
	start := time.Now()
	loc := e.batchLoc()
	res := &JobResult{Job: job.Name, Type: job.Type, At: at}
	var events []batchgen.Event
	var abort error
	collect := func(ev batchgen.Event, ok bool, err error, id string) {
		if keep != nil && !keep(id) {
			return
		}
		switch {
		case errors.Is(err, batchgen.ErrArgument):
			abort = err // the job's configuration is wrong: stop
		case err != nil:
			res.Skipped++
			e.log.Warn("batch job: a customer's attributes cannot be read", "job", job.Name, "customer", id, "err", err)
		case ok:
			events = append(events, ev)
		}
	}
	var err error
	switch job.Type {
	case "birthday":
		err = e.store.ScanProfiles(func(id string, p map[string]any) error {
			ev, ok, err := batchgen.Birthday(at, loc, job.DaysAhead, id, p)
			collect(ev, ok, err, id)
			return nil
		})
	case "new_customer":
		err = e.store.ScanProfiles(func(id string, p map[string]any) error {
			ev, ok, err := batchgen.NewCustomer(at.In(loc), job.Days, id, p)
			collect(ev, ok, err, id)
			return nil
		})
	case "anniversary":
		err = e.store.ScanProfiles(func(id string, p map[string]any) error {
			ev, ok, err := batchgen.Anniversary(at, loc, id, p)
			collect(ev, ok, err, id)
			return nil
		})
	case "dormant":
		seen := map[string]int64{}
		err = e.store.ScanLastSeen(func(id string, days []state.SeenDay) error {
			clear(seen)
			for _, d := range days {
				seen[d.Type] = int64(d.Day) * 24 * 3600 * 1000
			}
			ev, ok, err := batchgen.Dormant(at, loc, job.Days, job.Types, id, seen)
			collect(ev, ok, err, id)
			return nil
		})
	case "list":
		var f *os.File
		if f, err = os.Open(job.File); err == nil {
			format := "csv"
			if ext := strings.ToLower(filepath.Ext(job.File)); ext == ".jsonl" || ext == ".ndjson" {
				format = "jsonl"
			}
			_, err = batchgen.ReadList(f, format, job.Campaign, at, func(ev batchgen.Event) error {
				events = append(events, ev)
				return nil
			})
			f.Close()
			// Bad rows are skipped (and counted); only a list that cannot
			// be read at all fails the job.
			if err != nil && !errors.Is(err, batchgen.ErrList) {
				e.log.Warn("batch job: rows of the list skipped", "job", job.Name, "err", err)
				res.Skipped++
				err = nil
			}
		}
	default:
		err = fmt.Errorf("unknown job type %q", job.Type)
	}
	if err == nil {
		err = abort
	}
	if err != nil {
		return nil, fmt.Errorf("batch job %s: %w", job.Name, err)
	}
	n, dups, err := PublishBatch(ctx, e.js, e.cfg.Streams.Prefix, events, e.cfg.Batch.Rate, nil)
	res.Events, res.Duplicates = n, dups
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.PerSecond = float64(n) / res.Seconds
	}
	if err != nil {
		return res, fmt.Errorf("batch job %s: %w", job.Name, err)
	}
	e.metrics.BatchEvents.WithLabelValues(job.Name).Add(float64(n))
	e.metrics.BatchLastSuccess.WithLabelValues(job.Name).Set(float64(time.Now().Unix()))
	e.log.Info("batch job done", "job", job.Name, "type", job.Type, "at", at.Format(time.RFC3339), "events", n, "skipped", res.Skipped)
	return res, nil
}

// PublishBatch publishes synthetic events to <prefix>.batch.<type>.<customer>
// with their ids as Nats-Msg-Id, at most ratePerSec a second, waiting for
// the stream's acknowledgements; progress, when set, gets the count done.
// It returns how many were stored and how many of those the stream
// dropped as duplicates (sent before, within its duplicate window).
func PublishBatch(ctx context.Context, js jetstream.JetStream, prefix string, events []batchgen.Event, ratePerSec float64, progress func(int)) (int, int, error) {
	lim := rate.NewLimiter(rate.Limit(ratePerSec), max(1, int(ratePerSec/10)))
	var futures []jetstream.PubAckFuture
	done, dups := 0, 0
	flush := func() error {
		for _, f := range futures {
			select {
			case a := <-f.Ok():
				done++
				if a.Duplicate {
					dups++
				}
			case err := <-f.Err():
				return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		if progress != nil {
			progress(done)
		}
		return nil
	}
	for i := range events {
		ev := &events[i]
		if err := lim.Wait(ctx); err != nil {
			return done, dups, err
		}
		data, err := msgpack.Marshal(map[string]any{"id": ev.ID, "customer_id": ev.CustomerID, "type": ev.Type, "ts": ev.TS, "attrs": ev.Attrs})
		if err != nil {
			return done, dups, err
		}
		m := nats.NewMsg(prefix + ".batch." + ev.Type + "." + ev.CustomerID)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return done, dups, err
		}
		futures = append(futures, f)
		if len(futures) == 1000 {
			if err := flush(); err != nil {
				return done, dups, err
			}
		}
	}
	return done, dups, flush()
}

// scheduler fires the configured jobs at their scheduled times. The last
// time each fired is kept in the JetStream key-value bucket
// KAIROS_BATCH_JOBS, so a job fires once per scheduled time even across
// restarts, and a run missed while down is caught up once. A job new to
// the bucket starts from start: no catch-up of the slots before it.
func (e *Engine) scheduler(ctx context.Context, every time.Duration, start time.Time) {
	if len(e.cfg.Batch.Jobs) == 0 {
		return
	}
	kv, err := e.js.KeyValue(ctx, "KAIROS_BATCH_JOBS")
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "KAIROS_BATCH_JOBS", Description: "Kairos batch jobs: the last scheduled time each fired"})
	}
	if err != nil {
		e.log.Error("batch scheduler: no job bucket; scheduled jobs do not run", "err", err)
		return
	}
	type sched struct {
		job BatchJob
		s   *schedule.Schedule
	}
	var jobs []sched
	for _, j := range e.cfg.Batch.Jobs {
		s, err := schedule.Parse(j.Schedule)
		if err != nil {
			continue // validated at start
		}
		jobs = append(jobs, sched{j, s})
		e.metrics.BatchEvents.WithLabelValues(j.Name)
		e.metrics.BatchLastSuccess.WithLabelValues(j.Name) // 0: not run by this process yet
	}
	loc := e.batchLoc()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, j := range jobs {
			// Which runs are due, by the time they are for: one key per
			// job, or in cluster mode one per job and partition owned
			// (list jobs: run by partition 0's owner).
			due := map[time.Time][]jobKey{}
			for _, k := range e.jobKeys(j.job) {
				var last time.Time
				ent, err := kv.Get(ctx, k.key)
				switch {
				case err == nil:
					last, _ = time.Parse(time.RFC3339Nano, string(ent.Value()))
				case errors.Is(err, jetstream.ErrKeyNotFound):
					// A new job starts from now: no catch-up of the slots
					// before it was deployed.
					if _, err := kv.Create(ctx, k.key, []byte(start.Format(time.RFC3339Nano))); err != nil {
						if !errors.Is(err, jetstream.ErrKeyExists) {
							e.log.Error("batch scheduler: cannot record a new job", "job", j.job.Name, "err", err)
						}
						continue // read again at the next check
					}
					last = start
				default:
					e.log.Error("batch scheduler: cannot read a job's last run", "job", j.job.Name, "err", err)
					continue
				}
				if at, ok := j.s.Due(last, e.now(), loc); ok {
					due[at] = append(due[at], k)
				}
			}
			for at, keys := range due {
				var keep func(string) bool
				if e.sc != nil && j.job.Type != "list" {
					parts := make(map[int]bool, len(keys))
					for _, k := range keys {
						parts[k.part] = true
					}
					n := e.sc.n
					keep = func(id string) bool { return parts[cluster.Partition(id, n)] }
				}
				if _, err := e.runJob(ctx, j.job, at, keep); err != nil {
					e.log.Error("batch job failed; it is retried at the next check", "job", j.job.Name, "err", err)
					continue
				}
				for _, k := range keys {
					if _, err := kv.Put(ctx, k.key, []byte(at.Format(time.RFC3339Nano))); err != nil {
						e.log.Error("batch job ran but its run could not be recorded", "job", j.job.Name, "err", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// jobKey is where the scheduler records a job's last run: for the whole
// job, or in cluster mode for one partition (part).
type jobKey struct {
	key  string
	part int
}

// jobKeys returns the keys of the runs of job this instance makes: the
// job's name in single-instance mode; in cluster mode one key per
// partition owned ("<job>.p<partition>"), so that every partition's
// customers are selected once per scheduled time by its owner at the time,
// and for a list job its name when this instance owns partition 0.
func (e *Engine) jobKeys(job BatchJob) []jobKey {
	if e.sc == nil {
		return []jobKey{{job.Name, -1}}
	}
	owned := e.sc.ownedSnapshot()
	if job.Type == "list" {
		if len(owned) > 0 && owned[0] {
			return []jobKey{{job.Name, 0}}
		}
		return nil
	}
	var keys []jobKey
	for p, ok := range owned {
		if ok {
			keys = append(keys, jobKey{job.Name + ".p" + strconv.Itoa(p), p})
		}
	}
	return keys
}

// BatchRunRequest is the body of POST /v1/batch/run: a job to run now.
type BatchRunRequest struct {
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	DaysAhead int      `json:"days_ahead"`
	Days      int      `json:"days"`
	Types     []string `json:"types"`
	Campaign  string   `json:"campaign"`
	File      string   `json:"file"`
	// At is the time the events are for (RFC 3339); default now.
	At string `json:"at"`
}

// handleBatchRun runs a job now.
func (e *Engine) handleBatchRun(w http.ResponseWriter, r *http.Request) {
	var req BatchRunRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "batch run: "+err.Error(), http.StatusBadRequest)
		return
	}
	job := BatchJob{Name: req.Name, Type: req.Type, Schedule: "@daily", DaysAhead: req.DaysAhead, Days: req.Days, Types: req.Types, Campaign: req.Campaign, File: req.File}
	if job.Name == "" {
		job.Name = "manual_" + job.Type
	}
	c := e.cfg
	c.Batch.Jobs = []BatchJob{job}
	if probs := c.validateBatch(); len(probs) > 0 {
		http.Error(w, "batch run: "+strings.Join(probs, "; "), http.StatusBadRequest)
		return
	}
	at := e.now()
	if req.At != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, req.At); err != nil {
			http.Error(w, "batch run: at: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if e.sc != nil {
		res, err := e.runClusterJob(r.Context(), job, at)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	res, err := e.RunJob(r.Context(), job, at)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
