package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/engine"
)

// cmdExplain asks a running engine why a customer got, or did not get,
// offers: GET /v1/customers/{id} on its HTTP address. name is the command
// it was called as: explain or inspect.
func cmdExplain(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(name, stderr)
	addrFlag := fs.String("http", "", "the engine's HTTP address (default $KAIROS_HTTP, else the config's http.listen, else 127.0.0.1:9464)")
	tokenFile := fs.String("token-file", "", "file holding the engine's bearer token (default $KAIROS_HTTP_TOKEN_FILE; $KAIROS_HTTP_TOKEN holds the token itself)")
	configPath := fs.String("config", "", "kairos.yaml to take http.listen, http.token and http.token_file from")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: kairos %s [--http HOST:PORT] [--token-file FILE] [--config kairos.yaml] [--json] CUSTOMER_ID\n", name)
		return errUsage
	}
	addr, token, err := adminEndpoint(*addrFlag, *tokenFile, *configPath)
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+addr+"/v1/customers/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := explainClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask the engine at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		if token == "" {
			return fmt.Errorf("engine at %s requires a bearer token: give --token-file FILE, KAIROS_HTTP_TOKEN or --config", addr)
		}
		return fmt.Errorf("engine at %s refused the bearer token", addr)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("engine at %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
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

// adminEndpoint resolves the engine's HTTP address and bearer token: a flag
// first, then the environment, then the config file, then the default
// (127.0.0.1:9464, no token).
func adminEndpoint(addrFlag, tokenFileFlag, configPath string) (addr, token string, err error) {
	var hc engine.HTTPConfig
	if configPath != "" {
		cfg, err := engine.LoadConfig(configPath)
		if err != nil {
			return "", "", err
		}
		hc = cfg.HTTP
	}
	addr = cmp.Or(addrFlag, os.Getenv("KAIROS_HTTP"), clientAddr(hc.Listen), "127.0.0.1:9464")
	if addr == "off" {
		return "", "", fmt.Errorf("%s: http.listen is off: the engine serves no HTTP", configPath)
	}
	readFile := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("bearer token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	switch {
	case tokenFileFlag != "":
		token, err = readFile(tokenFileFlag)
	case os.Getenv("KAIROS_HTTP_TOKEN") != "":
		token = strings.TrimSpace(os.Getenv("KAIROS_HTTP_TOKEN"))
	case os.Getenv("KAIROS_HTTP_TOKEN_FILE") != "":
		token, err = readFile(os.Getenv("KAIROS_HTTP_TOKEN_FILE"))
	case hc.Token != "":
		token = hc.Token
	case hc.TokenFile != "":
		token, err = readFile(hc.TokenFile)
	}
	return addr, token, err
}

// explainClient follows a cluster instance's redirect to the instance that
// owns the customer (one hop), sending the bearer token again: the
// instances of a cluster share the admin token, and Go's client drops it
// on a redirect to another host.
var explainClient = &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
	if len(via) > 1 {
		return errors.New("more than one redirect")
	}
	if a := via[0].Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	return nil
}}

// clientAddr turns a listen address into one to connect to: a wildcard
// host (":9464", "0.0.0.0:9464", "[::]:9464") becomes the loopback address.
func clientAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen // "" or "off"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
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
