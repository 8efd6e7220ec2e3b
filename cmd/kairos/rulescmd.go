package main

import (
	"fmt"
	"io"

	"github.com/kairos-engine/kairos/rules"
)

// cmdRulesCheck checks rule files as kairos run would load them, and lints
// them: errors and warnings to stderr, the summary to stdout. Exit 1 on any
// error, or on any warning with --strict; 2 on a usage error.
func cmdRulesCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules check", stderr)
	horizon := fs.String("horizon", "90d", "longest window a rule may use")
	costLimit := fs.Uint64("cost-limit", rules.DefaultCostLimit, "most a rule may cost, in CEL cost units")
	catalogue := fs.String("catalogue", "", "event catalogue `FILE`: unknown event types are errors, unknown attributes warnings")
	verbose := fs.Bool("verbose", false, "print a table of the rules: kind, mode, event types, cost, aggregates")
	strict := fs.Bool("strict", false, "fail on warnings too")
	// Flags may come before, between or after the files.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "usage: kairos rules check [--catalogue FILE] [--verbose] [--strict] [--horizon 90d] [--cost-limit N] DIR|FILE...")
		return 2
	}
	h, err := rules.ParseDuration(*horizon)
	if err != nil {
		fmt.Fprintln(stderr, "kairos rules check: --horizon:", err)
		return 2
	}
	opts := rules.Options{Horizon: h, CostLimit: *costLimit}
	if *catalogue != "" {
		if opts.Catalogue, err = rules.LoadCatalogue(*catalogue); err != nil {
			fmt.Fprintln(stderr, err)
			if es, ok := err.(rules.Errors); ok {
				fmt.Fprintf(stderr, "%d error(s)\n", len(es))
			}
			return 1
		}
	}
	rep := rules.Check(opts, paths...)
	rules.FormatFindings(stderr, rep.Findings)
	failed := rep.Failed(*strict)
	if !failed {
		rules.FormatSummary(stdout, rep.RuleSet)
	}
	if *verbose && rep.RuleSet != nil {
		rules.FormatTable(stdout, rep.RuleSet)
	}
	if failed {
		return 1
	}
	return 0
}
