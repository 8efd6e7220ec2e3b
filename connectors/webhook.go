package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// WebhookSettings configure the webhook connector.
type WebhookSettings struct {
	URL    string `yaml:"url"`
	Method string `yaml:"method"` // default POST
	// Timeout bounds one attempt (default 5s).
	Timeout string `yaml:"timeout"`
	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string `yaml:"headers"`
	// BodyTemplate is a Go text/template over the Offer; empty sends the
	// offer as JSON. The function json writes a value as JSON.
	BodyTemplate string `yaml:"body_template"`
	// ContentType of the body (default application/json).
	ContentType string `yaml:"content_type"`
}

// Webhook delivers offers by HTTP to a gateway (SMS, push), with the
// offer id in the Idempotency-Key header. 2xx is delivered; 408, 429 and
// 5xx are retried (429 and 503 honour Retry-After); other 4xx are
// permanent.
type Webhook struct {
	name   string
	s      WebhookSettings
	tmpl   *template.Template
	client *http.Client
}

var _ Connector = (*Webhook)(nil)

// NewWebhook builds a webhook connector.
func NewWebhook(cfg Config) (Connector, error) {
	var s WebhookSettings
	if err := decodeSettings(cfg.Settings, &s); err != nil {
		return nil, err
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q must be an http(s) URL", s.URL)
	}
	if s.Method == "" {
		s.Method = http.MethodPost
	}
	if s.ContentType == "" {
		s.ContentType = "application/json"
	}
	timeout := 5 * time.Second
	if s.Timeout != "" {
		if timeout, err = time.ParseDuration(s.Timeout); err != nil || timeout <= 0 {
			return nil, fmt.Errorf("timeout %q must be a positive duration", s.Timeout)
		}
	}
	w := &Webhook{name: cfg.Name, s: s, client: &http.Client{Timeout: timeout}}
	if s.BodyTemplate != "" {
		w.tmpl, err = template.New(cfg.Name).Option("missingkey=error").Funcs(template.FuncMap{
			"json": func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
		}).Parse(s.BodyTemplate)
		if err != nil {
			return nil, fmt.Errorf("body_template: %w", err)
		}
	}
	return w, nil
}

// Deliver posts the offer once.
func (w *Webhook) Deliver(ctx context.Context, o *Offer) error {
	var body bytes.Buffer
	if w.tmpl != nil {
		if err := w.tmpl.Execute(&body, o); err != nil {
			return &PermanentError{Err: fmt.Errorf("body_template: %w", err)}
		}
	} else if err := json.NewEncoder(&body).Encode(o); err != nil {
		return &PermanentError{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, w.s.Method, w.s.URL, &body)
	if err != nil {
		return &PermanentError{Err: err}
	}
	req.Header.Set("Content-Type", w.s.ContentType)
	req.Header.Set("Idempotency-Key", o.ID)
	for k, v := range w.s.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", w.s.Method, redact(w.s.URL), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		err := fmt.Errorf("%s answered %s", redact(w.s.URL), resp.Status)
		if after := retryAfter(resp.Header.Get("Retry-After")); after > 0 {
			return &RetryAfterError{Err: err, After: after}
		}
		return err
	case code == http.StatusRequestTimeout || code >= 500:
		return fmt.Errorf("%s answered %s", redact(w.s.URL), resp.Status)
	default:
		return &PermanentError{Err: fmt.Errorf("%s answered %s", redact(w.s.URL), resp.Status)}
	}
}

// Close releases idle connections.
func (w *Webhook) Close(context.Context) error {
	w.client.CloseIdleConnections()
	return nil
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// redact drops the query and user info of a URL (they may hold secrets).
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "webhook"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}

// decodeSettings decodes a connector's settings strictly into dst.
func decodeSettings(settings map[string]any, dst any) error {
	data, err := yaml.Marshal(settings)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("settings: %w", err)
	}
	return nil
}
