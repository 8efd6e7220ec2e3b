package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine/batchgen"
	"github.com/kairos-engine/kairos/engine/schedule"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// Config is the whole configuration of kairos run, as read from
// kairos.yaml. The zero value of every field means its documented default
// (docs/configuration.md); Defaults fills them in.
type Config struct {
	Data     string         `yaml:"data"`
	Rules    RulesConfig    `yaml:"rules"`
	NATS     NATSConfig     `yaml:"nats"`
	Streams  StreamsConfig  `yaml:"streams"`
	Consumer ConsumerConfig `yaml:"consumer"`
	Engine   EngineConfig   `yaml:"engine"`
	State    StateConfig    `yaml:"state"`
	HTTP     HTTPConfig     `yaml:"http"`
	Log      LogConfig      `yaml:"log"`
	Policy   PolicyConfig   `yaml:"policy"`
	// Connectors deliver offers of a channel to outside systems
	// (docs/connectors.md).
	Connectors []ConnectorConfig `yaml:"connectors"`
	// Batch configures batch events (docs/batch.md).
	Batch BatchConfig `yaml:"batch"`
	// Cluster runs several instances as one engine (docs/scaling.md).
	Cluster ClusterConfig `yaml:"cluster"`
}

// ClusterConfig runs several kairos run instances on one NATS JetStream
// (cluster) as one engine: customers are partitioned, each partition is
// owned by one live instance at a time, and its state moves with it
// through a changelog stream (docs/scaling.md).
type ClusterConfig struct {
	// Enabled turns scale-out on; off (the default) is single-instance
	// mode, which has none of its costs.
	Enabled bool `yaml:"enabled"`
	// Instance names this instance, unique among the live ones; the
	// default is the host name and a random suffix.
	Instance string `yaml:"instance"`
	// Partitions is the number of customer partitions, fixed for the life
	// of the streams.
	Partitions int `yaml:"partitions"`
	// LeaseTTL is how long an instance's leases outlive it: the failover
	// time after a crash.
	LeaseTTL string `yaml:"lease_ttl"`
	// Bucket is the JetStream key-value bucket of members and leases.
	Bucket string `yaml:"bucket"`
	// Changelog is the stream of the partitions' state.
	Changelog string `yaml:"changelog"`
	// Advertise is the HTTP address other instances and operators reach
	// this one at (for kairos explain of a customer it owns); default
	// http.listen.
	Advertise string `yaml:"advertise"`
}

// PolicyConfig is the contact policy (docs/policy.md).
type PolicyConfig struct {
	// Timezone is the policy's time zone for calendar caps, quiet hours and
	// per-day budgets; a profile's "timezone" attribute overrides it for
	// that customer's caps and quiet hours.
	Timezone string `yaml:"timezone"`
	// Caps limit marketing offers per customer across channels; nil is the
	// default (3 a day, 5 a week), an empty list none.
	Caps *[]CapConfig `yaml:"caps"`
	// ChannelCaps limit marketing offers per customer on one channel.
	ChannelCaps map[string][]CapConfig `yaml:"channel_caps"`
	// OpportunityCaps limit opportunities (leads for staff) per customer.
	OpportunityCaps   []CapConfig       `yaml:"opportunity_caps"`
	MaxOffersPerEvent int               `yaml:"max_offers_per_event"`
	QuietHours        *QuietHoursConfig `yaml:"quiet_hours"`
	Holdout           HoldoutConfig     `yaml:"holdout"`
	// SuppressionFile lists customer ids (one per line, # comments) that
	// receive no marketing; it is reloaded when it changes.
	SuppressionFile string `yaml:"suppression_file"`
	// DecisionsKept is how many recent decisions each customer keeps for
	// explain.
	DecisionsKept int `yaml:"decisions_kept"`
	// WeekStart is the first day of a calendar week: monday or sunday.
	WeekStart string `yaml:"week_start"`
	// ReleaseInterval is how often deferred offers are looked for.
	ReleaseInterval string `yaml:"release_interval"`
	// KeepFailedContacts keeps counting an offer whose delivery failed
	// (an offer_failed event) against the customer's caps; by default a
	// failed delivery releases the contact it held.
	KeepFailedContacts bool `yaml:"keep_failed_contacts"`
}

// BatchConfig configures batch events: synthetic streams of birthdays,
// new customers, anniversaries, dormant customers and list campaigns.
type BatchConfig struct {
	// MaxPerBatch is the most batch events taken into one processing
	// batch; real-time events go first.
	MaxPerBatch int `yaml:"max_per_batch"`
	// Rate is how many batch events per second a job publishes.
	Rate float64 `yaml:"rate"`
	// ConsumeRate is how many batch events per second the engine takes
	// at most, whatever is waiting in the stream (a backlog after a
	// downtime, a job published elsewhere): the engine keeps the rest of
	// its capacity for real-time events.
	ConsumeRate float64 `yaml:"consume_rate"`
	// SeenTTL is how long applied batch event ids are remembered, so that
	// a re-run job never makes a second offer.
	SeenTTL string `yaml:"seen_ttl"`
	// Timezone of the jobs' schedules and dates (default policy.timezone).
	Timezone string `yaml:"timezone"`
	// CheckInterval is how often the scheduler looks for due jobs.
	CheckInterval string     `yaml:"check_interval"`
	Jobs          []BatchJob `yaml:"jobs"`
}

// BatchJob is one scheduled batch job.
type BatchJob struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`     // birthday, new_customer, anniversary, dormant, list
	Schedule string `yaml:"schedule"` // cron: minute hour day-of-month month day-of-week
	// DaysAhead (birthday), Days (new_customer: opened within; dormant:
	// inactive for), Types (dormant: the event types watched), Campaign
	// and File (list).
	DaysAhead int      `yaml:"days_ahead"`
	Days      int      `yaml:"days"`
	Types     []string `yaml:"types"`
	Campaign  string   `yaml:"campaign"`
	File      string   `yaml:"file"`
}

// ConnectorConfig is one connector: a type from the registry (webhook,
// file, stdout, opportunity) delivering one channel's offers, with the
// delivery runner's settings and the type's own under settings.
type ConnectorConfig struct {
	Name            string         `yaml:"name"`
	Type            string         `yaml:"type"`
	Channel         string         `yaml:"channel"`
	Concurrency     int            `yaml:"concurrency"`
	MaxAttempts     int            `yaml:"max_attempts"`
	BackoffBase     string         `yaml:"backoff_base"`
	BackoffMax      string         `yaml:"backoff_max"`
	Rate            float64        `yaml:"rate"`
	Burst           int            `yaml:"burst"`
	BreakerFailures int            `yaml:"breaker_failures"`
	BreakerCooldown string         `yaml:"breaker_cooldown"`
	AckWait         string         `yaml:"ack_wait"`
	Settings        map[string]any `yaml:"settings"`
}

// CapConfig is one cap: at most Max offers per period. Per is day, week or
// month (calendar periods in the customer's time zone, or the trailing
// 24h, 7d or 30d when Rolling), or a duration such as 48h (always rolling).
type CapConfig struct {
	Per     string `yaml:"per"`
	Max     int    `yaml:"max"`
	Rolling bool   `yaml:"rolling"`
}

// QuietHoursConfig holds marketing back between From and To (HH:MM, local
// time of the customer); Action is drop or defer.
type QuietHoursConfig struct {
	From   string `yaml:"from"`
	To     string `yaml:"to"`
	Action string `yaml:"action"`
}

// HoldoutConfig is the default control group: a deterministic Fraction of
// customers per rule, chosen by a hash of (customer id, Salt, rule id).
type HoldoutConfig struct {
	Fraction float64 `yaml:"fraction"`
	Salt     string  `yaml:"salt"`
}

// RulesConfig locates and bounds the rule files.
type RulesConfig struct {
	Dir       string `yaml:"dir"`
	Horizon   string `yaml:"horizon"`
	CostLimit uint64 `yaml:"cost_limit"`
	// Watch is how often the rules directory is checked for changes, which
	// are then reloaded; "off" disables watching (SIGHUP and
	// POST /v1/rules/reload still reload).
	Watch string `yaml:"watch"`
	// Catalogue, when set, is an event catalogue the rules are checked
	// against (docs/rules.md).
	Catalogue string `yaml:"catalogue"`
}

// NATSConfig says which NATS to use: an external one (URL set) or the
// embedded server (URL empty), and how to authenticate.
type NATSConfig struct {
	URL        string    `yaml:"url"`
	Listen     string    `yaml:"listen"`
	User       string    `yaml:"user"`
	Password   string    `yaml:"password"`
	Token      string    `yaml:"token"`
	Creds      string    `yaml:"creds"`
	NKeySeed   string    `yaml:"nkey_seed"`
	TLS        TLSConfig `yaml:"tls"`
	SyncAlways bool      `yaml:"sync_always"`
}

// TLSConfig is the client TLS setup for an external NATS.
type TLSConfig struct {
	CA                 string `yaml:"ca"`
	Cert               string `yaml:"cert"`
	Key                string `yaml:"key"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// StreamsConfig names and sizes the JetStream streams.
type StreamsConfig struct {
	Prefix    string       `yaml:"prefix"`
	Replicas  int          `yaml:"replicas"`
	Events    StreamConfig `yaml:"events"`
	Offers    StreamConfig `yaml:"offers"`
	DLQ       StreamConfig `yaml:"dlq"`
	Decisions StreamConfig `yaml:"decisions"`
	Batch     StreamConfig `yaml:"batch"`
}

// StreamConfig is one stream.
type StreamConfig struct {
	Name            string `yaml:"name"`
	MaxAge          string `yaml:"max_age"`
	MaxBytes        int64  `yaml:"max_bytes"`
	DuplicateWindow string `yaml:"duplicate_window"`
	Storage         string `yaml:"storage"`   // file or memory
	Retention       string `yaml:"retention"` // limits, interest or workqueue
}

// ConsumerConfig is the engine's durable consumer on the events stream.
type ConsumerConfig struct {
	Durable string `yaml:"durable"`
	// BatchDurable is the consumer of the batch-events stream.
	BatchDurable  string `yaml:"batch_durable"`
	AckWait       string `yaml:"ack_wait"`
	MaxAckPending int    `yaml:"max_ack_pending"`
}

// EngineConfig tunes the processing loop.
type EngineConfig struct {
	Workers         int    `yaml:"workers"`
	BatchSize       int    `yaml:"batch_size"`
	MaxEventBytes   int    `yaml:"max_event_bytes"`
	OfferEncoding   string `yaml:"offer_encoding"`
	PublishInFlight int    `yaml:"publish_in_flight"`
	ShutdownTimeout string `yaml:"shutdown_timeout"`
	// MemoryLimit is the Go runtime's soft memory limit: a size, "off", or
	// "" (auto) for GOMEMLIMIT or 80% of the cgroup's limit (memlimit.go).
	MemoryLimit string `yaml:"memory_limit"`
}

// StateConfig tunes the Badger-backed state.
type StateConfig struct {
	CacheCustomers int `yaml:"cache_customers"`
	// Compression of Badger's table blocks: snappy (default), zstd, none.
	Compression string `yaml:"compression"`
	// BlockCache and IndexCache size Badger's block and index caches
	// (sizes like 256MiB; default 256MiB each).
	BlockCache       string `yaml:"block_cache"`
	IndexCache       string `yaml:"index_cache"`
	SyncWrites       bool   `yaml:"sync_writes"`
	MaxSeriesEntries int    `yaml:"max_series_entries"`
}

// HTTPConfig is the metrics, health and admin endpoint (engine/http.go).
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// Token, or the content of TokenFile (read at every request, so it
	// can be rotated), is the bearer token every path other than /metrics,
	// /healthz and /readyz requires. Neither set: no authentication.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Pprof serves /debug/pprof/ (behind the token when one is set).
	Pprof bool `yaml:"pprof"`
}

// LogConfig sets the log level (debug, info, warn, error) and format (text, json).
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// LoadConfig reads a config file strictly: unknown fields are errors.
// It does not validate; call Defaults then Validate.
func LoadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = path + ": " + strings.TrimPrefix(m, "yaml: ")
			}
			return c, &ConfigError{Problems: msgs}
		}
		return c, &ConfigError{Problems: []string{path + ": " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return c, nil
}

// Defaults fills every unset field with its default.
func (c *Config) Defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Data, "data")
	def(&c.Rules.Dir, "rules")
	def(&c.Rules.Horizon, "90d")
	def(&c.Rules.Watch, "2s")
	if c.Rules.CostLimit == 0 {
		c.Rules.CostLimit = rules.DefaultCostLimit
	}
	def(&c.NATS.Listen, "127.0.0.1:4222")
	def(&c.Streams.Prefix, "kairos")
	if c.Streams.Replicas == 0 {
		c.Streams.Replicas = 1
	}
	streamDefaults(&c.Streams.Events, "KAIROS_EVENTS", "7d", "2m")
	streamDefaults(&c.Streams.Offers, "KAIROS_OFFERS", "7d", "1h")
	streamDefaults(&c.Streams.DLQ, "KAIROS_DLQ", "30d", "1h")
	streamDefaults(&c.Streams.Decisions, "KAIROS_DECISIONS", "30d", "1h")
	streamDefaults(&c.Streams.Batch, "KAIROS_BATCH", "7d", "1h")
	def(&c.Consumer.BatchDurable, "kairos-engine-batch")
	if c.Batch.MaxPerBatch == 0 {
		c.Batch.MaxPerBatch = 64
	}
	if c.Batch.Rate == 0 {
		c.Batch.Rate = 2000
	}
	if c.Batch.ConsumeRate == 0 {
		// 500: real-time p99 under a batch backlog stays within 2× of its
		// value without one on a 2-core machine (docs/batch.md); 1,000
		// and 2,000 did not, reliably.
		c.Batch.ConsumeRate = 500
	}
	def(&c.Batch.SeenTTL, "400d")
	if c.Cluster.Partitions == 0 {
		c.Cluster.Partitions = 32
	}
	def(&c.Cluster.LeaseTTL, "6s")
	def(&c.Cluster.Bucket, "KAIROS_CLUSTER")
	def(&c.Cluster.Changelog, "KAIROS_CHANGELOG")
	def(&c.Batch.CheckInterval, "10s")
	def(&c.Policy.Timezone, "Asia/Shanghai")
	if c.Policy.Caps == nil {
		c.Policy.Caps = &[]CapConfig{{Per: "day", Max: 3}, {Per: "week", Max: 5}}
	}
	if c.Policy.MaxOffersPerEvent == 0 {
		c.Policy.MaxOffersPerEvent = 1
	}
	def(&c.Policy.Holdout.Salt, "kairos")
	if c.Policy.DecisionsKept == 0 {
		c.Policy.DecisionsKept = 20
	}
	def(&c.Policy.WeekStart, "monday")
	def(&c.Policy.ReleaseInterval, "1s")
	def(&c.Consumer.Durable, "kairos-engine")
	def(&c.Consumer.AckWait, "30s")
	if c.Consumer.MaxAckPending == 0 {
		c.Consumer.MaxAckPending = 20000
	}
	if c.Engine.BatchSize == 0 {
		c.Engine.BatchSize = 512
	}
	if c.Engine.MaxEventBytes == 0 {
		c.Engine.MaxEventBytes = 64 << 10
	}
	def(&c.Engine.OfferEncoding, "msgpack")
	if c.Engine.PublishInFlight == 0 {
		c.Engine.PublishInFlight = 4096
	}
	def(&c.Engine.ShutdownTimeout, "30s")
	def(&c.State.Compression, state.CompressionSnappy)
	def(&c.State.BlockCache, "256MiB")
	def(&c.State.IndexCache, "256MiB")
	if c.State.CacheCustomers == 0 {
		c.State.CacheCustomers = 100_000
	}
	if c.State.MaxSeriesEntries == 0 {
		c.State.MaxSeriesEntries = 10_000
	}
	def(&c.HTTP.Listen, "127.0.0.1:9464")
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "text")
}

func streamDefaults(s *StreamConfig, name, maxAge, dup string) {
	if s.Name == "" {
		s.Name = name
	}
	if s.MaxAge == "" {
		s.MaxAge = maxAge
	}
	if s.DuplicateWindow == "" {
		s.DuplicateWindow = dup
	}
	if s.Storage == "" {
		s.Storage = "file"
	}
	if s.Retention == "" {
		s.Retention = "limits"
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = -1
	}
}

// ConfigError lists every problem of a configuration.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

var (
	streamNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	prefixRe     = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Validate checks a defaulted config and returns every problem at once.
func (c *Config) Validate() error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	dur := func(field, v string, allowZero bool) time.Duration {
		d, err := rules.ParseDuration(v)
		if err != nil {
			bad("%s: %v", field, err)
			return 0
		}
		if d == 0 && !allowZero {
			bad("%s: must be positive", field)
		}
		return d
	}
	dur("rules.horizon", c.Rules.Horizon, false)
	if c.Rules.Watch != "off" {
		dur("rules.watch", c.Rules.Watch, false)
	}
	if c.Rules.Catalogue != "" {
		if _, err := rules.LoadCatalogue(c.Rules.Catalogue); err != nil {
			bad("rules.catalogue: %v", err)
		}
	}
	if c.NATS.URL == "" {
		if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
			bad("nats.listen: %v", err)
		}
	}
	if c.NATS.User != "" && c.NATS.Token != "" {
		bad("nats: set either user/password or token, not both")
	}
	if (c.NATS.TLS.Cert == "") != (c.NATS.TLS.Key == "") {
		bad("nats.tls: cert and key go together")
	}
	for _, f := range []struct{ field, path string }{
		{"nats.creds", c.NATS.Creds}, {"nats.nkey_seed", c.NATS.NKeySeed},
		{"nats.tls.ca", c.NATS.TLS.CA}, {"nats.tls.cert", c.NATS.TLS.Cert}, {"nats.tls.key", c.NATS.TLS.Key},
	} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				bad("%s: %v", f.field, err)
			}
		}
	}
	if !prefixRe.MatchString(c.Streams.Prefix) {
		bad("streams.prefix: %q is not a subject prefix", c.Streams.Prefix)
	}
	if c.Streams.Replicas < 1 || c.Streams.Replicas > 5 {
		bad("streams.replicas: must be 1 to 5")
	}
	if c.NATS.URL == "" && c.Streams.Replicas > 1 {
		bad("streams.replicas: %d needs a NATS cluster (nats.url); the embedded server is a single node", c.Streams.Replicas)
	}
	names := map[string]string{}
	for _, s := range []struct {
		field string
		sc    StreamConfig
	}{{"streams.events", c.Streams.Events}, {"streams.offers", c.Streams.Offers}, {"streams.dlq", c.Streams.DLQ}, {"streams.decisions", c.Streams.Decisions}, {"streams.batch", c.Streams.Batch}} {
		if !streamNameRe.MatchString(s.sc.Name) {
			bad("%s.name: %q must match [A-Za-z0-9_-]+", s.field, s.sc.Name)
		}
		if prev, dup := names[s.sc.Name]; dup {
			bad("%s.name: %q is also %s.name", s.field, s.sc.Name, prev)
		}
		names[s.sc.Name] = s.field
		dur(s.field+".max_age", s.sc.MaxAge, true)
		dur(s.field+".duplicate_window", s.sc.DuplicateWindow, false)
		if s.sc.Storage != "file" && s.sc.Storage != "memory" {
			bad("%s.storage: %q (use file or memory)", s.field, s.sc.Storage)
		}
		if s.sc.Retention != "limits" && s.sc.Retention != "interest" && s.sc.Retention != "workqueue" {
			bad("%s.retention: %q (use limits, interest or workqueue)", s.field, s.sc.Retention)
		}
	}
	if c.Consumer.Durable == "" || strings.ContainsAny(c.Consumer.Durable, ". *>") {
		bad("consumer.durable: %q must be a name without dots, spaces or wildcards", c.Consumer.Durable)
	}
	if c.Consumer.BatchDurable == "" || strings.ContainsAny(c.Consumer.BatchDurable, ". *>") {
		bad("consumer.batch_durable: %q must be a name without dots, spaces or wildcards", c.Consumer.BatchDurable)
	}
	dur("consumer.ack_wait", c.Consumer.AckWait, false)
	if c.Consumer.MaxAckPending < c.Engine.BatchSize {
		bad("consumer.max_ack_pending (%d) must be at least engine.batch_size (%d)", c.Consumer.MaxAckPending, c.Engine.BatchSize)
	}
	if c.Engine.Workers < 0 || c.Engine.Workers > 1024 {
		bad("engine.workers: must be 0 (one per CPU) to 1024")
	}
	if c.Engine.BatchSize < 1 || c.Engine.BatchSize > 10000 {
		bad("engine.batch_size: must be 1 to 10000")
	}
	if c.Engine.MaxEventBytes < 128 {
		bad("engine.max_event_bytes: must be at least 128")
	}
	if _, err := connectors.ParseEncoding(c.Engine.OfferEncoding); err != nil {
		bad("engine.offer_encoding: %v", err)
	}
	dur("engine.shutdown_timeout", c.Engine.ShutdownTimeout, false)
	if _, _, err := c.MemoryLimit(); err != nil {
		bad("engine.memory_limit: %v", err)
	}
	if c.Engine.PublishInFlight < 1 {
		bad("engine.publish_in_flight: must be positive")
	}
	if err := state.CheckCompression(c.State.Compression); err != nil {
		bad("state.%v", err)
	}
	for _, f := range []struct{ name, v string }{{"state.block_cache", c.State.BlockCache}, {"state.index_cache", c.State.IndexCache}} {
		if n, err := ParseBytes(f.v); err != nil {
			bad("%s: %v", f.name, err)
		} else if n < 1<<20 {
			bad("%s: %q is below 1MiB", f.name, f.v)
		}
	}
	if c.State.CacheCustomers < 1 {
		bad("state.cache_customers: must be positive")
	}
	if c.State.MaxSeriesEntries < 1 {
		bad("state.max_series_entries: must be positive")
	}
	if c.HTTP.Listen != "off" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen: %v (or \"off\")", err)
		}
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("log.level: %v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format: %q (use text or json)", c.Log.Format)
	}
	p = append(p, c.HTTP.validate()...) // http.token, http.token_file: engine/http.go
	p = append(p, c.Policy.validate()...)
	p = append(p, validateConnectors(c.Connectors)...)
	p = append(p, c.validateBatch()...)
	p = append(p, c.validateCluster()...)
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

func mustDuration(s string) time.Duration {
	d, err := rules.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("unvalidated duration %q: %v", s, err))
	}
	return d
}

func validateConnectors(cs []ConnectorConfig) []string {
	var bad []string
	names := map[string]bool{}
	for i, c := range cs {
		f := fmt.Sprintf("connectors[%d]", i)
		if c.Name == "" || strings.ContainsAny(c.Name, ". *>") {
			bad = append(bad, fmt.Sprintf("%s.name: %q must be a name without dots, spaces or wildcards", f, c.Name))
		}
		if names[c.Name] {
			bad = append(bad, fmt.Sprintf("%s.name: %q is used twice", f, c.Name))
		}
		names[c.Name] = true
		if c.Channel == "" || !validType(c.Channel) {
			bad = append(bad, fmt.Sprintf("%s.channel: %q must match [a-z0-9_]+", f, c.Channel))
		}
		for _, d := range []struct{ field, v string }{{"backoff_base", c.BackoffBase}, {"backoff_max", c.BackoffMax}, {"breaker_cooldown", c.BreakerCooldown}, {"ack_wait", c.AckWait}} {
			if d.v == "" {
				continue
			}
			if v, err := rules.ParseDuration(d.v); err != nil || v <= 0 {
				bad = append(bad, fmt.Sprintf("%s.%s: %q must be a positive duration", f, d.field, d.v))
			}
		}
		if c.Concurrency < 0 || c.MaxAttempts < 0 || c.Rate < 0 || c.Burst < 0 || c.BreakerFailures < 0 {
			bad = append(bad, fmt.Sprintf("%s: numbers must not be negative", f))
		}
		if _, err := connectors.Builtin().New(connectors.Config{Name: c.Name, Type: c.Type, Channel: c.Channel, Settings: c.Settings}); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", f, err))
		}
	}
	return bad
}

// BatchJobTypes are the types of scheduled batch jobs.
var BatchJobTypes = []string{"birthday", "new_customer", "anniversary", "dormant", "list"}

func (c *Config) validateBatch() []string {
	var bad []string
	b := c.Batch
	if b.MaxPerBatch < 1 {
		bad = append(bad, "batch.max_per_batch: must be at least 1")
	}
	if b.Rate <= 0 {
		bad = append(bad, "batch.rate: must be positive")
	}
	if b.ConsumeRate <= 0 {
		bad = append(bad, "batch.consume_rate: must be positive")
	}
	if d, err := rules.ParseDuration(b.CheckInterval); err != nil || d <= 0 {
		bad = append(bad, fmt.Sprintf("batch.check_interval: %q must be a positive duration", b.CheckInterval))
	}
	if d, err := rules.ParseDuration(b.SeenTTL); err != nil || d <= 0 {
		bad = append(bad, fmt.Sprintf("batch.seen_ttl: %q must be a positive duration", b.SeenTTL))
	}
	if b.Timezone != "" {
		if _, err := time.LoadLocation(b.Timezone); err != nil {
			bad = append(bad, fmt.Sprintf("batch.timezone: %v", err))
		}
	}
	names := map[string]bool{}
	for i, j := range b.Jobs {
		f := fmt.Sprintf("batch.jobs[%d]", i)
		if j.Name == "" || !validType(j.Name) {
			bad = append(bad, fmt.Sprintf("%s.name: %q must match [a-z0-9_]+", f, j.Name))
		}
		if names[j.Name] {
			bad = append(bad, fmt.Sprintf("%s.name: %q is used twice", f, j.Name))
		}
		names[j.Name] = true
		if !slices.Contains(BatchJobTypes, j.Type) {
			bad = append(bad, fmt.Sprintf("%s.type: %q (use %s)", f, j.Type, strings.Join(BatchJobTypes, ", ")))
		}
		if _, err := schedule.Parse(j.Schedule); err != nil {
			bad = append(bad, fmt.Sprintf("%s.schedule: %v", f, err))
		}
		switch j.Type {
		case "dormant":
			if j.Days < 1 || len(j.Types) == 0 {
				bad = append(bad, f+": a dormant job needs days and types")
			}
		case "new_customer":
			if j.Days < 1 {
				bad = append(bad, f+": a new_customer job needs days")
			}
		case "list":
			if !batchgen.ValidCampaign(j.Campaign) || j.File == "" {
				bad = append(bad, f+": a list job needs a campaign ([a-z0-9_]+) and a file")
			}
		case "birthday":
			if j.DaysAhead < -batchgen.MaxDaysAhead || j.DaysAhead > batchgen.MaxDaysAhead {
				bad = append(bad, fmt.Sprintf("%s.days_ahead: must be within ±%d", f, batchgen.MaxDaysAhead))
			}
		}
	}
	return bad
}

func (c *Config) validateCluster() []string {
	cl := c.Cluster
	if !cl.Enabled {
		return nil
	}
	var bad []string
	if c.NATS.URL == "" {
		bad = append(bad, "cluster.enabled: needs nats.url, the NATS server or cluster the instances share (the embedded server serves one instance)")
	}
	if cl.Partitions < 1 || cl.Partitions > 1024 {
		bad = append(bad, fmt.Sprintf("cluster.partitions: %d must be 1 to 1024", cl.Partitions))
	}
	if d, err := rules.ParseDuration(cl.LeaseTTL); err != nil || d < time.Second {
		bad = append(bad, fmt.Sprintf("cluster.lease_ttl: %q must be a duration of at least 1s", cl.LeaseTTL))
	}
	if cl.Instance != "" && !streamNameRe.MatchString(cl.Instance) {
		bad = append(bad, fmt.Sprintf("cluster.instance: %q must match [A-Za-z0-9_-]+", cl.Instance))
	}
	for _, f := range []struct{ field, v string }{{"cluster.bucket", cl.Bucket}, {"cluster.changelog", cl.Changelog}} {
		if !streamNameRe.MatchString(f.v) {
			bad = append(bad, fmt.Sprintf("%s: %q must match [A-Za-z0-9_-]+", f.field, f.v))
		}
	}
	if cl.Advertise != "" {
		if _, _, err := net.SplitHostPort(cl.Advertise); err != nil {
			bad = append(bad, fmt.Sprintf("cluster.advertise: %v", err))
		}
	}
	return bad
}
