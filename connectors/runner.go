package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/time/rate"
)

// Delivery outcomes, the values of the outcome label.
const (
	OutcomeDelivered = "delivered"
	OutcomeFailed    = "failed"  // permanent, or retries exhausted: dead-lettered
	OutcomeExpired   = "expired" // past expires_at: not sent
	OutcomeRetried   = "retried" // an attempt that will be retried
)

// Feedback event types the Runner publishes into the events stream.
const (
	EventOfferSent   = "offer_sent"
	EventOfferFailed = "offer_failed"
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	JS        jetstream.JetStream
	Stream    string // the offers stream (KAIROS_OFFERS)
	Prefix    string // subject prefix (kairos)
	Name      string // the connector's name, for its consumer, logs and metrics
	Channel   string // the channel it delivers
	Connector Connector
	// Durable is the consumer's name (default kairos-connector-<name>).
	Durable string
	// Concurrency is how many offers are delivered at once (default 16).
	Concurrency int
	// MaxAttempts per offer before it is dead-lettered (default 8).
	MaxAttempts int
	// Backoff between attempts grows from BackoffBase to BackoffMax,
	// doubled each time, with full jitter (defaults 200ms, 30s).
	BackoffBase, BackoffMax time.Duration
	// Rate limits attempts per second (0: no limit); Burst defaults to 1.
	Rate  float64
	Burst int
	// BreakerFailures consecutive failures open the circuit for
	// BreakerCooldown (defaults 5, 30s); then one probe decides.
	BreakerFailures int
	BreakerCooldown time.Duration
	// AckWait of the consumer (default 60s); attempts in progress extend it.
	AckWait time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics
}

// Runner consumes one channel's offers from the offers stream with its own
// durable consumer and delivers them through a Connector: each offer is
// acknowledged only once it is delivered, found expired, or dead-lettered
// to <prefix>.dlq.delivery; every outcome is published back as an event
// (offer_sent, offer_failed) for rules, windows and the contact policy.
type Runner struct {
	o       RunnerOptions
	log     *slog.Logger
	limiter *rate.Limiter
	br      breaker
	pub     jetstream.JetStream
}

// NewRunner checks the options and fills in defaults.
func NewRunner(o RunnerOptions) (*Runner, error) {
	if o.JS == nil || o.Connector == nil || o.Channel == "" || o.Name == "" {
		return nil, errors.New("connectors: runner needs JetStream, a connector, a name and a channel")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Stream == "" {
		o.Stream = "KAIROS_OFFERS"
	}
	if o.Prefix == "" {
		o.Prefix = "kairos"
	}
	if o.Durable == "" {
		o.Durable = "kairos-connector-" + o.Name
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	def(&o.BackoffBase, 200*time.Millisecond)
	def(&o.BackoffMax, 30*time.Second)
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = 5
	}
	def(&o.BreakerCooldown, 30*time.Second)
	def(&o.AckWait, 60*time.Second)
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{o: o, log: log.With("connector", o.Name, "channel", o.Channel), pub: o.JS}
	r.br = breaker{threshold: o.BreakerFailures, cooldown: o.BreakerCooldown, now: o.Now}
	if o.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(o.Rate), max(1, o.Burst))
	}
	return r, nil
}

// Run delivers until ctx ends, then waits for the deliveries in progress
// (those cut short are redelivered later) and closes the connector.
func (r *Runner) Run(ctx context.Context) error {
	o := r.o
	cons, err := o.JS.CreateOrUpdateConsumer(ctx, o.Stream, jetstream.ConsumerConfig{
		Durable:       o.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxAckPending: 2 * o.Concurrency,
		MaxDeliver:    -1,
		FilterSubject: o.Prefix + ".offers." + o.Channel + ".>",
	})
	if err != nil {
		return fmt.Errorf("connector %s: consumer: %w", o.Name, err)
	}
	msgs := make(chan jetstream.Msg)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(o.Concurrency))
	if err != nil {
		return fmt.Errorf("connector %s: consume: %w", o.Name, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < o.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-msgs:
					r.handle(ctx, m)
				}
			}
		}()
	}
	<-ctx.Done()
	cc.Stop()
	wg.Wait()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return o.Connector.Close(cctx)
}

// handle takes one offer to an outcome. It returns without acknowledging
// when ctx ends first: the offer is redelivered.
func (r *Runner) handle(ctx context.Context, m jetstream.Msg) {
	o := r.o
	start := o.Now()
	offer, err := DecodeOffer(m.Data())
	if err != nil {
		if r.deadLetter(ctx, m, nil, "decode", err) == nil {
			_ = m.Term()
		}
		r.count(OutcomeFailed, start)
		return
	}
	if offer.ExpiresAt > 0 && o.Now().UnixMilli() >= offer.ExpiresAt {
		if r.feedback(ctx, EventOfferFailed, offer, "expired") == nil {
			_ = m.Ack()
		}
		r.count(OutcomeExpired, start)
		return
	}
	for attempt := 1; ; attempt++ {
		if err := r.wait(ctx, m); err != nil {
			return
		}
		actx, cancel := context.WithCancel(ctx)
		err := o.Connector.Deliver(actx, offer)
		cancel()
		if err == nil {
			r.br.success()
			r.gauge()
			if r.feedback(ctx, EventOfferSent, offer, "") == nil {
				_ = m.Ack()
			}
			r.count(OutcomeDelivered, start)
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.br.failure()
		r.gauge()
		if Permanent(err) || attempt >= o.MaxAttempts {
			reason := "rejected"
			if !Permanent(err) {
				reason = "retries_exhausted"
			}
			r.log.Warn("offer not delivered", "offer", offer.ID, "attempts", attempt, "reason", reason, "err", err)
			if r.deadLetter(ctx, m, offer, reason, err) == nil && r.feedback(ctx, EventOfferFailed, offer, reason) == nil {
				_ = m.Ack()
			}
			r.count(OutcomeFailed, start)
			return
		}
		if o.Metrics != nil {
			o.Metrics.Deliveries.WithLabelValues(o.Name, OutcomeRetried).Inc()
		}
		pause := r.backoff(attempt)
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > pause {
			pause = ra.After
		}
		if !r.sleep(ctx, m, pause) {
			return
		}
	}
}

// wait blocks for the circuit breaker and the rate limiter.
func (r *Runner) wait(ctx context.Context, m jetstream.Msg) error {
	for {
		d := r.br.allow()
		if d == 0 {
			break
		}
		if !r.sleep(ctx, m, d) {
			return ctx.Err()
		}
	}
	if r.limiter != nil {
		return r.limiter.Wait(ctx)
	}
	return nil
}

// sleep pauses, telling the server the offer is still in progress.
func (r *Runner) sleep(ctx context.Context, m jetstream.Msg, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(r.o.AckWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick.C:
			_ = m.InProgress()
		}
	}
}

func (r *Runner) backoff(attempt int) time.Duration {
	d := r.o.BackoffBase << min(attempt-1, 20)
	if d > r.o.BackoffMax || d <= 0 {
		d = r.o.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(d)) + 1) // full jitter
}

func (r *Runner) count(outcome string, start time.Time) {
	if m := r.o.Metrics; m != nil {
		m.Deliveries.WithLabelValues(r.o.Name, outcome).Inc()
		m.Duration.WithLabelValues(r.o.Name).Observe(r.o.Now().Sub(start).Seconds())
	}
}

func (r *Runner) gauge() {
	if m := r.o.Metrics; m != nil {
		v := 0.0
		if r.br.isOpen() {
			v = 1
		}
		m.BreakerOpen.WithLabelValues(r.o.Name).Set(v)
	}
}

// feedbackEvent is an event in the public event contract.
type feedbackEvent struct {
	ID         string         `msgpack:"id"`
	CustomerID string         `msgpack:"customer_id"`
	Type       string         `msgpack:"type"`
	TS         int64          `msgpack:"ts"`
	Attrs      map[string]any `msgpack:"attrs"`
}

// feedback publishes offer_sent or offer_failed into the events stream,
// with a deterministic id so a repeat is dropped by the stream.
func (r *Runner) feedback(ctx context.Context, typ string, o *Offer, reason string) error {
	ev := feedbackEvent{
		ID: typ + ":" + o.ID, CustomerID: o.CustomerID, Type: typ, TS: r.o.Now().UnixMilli(),
		Attrs: map[string]any{"offer_id": o.ID, "rule_id": o.RuleID, "channel": o.Channel, "product": o.Product, "connector": r.o.Name},
	}
	if reason != "" {
		ev.Attrs["reason"] = reason
	}
	data, err := msgpack.Marshal(&ev)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(r.o.Prefix + ".events." + typ + "." + o.CustomerID)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	_, err = r.pub.PublishMsg(ctx, msg)
	if err != nil {
		r.log.Error("feedback event not published; the offer will be redelivered", "offer", o.ID, "type", typ, "err", err)
	}
	return err
}

// deadLetter publishes the offer to <prefix>.dlq.delivery with the reason.
func (r *Runner) deadLetter(ctx context.Context, m jetstream.Msg, o *Offer, reason string, cause error) error {
	msg := nats.NewMsg(r.o.Prefix + ".dlq.delivery")
	msg.Data = m.Data()
	id := "dlq:delivery:" + m.Subject()
	if md, err := m.Metadata(); err == nil {
		id = fmt.Sprintf("dlq:delivery:%s:%d", md.Stream, md.Sequence.Stream)
	}
	if o != nil {
		id = "dlq:delivery:" + o.ID
	}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set("Kairos-Dlq-Reason", reason)
	msg.Header.Set("Kairos-Dlq-Error", truncateString(cause.Error(), 1024))
	msg.Header.Set("Kairos-Connector", r.o.Name)
	msg.Header.Set("Kairos-Subject", m.Subject())
	_, err := r.pub.PublishMsg(ctx, msg)
	return err
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// breaker is a circuit breaker: after threshold consecutive failures it
// opens for cooldown, then lets one probe through; the probe's success
// closes it, its failure opens it again.
type breaker struct {
	mu        sync.Mutex
	threshold int
	cooldown  time.Duration
	now       func() time.Time
	failures  int
	openUntil time.Time
	probing   bool
}

// allow returns 0 when an attempt may go now, or how long to wait.
func (b *breaker) allow() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return 0
	}
	now := b.now()
	if now.Before(b.openUntil) {
		return b.openUntil.Sub(now)
	}
	if b.probing {
		return 50 * time.Millisecond // a probe is out: wait for its verdict
	}
	b.probing = true
	return 0
}

func (b *breaker) success() {
	b.mu.Lock()
	b.failures, b.probing = 0, false
	b.mu.Unlock()
}

func (b *breaker) failure() {
	b.mu.Lock()
	b.failures++
	if b.failures >= b.threshold {
		b.openUntil = b.now().Add(b.cooldown)
		b.probing = false
	}
	b.mu.Unlock()
}

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.threshold
}
