package engine

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP server (http.listen) serves three public paths — /metrics,
// /healthz and /readyz — and admin paths: the /v1/ API (customer data) and,
// with http.pprof, /debug/pprof/. When a token is configured (http.token or
// http.token_file) every path other than the three public ones requires
// "Authorization: Bearer <token>"; the check is by path, before routing, so
// a route added anywhere is covered and an unknown path answers 401, not 404,
// to a caller without the token. Admin requests are logged (method, path,
// status, remote address): the audit trail of who looked at which customer.
//
// To add an admin endpoint, register it in adminRoutes with a method and a
// path under /v1/; it is authenticated, logged and counted like the others.

// publicPaths answer without a token.
var publicPaths = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

// minTokenLen is the shortest accepted bearer token.
const minTokenLen = 16

func (e *Engine) httpHandler() http.Handler {
	e.registerObserver()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !e.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	e.adminRoutes(mux)
	if e.cfg.HTTP.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine, allocs, block, mutex
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	h := e.cfg.HTTP
	if h.Token == "" && h.TokenFile == "" && !loopbackListen(h.Listen) {
		e.log.Warn("http.listen is not a loopback address and no http.token is set: customer data is served without authentication",
			"listen", h.Listen)
	}
	return &httpFront{e: e, mux: mux}
}

// adminRoutes registers the /v1/ API. Every route here (and any other
// non-public path) requires the bearer token when one is configured.
func (e *Engine) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/customers/{id}", e.handleCustomer)
	mux.HandleFunc("POST /v1/feedback", e.handleFeedback)
	mux.HandleFunc("GET /v1/rules", e.handleRules)
	mux.HandleFunc("POST /v1/batch/run", e.handleBatchRun)
	mux.HandleFunc("POST /v1/rules/reload", e.handleReload)
	mux.HandleFunc("GET /v1/opportunities", e.handleOpportunities)
	mux.HandleFunc("POST /v1/opportunities/{branch}/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		if a := r.PathValue("action"); a != "claim" && a != "outcome" {
			http.NotFound(w, r)
			return
		}
		e.handleOpportunityChange(w, r)
	})
}

// httpFront authenticates, counts and logs requests, then routes them.
type httpFront struct {
	e   *Engine
	mux *http.ServeMux
}

func (f *httpFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, pattern := f.mux.Handler(r)
	if pattern == "" {
		pattern = "other"
	}
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	public := publicPaths[r.URL.Path]
	switch {
	case public:
		f.mux.ServeHTTP(rec, r)
	default:
		switch err := f.e.cfg.HTTP.authorize(r); {
		case err == nil:
			f.mux.ServeHTTP(rec, r)
		case errors.Is(err, errUnauthorized):
			rec.Header().Set("WWW-Authenticate", `Bearer realm="kairos"`)
			http.Error(rec, "unauthorized", http.StatusUnauthorized)
		default: // the token file cannot be read: refuse everyone
			f.e.log.Error("http token", "err", err)
			http.Error(rec, "authentication unavailable", http.StatusServiceUnavailable)
		}
	}
	f.e.metrics.HTTPRequests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
	if !public {
		lvl := f.e.log.Info
		if rec.code == http.StatusUnauthorized {
			lvl = f.e.log.Warn
		}
		lvl("http admin request", "method", r.Method, "path", r.URL.Path, "status", rec.code,
			"remote", r.RemoteAddr, "duration", time.Since(start).Round(time.Microsecond))
	}
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code    int
	written bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.written {
		s.code, s.written = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.written = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (pprof's
// profile and trace extend the write deadline).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var errUnauthorized = errors.New("missing or wrong bearer token")

// authorize checks r's bearer token against the configured one; nil when
// none is configured. The comparison takes the same time whatever the
// tokens (both are hashed first, so even their lengths do not leak).
func (h *HTTPConfig) authorize(r *http.Request) error {
	want, err := h.token()
	if err != nil || want == "" {
		return err
	}
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errUnauthorized
	}
	gh, wh := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(gh[:], wh[:]) != 1 {
		return errUnauthorized
	}
	return nil
}

// token is the configured bearer token, "" for none. The token file is read
// at every call, so replacing it rotates the token without a restart.
func (h *HTTPConfig) token() (string, error) {
	if h.TokenFile == "" {
		return h.Token, nil
	}
	return readTokenFile(h.TokenFile)
}

func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// validate checks the token settings (http.listen is checked by Validate).
func (h *HTTPConfig) validate() []string {
	var p []string
	if h.Token != "" && h.TokenFile != "" {
		p = append(p, "http: set either token or token_file, not both")
	}
	check := func(field, tok string) {
		if len(tok) < minTokenLen {
			p = append(p, fmt.Sprintf("%s: the token must be at least %d characters", field, minTokenLen))
			return
		}
		for _, c := range []byte(tok) {
			if c < 0x21 || c > 0x7e {
				p = append(p, field+": the token must be printable ASCII without spaces")
				return
			}
		}
	}
	if h.Token != "" {
		check("http.token", h.Token)
	}
	if h.TokenFile != "" {
		if tok, err := readTokenFile(h.TokenFile); err != nil {
			p = append(p, "http.token_file: "+err.Error())
		} else {
			check("http.token_file", tok)
		}
	}
	return p
}

// loopbackListen tells whether a listen address accepts local connections only.
func loopbackListen(listen string) bool {
	if listen == "off" {
		return true
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
