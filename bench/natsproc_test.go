package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNATSChildFails: a nats-server process that ends before it gives its
// URL fails the start at once, with what it wrote.
func TestNATSChildFails(t *testing.T) {
	start := time.Now()
	err := startScriptChild(t, "echo 'cannot listen: address in use' >&2\nexit 3", false)
	if err == nil || !strings.Contains(err.Error(), "ended before it served") || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("the failure took %v", time.Since(start))
	}
}

// TestNATSChildNoProfilingURL: a server process asked to serve
// /debug/pprof/ (--nats-cpuprofile) that gives only its client URL fails
// the start, and is stopped.
func TestNATSChildNoProfilingURL(t *testing.T) {
	start := time.Now()
	err := startScriptChild(t, "echo 'nats-url nats://127.0.0.1:1'\nexec sleep 60", true)
	if err == nil || !strings.Contains(err.Error(), "no profiling URL") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("the failure took %v: the process was not stopped at once", time.Since(start))
	}
}

// startScriptChild starts a shell script of body as the nats-server
// process and returns the start's error (a child that started is
// stopped).
func startScriptChild(t *testing.T, body string, profiling bool) error {
	t.Helper()
	script := filepath.Join(t.TempDir(), "nats-child")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := startNATSChild(script, filepath.Join(t.TempDir(), "nats"), profiling, time.Minute)
	if err == nil {
		c.stop()
	}
	return err
}

// TestOurCPUCountsTheNATSProcess: with the nats-server in a process of its
// own, its CPU is the bench's, not the rest of the machine's (the quiet
// seconds, --wait-idle and "other CPU" subtract it). The test stands in
// this process for the server's, so ours counts its CPU twice.
func TestOurCPUCountsTheNATSProcess(t *testing.T) {
	for u, _ := ProcUsage(0); u.CPUSeconds < 0.02; u, _ = ProcUsage(0) { // some CPU to count
		for i := range 1_000_000 {
			sinkCPU += i
		}
	}
	p := &pointRun{cfg: &Config{}}
	alone := p.ourCPU("baseline")
	p.natsPID = os.Getpid()
	both := p.ourCPU("baseline")
	if alone <= 0 || both < 1.9*alone {
		t.Errorf("our CPU %.2f s alone, %.2f s with the nats-server process", alone, both)
	}
}

var sinkCPU int
