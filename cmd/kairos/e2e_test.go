package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/connectors"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// kairosBinary builds cmd/kairos once per test run.
func kairosBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kairos-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kairos")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running kairos binary.
type proc struct {
	cmd  *exec.Cmd
	http string
	done chan error
	logs *strings.Builder
	mu   *sync.Mutex
}

func startKairos(t *testing.T, args ...string) *proc {
	t.Helper()
	return startKairosEnv(t, nil, args...)
}

// startKairosEnv starts the binary with extra environment variables and
// waits until it is ready.
func startKairosEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := spawnKairos(t, env, args...)
	p.waitReady(t)
	return p
}

// spawnKairos starts the binary without waiting for it to be ready.
func spawnKairos(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	httpAddr := freePort(t)
	cmd := exec.Command(kairosBinary(t), append([]string{"run", "--http", httpAddr}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, http: httpAddr, done: make(chan error, 1), logs: &strings.Builder{}, mu: &sync.Mutex{}}
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitReadyOrExit waits until the process is ready or has exited.
func (p *proc) waitReadyOrExit(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + p.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.done:
			p.done <- err // for whoever waits next
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kairos neither ready nor exited in 60s\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

func (p *proc) log() string { p.mu.Lock(); defer p.mu.Unlock(); return p.logs.String() }

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("kairos exited before ready: %v\n%s", err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kairos not ready in 60s\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

// applied reads kairos_engine_applied_sequence from /metrics (0 on error).
func (p *proc) applied() uint64 {
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "kairos_engine_applied_sequence "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return uint64(f)
		}
	}
	return 0
}

func (p *proc) waitApplied(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for p.applied() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d, want %d\n%s", p.applied(), seq, p.log())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("kairos exited with %v after SIGTERM\n%s", err, p.log())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("kairos did not stop in 60s after SIGTERM")
	}
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func writeRules(t *testing.T, dir, src string) string {
	t.Helper()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rd, filepath.Base(src)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return rd
}

func readStream(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := int(info.State.Msgs)
	var out []jetstream.Msg
	if want == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for len(out) < want {
		b, err := c.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		// No responders: on a NATS cluster, a pull sent right after its
		// consumer was created may reach a server that does not know the
		// consumer yet; the next Fetch makes a new one.
		if b.Error() != nil && !errors.Is(b.Error(), nats.ErrTimeout) && !errors.Is(b.Error(), nats.ErrNoResponders) {
			t.Fatal(b.Error())
		}
	}
	return out
}

// TestEndToEndEmbedded runs the built binary on its embedded NATS,
// publishes msgpack and JSON events with nats.go and checks the offers, the
// dead letters and a clean SIGTERM stop.
func TestEndToEndEmbedded(t *testing.T) {
	dir := t.TempDir()
	natsAddr := freePort(t)
	p := startKairos(t, "--rules", writeRules(t, dir, "../../examples/rules/retail.yaml"), "--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	pub := func(typ, cust string, data []byte, hdr nats.Header) uint64 {
		t.Helper()
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "kairos.events." + typ + "." + cust, Data: data, Header: hdr})
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	mp := func(v any) []byte { b, _ := msgpack.Marshal(v); return b }
	ts := time.Now().UnixMilli()
	// Profile (msgpack), three card payments (JSON with a header), then a big one (msgpack): the card upgrade fires.
	pub("profile", "C1", mp(map[string]any{"id": "p1", "customer_id": "C1", "type": "profile", "ts": ts, "attrs": map[string]any{"name": "Ann", "tags": []string{"payroll"}}}), nil)
	for i := 0; i < 3; i++ {
		data, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("t%d", i), "customer_id": "C1", "type": "txn", "ts": ts + int64(i), "attrs": map[string]any{"amount": 4000, "merchant": fmt.Sprintf("m%d", i)}})
		pub("txn", "C1", data, nats.Header{"Content-Type": []string{"application/json"}})
	}
	pub("txn", "C1", mp(map[string]any{"id": "t9", "customer_id": "C1", "type": "txn", "ts": ts + 10, "attrs": map[string]any{"amount": 9000.5, "merchant": "m9"}}), nil)
	// First app login of the day with 21,000 spent in 30 days: the wealth offer fires.
	pub("login", "C1", []byte(fmt.Sprintf(`{"id":"l1","customer_id":"C1","type":"login","ts":%d,"attrs":{"channel":"app"}}`, ts+20)), nil)
	// A bad event goes to the dead letters and blocks nothing.
	pub("login", "C2", []byte("not an event"), nil)
	last := pub("login", "C1", mp(map[string]any{"id": "l2", "customer_id": "C1", "type": "login", "ts": ts + 30, "attrs": map[string]any{"channel": "app"}}), nil)
	p.waitApplied(t, last)

	var got []string
	for _, m := range readStream(t, js, "KAIROS_OFFERS") {
		o, err := connectors.DecodeOffer(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o.RuleID+"/"+o.EventID+"/"+o.Channel+"/"+fmt.Sprintf("%v %v", o.Params["name"], o.Params["amount"]))
	}
	slices.Sort(got)
	want := []string{"big-spender-card-upgrade/t9/sms/<nil> 9000.5", "payroll-login-wealth/l1/app_push/Ann <nil>"}
	if !slices.Equal(got, want) {
		t.Errorf("offers:\n got %q\nwant %q", got, want)
	}
	dl := readStream(t, js, "KAIROS_DLQ")
	if len(dl) != 1 || dl[0].Headers().Get("Kairos-Dlq-Reason") != "decode" || string(dl[0].Data()) != "not an event" {
		t.Errorf("dead letters: %d", len(dl))
	}
	p.stop(t)
	if strings.Contains(p.log(), "Ann") || strings.Contains(p.log(), "payroll") {
		t.Errorf("customer data in the logs:\n%s", p.log())
	}
}

// crashScenario is one way of crashing the binary during a run.
type crashScenario struct {
	name string
	// kills SIGKILLs the process from outside this many times, at evenly
	// spaced points of the work (by the applied sequence).
	kills int
	// crashAt makes the process SIGKILL itself at exact pipeline points,
	// one KAIROS_CRASH_AT value per start (see engine/crash.go).
	crashAt []string
	// config is the kairos.yaml of the run.
	config string
	// pause is how long the process stays down after a crash.
	pause time.Duration
}

// TestKill9ExactlyOnce kills the real binary with SIGKILL repeatedly while
// it works through a stream of events, restarts it each time, and compares
// the offers and dead letters with those of a run that was never killed:
// no event lost, no offer twice, no window counted twice.
func TestKill9ExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test in -short mode")
	}
	const events = 20000
	gen := func() [][2]any { // subject, payload
		g := bench.NewGenerator(bench.Workload{Customers: 150, Seed: 42, RunID: "crash"})
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		var out [][2]any
		for i := 0; i < events; i++ {
			ev := g.Next(base.Add(time.Duration(i) * 37 * time.Second))
			data, _ := bench.Encode(nil, &ev)
			if i%500 == 250 {
				data = []byte{0xc1} // undecodable: a dead letter
			}
			out = append(out, [2]any{ev.Subject("kairos"), data})
		}
		return out
	}()
	// Rolling caps: the run lasts seconds, so every decision of a run falls
	// in one window and the outcome does not depend on the wall clock.
	const baseConfig = "engine:\n  batch_size: 50\n  workers: 2\nconsumer:\n  ack_wait: 5s\n" +
		"policy:\n  caps: [{per: 24h, max: 4}]\n  channel_caps: {sms: [{per: 24h, max: 2}]}\n"

	type result struct {
		offers      map[string]string
		decisions   map[string]string // by Nats-Msg-Id
		dups        int
		deadLetters int
		restarts    int // restarts that found work in flight
	}
	run := func(t *testing.T, sc crashScenario) result {
		var res result
		dir := t.TempDir()
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		cfg := filepath.Join(dir, "kairos.yaml")
		os.WriteFile(cfg, []byte(baseConfig+sc.config), 0o644)
		args := []string{"--config", cfg, "--rules", writeRules(t, dir, "testdata/crash-rules.yaml"), "--data", filepath.Join(dir, "data"), "--nats-url", ns.ClientURL(), "--log-level", "info"}
		var env []string
		if len(sc.crashAt) > 0 {
			env = []string{"KAIROS_CRASH_AT=" + sc.crashAt[0]}
		}
		p := startKairosEnv(t, env, args...)

		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2000))
		var futures []jetstream.PubAckFuture
		for i, ev := range gen {
			m := nats.NewMsg(ev[0].(string))
			m.Data = ev[1].([]byte)
			m.Header.Set(jetstream.MsgIDHeader, "e"+strconv.Itoa(i))
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		var last uint64
		for _, f := range futures {
			select {
			case a := <-f.Ok():
				last = max(last, a.Sequence)
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
		restarted := func() {
			if strings.Contains(p.log(), "recreating consumer at the state's watermark") || strings.Contains(p.log(), "recovered the outbox") {
				res.restarts++
			}
		}
		for k := 1; k <= sc.kills; k++ {
			p.waitApplied(t, last*uint64(k)/uint64(sc.kills+1))
			p.kill9()
			p = startKairos(t, args...)
			restarted()
		}
		for i := range sc.crashAt {
			select {
			case <-p.done: // it killed itself at the crash point
			case <-time.After(60 * time.Second):
				t.Fatalf("no crash at %s\n%s", sc.crashAt[i], p.log())
			}
			env = nil
			if i+1 < len(sc.crashAt) {
				env = []string{"KAIROS_CRASH_AT=" + sc.crashAt[i+1]}
			}
			// The server's duplicate window runs on its real clock: to
			// prove recovery does not depend on it, let it lapse.
			time.Sleep(sc.pause)
			// A restart may itself reach its crash point before it
			// answers /readyz: wait for either.
			p = spawnKairos(t, env, args...)
			p.waitReadyOrExit(t)
			restarted()
		}
		p.waitApplied(t, last)
		p.stop(t)

		res.offers = map[string]string{}
		for _, m := range readStream(t, js, "KAIROS_OFFERS") {
			o, err := connectors.DecodeOffer(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if _, seen := res.offers[o.ID]; seen {
				res.dups++
			}
			params, _ := json.Marshal(o.Params)
			res.offers[o.ID] = strings.Join([]string{o.RuleID, o.RuleVersion, o.CustomerID, o.Channel, o.EventID, o.EventType, strconv.FormatInt(o.EventTS, 10), string(params), m.Subject()}, "|")
		}
		res.deadLetters = len(readStream(t, js, "KAIROS_DLQ"))
		res.decisions = map[string]string{}
		perCustomer := map[string]int{}
		perCustomerSMS := map[string]int{}
		budget := 0
		for _, m := range readStream(t, js, "KAIROS_DECISIONS") {
			d, err := connectors.DecodeDecision(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			id := m.Headers().Get(jetstream.MsgIDHeader)
			if _, seen := res.decisions[id]; seen {
				res.dups++
			}
			res.decisions[id] = strings.Join([]string{d.RuleID, d.CustomerID, d.EventID, d.Outcome, d.Reason, d.Channel}, "|")
			if d.Outcome == "emitted" && d.Kind == "marketing" {
				perCustomer[d.CustomerID]++
				if d.Channel == "sms" {
					perCustomerSMS[d.CustomerID]++
				}
			}
			if d.Outcome == "emitted" && d.RuleID == "every-seventh-txn" {
				budget++
			}
		}
		for c, n := range perCustomer {
			if n > 4 {
				t.Errorf("customer %s got %d marketing offers, cap 4", c, n)
			}
			if perCustomerSMS[c] > 2 {
				t.Errorf("customer %s got %d sms, channel cap 2", c, perCustomerSMS[c])
			}
		}
		if budget > 120 {
			t.Errorf("every-seventh-txn issued %d offers, budget 120", budget)
		}
		return res
	}

	var ref result
	t.Run("reference run", func(t *testing.T) { ref = run(t, crashScenario{}) })
	if len(ref.offers) == 0 {
		t.Fatal("the reference run made no offers: the test proves nothing")
	}
	reasons := map[string]int{}
	for _, d := range ref.decisions {
		f := strings.Split(d, "|")
		reasons[f[3]+"/"+f[4]]++
	}
	t.Logf("reference decisions: %v", reasons)
	for _, must := range []string{"suppressed/cap_24h", "suppressed/budget", "emitted/"} {
		if reasons[must] == 0 {
			t.Errorf("the reference run has no %s decision: the policy is not exercised", must)
		}
	}
	if ref.deadLetters != events/500 {
		t.Errorf("reference run: %d dead letters, want %d", ref.deadLetters, events/500)
	}
	for _, sc := range []crashScenario{
		{name: "kill -9 from outside, 4 times", kills: 4},
		{name: "crash after commit, before publish", crashAt: []string{"after-commit:7", "after-commit:40", "after-commit:1"}},
		{name: "crash after publish, before ack", crashAt: []string{"after-publish:5", "after-publish:33"}},
		{name: "crashes with a duplicate window too short to help",
			crashAt: []string{"after-publish:9", "after-commit:25", "after-publish:3"},
			config:  "streams:\n  offers:\n    duplicate_window: 100ms\n  dlq:\n    duplicate_window: 100ms\n  decisions:\n    duplicate_window: 100ms\n",
			pause:   300 * time.Millisecond},
	} {
		t.Run(sc.name, func(t *testing.T) {
			got := run(t, sc)
			if got.restarts == 0 {
				t.Error("no restart found work in flight: the scenario proves nothing")
			}
			if got.dups != 0 {
				t.Errorf("%d offers stored twice in the offers stream", got.dups)
			}
			if got.deadLetters != ref.deadLetters {
				t.Errorf("dead letters: %d, reference %d", got.deadLetters, ref.deadLetters)
			}
			for id, want := range ref.offers {
				if g, ok := got.offers[id]; !ok {
					t.Errorf("offer %s (%s) missing after the crashes", id, want)
				} else if g != want {
					t.Errorf("offer %s differs:\n got %s\nwant %s", id, g, want)
				}
			}
			for id, g := range got.offers {
				if _, ok := ref.offers[id]; !ok {
					t.Errorf("extra offer %s (%s) after the crashes", id, g)
				}
			}
			if len(got.decisions) != len(ref.decisions) {
				t.Errorf("%d decisions, reference %d", len(got.decisions), len(ref.decisions))
			}
			for id, want := range ref.decisions {
				if g := got.decisions[id]; g != want {
					t.Errorf("decision %s: got %q, want %q", id, g, want)
				}
			}
			t.Logf("%d offers and %d dead letters identical to the reference; %d restarts recovered work in flight", len(got.offers), got.deadLetters, got.restarts)
		})
	}
}
