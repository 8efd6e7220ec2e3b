package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kairos-engine/kairos/engine/ruletest"
)

// cmdRulesTest runs rule unit tests (docs/rules.md#unit-tests); exit 1 on
// any failure.
func cmdRulesTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules test", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: kairos rules test FILE|DIR...")
		return 2
	}
	var files []string
	for _, a := range fs.Args() {
		st, err := os.Stat(a)
		if err != nil {
			fmt.Fprintln(stderr, "kairos rules test:", err)
			return 1
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		for _, pat := range []string{"*_test.yaml", "*_test.yml"} {
			m, _ := filepath.Glob(filepath.Join(a, pat))
			files = append(files, m...)
		}
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "kairos rules test: no *_test.yaml files")
		return 1
	}
	sum, err := ruletest.RunFiles(stdout, files...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	status := "ok"
	if sum.Failed > 0 {
		status = "FAIL"
	}
	fmt.Fprintf(stdout, "%s: %d tests in %d files, %d failed\n", status, sum.Tests, sum.Files, sum.Failed)
	if sum.Failed > 0 {
		return 1
	}
	return 0
}
