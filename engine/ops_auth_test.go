package engine

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const opsToken = "s3cret-token-0123456789abcdef"

// request is one HTTP request of a table, with the status it must get.
type opsRequest struct {
	name, path, auth string
	want             int
}

func (te *testEngine) opsDo(t *testing.T, r opsRequest) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+te.e.HTTPAddr()+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestAdminEndpointsRequireTheBearerToken(t *testing.T) {
	dir := t.TempDir()
	opsWriteRules(t, dir, opsRules)
	te, logs := startLoggedEngine(t, dir, "json", func(c *Config) {
		c.HTTP.Token = opsToken
		c.HTTP.Pprof = true
	})
	seq := te.publishEvent(t, ev{ID: "p1", CustomerID: "C1", Type: "profile", TS: time.Now().UnixMilli(), Attrs: map[string]any{"name": "Ann"}}, false)
	te.waitApplied(t, seq)

	bearer := "Bearer " + opsToken
	for _, r := range []opsRequest{
		{"metrics are public", "/metrics", "", 200},
		{"healthz is public", "/healthz", "", 200},
		{"readyz is public", "/readyz", "", 200},
		{"customer without a token", "/v1/customers/C1", "", 401},
		{"customer with a wrong token", "/v1/customers/C1", "Bearer wrong-token-0123456789abcdef", 401},
		{"customer with a token one character short", "/v1/customers/C1", bearer[:len(bearer)-1], 401},
		{"customer with basic auth", "/v1/customers/C1", "Basic " + opsToken, 401},
		{"customer with the token", "/v1/customers/C1", bearer, 200},
		{"the scheme is case-insensitive", "/v1/customers/C1", "bearer " + opsToken, 200},
		{"unknown customer with the token", "/v1/customers/NOBODY", bearer, 404},
		{"unknown path without a token", "/v1/nothing-here", "", 401},
		{"unknown path with the token", "/v1/nothing-here", bearer, 404},
		{"a path outside /v1 is not public either", "/admin", "", 401},
		{"a public path with a trailing slash is not public", "/metrics/", "", 401},
		{"pprof without a token", "/debug/pprof/", "", 401},
		{"pprof index with the token", "/debug/pprof/", bearer, 200},
		{"pprof heap profile with the token", "/debug/pprof/heap?debug=1", bearer, 200},
		{"pprof cmdline with the token", "/debug/pprof/cmdline", bearer, 200},
	} {
		t.Run(r.name, func(t *testing.T) {
			code, hdr := te.opsDo(t, r)
			if code != r.want {
				t.Fatalf("GET %s: %d, want %d", r.path, code, r.want)
			}
			if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a WWW-Authenticate: Bearer challenge: %v", hdr)
			}
		})
	}
	body := te.opsScrape(t)
	if v, ok := opsSeries(body, `kairos_http_requests_total{code="401",handler="GET /v1/customers/{id}"} `); !ok || v != "4" {
		t.Errorf("401s on the customer route counted %q, want 4", v)
	}
	if v, ok := opsSeries(body, `kairos_http_requests_total{code="401",handler="other"} `); !ok || v != "3" {
		t.Errorf("401s on unknown paths counted %q, want 3", v)
	}
	// The audit trail: admin requests are logged with path and status, and
	// refusals as warnings; public paths are not logged; the token never is.
	out := logs.String()
	for _, want := range []string{
		`"level":"WARN","msg":"http admin request","method":"GET","path":"/v1/customers/C1","status":401`,
		`"level":"INFO","msg":"http admin request","method":"GET","path":"/v1/customers/C1","status":200`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if strings.Contains(out, `"path":"/metrics"`) || strings.Contains(out, `"path":"/healthz"`) {
		t.Errorf("public paths are logged")
	}
	if strings.Contains(out, opsToken) {
		t.Errorf("the token appears in the logs")
	}
}

func TestWithoutATokenAdminIsOpenAndPprofOff(t *testing.T) {
	te := startOpsEngine(t, nil)
	for _, r := range []opsRequest{
		{"customer", "/v1/customers/C1", "", 200},
		{"pprof is off by default", "/debug/pprof/", "", 404},
		{"a token sent anyway is ignored", "/v1/customers/C1", "Bearer whatever", 200},
	} {
		t.Run(r.name, func(t *testing.T) {
			if code, _ := te.opsDo(t, r); code != r.want {
				t.Fatalf("GET %s: %d, want %d", r.path, code, r.want)
			}
		})
	}
}

func TestTokenFileIsReadAtEveryRequest(t *testing.T) {
	dir := t.TempDir()
	opsWriteRules(t, dir, opsRules)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(opsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	te, logs := startLoggedEngine(t, dir, "text", func(c *Config) { c.HTTP.TokenFile = tokenFile })
	get := func(token string) int {
		code, _ := te.opsDo(t, opsRequest{path: "/v1/customers/C1", auth: "Bearer " + token})
		return code
	}
	if code := get(opsToken); code != 404 {
		t.Fatalf("with the file's token (a trailing newline trimmed): %d, want 404 (no such customer yet)", code)
	}
	rotated := "rotated-token-abcdefghijklmnop"
	if err := os.WriteFile(tokenFile, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := get(opsToken); code != 401 {
		t.Errorf("old token after rotation: %d, want 401", code)
	}
	if code := get(rotated); code != 404 {
		t.Errorf("new token after rotation: %d, want 404", code)
	}
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if code := get(rotated); code != 503 {
		t.Errorf("token file gone: %d, want 503 (fail closed)", code)
	}
	if code, _ := te.opsDo(t, opsRequest{path: "/readyz"}); code != 200 {
		t.Errorf("readyz with the token file gone: %d", code)
	}
	if !strings.Contains(logs.String(), "http token") {
		t.Errorf("an unreadable token file is not logged")
	}
}

func TestHTTPTokenConfigErrorsAreListed(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	short := filepath.Join(dir, "short")
	os.WriteFile(empty, []byte("\n"), 0o600)
	os.WriteFile(short, []byte("abc"), 0o600)
	cases := []struct {
		name string
		http HTTPConfig
		want []string
	}{
		{"a good token", HTTPConfig{Token: opsToken}, nil},
		{"a good token file", HTTPConfig{TokenFile: func() string {
			p := filepath.Join(dir, "good")
			os.WriteFile(p, []byte(opsToken), 0o600)
			return p
		}()}, nil},
		{"both", HTTPConfig{Token: opsToken, TokenFile: empty}, []string{"http: set either token or token_file, not both", "http.token_file: " + empty + " is empty"}},
		{"too short", HTTPConfig{Token: "abc"}, []string{"http.token: the token must be at least 16 characters"}},
		{"a space inside", HTTPConfig{Token: "abcdefgh ijklmnopq"}, []string{"http.token: the token must be printable ASCII without spaces"}},
		{"missing file", HTTPConfig{TokenFile: filepath.Join(dir, "none")}, []string{"http.token_file: open " + filepath.Join(dir, "none") + ": no such file or directory"}},
		{"short file", HTTPConfig{TokenFile: short}, []string{"http.token_file: the token must be at least 16 characters"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cfg Config
			cfg.Defaults()
			cfg.HTTP.Token, cfg.HTTP.TokenFile = c.http.Token, c.http.TokenFile
			err := cfg.Validate()
			var ce *ConfigError
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want == nil:
				return
			case !errors.As(err, &ce):
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if strings.Join(ce.Problems, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(ce.Problems, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func TestLoopbackListen(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:9464": true, "localhost:9464": true, "[::1]:9464": true, "off": true,
		"0.0.0.0:9464": false, ":9464": false, "10.20.0.15:9464": false, "kairos.internal:9464": false,
	} {
		if got := loopbackListen(listen); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", listen, got, want)
		}
	}
}

func TestNonLoopbackWithoutTokenWarns(t *testing.T) {
	dir := t.TempDir()
	opsWriteRules(t, dir, opsRules)
	_, logs := startLoggedEngine(t, dir, "text", func(c *Config) { c.HTTP.Listen = "0.0.0.0:0" })
	if !strings.Contains(logs.String(), "customer data is served without authentication") {
		t.Errorf("no warning for an unauthenticated non-loopback listener:\n%s", logs)
	}
}
