package main

import (
	"fmt"
	"io"

	"github.com/kairos-engine/kairos/rules"
)

// cmdRulesCheck compiles rule files and prints every error; exit 1 on any.
func cmdRulesCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules check", stderr)
	horizon := fs.String("horizon", "90d", "longest window a rule may use")
	costLimit := fs.Uint64("cost-limit", rules.DefaultCostLimit, "most a rule may cost, in CEL cost units")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: kairos rules check DIR|FILE...")
		return 2
	}
	h, err := rules.ParseDuration(*horizon)
	if err != nil {
		fmt.Fprintln(stderr, "kairos rules check: --horizon:", err)
		return 2
	}
	rs, err := rules.Load(rules.Options{Horizon: h, CostLimit: *costLimit}, fs.Args()...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if es, ok := err.(rules.Errors); ok {
			fmt.Fprintf(stderr, "%d error(s)\n", len(es))
		}
		return 1
	}
	enabled := 0
	for _, r := range rs.Rules() {
		if r.Enabled {
			enabled++
		}
	}
	fmt.Fprintf(stdout, "ok: %d rules (%d enabled), %d window aggregates, event types: %v\n", len(rs.Rules()), enabled, len(rs.Aggregates()), rs.Types())
	return 0
}
