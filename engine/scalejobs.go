package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kairos-engine/kairos/engine/cluster"
)

// In cluster mode a job asked for by hand (POST /v1/batch/run, kairos
// batch run) must select from every partition, but each instance holds the
// state of its own. The instance that gets the request sends it to all
// instances on <prefix>.admin.batch.run; each answers at once with the
// partitions it will cover, runs the job over their customers, and
// answers again with its result. The asking instance adds the results up
// and reports the partitions nobody covered.

// jobRequest is what <prefix>.admin.batch.run carries.
type jobRequest struct {
	Job BatchJob  `json:"job"`
	At  time.Time `json:"at"`
}

// jobReply is an instance's answer: first Partitions (Final false), then
// the result (Final true).
type jobReply struct {
	Instance   string     `json:"instance"`
	Partitions []int      `json:"partitions,omitempty"`
	Final      bool       `json:"final"`
	Result     *JobResult `json:"result,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// ClusterJobResult is the result of a job run across the cluster.
type ClusterJobResult struct {
	JobResult
	// Instances are the results of each instance.
	Instances map[string]*JobResult `json:"instances"`
	// Missing are the partitions no instance covered: their owner was
	// gone or did not answer; run the job again once they have one.
	Missing []int    `json:"missing_partitions,omitempty"`
	Errors  []string `json:"errors,omitempty"`
}

// jobAckWait is how long the asking instance collects the instances'
// first answers.
const jobAckWait = 2 * time.Second

func (e *Engine) adminJobSubject() string { return e.cfg.Streams.Prefix + ".admin.batch.run" }

// serveClusterJobs answers job requests until the returned func is called.
func (e *Engine) serveClusterJobs(ctx context.Context) (func(), error) {
	sub, err := e.nc.Subscribe(e.adminJobSubject(), func(m *nats.Msg) {
		var req jobRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || m.Reply == "" {
			return
		}
		go e.answerJob(ctx, m.Reply, req)
	})
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (e *Engine) answerJob(ctx context.Context, reply string, req jobRequest) {
	owned := e.sc.ownedSnapshot()
	var parts []int
	for p, ok := range owned {
		if ok && (req.Job.Type != "list" || p == 0) {
			parts = append(parts, p)
		}
	}
	send := func(r jobReply) {
		r.Instance = e.sc.instance
		b, _ := json.Marshal(r)
		_ = e.nc.Publish(reply, b)
	}
	send(jobReply{Partitions: parts})
	if len(parts) == 0 {
		send(jobReply{Final: true, Result: &JobResult{Job: req.Job.Name, Type: req.Job.Type, At: req.At}})
		return
	}
	keep := func(string) bool { return true }
	if req.Job.Type != "list" {
		set := make([]bool, len(owned))
		for _, p := range parts {
			set[p] = true
		}
		keep = func(id string) bool { return set[cluster.Partition(id, e.sc.n)] }
	}
	res, err := e.runJob(ctx, req.Job, req.At, keep)
	r := jobReply{Final: true, Result: res}
	if err != nil {
		r.Error = err.Error()
	}
	send(r)
}

// runClusterJob asks every instance to run job for the partitions it owns
// and adds up their results.
func (e *Engine) runClusterJob(ctx context.Context, job BatchJob, at time.Time) (*ClusterJobResult, error) {
	inbox := e.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := e.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	body, _ := json.Marshal(jobRequest{Job: job, At: at})
	if err := e.nc.PublishRequest(e.adminJobSubject(), inbox, body); err != nil {
		return nil, err
	}
	out := &ClusterJobResult{JobResult: JobResult{Job: job.Name, Type: job.Type, At: at}, Instances: map[string]*JobResult{}}
	covered := map[int]bool{}
	waiting := map[string]bool{} // instances that will send a final answer
	need := e.sc.n
	if job.Type == "list" {
		need = 1
	}
	start := time.Now()
	ackDeadline := time.NewTimer(jobAckWait)
	defer ackDeadline.Stop()
	acking := true
	for acking || len(waiting) > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ackDeadline.C:
			acking = false
		case m := <-ch:
			var r jobReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				continue
			}
			if !r.Final {
				if len(r.Partitions) > 0 {
					waiting[r.Instance] = true
				}
				for _, p := range r.Partitions {
					covered[p] = true
				}
				if len(covered) >= need {
					acking = false
				}
				continue
			}
			delete(waiting, r.Instance)
			if r.Error != "" {
				out.Errors = append(out.Errors, r.Instance+": "+r.Error)
			}
			if res := r.Result; res != nil && r.Error == "" {
				out.Instances[r.Instance] = res
				out.Events += res.Events
				out.Skipped += res.Skipped
				out.Duplicates += res.Duplicates
			}
		}
	}
	for p := range need {
		if !covered[p] {
			out.Missing = append(out.Missing, p)
		}
	}
	slices.Sort(out.Missing)
	out.Seconds = time.Since(start).Seconds()
	if out.Seconds > 0 {
		out.PerSecond = float64(out.Events) / out.Seconds
	}
	if len(out.Errors) > 0 && len(out.Instances) == 0 {
		return out, errors.New(out.Errors[0])
	}
	if len(out.Missing) > 0 {
		e.log.Warn("batch job: partitions without an owner were not covered", "job", job.Name, "missing", fmt.Sprint(out.Missing))
	}
	return out, nil
}
