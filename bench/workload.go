package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Event is a synthetic event, in the public event contract's shape.
type Event struct {
	ID         string         `msgpack:"id" json:"id"`
	CustomerID string         `msgpack:"customer_id" json:"customer_id"`
	Type       string         `msgpack:"type" json:"type"`
	TS         int64          `msgpack:"ts" json:"ts"`
	Attrs      map[string]any `msgpack:"attrs,omitempty" json:"attrs,omitempty"`
}

// Subject is the event's subject under prefix (normally "kairos").
func (e *Event) Subject(prefix string) string {
	return prefix + ".events." + e.Type + "." + e.CustomerID
}

// Workload describes synthetic traffic.
type Workload struct {
	// Customers is the number of distinct customers (default 100,000).
	Customers int
	// Skew is the Zipf exponent s > 1 of customer activity (default 1.1):
	// a few customers send many events, most send few.
	Skew float64
	// Seed makes the traffic reproducible.
	Seed uint64
	// ZipfV is the Zipf offset v >= 1 (default 1): customer k, counted from
	// 0, draws with probability proportional to (v+k)^-s. A larger v
	// flattens the head, so the hottest customers are less extreme.
	ZipfV float64
	// RunID distinguishes the event ids of separate runs (default: the seed).
	// It must not contain '-': SeqOf reads the sequence after the last one.
	RunID string
	// Mix is the event mix: event types and their relative weights
	// (default DefaultMix, the five types kairos demo uses).
	Mix []MixEntry
}

// MixEntry is one event type of a mix and its relative weight.
type MixEntry struct {
	Type   string
	Weight int
}

// DefaultMix is the event mix of kairos demo and the engine's tests.
var DefaultMix = []MixEntry{{"login", 35}, {"page_view", 25}, {"txn", 27}, {"transfer", 8}, {"payroll", 5}}

// BenchMix is the default event mix of kairos bench: ten event types, so
// that rules spread evenly over them are each triggered by a tenth of the
// rule set.
var BenchMix = []MixEntry{
	{"login", 28}, {"page_view", 20}, {"txn", 24}, {"transfer", 7}, {"payroll", 3},
	{"card_decline", 2}, {"atm_withdrawal", 5}, {"bill_payment", 5}, {"search", 4}, {"fx_exchange", 2},
}

// EventTypes are the event types the generator can make attributes for.
func EventTypes() []string {
	return []string{"login", "page_view", "txn", "transfer", "payroll", "card_decline", "atm_withdrawal", "bill_payment", "search", "fx_exchange"}
}

// ParseMix reads a mix written as type=weight,type=weight (for example
// "login=30,txn=50,page_view=20"). Every type must be one of EventTypes.
func ParseMix(s string) ([]MixEntry, error) {
	var mix []MixEntry
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, w, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want type=weight", part)
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mix %q: weight must be a whole number >= 0", part)
		}
		if !slices.Contains(EventTypes(), typ) {
			return nil, fmt.Errorf("mix %q: unknown event type (known: %s)", part, strings.Join(EventTypes(), ", "))
		}
		if seen[typ] {
			return nil, fmt.Errorf("mix: %s given twice", typ)
		}
		seen[typ] = true
		if n > 0 {
			mix = append(mix, MixEntry{typ, n})
		}
	}
	if len(mix) == 0 {
		return nil, errors.New("mix: no event type with a positive weight")
	}
	return mix, nil
}

// FormatMix writes a mix as ParseMix reads it.
func FormatMix(mix []MixEntry) string {
	parts := make([]string, len(mix))
	for i, m := range mix {
		parts[i] = m.Type + "=" + strconv.Itoa(m.Weight)
	}
	return strings.Join(parts, ",")
}

// Generator produces a reproducible stream of synthetic events. It is not
// safe for concurrent use.
type Generator struct {
	w     Workload
	rng   *rand.Rand
	zipf  *rand.Zipf
	seq   uint64
	cum   []int // cumulative weights of w.Mix
	total int
}

// NewGenerator returns a generator of w.
func NewGenerator(w Workload) *Generator {
	if w.Customers <= 0 {
		w.Customers = 100_000
	}
	if w.Skew <= 1 {
		w.Skew = 1.1
	}
	if w.RunID == "" {
		w.RunID = strconv.FormatUint(w.Seed, 36)
	}
	if w.ZipfV < 1 {
		w.ZipfV = 1
	}
	if len(w.Mix) == 0 {
		w.Mix = DefaultMix
	}
	rng := rand.New(rand.NewPCG(w.Seed, 0x6b6169726f73))
	g := &Generator{w: w, rng: rng, zipf: rand.NewZipf(rng, w.Skew, w.ZipfV, uint64(w.Customers-1))}
	for _, m := range w.Mix {
		g.total += max(m.Weight, 0)
		g.cum = append(g.cum, g.total)
	}
	return g
}

// Seq is the sequence number of the last event Next returned (0 before
// the first).
func (g *Generator) Seq() uint64 { return g.seq }

// SeqOf returns the sequence number of an event id made by Next: the
// base-36 number after its last '-'.
func SeqOf(id string) (uint64, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(id[i+1:], 36, 64)
	return n, err == nil
}

// Share is the fraction of all events that the top n customers (the n
// most active) send, under the generator's Zipf law.
func (g *Generator) Share(n int) float64 {
	return zipfShare(g.w.Customers, g.w.Skew, g.w.ZipfV, n)
}

// zipfShare sums (v+k)^-s over the top n of customers, relative to all.
func zipfShare(customers int, s, v float64, n int) float64 {
	var top, all float64
	for k := 0; k < customers; k++ {
		p := math.Pow(v+float64(k), -s)
		all += p
		if k < n {
			top += p
		}
	}
	return top / all
}

// Customers is the number of customers of the workload.
func (g *Generator) Customers() int { return g.w.Customers }

// CustomerID is the id of customer i.
func CustomerID(i int) string { return fmt.Sprintf("C%07d", i) }

var (
	segments = []string{"mass", "mass", "mass", "affluent", "private"}
	branches = []string{"SH001", "SH002", "BJ001", "SZ001", "GZ001"}
	channels = []string{"app", "app", "app", "web"}
	pages    = []string{"home", "home", "funds", "loans", "cards", "deposits"}
	merchant = []string{"m_grocery", "m_fuel", "m_travel", "m_dining", "m_online", "m_electronics", "m_luxury"}
	names    = []string{"Li", "Wang", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang"}

	declines     = []string{"insufficient_funds", "insufficient_funds", "limit", "fraud_check", "expired"}
	atms         = []string{"own", "own", "own", "other"}
	billers      = []string{"utility", "telecom", "insurance", "tax", "school"}
	queries      = []string{"mortgage", "fund", "loan", "card", "fx", "deposit", "insurance"}
	fxCurrencies = []string{"USD", "USD", "EUR", "JPY", "HKD", "GBP"}
)

// Profile returns the profile attributes of customer i (deterministic).
func (g *Generator) Profile(i int) map[string]any {
	r := rand.New(rand.NewPCG(g.w.Seed^uint64(i), 0x70726f66))
	tags := []any{}
	if r.IntN(100) < 40 {
		tags = append(tags, "payroll")
	}
	if r.IntN(100) < 10 {
		tags = append(tags, "premium_card")
	}
	if r.IntN(100) < 20 {
		tags = append(tags, "mortgage")
	}
	prefs := []any{"app_push", "sms"}
	if r.IntN(100) < 30 {
		prefs = []any{"sms", "app_push"}
	}
	return map[string]any{
		"name":         names[r.IntN(len(names))],
		"segment":      segments[r.IntN(len(segments))],
		"branch":       branches[r.IntN(len(branches))],
		"tags":         tags,
		"channel_pref": prefs,
		"timezone":     "Asia/Shanghai",
		"cohort":       cohortName(r.IntN(Cohorts)),
	}
}

// ProfileEvent returns the profile event that loads customer i's profile.
func (g *Generator) ProfileEvent(i int, now time.Time) Event {
	id := CustomerID(i)
	return Event{ID: "profile:" + g.w.RunID + ":" + id, CustomerID: id, Type: "profile", TS: now.UnixMilli(), Attrs: g.Profile(i)}
}

// Next returns the next event, stamped now.
func (g *Generator) Next(now time.Time) Event {
	g.seq++
	c := int(g.zipf.Uint64())
	ev := Event{
		ID:         g.w.RunID + "-" + strconv.FormatUint(g.seq, 36),
		CustomerID: CustomerID(c),
		TS:         now.UnixMilli(),
	}
	r := g.rng
	p := r.IntN(g.total)
	t := 0
	for t < len(g.cum)-1 && p >= g.cum[t] {
		t++
	}
	ev.Type = g.w.Mix[t].Type
	ev.Attrs = attrsFor(r, ev.Type)
	return ev
}

// attrsFor draws the attributes of an event of type typ.
func attrsFor(r *rand.Rand, typ string) map[string]any {
	switch typ {
	case "login":
		a := map[string]any{"channel": channels[r.IntN(len(channels))]}
		if r.IntN(100) == 0 {
			a["new_device"] = true
		}
		return a
	case "page_view":
		return map[string]any{"page": pages[r.IntN(len(pages))]}
	case "txn":
		// Log-normal amounts: median about 300, a long tail past 10,000.
		amt := math.Round(math.Exp(5.7+1.4*r.NormFloat64())*100) / 100
		return map[string]any{"amount": amt, "merchant": merchant[r.IntN(len(merchant))], "currency": "CNY"}
	case "transfer":
		return map[string]any{"amount": float64(100 * (1 + r.IntN(200))), "direction": []string{"in", "out"}[r.IntN(2)]}
	case "payroll":
		return map[string]any{"amount": float64(3000 + 1000*r.IntN(25)), "employer": "E" + strconv.Itoa(r.IntN(50))}
	case "card_decline":
		return map[string]any{"amount": math.Round(math.Exp(6.5+1.2*r.NormFloat64())*100) / 100, "reason": declines[r.IntN(len(declines))]}
	case "atm_withdrawal":
		return map[string]any{"amount": float64(100 * (1 + r.IntN(30))), "atm": atms[r.IntN(len(atms))]}
	case "bill_payment":
		return map[string]any{"amount": math.Round(math.Exp(5+0.8*r.NormFloat64())*100) / 100, "biller": billers[r.IntN(len(billers))]}
	case "search":
		return map[string]any{"query": queries[r.IntN(len(queries))]}
	case "fx_exchange":
		return map[string]any{"amount": float64(500 * (1 + r.IntN(40))), "currency": fxCurrencies[r.IntN(len(fxCurrencies))]}
	}
	return nil
}

// Encode appends the msgpack encoding of ev to dst.
func Encode(dst []byte, ev *Event) ([]byte, error) {
	b, err := msgpack.Marshal(ev)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}
