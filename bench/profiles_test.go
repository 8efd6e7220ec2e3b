package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kairos-engine/kairos/state"
)

// TestImportProfiles imports a point's profiles into a state directory and
// reads them back as the engine would.
func TestImportProfiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cfg := &Config{Seed: 3, Mix: BenchMix, Skew: 1.1, ZipfV: 100}
	pl, err := importProfiles(dir, state.CompressionZSTD, cfg, pointSpec{customers: 500}, 300)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Method != ProfileImport || pl.Count != 300 || pl.PerSecond <= 0 {
		t.Errorf("profile load %+v", pl)
	}
	st, err := state.Open(state.Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := NewGenerator(Workload{Customers: 500, Seed: 3, Mix: BenchMix})
	for _, i := range []int{0, 299, 300} {
		c, ok, err := st.Snapshot(CustomerID(i))
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if i < 300 {
			want = fmt.Sprint(g.Profile(i))
		}
		got := ""
		if ok && len(c.Profile()) > 0 {
			got = fmt.Sprint(c.Profile())
		}
		if got != want {
			t.Errorf("customer %d: profile %s, want %s", i, got, want)
		}
	}
}

func TestStateCompression(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kairos.yaml")
	if err := writeEngineConfig(p, EngineOptions{}, "rules", "data", "", "127.0.0.1:1", nil); err != nil {
		t.Fatal(err)
	}
	if got := stateCompression(p); got != "" {
		t.Errorf("no state.compression: %q", got)
	}
	base := filepath.Join(dir, "base.yaml")
	os.WriteFile(base, []byte("state:\n  compression: none\n"), 0o600)
	if err := writeEngineConfig(p, EngineOptions{Base: base}, "rules", "data", "", "127.0.0.1:1", nil); err != nil {
		t.Fatal(err)
	}
	if got := stateCompression(p); got != "none" {
		t.Errorf("state.compression from --engine-config: %q, want none", got)
	}
}

// TestHTTPToken reads the engine's bearer token as the engine does:
// http.token, or http.token_file relative to the engine's directory.
func TestHTTPToken(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "kairos.yaml")
	for _, c := range []struct{ yaml, want string }{
		{"http:\n  listen: 127.0.0.1:1\n", ""},
		{"http:\n  token: abcdefghijklmnop\n", "abcdefghijklmnop"},
		{"http:\n  token_file: tok\n", "from-the-file-0123"},
	} {
		if err := os.WriteFile(filepath.Join(dir, "tok"), []byte("from-the-file-0123\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := httpToken(cfg, dir); err != nil || got != c.want {
			t.Errorf("%q: %q, %v; want %q", c.yaml, got, err, c.want)
		}
	}
	os.WriteFile(cfg, []byte("http:\n  token_file: missing\n"), 0o600)
	if _, err := httpToken(cfg, dir); err == nil {
		t.Error("a missing token file was not an error")
	}
}
