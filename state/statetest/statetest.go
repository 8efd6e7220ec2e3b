// Package statetest opens a state.Store for a test.
package statetest

import (
	"errors"
	"testing"

	"github.com/kairos-engine/kairos/state"
)

// Open opens a store for tb: in tb.TempDir() when opts.Dir is empty. The
// store is closed when the test ends; a store the test closed itself is
// fine.
func Open(tb testing.TB, opts state.Options) *state.Store {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	s, err := state.Open(opts)
	if err != nil {
		tb.Fatalf("statetest: open %s: %v", opts.Dir, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, state.ErrClosed) {
			tb.Errorf("statetest: close %s: %v", opts.Dir, err)
		}
	})
	return s
}
