package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine/cluster"
	"github.com/kairos-engine/kairos/engine/cluster/clustertest"
)

const scaleRules = `rules:
  - id: welcome
    kind: service
    on: [login]
    when: "true"
    max_per_customer: 1
    offer: {channels: [app_push]}
  - id: coupon
    kind: service
    on: [txn]
    when: "true"
    budget: {total: 25}
    offer: {channels: [sms]}
`

// startClusterEngine runs an engine instance in cluster mode on url.
func startClusterEngine(t *testing.T, url, name string, partitions int, opts ...func(*Config)) *testEngine {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(scaleRules), 0o644)
	return startTestEngine(t, dir, func(c *Config) {
		c.NATS.URL = url
		c.HTTP.Listen = "off"
		c.Cluster = ClusterConfig{Enabled: true, Instance: name, Partitions: partitions, LeaseTTL: "1s"}
		for _, o := range opts {
			o(c)
		}
	})
}

// waitFor polls cond until it holds or 60s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

func owned(te *testEngine) int {
	n := 0
	done := make(chan struct{})
	// The loop goroutine owns sc.parts; Stats of the manager is safe.
	go func() { defer close(done); n = te.e.sc.mgr.Stats().Owned }()
	<-done
	return n
}

// countOffers reads the offers stream: offers by rule, and the customers
// that got more than one welcome.
func countOffers(t *testing.T, te *testEngine) (byRule map[string]int, twice []string) {
	byRule = map[string]int{}
	welcomed := map[string]int{}
	for _, o := range te.offers(t) {
		byRule[o.RuleID]++
		if o.RuleID == "welcome" {
			welcomed[o.CustomerID]++
			if welcomed[o.CustomerID] == 2 {
				twice = append(twice, o.CustomerID)
			}
		}
	}
	return byRule, twice
}

// TestClusterTwoInstancesShareTheWork runs two instances on one
// nats-server: partitions rebalance as the second joins and the first
// leaves, and the per-customer limit and the rule budget hold exactly
// across the moves.
func TestClusterTwoInstancesShareTheWork(t *testing.T) {
	url, _ := clustertest.StartServer(t)
	const parts = 8
	a := startClusterEngine(t, url, "a", parts)
	waitFor(t, "a to own every partition", func() bool { return owned(a) == parts })

	base := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).UnixMilli()
	pub := a
	send := func(round, customers int) {
		for i := range customers {
			c := fmt.Sprintf("C%03d", i)
			pub.publishEvent(t, ev{ID: fmt.Sprintf("l%d-%s", round, c), CustomerID: c, Type: "login", TS: base + int64(round)*1000}, false)
			pub.publishEvent(t, ev{ID: fmt.Sprintf("t%d-%s", round, c), CustomerID: c, Type: "txn", TS: base + int64(round)*1000, Attrs: map[string]any{"amount": 10}}, false)
		}
	}
	welcomes := func(n int) func() bool {
		return func() bool { m, _ := countOffers(t, pub); return m["welcome"] >= n }
	}
	send(1, 20)
	waitFor(t, "20 welcomes", welcomes(20))

	b := startClusterEngine(t, url, "b", parts)
	waitFor(t, "the partitions to spread", func() bool { return owned(a) == parts/2 && owned(b) == parts/2 })
	// Old customers again (no second welcome) and new ones.
	send(2, 40)
	waitFor(t, "40 welcomes", welcomes(40))

	a.stop(t)
	pub = b
	waitFor(t, "b to own every partition", func() bool { return owned(b) == parts })
	send(3, 60)
	waitFor(t, "60 welcomes", welcomes(60))

	byRule, twice := countOffers(t, b)
	if len(twice) > 0 {
		t.Errorf("customers welcomed twice: %v", twice)
	}
	if byRule["welcome"] != 60 {
		t.Errorf("%d welcomes, want 60", byRule["welcome"])
	}
	// 120 txn events for a budget of 25: exactly 25 coupons.
	waitFor(t, "the coupons", func() bool { m, _ := countOffers(t, b); return m["coupon"] >= 25 })
	if byRule, _ = countOffers(t, b); byRule["coupon"] != 25 {
		t.Errorf("%d coupons for a budget of 25", byRule["coupon"])
	}
	_ = connectors.EventOfferSent
}

// TestClusterBatchJobCoversEveryPartition: a job asked of one instance
// runs on both, each over the partitions it owns, once per customer.
func TestClusterBatchJobCoversEveryPartition(t *testing.T) {
	url, _ := clustertest.StartServer(t)
	const parts = 8
	a := startClusterEngine(t, url, "a", parts)
	b := startClusterEngine(t, url, "b", parts)
	waitFor(t, "the partitions to spread", func() bool { return owned(a) == parts/2 && owned(b) == parts/2 })
	waitFor(t, "both to have taken their partitions over", func() bool {
		n := 0
		for _, te := range []*testEngine{a, b} {
			for _, ok := range te.e.sc.ownedSnapshot() {
				if ok {
					n++
				}
			}
		}
		return n == parts
	})
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	for i := range 30 {
		c := fmt.Sprintf("B%02d", i)
		a.publishEvent(t, ev{ID: "p-" + c, CustomerID: c, Type: "profile", TS: at.UnixMilli(), Attrs: map[string]any{"birthday": "1990-11-20", "timezone": "UTC"}}, false)
	}
	// The profiles are applied by the owners; a job sees committed state.
	waitFor(t, "the profiles", func() bool {
		n := 0
		for _, te := range []*testEngine{a, b} {
			te.e.store.ScanProfiles(func(string, map[string]any) error { n++; return nil })
		}
		return n == 30
	})
	job := BatchJob{Name: "bd", Type: "birthday", Schedule: "@daily"}
	res, err := a.e.runClusterJob(context.Background(), job, at)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 30 || res.Duplicates != 0 || len(res.Instances) != 2 || len(res.Missing) != 0 {
		t.Fatalf("first run: %+v", res)
	}
	res, err = b.e.runClusterJob(context.Background(), job, at)
	if err != nil || res.Events != 30 || res.Duplicates != 30 {
		t.Fatalf("second run: %+v, %v", res, err)
	}
}

// TestClusterCustomerRoutesToOwner: GET /v1/customers/{id} asked of the
// instance that does not own the customer redirects to the one that does,
// which answers from its state; a request already redirected is not sent on
// again.
func TestClusterCustomerRoutesToOwner(t *testing.T) {
	url, _ := clustertest.StartServer(t)
	const parts = 4
	httpOn := func(c *Config) { c.HTTP.Listen = "127.0.0.1:0" }
	a := startClusterEngine(t, url, "a", parts, httpOn)
	b := startClusterEngine(t, url, "b", parts, httpOn)
	both := []*testEngine{a, b}
	taken := func(te *testEngine) int {
		n := 0
		for _, ok := range te.e.sc.ownedSnapshot() {
			if ok {
				n++
			}
		}
		return n
	}
	waitFor(t, "both to have taken their partitions over", func() bool { return taken(a) == parts/2 && taken(b) == parts/2 })
	// A customer of each instance.
	var ids [2]string
	for i := 0; ids[0] == "" || ids[1] == ""; i++ {
		c := fmt.Sprintf("C%d", i)
		for k, te := range both {
			if ids[k] == "" && te.e.sc.ownedSnapshot()[cluster.Partition(c, parts)] {
				ids[k] = c
			}
		}
	}
	ts := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).UnixMilli()
	for _, c := range ids {
		a.publishEvent(t, ev{ID: "l-" + c, CustomerID: c, Type: "login", TS: ts}, false)
	}
	waitFor(t, "the welcomes", func() bool { m, _ := countOffers(t, a); return m["welcome"] == 2 })

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for k, te := range both {
		other := both[1-k]
		// Asked of the owner: served.
		resp, err := http.Get("http://" + te.e.HTTPAddr() + "/v1/customers/" + ids[k])
		if err != nil {
			t.Fatal(err)
		}
		var x Explanation
		json.NewDecoder(resp.Body).Decode(&x)
		resp.Body.Close()
		if resp.StatusCode != 200 || !x.Found || len(x.Decisions) == 0 {
			t.Fatalf("owner: %d %+v", resp.StatusCode, x)
		}
		// Asked of the other: a redirect to the owner, which the client follows.
		resp, err = noFollow.Get("http://" + other.e.HTTPAddr() + "/v1/customers/" + ids[k])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, "http://"+te.e.HTTPAddr()+"/") {
			t.Fatalf("non-owner: %d Location %q, want a redirect to %s", resp.StatusCode, loc, te.e.HTTPAddr())
		}
		resp, err = http.Get("http://" + other.e.HTTPAddr() + "/v1/customers/" + ids[k])
		if err != nil {
			t.Fatal(err)
		}
		x = Explanation{}
		json.NewDecoder(resp.Body).Decode(&x)
		resp.Body.Close()
		if resp.StatusCode != 200 || x.CustomerID != ids[k] || !x.Found {
			t.Fatalf("followed: %d %+v", resp.StatusCode, x)
		}
		// A redirected request that lands on a non-owner is answered, not sent on.
		resp, err = noFollow.Get("http://" + other.e.HTTPAddr() + "/v1/customers/" + ids[k] + "?hop=1")
		if err != nil {
			t.Fatal(err)
		}
		var no NotOwned
		json.NewDecoder(resp.Body).Decode(&no)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || no.Owner != te.e.sc.instance || no.Partition != cluster.Partition(ids[k], parts) {
			t.Fatalf("hop: %d %+v", resp.StatusCode, no)
		}
	}
}
