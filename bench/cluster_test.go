package bench

import (
	"strings"
	"testing"
)

func TestPartitionConsumer(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{
		{"kairos-engine-p0", true},
		{"kairos-engine-p31", true},
		{"kairos-engine", false},
		{"kairos-engine-p", false},
		{"kairos-engine-stray", false},
		{"kairos-engine-p3x", false},
		{"kairos-batch-p3", false},
	} {
		if got := partitionConsumer(c.name, "kairos-engine"); got != c.want {
			t.Errorf("partitionConsumer(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPlanInstances(t *testing.T) {
	cfg := Config{Launcher: &ChildLauncher{}}
	cfg.Defaults()
	cfg.Sweep, _ = ParseSweep("instances=1,2,3")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := plan(&cfg)
	if len(ps) != 3 {
		t.Fatalf("%d points", len(ps))
	}
	for i, p := range ps {
		if !p.cluster || p.instances != i+1 || len(p.rates) != 1 {
			t.Errorf("point %d: %+v", i, p)
		}
	}
	if ps[0].label != "100 rules, 100k customers, 1 instance" || ps[2].label != "100 rules, 100k customers, 3 instances" {
		t.Errorf("labels %q, %q", ps[0].label, ps[2].label)
	}

	cfg.Sweep = nil
	if ps := plan(&cfg); ps[0].cluster || ps[0].instances != 1 || ps[0].label != "100 rules, 100k customers" {
		t.Errorf("default point %+v", ps[0])
	}
	cfg.Instances = 2
	if ps := plan(&cfg); !ps[0].cluster || ps[0].instances != 2 {
		t.Errorf("--instances 2: %+v", ps[0])
	}
}

func TestValidateInstances(t *testing.T) {
	for name, c := range map[string]Config{
		"instances with an external engine": {NATSURL: "nats://127.0.0.1:4222", Instances: 2},
		"instances sweep with --instances":  {Launcher: &ChildLauncher{}, Instances: 2, Sweep: &Sweep{Dim: "instances", Values: []int{1, 2}}},
		"too many instances":                {Launcher: &ChildLauncher{}, Instances: 65},
		"too many partitions":               {Launcher: &ChildLauncher{}, Partitions: 2000},
		"--nats-process with --nats-url":    {NATSURL: "nats://127.0.0.1:4222", NATSExe: "kairos"},
		"--nats-process with an embedded":   {Launcher: &embeds{}, NATSExe: "kairos"},
	} {
		c.Defaults()
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestValidateNATSCPUProfile: --nats-cpuprofile profiles the server's own
// process, so it needs --nats-process.
func TestValidateNATSCPUProfile(t *testing.T) {
	c := Config{Launcher: &ChildLauncher{}, NATSCPUProfile: "nats.prof"}
	c.Defaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--nats-cpuprofile needs --nats-process") {
		t.Errorf("without --nats-process: %v", err)
	}
	c.NATSExe = "kairos"
	if err := c.Validate(); err != nil {
		t.Errorf("with --nats-process: %v", err)
	}
	c.ProfileRun = 2
	c.Repeat = 2
	if err := c.Validate(); err != nil {
		t.Errorf("--profile-run 2 with --nats-cpuprofile alone: %v", err)
	}
}

// embeds is a launcher whose engine embeds its nats-server, as
// --engine in-process.
type embeds struct{ ChildLauncher }

func (embeds) EmbedsNATS() bool { return true }

func TestScaleRatios(t *testing.T) {
	pt := func(n, processed int) Point {
		r := run("engine", 20000, 100, 1000, false)
		r.ProcessedPerSec = float64(processed)
		return Point{Instances: n, Cluster: true, Runs: []RunResult{r}, Best: -1}
	}
	r := &Report{Points: []Point{pt(1, 10000), pt(2, 9000), pt(3, 8000)}}
	scaleRatios(r)
	for i, want := range []float64{1, 0.9, 0.8} {
		if got := r.Points[i].ThroughputVs1; got != want {
			t.Errorf("point %d: %v, want %v", i, got, want)
		}
	}
	// Single-instance mode points are not compared.
	r = &Report{Points: []Point{{Instances: 1, Runs: []RunResult{run("engine", 5000, 1, 2, true)}}}}
	if scaleRatios(r); r.Points[0].ThroughputVs1 != 0 {
		t.Errorf("single-instance point got a ratio")
	}
}

func TestPlanInstancesSingle(t *testing.T) {
	cfg := Config{Launcher: &ChildLauncher{}}
	cfg.Defaults()
	var err error
	if cfg.Sweep, err = ParseSweep("instances=single,1,2"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ps := plan(&cfg)
	if len(ps) != 3 || ps[0].cluster || ps[0].instances != 1 || !ps[1].cluster || ps[1].instances != 1 || ps[2].instances != 2 {
		t.Fatalf("plan %+v", ps)
	}
	if ps[0].label != "100 rules, 100k customers, single-instance mode" {
		t.Errorf("label %q", ps[0].label)
	}
	if _, err := ParseSweep("rules=single"); err == nil {
		t.Error("rules=single accepted")
	}
	if r := newReport(&cfg); r.Setup.Sweep != "instances=single,1,2" {
		t.Errorf("setup sweep %q", r.Setup.Sweep)
	}
}
