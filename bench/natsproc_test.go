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
	script := filepath.Join(t.TempDir(), "fails")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'cannot listen: address in use' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := startNATSChild(script, filepath.Join(t.TempDir(), "nats"), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "ended before it served") || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("the failure took %v", time.Since(start))
	}
}
