package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
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
	// RunID distinguishes the event ids of separate runs (default: the seed).
	RunID string
}

// Generator produces a reproducible stream of synthetic events. It is not
// safe for concurrent use.
type Generator struct {
	w    Workload
	rng  *rand.Rand
	zipf *rand.Zipf
	seq  uint64
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
	rng := rand.New(rand.NewPCG(w.Seed, 0x6b6169726f73))
	return &Generator{w: w, rng: rng, zipf: rand.NewZipf(rng, w.Skew, 1, uint64(w.Customers-1))}
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
	switch p := r.IntN(100); {
	case p < 35:
		ev.Type = "login"
		ev.Attrs = map[string]any{"channel": channels[r.IntN(len(channels))]}
		if r.IntN(100) == 0 {
			ev.Attrs["new_device"] = true
		}
	case p < 60:
		ev.Type = "page_view"
		ev.Attrs = map[string]any{"page": pages[r.IntN(len(pages))]}
	case p < 87:
		ev.Type = "txn"
		// Log-normal amounts: median about 300, a long tail past 10,000.
		amt := math.Round(math.Exp(5.7+1.4*r.NormFloat64())*100) / 100
		ev.Attrs = map[string]any{"amount": amt, "merchant": merchant[r.IntN(len(merchant))], "currency": "CNY"}
	case p < 95:
		ev.Type = "transfer"
		ev.Attrs = map[string]any{"amount": float64(100 * (1 + r.IntN(200))), "direction": []string{"in", "out"}[r.IntN(2)]}
	default:
		ev.Type = "payroll"
		ev.Attrs = map[string]any{"amount": float64(3000 + 1000*r.IntN(25)), "employer": "E" + strconv.Itoa(r.IntN(50))}
	}
	return ev
}

// Encode appends the msgpack encoding of ev to dst.
func Encode(dst []byte, ev *Event) ([]byte, error) {
	b, err := msgpack.Marshal(ev)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}
