package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine/cluster"
	"github.com/kairos-engine/kairos/engine/cluster/clustertest"
)

// The scale-out test's cluster and load (issue 9).
const (
	clusterParts     = 12
	clusterLeaseTTL  = 2 * time.Second
	clusterCustomers = 300
	// clusterBudget is visit-coupon's budget in testdata/cluster-rules.yaml.
	clusterBudget = 40
	// clusterCap is the contact cap of the instances' policy.
	clusterCap = 3
	// clusterRate is the steady load, in events per second.
	clusterRate = 100
)

// clusterPattern is the sequence of event types every customer sends: two
// logins (one welcome), five txns for a cap of three, one visit (some
// hundred visits for a budget of 40), four pings (a receipt each). The
// load stops when the faults are over, so customers are at different
// points of it: the expected outcome is computed from what was published.
var clusterPattern = []string{"login", "txn", "ping", "txn", "visit", "txn", "ping", "login", "txn", "ping", "txn", "ping"}

// clusterEvent is one event of the load.
type clusterEvent struct {
	id, typ, customer string
	seq               uint64 // in the events stream, once published
}

// clusterEvents interleaves the customers' patterns in a fixed pseudo-random
// order, each customer's events staying in pattern order.
func clusterEvents() []clusterEvent {
	rng := rand.New(rand.NewPCG(9, 1))
	next := make([]int, clusterCustomers)
	left := make([]int, clusterCustomers)
	for i := range left {
		left[i] = i
	}
	var out []clusterEvent
	for len(left) > 0 {
		j := rng.IntN(len(left))
		c := left[j]
		k := next[c]
		out = append(out, clusterEvent{id: fmt.Sprintf("c%03d-%02d", c, k), typ: clusterPattern[k], customer: fmt.Sprintf("K%03d", c)})
		if next[c]++; next[c] == len(clusterPattern) {
			left[j] = left[len(left)-1]
			left = left[:len(left)-1]
		}
	}
	return out
}

// clusterExpected is what every event must lead to, whichever instance
// decides it: its rule, and its outcome and reason unless that depends on
// the order across customers (the budget, checked as a total).
type clusterExpected struct {
	rule, outcome, reason string
}

func clusterExpect(events []clusterEvent) map[string]clusterExpected {
	rule := map[string]string{"login": "welcome", "txn": "txn-nudge", "visit": "visit-coupon", "ping": "receipt"}
	seen := map[[2]string]int{} // customer, type: events so far
	out := map[string]clusterExpected{}
	for _, ev := range events {
		n := seen[[2]string{ev.customer, ev.typ}]
		seen[[2]string{ev.customer, ev.typ}] = n + 1
		x := clusterExpected{rule: rule[ev.typ], outcome: connectors.Emitted}
		switch {
		case ev.typ == "login" && n >= 1:
			x.outcome, x.reason = connectors.Suppressed, "max_per_customer"
		case ev.typ == "txn" && n >= clusterCap:
			x.outcome, x.reason = connectors.Suppressed, "cap"
		case ev.typ == "visit":
			x.outcome = "" // emitted or suppressed by the budget
		}
		out[ev.id] = x
	}
	return out
}

// metricsClient reads /metrics with a timeout: the process may be stopped.
var metricsClient = &http.Client{Timeout: 2 * time.Second}

// metric reads one unlabelled sample from the process's /metrics.
func (p *proc) metric(name string) (float64, bool) {
	resp, err := metricsClient.Get("http://" + p.http + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// partitionsOwned is kairos_cluster_partitions_owned: the partitions the
// instance has taken over; -1 when unreadable.
func (p *proc) partitionsOwned() int {
	v, ok := p.metric("kairos_cluster_partitions_owned")
	if !ok {
		return -1
	}
	return int(v)
}

// clusterPoll polls cond every 20ms until it holds, failing the test with
// what and the output of diag after timeout.
func clusterPoll(t *testing.T, what string, timeout time.Duration, cond func() bool, diag func() string) {
	t.Helper()
	if !clusterWait(timeout, cond) {
		msg := ""
		if diag != nil {
			msg = diag()
		}
		t.Fatalf("timed out after %v waiting for %s\n%s", timeout, what, msg)
	}
}

// clusterWait polls cond every 20ms until it holds (true) or timeout
// passes (false).
func clusterWait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	return true
}

// leaseEvent is a change of a partition's lease seen in the cluster
// bucket: the owner's id, or "" when the lease expired or was released.
type leaseEvent struct {
	part  int
	owner string
	at    time.Time // server time of the change
}

// clusterTimeline records, as they happen, the lease changes of the
// cluster bucket and the offers stored in the offers stream, with the
// server's timestamps, to measure failovers.
type clusterTimeline struct {
	mu     sync.Mutex
	leases []leaseEvent
	offers []offerSeen
}

type offerSeen struct {
	part int
	at   time.Time
}

// watch records until ctx ends; wait returns when both recorders stopped.
func (tl *clusterTimeline) watch(t *testing.T, ctx context.Context, js jetstream.JetStream) (wait func()) {
	t.Helper()
	kv, err := js.KeyValue(ctx, cluster.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "lease.>")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue // the end of the initial values
			}
			p, err := strconv.Atoi(strings.TrimPrefix(e.Key(), "lease."))
			if err != nil {
				continue
			}
			owner := ""
			if e.Operation() == jetstream.KeyValuePut {
				owner = string(e.Value())
			}
			tl.mu.Lock()
			tl.leases = append(tl.leases, leaseEvent{p, owner, e.Created()})
			tl.mu.Unlock()
		}
	}()
	st, err := js.Stream(ctx, "KAIROS_OFFERS")
	if err != nil {
		t.Fatal(err)
	}
	oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		o, err := connectors.DecodeOffer(m.Data())
		if err != nil {
			return
		}
		tl.mu.Lock()
		tl.offers = append(tl.offers, offerSeen{cluster.Partition(o.CustomerID, clusterParts), md.Timestamp})
		tl.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = w.Stop()
			cc.Stop()
			<-done
		})
	}
}

// failover is an instance made to fail at a time, with the partitions it
// owned.
type failover struct {
	how, victim string
	at          time.Time
	parts       []int
}

// failoverTimes are the measures of a failover, from the server's
// timestamps: when another instance acquired the first of the victim's
// leases, and its first offer for one of the victim's partitions; the
// victim's last offer for them before it failed.
type failoverTimes struct {
	acquired, firstOffer, lastOffer time.Time
	acquiredBy, newOwner            string
}

// measure returns the failover's times once another instance has stored an
// offer for one of the victim's partitions. It must be called before the
// victim may own its partitions again: every offer stored for them after
// another instance acquired their lease is that instance's.
func (tl *clusterTimeline) measure(f failover) (ft failoverTimes, ok bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	acq := map[int]leaseEvent{}
	for _, le := range tl.leases {
		if !slices.Contains(f.parts, le.part) || le.at.Before(f.at) || le.owner == "" || le.owner == f.victim {
			continue
		}
		if _, seen := acq[le.part]; !seen {
			acq[le.part] = le
			if ft.acquired.IsZero() || le.at.Before(ft.acquired) {
				ft.acquired, ft.acquiredBy = le.at, le.owner
			}
		}
	}
	for _, o := range tl.offers {
		if !slices.Contains(f.parts, o.part) {
			continue
		}
		if o.at.Before(f.at) && o.at.After(ft.lastOffer) {
			ft.lastOffer = o.at
		}
		if le, ok := acq[o.part]; ok && !o.at.Before(le.at) && (ft.firstOffer.IsZero() || o.at.Before(ft.firstOffer)) {
			ft.firstOffer, ft.newOwner = o.at, le.owner
		}
	}
	return ft, !ft.firstOffer.IsZero()
}

// TestClusterScaleOutFailover runs three kairos instances in cluster mode
// on a three-node NATS cluster with R3 streams under a steady load, and
// meanwhile kills one with SIGKILL and starts it again, stops another with
// SIGSTOP past its lease and resumes it, and shuts a NATS node down. Then
// every event has exactly one decision, every expected offer is stored
// exactly once and no other, no customer gets more than the contact cap,
// and the global budget is spent exactly. The failover times are logged.
func TestClusterScaleOutFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster scale-out test in -short mode")
	}
	kairosBinary(t) // build before the clock starts
	began := time.Now()
	urls, servers := clustertest.StartCluster(t, 3)
	dir := t.TempDir()
	rd := writeRules(t, dir, "testdata/cluster-rules.yaml")
	names := []string{"k1", "k2", "k3"}
	args := make([][]string, len(names))
	for i, name := range names {
		cfg := filepath.Join(dir, name+".yaml")
		// A rolling cap rather than the default calendar day: a run
		// crossing midnight would allow more offers.
		yaml := fmt.Sprintf("nats:\n  url: %q\nstreams:\n  replicas: 3\npolicy:\n  caps: [{per: 24h, max: %d}]\n"+
			"cluster:\n  enabled: true\n  instance: %s\n  partitions: %d\n  lease_ttl: %s\n",
			strings.Join(urls, ","), clusterCap, name, clusterParts, clusterLeaseTTL)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		args[i] = []string{"--config", cfg, "--rules", rd, "--data", filepath.Join(dir, name), "--log-level", "info"}
	}
	procs := make([]*proc, len(names))
	for i := range names {
		procs[i] = spawnKairos(t, nil, args[i]...)
	}
	for _, p := range procs {
		p.waitReady(t)
	}
	var killed []*proc // earlier incarnations, for the logs
	logs := func() string {
		var b strings.Builder
		for _, p := range killed {
			fmt.Fprintf(&b, "--- killed incarnation\n%s", p.log())
		}
		for i, p := range procs {
			fmt.Fprintf(&b, "--- %s (owns %d)\n%s", names[i], p.partitionsOwned(), p.log())
		}
		return b.String()
	}
	balanced := func() bool {
		for _, p := range procs {
			if p.partitionsOwned() != clusterParts/len(procs) {
				return false
			}
		}
		return true
	}
	clusterPoll(t, "the partitions to spread over the instances", 60*time.Second, balanced, logs)
	phase := func(what string) { t.Logf("%v: %s", time.Since(began).Round(time.Millisecond), what) }
	phase("3 instances up, 4 partitions each")

	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tl clusterTimeline
	stopWatch := tl.watch(t, ctx, js)
	defer stopWatch()
	kv, err := js.KeyValue(ctx, cluster.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	leasesOf := func(instance string) []int {
		var out []int
		for p := range clusterParts {
			e, err := kv.Get(ctx, "lease."+strconv.Itoa(p))
			if err == nil && string(e.Value()) == instance {
				out = append(out, p)
			}
		}
		return out
	}

	// The load: one publisher at a steady rate, deterministic message ids,
	// each event after the previous one's acknowledgement so that each
	// customer's events are stored in order. It runs until the faults are
	// over and a tail of events went through the NATS nodes left.
	events := clusterEvents()
	stopLoad := make(chan struct{})
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		pubDone <- clusterPublish(ctx, js, events, stopLoad, &published)
	}()
	loadRunning := func() bool {
		t.Helper()
		select {
		case err := <-pubDone:
			if err != nil {
				t.Fatalf("publishing: %v", err)
			}
			t.Fatalf("the load ran out (%d events) before the faults were over", len(events))
		default:
		}
		return true
	}
	waitPublished := func(n int) {
		t.Helper()
		clusterPoll(t, fmt.Sprintf("%d events published", n), 60*time.Second, func() bool {
			return loadRunning() && published.Load() >= int64(n)
		}, nil)
	}
	measure := func(f failover) {
		t.Helper()
		var ft failoverTimes
		clusterPoll(t, fmt.Sprintf("an offer from the new owner of a partition of %s", f.victim), 60*time.Second, func() bool {
			loadRunning()
			var ok bool
			ft, ok = tl.measure(f)
			return ok
		}, logs)
		t.Logf("failover: %s of %s (partitions %v): first lease taken over after %v (by %s), first offer of a new owner (%s) after %v; "+
			"%v from %s's last offer for those partitions to it",
			f.how, f.victim, f.parts, ft.acquired.Sub(f.at).Round(time.Millisecond), ft.acquiredBy, ft.newOwner, ft.firstOffer.Sub(f.at).Round(time.Millisecond),
			ft.firstOffer.Sub(ft.lastOffer).Round(time.Millisecond), f.victim)
	}

	// 1. kill -9 k1, wait for another instance's first offer for its
	// partitions, start it again on the same data directory.
	waitPublished(300)
	kill := failover{how: "kill -9", victim: names[0], parts: leasesOf(names[0])}
	if len(kill.parts) == 0 {
		t.Fatalf("%s holds no lease\n%s", names[0], logs())
	}
	kill.at = time.Now()
	procs[0].kill9()
	killed = append(killed, procs[0])
	phase("killed " + names[0])
	measure(kill)
	procs[0] = startKairosEnv(t, nil, args[0]...)
	phase("restarted " + names[0])
	clusterPoll(t, "the partitions to spread again after the restart", 60*time.Second, balanced, logs)
	phase("balanced")

	// 2. SIGSTOP k2 past its lease, until another instance has made an
	// offer for one of its partitions (so its stale commits would break
	// exactly-once), then SIGCONT: it must find itself fenced out.
	stop := failover{how: "SIGSTOP", victim: names[1], parts: leasesOf(names[1])}
	if len(stop.parts) == 0 {
		t.Fatalf("%s holds no lease\n%s", names[1], logs())
	}
	stop.at = time.Now()
	logFrom := len(procs[1].log())
	if err := procs[1].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	phase("stopped " + names[1])
	time.Sleep(clusterLeaseTTL) // hold the process stopped past its lease: inherent
	measure(stop)
	phase("resuming " + names[1])
	if err := procs[1].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	clusterPoll(t, names[1]+" to find its leases lost", 30*time.Second, func() bool {
		l := procs[1].log()[logFrom:]
		return strings.Contains(l, "partition lease lost") || strings.Contains(l, "partition lost to another instance")
	}, logs)
	phase(names[1] + " fenced out")
	clusterPoll(t, "the partitions to spread again after the resume", 60*time.Second, balanced, logs)
	phase("balanced")

	// 3. Shut down the JetStream meta leader among the NATS nodes; the
	// rest of the load goes through the two others.
	down := servers[0]
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			down = s
		}
	}
	down.Shutdown()
	phase(fmt.Sprintf("shut down NATS node %s with %d events published", down.Name(), published.Load()))
	waitPublished(int(published.Load()) + 300)
	close(stopLoad)
	if err := <-pubDone; err != nil {
		t.Fatalf("publishing: %v", err)
	}
	loadEnd := time.Now()
	events = events[:published.Load()]
	expect := clusterExpect(events)
	phase(fmt.Sprintf("load over: %d events", len(events)))

	// Every event decided.
	streamMsgs := func(name string) int {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return -1
		}
		info, err := s.Info(ctx)
		if err != nil {
			return -1
		}
		return int(info.State.Msgs)
	}
	// Not fatal: the checks below name the events without a decision.
	if !clusterWait(60*time.Second, func() bool { return streamMsgs("KAIROS_DECISIONS") >= len(events) }) {
		t.Errorf("%d decisions of %d events after 60s\n%s", streamMsgs("KAIROS_DECISIONS"), len(events), logs())
	}
	drained := time.Now()
	clusterPoll(t, "the partitions to be spread over the instances after the NATS node loss", 30*time.Second, balanced, logs)
	// Stop the instances together (p.stop one after the other would
	// make each leave in turn, handing its partitions to the others).
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range procs {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("%s exited with %v after SIGTERM\n%s", names[i], err, p.log())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not stop in 60s after SIGTERM\n%s", names[i], p.log())
		}
	}
	stopWatch()
	if os.Getenv("KAIROS_TEST_LOG") != "" {
		t.Logf("logs of the instances:\n%s", logs())
	}

	// Decisions: one per event, as expected.
	decided := map[string]connectors.Decision{}
	msgIDs := map[string]bool{}
	coupons := 0
	for _, m := range readStream(t, js, "KAIROS_DECISIONS") {
		d, err := connectors.DecodeDecision(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if msgIDs[id] {
			t.Errorf("decision %s stored twice", id)
		}
		msgIDs[id] = true
		if prev, dup := decided[d.EventID]; dup {
			t.Errorf("event %s decided twice: %s/%s then %s/%s", d.EventID, prev.Outcome, prev.Reason, d.Outcome, d.Reason)
			continue
		}
		decided[d.EventID] = *d
		x, ok := expect[d.EventID]
		switch {
		case !ok:
			t.Errorf("decision for unknown event %s", d.EventID)
		case d.RuleID != x.rule:
			t.Errorf("event %s decided by %s, want %s", d.EventID, d.RuleID, x.rule)
		case x.outcome == "":
			if d.Outcome == connectors.Emitted {
				coupons++
			} else if d.Reason != "budget" {
				t.Errorf("visit %s: %s/%s, want emitted or suppressed by the budget", d.EventID, d.Outcome, d.Reason)
			}
		case d.Outcome != x.outcome || !strings.HasPrefix(d.Reason, x.reason):
			t.Errorf("event %s (%s): %s/%s, want %s/%s", d.EventID, d.RuleID, d.Outcome, d.Reason, x.outcome, x.reason)
		}
	}
	for _, ev := range events {
		if _, ok := decided[ev.id]; !ok {
			t.Errorf("event %s (%s of %s, partition %d, stream sequence %d) lost: no decision",
				ev.id, ev.typ, ev.customer, cluster.Partition(ev.customer, clusterParts), ev.seq)
		}
	}
	if coupons != clusterBudget {
		t.Errorf("visit-coupon emitted %d times, budget %d", coupons, clusterBudget)
	}

	// Offers: exactly the emitted decisions, each once.
	offerIDs := map[string]bool{}
	type key struct{ rule, customer, event string }
	offered := map[key]bool{}
	marketing := map[string]int{}
	byRule := map[string]int{}
	for _, m := range readStream(t, js, "KAIROS_OFFERS") {
		o, err := connectors.DecodeOffer(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		k := key{o.RuleID, o.CustomerID, o.EventID}
		if offerIDs[o.ID] || offered[k] {
			t.Errorf("offer %s (%v) stored twice", o.ID, k)
		}
		offerIDs[o.ID], offered[k] = true, true
		byRule[o.RuleID]++
		if o.RuleID == "txn-nudge" {
			marketing[o.CustomerID]++
		}
		if d, ok := decided[o.EventID]; !ok || d.Outcome != connectors.Emitted || d.RuleID != o.RuleID || d.CustomerID != o.CustomerID {
			t.Errorf("offer %v without its emitted decision", k)
		}
	}
	for _, ev := range events {
		if expect[ev.id].outcome == connectors.Emitted && !offered[key{expect[ev.id].rule, ev.customer, ev.id}] {
			t.Errorf("offer of %s for %s (%s) missing", expect[ev.id].rule, ev.id, ev.customer)
		}
	}
	for c, n := range marketing {
		if n > clusterCap {
			t.Errorf("customer %s got %d marketing offers, cap %d", c, n, clusterCap)
		}
	}
	if byRule["visit-coupon"] != clusterBudget {
		t.Errorf("%d visit-coupon offers, budget %d", byRule["visit-coupon"], clusterBudget)
	}
	if n := streamMsgs("KAIROS_DLQ"); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	want := map[string]int{"visit-coupon": clusterBudget}
	visits, capped := 0, 0
	for _, x := range expect {
		switch {
		case x.outcome == connectors.Emitted:
			want[x.rule]++
		case x.rule == "visit-coupon":
			visits++
		case x.rule == "txn-nudge":
			capped++
		}
	}
	if visits <= clusterBudget || capped == 0 {
		t.Errorf("%d visits for a budget of %d, %d txns over the cap: the load does not exercise the limits", visits, clusterBudget, capped)
	}
	if !maps.Equal(byRule, want) {
		t.Errorf("offers by rule: %v, want %v", byRule, want)
	}
	t.Logf("%d events, %d decisions, offers %v; load %v, drained %v after it; test %v",
		len(events), len(decided), byRule, loadEnd.Sub(began).Round(time.Millisecond), drained.Sub(loadEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// clusterPublish publishes events in order at clusterRate, each once
// acknowledged (retrying with the same message id through NATS failures),
// until stop is closed; published counts those acknowledged.
func clusterPublish(ctx context.Context, js jetstream.JetStream, events []clusterEvent, stop <-chan struct{}, published *atomic.Int64) error {
	// events[i].seq is written here and read once this returns.
	tick := time.NewTicker(time.Second / clusterRate)
	defer tick.Stop()
	base := time.Now().UnixMilli()
	for i, ev := range events {
		select {
		case <-tick.C:
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		data, err := json.Marshal(map[string]any{"id": ev.id, "customer_id": ev.customer, "type": ev.typ, "ts": base + int64(i), "attrs": map[string]any{}})
		if err != nil {
			return err
		}
		m := nats.NewMsg("kairos.events." + ev.typ + "." + ev.customer)
		m.Header.Set(jetstream.MsgIDHeader, ev.id)
		m.Header.Set("Content-Type", "application/json")
		m.Data = data
		deadline := time.Now().Add(30 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ack, err := js.PublishMsg(pctx, m)
			cancel()
			if err == nil {
				events[i].seq = ack.Sequence
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("event %d (%s): %w", i, ev.id, err)
			}
			select { // back off before the retry
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		published.Store(int64(i + 1))
	}
	return nil
}
