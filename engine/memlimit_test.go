package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"1536MiB": 1536 << 20, "2GiB": 2 << 30, "1.5GiB": 3 << 29, "800MB": 800e6, "123": 123, "64 KiB": 64 << 10, "10B": 10,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "1.5 gigs", "NaN", "1e30TiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q): no error", in)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	limit, share := float64(4294967296), cgroupShare
	cgroupWant := int64(limit * share)
	dir := t.TempDir()
	v2 := filepath.Join(dir, "memory.max")
	saved := cgroupFiles
	t.Cleanup(func() { cgroupFiles = saved })
	cgroupFiles = []string{v2}
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")

	check := func(setting string, want int64, wantFrom string) {
		t.Helper()
		c := Config{Engine: EngineConfig{MemoryLimit: setting}}
		got, from, err := c.MemoryLimit()
		if err != nil || got != want || from != wantFrom {
			t.Errorf("memory_limit %q: %d from %s (%v); want %d from %s", setting, got, from, err, want, wantFrom)
		}
	}
	check("", 0, MemLimitNone) // no cgroup file
	if err := os.WriteFile(v2, []byte("max\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("", 0, MemLimitNone)
	if err := os.WriteFile(v2, []byte("4294967296\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("", cgroupWant, MemLimitCgroup)
	check("auto", cgroupWant, MemLimitCgroup)
	check("1536MiB", 1536<<20, MemLimitConfig)
	check("off", 0, MemLimitNone)
	t.Setenv("GOMEMLIMIT", "1GiB")
	check("", 0, MemLimitEnv)

	c := Config{Engine: EngineConfig{MemoryLimit: "12MiB"}}
	if _, _, err := c.MemoryLimit(); err == nil || !strings.Contains(err.Error(), "below 64MiB") {
		t.Errorf("12MiB: %v, want an error", err)
	}
}
