// Command kairos is the Kairos real-time event-marketing engine: run it,
// try it (demo, events publish, offers tail), check rules, import profiles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `kairos — real-time event and opportunity marketing on NATS JetStream

Usage:
  kairos run [--config kairos.yaml] [--rules DIR] [--data DIR] [--nats-url URL]
             [--nats-listen HOST:PORT] [--http HOST:PORT] [--instance ID] [--advertise HOST:PORT]
  kairos demo [--customers N] [--rate EVENTS_PER_S] [--duration D]
  kairos bench [--rate N | --max] [--customers N] [--rules N] [--baseline] [--instances N] [--sweep DIM=V,...] [--out DIR]
  kairos events publish --type T --customer ID [--attr k=v ...] [--id ID] [--ts TS] [--json]
  kairos offers tail [--channel CH] [--all]
  kairos rules check DIR|FILE...
  kairos rules test FILE|DIR...
  kairos connect [--config kairos.yaml] [--nats-url URL] [--channel CH]
  kairos opportunities list|claim|outcome --branch B [--by NAME] [--result R] [OFFER_ID]
  kairos batch list --campaign NAME FILE | kairos batch run birthday|new_customer|anniversary|dormant
  kairos report [--from 7d] [--to TIME] [--rule ID] [--format md|json|csv]
  kairos replay --rules DIR (--events FILE | --from TIME [--to TIME]) [--compare DIR] [--format md|json|csv]
  kairos profiles import FILE.csv|FILE.jsonl
  kairos explain [--http HOST:PORT] [--token-file FILE] [--config kairos.yaml] [--json] CUSTOMER_ID
  kairos inspect ...                (the same as explain)
  kairos version

Client commands take --nats-url (default nats://127.0.0.1:4222) and --prefix (default kairos).
Run "kairos <command> -h" for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks for a graceful stop; restoring the default
	// handling then lets a second one end the process at once.
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks a command line mistake (exit code 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "bench":
		err = cmdBench(ctx, rest, stdout, stderr)
	case "events":
		err = sub(rest, stderr, map[string]func() error{
			"publish": func() error { return cmdEventsPublish(ctx, rest[1:], stdout, stderr) },
		})
	case "offers":
		err = sub(rest, stderr, map[string]func() error{
			"tail": func() error { return cmdOffersTail(ctx, rest[1:], stdout, stderr) },
		})
	case "rules":
		if len(rest) > 0 && rest[0] == "check" {
			return cmdRulesCheck(rest[1:], stdout, stderr)
		}
		if len(rest) > 0 && rest[0] == "test" {
			return cmdRulesTest(rest[1:], stdout, stderr)
		}
		err = sub(rest, stderr, nil)
	case "connect":
		err = cmdConnect(ctx, rest, stdout, stderr)
	case "opportunities":
		err = cmdOpportunities(ctx, rest, stdout, stderr)
	case "batch":
		err = cmdBatch(ctx, rest, stdout, stderr)
	case "report":
		err = cmdReport(ctx, rest, stdout, stderr)
	case "replay":
		err = cmdReplay(ctx, rest, stdout, stderr)
	case "explain", "inspect": // inspect: the operations name for the same view
		err = cmdExplain(ctx, cmd, rest, stdout, stderr)
	case "profiles":
		err = sub(rest, stderr, map[string]func() error{
			"import": func() error { return cmdProfilesImport(ctx, rest[1:], stdout, stderr) },
		})
	case "version", "--version":
		fmt.Fprintln(stdout, "kairos", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "kairos: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	}
	fmt.Fprintln(stderr, "kairos:", err)
	return 1
}

func sub(args []string, stderr io.Writer, cmds map[string]func() error) error {
	if len(args) == 0 || cmds[args[0]] == nil {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	return cmds[args[0]]()
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kairos "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
