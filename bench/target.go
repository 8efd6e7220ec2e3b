package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"
)

// Target is the Kairos under test for one bench point. The bench only
// talks to it through NATS; the rest of this interface is for measuring
// and stopping it.
type Target interface {
	// NATSURL is where the bench publishes events and reads offers.
	NATSURL() string
	// Usage is the engine's resource usage so far; ok is false when it
	// cannot be measured.
	Usage() (u Usage, ok bool)
	// StateDir is the engine's Badger directory, "" when unknown.
	StateDir() string
	// MetricsURL is the engine's Prometheus /metrics, "" when unknown.
	MetricsURL() string
	// Stop stops the engine gracefully, so that its state is on disk, and
	// returns by ctx's deadline.
	Stop(ctx context.Context) error
}

// Launcher starts the engine of a bench point.
type Launcher interface {
	// Mode names the setup in the report: "child" or "in-process".
	Mode() string
	// EmbedsNATS says whether the engine starts its own nats-server
	// (LaunchSpec.NATSURL is then empty and the target reports its URL).
	EmbedsNATS() bool
	// UsageScope says what Target.Usage counts, for the report.
	UsageScope() string
	// Launch starts an engine from spec and returns once it is ready to
	// consume events.
	Launch(ctx context.Context, spec LaunchSpec) (Target, error)
}

// BaselineRunner is a Launcher that runs the baseline consumer as a
// process of its own, as it runs the engine, so that both are measured the
// same way. Launchers without it leave the baseline in the bench's process.
type BaselineRunner interface {
	// StartBaseline starts a process that runs Baseline against natsURL
	// until stopped; dir is for its log. The returned target's Usage is
	// the process's.
	StartBaseline(ctx context.Context, natsURL, dir string) (Target, error)
}

// LaunchSpec is what the bench prepared for an engine: a configuration
// file (rules directory, data directory, NATS, HTTP address, policy) and
// the directory it may keep logs in.
type LaunchSpec struct {
	Dir        string // the point's working directory
	ConfigFile string // kairos.yaml written by the bench
	DataDir    string // the engine's data directory (state under DataDir/state)
	NATSURL    string // the bench's nats-server; empty when the engine embeds one
	HTTPAddr   string // the engine's HTTP address (health checks, /metrics)
}

// EngineOptions are the bench's settings for the engine's kairos.yaml.
type EngineOptions struct {
	// Base is a kairos.yaml to start from (optional); the bench sets data,
	// rules.dir, nats.url or nats.listen, http.listen and log over it.
	Base string
	// Policy is "default" (the engine's default contact policy: 3 marketing
	// offers a day, 5 a week) or "none" (no contact caps).
	Policy string
	// CacheCustomers sets state.cache_customers (0 keeps the engine's
	// default, 100,000).
	CacheCustomers int
	// Pprof sets http.pprof, for the profiles of a child engine (Run sets
	// it with --cpuprofile, --trace or --memprofile).
	Pprof bool
}

// clusterSettings are the cluster section of an instance's kairos.yaml.
type clusterSettings struct {
	instance   string
	partitions int
}

// writeEngineConfig writes the kairos.yaml of a point, or of one instance
// of it in cluster mode (cl not nil).
func writeEngineConfig(path string, o EngineOptions, rulesDir, dataDir, natsURL, httpAddr string, cl *clusterSettings) error {
	cfg := map[string]any{}
	if o.Base != "" {
		b, err := os.ReadFile(o.Base)
		if err != nil {
			return fmt.Errorf("--engine-config: %w", err)
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("--engine-config %s: %w", o.Base, err)
		}
		if cfg == nil {
			cfg = map[string]any{}
		}
	}
	section := func(name string) map[string]any {
		m, _ := cfg[name].(map[string]any)
		if m == nil {
			m = map[string]any{}
			cfg[name] = m
		}
		return m
	}
	cfg["data"] = dataDir
	section("rules")["dir"] = rulesDir
	n := section("nats")
	if natsURL != "" {
		n["url"] = natsURL
	} else {
		delete(n, "url")
		n["listen"] = "127.0.0.1:0"
	}
	section("http")["listen"] = httpAddr
	if o.Pprof {
		section("http")["pprof"] = true
	}
	section("log")["level"] = "warn"
	switch o.Policy {
	case "", "default":
	case "none":
		section("policy")["caps"] = []any{}
	default:
		return fmt.Errorf("--policy %q: use default or none", o.Policy)
	}
	if o.CacheCustomers > 0 {
		section("state")["cache_customers"] = o.CacheCustomers
	}
	if cl != nil {
		c := section("cluster")
		c["enabled"] = true
		c["instance"] = cl.instance
		c["partitions"] = cl.partitions
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o640)
}

// ChildLauncher runs the engine as a child process, `kairos run --config
// FILE`, from the given binary (normally the running kairos itself), against
// the nats-server the bench starts. The engine's CPU time and peak RSS
// then come from /proc/<pid> and count the engine alone.
type ChildLauncher struct {
	// Exe is the kairos binary.
	Exe string
	// ReadyTimeout bounds the start (rule compilation included); default 5m.
	ReadyTimeout time.Duration
}

var (
	_ Launcher       = (*ChildLauncher)(nil)
	_ BaselineRunner = (*ChildLauncher)(nil)
)

// BaselineFlag is the hidden kairos bench flag that turns the process into
// the baseline consumer (kairos bench --baseline-consumer --nats-url URL).
const BaselineFlag = "baseline-consumer"

// StartBaseline implements BaselineRunner: `kairos bench
// --baseline-consumer --nats-url URL`.
func (l *ChildLauncher) StartBaseline(ctx context.Context, natsURL, dir string) (Target, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "baseline.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(l.Exe, "bench", "--"+BaselineFlag, "--nats-url", natsURL)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start the baseline consumer: %w", err)
	}
	c := &child{cmd: cmd, log: logf, logPath: logPath, natsURL: natsURL, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// Mode implements Launcher.
func (l *ChildLauncher) Mode() string { return "child" }

// EmbedsNATS implements Launcher.
func (l *ChildLauncher) EmbedsNATS() bool { return false }

// UsageScope implements Launcher.
func (l *ChildLauncher) UsageScope() string {
	return "the engine process alone (kairos run, a child of the bench; /proc/<pid>/stat and status), and in baseline runs the baseline consumer's process alone"
}

// Launch implements Launcher.
func (l *ChildLauncher) Launch(ctx context.Context, spec LaunchSpec) (Target, error) {
	logPath := filepath.Join(spec.Dir, "engine.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(l.Exe, "run", "--config", spec.ConfigFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = spec.Dir
	// The engine dies with the bench, even on kill -9 of the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s run: %w", l.Exe, err)
	}
	c := &child{cmd: cmd, log: logf, logPath: logPath, natsURL: spec.NATSURL, stateDir: filepath.Join(spec.DataDir, "state"),
		metrics: "http://" + spec.HTTPAddr + "/metrics", done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	timeout := l.ReadyTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	if err := waitReady(ctx, spec.HTTPAddr, timeout, c.done); err != nil {
		_ = c.Stop(context.Background())
		return nil, fmt.Errorf("engine did not become ready: %w\n%s", err, tail(logPath, 20))
	}
	return c, nil
}

type child struct {
	cmd      *exec.Cmd
	log      *os.File
	logPath  string
	natsURL  string
	stateDir string
	metrics  string
	done     chan struct{}
	err      error
}

func (c *child) NATSURL() string    { return c.natsURL }
func (c *child) StateDir() string   { return c.stateDir }
func (c *child) MetricsURL() string { return c.metrics }

func (c *child) Usage() (Usage, bool) {
	select {
	case <-c.done:
		return Usage{}, false
	default:
	}
	u, err := ProcUsage(c.cmd.Process.Pid)
	return u, err == nil
}

// Stop sends SIGINT (the engine's graceful stop) and waits; at ctx's
// deadline it kills the process.
func (c *child) Stop(ctx context.Context) error {
	defer c.log.Close()
	select {
	case <-c.done:
		return c.exitErr()
	default:
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
		return c.exitErr()
	case <-ctx.Done():
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("engine did not stop in time; killed: %w", ctx.Err())
	}
}

func (c *child) exitErr() error {
	if c.err != nil {
		return fmt.Errorf("engine exited: %w\n%s%s", c.err, crashLine(c.logPath), tail(c.logPath, 20))
	}
	return nil
}

// crashLine returns the "panic:" or "fatal error:" line of a Go crash in
// the log, with a newline, or "": the last lines alone are a stack trace.
func crashLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
			return line + "\n...\n"
		}
	}
	return ""
}

// waitReady polls http://addr/readyz until it answers 200.
func waitReady(ctx context.Context, addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("the engine exited")
		case <-deadline.C:
			return fmt.Errorf("not ready after %v", timeout)
		case <-tick.C:
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a free 127.0.0.1 TCP address.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startNATS starts an in-process nats-server with JetStream storing under
// dir, on a free port, configured like the engine's embedded server (file
// storage, no fsync per message). With profiling, it serves the Go
// runtime's /debug/pprof/ on a free port of its own too (nats-server's
// prof_port; Server.ProfilerAddr).
func startNATS(dir string, profiling bool) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "kairos-bench",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	if profiling {
		opts.ProfPort = server.RANDOM_PORT
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats-server did not start")
	}
	return ns, nil
}

// NATSVersion is the version of the nats-server the bench embeds.
func NATSVersion() string { return server.VERSION }
