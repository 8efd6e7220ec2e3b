package engine

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// The Go runtime's soft memory limit (engine.memory_limit).
//
// Most of the engine's resident memory is garbage waiting for a collection:
// Badger's memtable flushes and compactions build whole tables in fresh
// buffers, and with GOGC=100 the heap grows to twice what is live before a
// collection. A soft limit makes the collector run earlier as the process
// nears it, so RSS stays near the limit instead of following the peaks.
// It is soft: when the live heap needs more, the process takes more (and
// the collector is capped at half the CPU), it is not killed.

// Sources of the memory limit, as MemoryLimit reports them.
const (
	MemLimitConfig = "engine.memory_limit"
	MemLimitEnv    = "GOMEMLIMIT"
	MemLimitCgroup = "cgroup"
	MemLimitNone   = "none"
)

// cgroupShare is the part of a container's memory limit the soft limit
// takes by default, leaving room for what the Go heap does not count
// (stacks, Badger's mmaps, the embedded NATS server's buffers).
const cgroupShare = 0.8

// cgroupFiles are where a process reads its cgroup's memory limit (v2,
// then v1); a variable for tests.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// MemoryLimit resolves engine.memory_limit into the soft limit to set, in
// bytes (0: none to set), and where it comes from:
//
//   - a size ("1536MiB", "2GiB", "1.5GB", bytes): that;
//   - "off": none;
//   - "" (auto, the default): none to set when GOMEMLIMIT is in the
//     environment (the runtime applied it), else 80% of the cgroup's
//     memory limit when the process runs under one, else none.
func (c *Config) MemoryLimit() (int64, string, error) {
	switch v := strings.TrimSpace(c.Engine.MemoryLimit); v {
	case "off":
		return 0, MemLimitNone, nil
	case "", "auto":
		if os.Getenv("GOMEMLIMIT") != "" {
			return 0, MemLimitEnv, nil
		}
		if lim := cgroupLimit(); lim > 0 {
			return int64(float64(lim) * cgroupShare), MemLimitCgroup, nil
		}
		return 0, MemLimitNone, nil
	default:
		n, err := ParseBytes(v)
		if err != nil {
			return 0, "", err
		}
		if n < 64<<20 {
			return 0, "", fmt.Errorf("%q is below 64MiB", v)
		}
		return n, MemLimitConfig, nil
	}
}

// cgroupLimit returns the memory limit of the process's cgroup in bytes,
// or 0 when there is none.
func cgroupLimit() int64 {
	for _, f := range cgroupFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "unlimited" page-rounded MaxInt64
			return 0
		}
		return n
	}
	return 0
}

// mustBytes parses a size that Validate checked.
func mustBytes(s string) int64 {
	n, _ := ParseBytes(s)
	return n
}

// ParseBytes reads a size: a number with an optional unit B, KB, MB, GB,
// TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024); the number
// may have a fraction ("1.5GiB").
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	num, mult := strings.TrimSpace(s), 1.0
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a size (like 1536MiB or 2GiB)", s)
	}
	return int64(f * mult), nil
}
