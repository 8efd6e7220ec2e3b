package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kairos-engine/kairos/engine"
)

// TestInspectSendsTheBearerToken runs the binary with http.token_file set
// and checks that kairos inspect (and explain) are refused without the
// token and answer with it, from --token-file, KAIROS_HTTP_TOKEN or the
// engine's own configuration.
func TestInspectSendsTheBearerToken(t *testing.T) {
	dir := t.TempDir()
	natsAddr := freePort(t)
	const token = "inspect-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "kairos.yaml")
	if err := os.WriteFile(cfg, []byte("http:\n  token_file: "+tokenFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startKairos(t, "--config", cfg, "--rules", writeRules(t, dir, "../../examples/rules/retail.yaml"),
		"--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr)
	ctx := context.Background()
	if out, errOut, code := kairosCmd(t, ctx, "events", "publish", "--nats-url", "nats://"+natsAddr, "--type", "login",
		"--customer", "C1", "--attr", "channel=app", "--id", "l-1"); code != 0 {
		t.Fatalf("events publish: exit %d %s %s", code, out, errOut)
	}
	p.waitApplied(t, 1)

	inspect := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		for _, e := range env {
			k, v, _ := strings.Cut(e, "=")
			t.Setenv(k, v) // the child inherits the test's environment
		}
		return kairosCmd(t, ctx, args...)
	}
	cases := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		want     string
	}{
		{"no token", nil, []string{"inspect", "--http", p.http, "C1"}, 1, "requires a bearer token"},
		{"wrong token", []string{"KAIROS_HTTP_TOKEN=wrong-token-0123456789abcdef"}, []string{"inspect", "--http", p.http, "C1"}, 1, "refused the bearer token"},
		{"token from the environment", []string{"KAIROS_HTTP_TOKEN=" + token}, []string{"inspect", "--http", p.http, "C1"}, 0, "customer C1"},
		{"token file flag", nil, []string{"inspect", "--http", p.http, "--token-file", tokenFile, "C1"}, 0, "customer C1"},
		{"token file from the environment", []string{"KAIROS_HTTP_TOKEN_FILE=" + tokenFile}, []string{"explain", "--http", p.http, "--json", "C1"}, 0, `"customer_id": "C1"`},
		{"token from the engine's config", nil, []string{"inspect", "--config", cfg, "--http", p.http, "C1"}, 0, "customer C1"},
		{"address and token from the environment", []string{"KAIROS_HTTP=" + p.http, "KAIROS_HTTP_TOKEN=" + token}, []string{"inspect", "C1"}, 0, "customer C1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := inspect(c.env, c.args...)
			if code != c.wantCode || !strings.Contains(out+errOut, c.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s%s", code, c.wantCode, c.want, out, errOut)
			}
		})
	}
	p.stop(t)
}

func TestClientAddr(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:9464": "127.0.0.1:9464", "0.0.0.0:9464": "127.0.0.1:9464", ":9464": "127.0.0.1:9464",
		"[::]:9464": "127.0.0.1:9464", "10.20.0.15:9464": "10.20.0.15:9464", "": "", "off": "off",
	} {
		if got := clientAddr(listen); got != want {
			t.Errorf("clientAddr(%q) = %q, want %q", listen, got, want)
		}
	}
}

// TestExplainFollowsTheOwnerWithTheToken: in cluster mode an instance
// that does not own the customer redirects to the owner (another host);
// kairos explain follows and sends the bearer token again, which Go's
// client would drop.
func TestExplainFollowsTheOwnerWithTheToken(t *testing.T) {
	const token = "cluster-token-0123456789abcdef"
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(engine.Explanation{CustomerID: "C9", Found: true, Timezone: "UTC"})
	}))
	defer owner.Close()
	// Another host name for the owner: localhost rather than 127.0.0.1.
	ownerAddr := strings.Replace(owner.Listener.Addr().String(), "127.0.0.1", "localhost", 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+ownerAddr+r.URL.Path+"?hop=1", http.StatusTemporaryRedirect)
	}))
	defer other.Close()
	t.Setenv("KAIROS_HTTP_TOKEN", token)
	out, errOut, code := kairosCmd(t, context.Background(), "explain", "--http", other.Listener.Addr().String(), "C9")
	if code != 0 || !strings.Contains(out, "customer C9") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
}
