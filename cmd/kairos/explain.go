package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/engine"
)

// cmdExplain asks a running engine why a customer got, or did not get,
// offers: GET /v1/customers/{id} on its HTTP address.
func cmdExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("explain", stderr)
	addr := fs.String("http", envOr("KAIROS_HTTP", "127.0.0.1:9464"), "the engine's HTTP address (env KAIROS_HTTP)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: kairos explain [--http HOST:PORT] [--json] CUSTOMER_ID")
		return errUsage
	}
	id := fs.Arg(0)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+*addr+"/v1/customers/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask the engine at %s: %w", *addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("engine at %s: %s: %s", *addr, resp.Status, strings.TrimSpace(string(body)))
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var x engine.Explanation
	if err := json.Unmarshal(body, &x); err != nil {
		return fmt.Errorf("engine answer: %w", err)
	}
	if !x.Found {
		fmt.Fprintf(stdout, "customer %s: nothing stored (no event, profile or decision yet)\n", id)
		return nil
	}
	printExplanation(stdout, &x)
	return nil
}

func printExplanation(w io.Writer, x *engine.Explanation) {
	loc, err := time.LoadLocation(x.Timezone)
	if err != nil {
		loc = time.UTC
	}
	ts := func(ms int64) string { return time.UnixMilli(ms).In(loc).Format("2006-01-02 15:04:05") }
	fmt.Fprintf(w, "customer %s   (time zone %s, as of %s)\n", x.CustomerID, x.Timezone, ts(x.At))
	keys := make([]string, 0, len(x.Profile))
	for k := range x.Profile {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "\nprofile")
	for _, k := range keys {
		fmt.Fprintf(w, "  %-16s %v\n", k, x.Profile[k])
	}
	fmt.Fprintln(w, "\nwindows")
	for _, v := range x.Windows {
		fmt.Fprintf(w, "  %-44s %s\n", v.Aggregate, v.Display)
	}
	fmt.Fprintln(w, "\ncontact caps")
	for _, c := range x.Caps {
		name := c.Cap
		if c.Channel != "" {
			name += " " + c.Channel
		}
		fmt.Fprintf(w, "  %-24s %d of %d\n", name, c.Used, c.Max)
	}
	if len(x.Contacts) > 0 {
		fmt.Fprintln(w, "\noffers sent")
		for _, c := range x.Contacts {
			fmt.Fprintf(w, "  %s  %-28s %-10s %s\n", ts(c.At), c.Rule, c.Channel, c.Kind)
		}
	}
	if len(x.Deferred) > 0 {
		fmt.Fprintln(w, "\ndeferred by quiet hours")
		for _, d := range x.Deferred {
			fmt.Fprintf(w, "  %s  %-28s release %s, expires %s\n", d.OfferID, d.Rule, ts(d.ReleaseAt), ts(d.ExpiresAt))
		}
	}
	fmt.Fprintln(w, "\nlast decisions")
	if len(x.Decisions) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, d := range x.Decisions {
		what := d.Outcome
		if d.Reason != "" {
			what += " (" + d.Reason + ")"
		}
		if d.Channel != "" {
			what += " on " + d.Channel
		}
		fmt.Fprintf(w, "  %s  %-28s %-34s event %s\n", ts(d.At), d.Rule, what, d.EventID)
	}
}
