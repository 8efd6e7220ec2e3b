package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary the end-to-end tests built (kairosBinary),
// which lives outside any test's temporary directory so that every test
// can share it.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
