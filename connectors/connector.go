package connectors

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Connector delivers offers to an outside system: an SMS gateway, an app
// push service, a branch worklist, a file.
//
// Lifecycle: a Runner calls Deliver for each offer of its channel, from up
// to its concurrency limit of goroutines at once, so Deliver must be safe
// for concurrent use. Deliver makes one attempt: it returns nil when the
// offer was delivered, a *PermanentError when it must not be retried (the
// offer is dead-lettered), a *RetryAfterError when the receiver asked to
// wait, and any other error for a failure worth retrying. The Runner does
// the retries, backoff, rate limiting and circuit breaking. The same
// offer may be delivered more than once (after a crash, or when an
// attempt timed out after the receiver acted on it): connectors pass the
// offer id as an idempotency key so the receiver can drop repeats. Close is
// called once, after the last Deliver has returned, and returns by ctx's
// deadline.
type Connector interface {
	Deliver(ctx context.Context, o *Offer) error
	Close(ctx context.Context) error
}

// PermanentError is a delivery failure that retrying cannot fix (the
// receiver rejected the offer).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfterError is a failure whose receiver asked to retry no sooner than
// After.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return fmt.Sprintf("%v (retry after %s)", e.Err, e.After) }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// Permanent reports whether err must not be retried.
func Permanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Factory builds a connector from its configuration (the connector's
// section of the config file, decoded by the factory). Building has no
// side effects (files are opened, connections made, at the first
// delivery), so configuration checks build and discard connectors.
type Factory func(cfg Config) (Connector, error)

// Config is one connector's configuration: its name, type, channel and
// type-specific settings.
type Config struct {
	Name    string
	Type    string
	Channel string
	// Settings holds the type's own fields, as decoded from YAML.
	Settings map[string]any
	// JS and Prefix are the NATS JetStream handle and subject prefix, for
	// connectors that keep their data in JetStream (opportunity). JS is
	// nil when a configuration is only checked.
	JS     jetstream.JetStream
	Prefix string
}

// Registry maps connector type names to factories. Registering a name
// twice panics; an unknown name is an error. Tests use their own Registry.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Factory{}} }

// Register adds a connector type. It panics when the name is taken: two
// connector types with one name is a programming error.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic("connectors: type " + name + " registered twice")
	}
	r.m[name] = f
}

// New builds a connector of cfg.Type.
func (r *Registry) New(cfg Config) (Connector, error) {
	r.mu.RLock()
	f, ok := r.m[cfg.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("connector %q: unknown type %q (known: %v)", cfg.Name, cfg.Type, r.Types())
	}
	c, err := f(cfg)
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w", cfg.Name, err)
	}
	return c, nil
}

// Types lists the registered type names.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for k := range r.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Builtin returns a registry with the connectors Kairos ships: webhook,
// file, stdout and opportunity.
func Builtin() *Registry {
	r := NewRegistry()
	r.Register("webhook", NewWebhook)
	r.Register("file", NewFile)
	r.Register("stdout", NewStdout)
	r.Register("opportunity", NewOpportunity)
	return r
}
