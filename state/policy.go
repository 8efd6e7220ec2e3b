package state

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
)

// Contact is one offer sent to the customer (emitted), kept for caps,
// cooldowns and the contacts()/offers() rule functions.
type Contact struct {
	TS      int64  // decision time, unix ms
	Rule    string // rule id
	Channel string
	Kind    uint8  // the engine's offer kind (0 marketing, 1 service, 2 opportunity); opaque to state
	OfferID string // the offer, so that a failed delivery can release its contact
}

// Deferred is an offer held back by quiet hours, released later by the
// engine.
type Deferred struct {
	ID      string // offer id, unique per customer
	Release int64  // unix ms when it may be released
	Expires int64  // unix ms after which it must be dropped
	Data    []byte // engine-encoded; opaque to state
}

// Decision is one recent decision kept for explain.
type Decision struct {
	TS      int64 // unix ms
	Rule    string
	OfferID string
	EventID string
	Outcome string // e.g. emitted, suppressed, deferred
	Reason  string
	Channel string
}

// Exposure is an offer emitted to the customer, or a holdout decision, of
// a rule that measures conversions: what a later conversion event is
// attributed to.
type Exposure struct {
	TS        int64 // decision time, unix ms
	Rule      string
	OfferID   string
	Holdout   bool   // a control-group decision: nothing was sent
	Converted bool   // a conversion was attributed to it
	Data      []byte // engine-encoded offer; opaque to state
}

// policy is the contact-policy state of a customer, stored under k/<id>.
type policy struct {
	// contacts[coff:] are the live contacts in TS order; like a series,
	// dropped entries before coff are compacted away when the slice is
	// full, so steady-state appends do not allocate.
	contacts []Contact
	coff     int
	// totals is sorted by rule; no total is 0.
	totals []ruleTotal
	// deferred is sorted by Release, then ID; IDs are unique.
	deferred []Deferred
	// decs holds the kept decisions, oldest first, each encoded by
	// appendDecision, and decAt[i] is where decision i starts. Encoded, a
	// ring of 20 engine decisions is one pointer-free array of about 2 KB;
	// as structs with their id strings it took about 5 KB and 120 pointers
	// for the collector to follow in every cached customer (decisions.go).
	decs  []byte
	decAt []uint32
	// view is what Decisions returned since the last change, or nil.
	view []Decision
	// exposures are in TS order.
	exposures []Exposure
	// seen is the last day (UTC days since 1970) an event of each type
	// came, sorted by type.
	seen []SeenDay
}

// SeenDay is the last day an event of a type came for the customer, in
// whole UTC days since 1970-01-01.
type SeenDay struct {
	Type string
	Day  int32
}

type ruleTotal struct {
	rule string
	n    int64
}

// dueRef identifies the due-index key q/<release><customer id>\x00<id> of
// a deferred offer.
type dueRef struct {
	release int64
	id      string
}

func (p *policy) empty() bool {
	return len(p.contacts) == p.coff && len(p.totals) == 0 && len(p.deferred) == 0 && len(p.decAt) == 0 && len(p.exposures) == 0 && len(p.seen) == 0
}

// reset empties p, keeping its arrays but no references into them.
func (p *policy) reset() {
	clear(p.contacts)
	p.contacts, p.coff = p.contacts[:0], 0
	clear(p.totals)
	p.totals = p.totals[:0]
	clear(p.deferred)
	p.deferred = p.deferred[:0]
	p.clearDecisions()
	clear(p.exposures)
	p.exposures = p.exposures[:0]
	clear(p.seen)
	p.seen = p.seen[:0]
}

// Contacts returns the kept contacts, oldest first. The slice is a
// read-only view: do not modify it or keep it across Apply, AddContact,
// Commit or Invalidate.
func (c *Customer) Contacts() []Contact { return c.pol.contacts[c.pol.coff:] }

// AddContact records a contact. It goes in TS order, after contacts with
// an equal TS (appending is the common case). Then, when retention > 0,
// contacts with TS <= newest.TS-retention are dropped; a contact that old
// is not added at all. retention <= 0 keeps every contact. Retention is
// counted in whole milliseconds, rounded up. Beyond
// Options.MaxSeriesEntries contacts the oldest are dropped. It marks the
// policy record dirty when something changed. Rule and Channel are
// interned per shard.
func (c *Customer) AddContact(ct Contact, retention time.Duration) {
	p := &c.pol
	n := len(p.contacts)
	var r int64
	if retention > 0 {
		r = (int64(retention) + int64(time.Millisecond) - 1) / int64(time.Millisecond)
		if n > p.coff && ct.TS <= subSat(p.contacts[n-1].TS, r) {
			return // older than what is kept
		}
	}
	ct.Rule, ct.Channel = c.intern(ct.Rule), c.intern(ct.Channel)
	if n == cap(p.contacts) && p.coff > 0 {
		m := copy(p.contacts, p.contacts[p.coff:])
		clear(p.contacts[m:n])
		p.contacts, p.coff = p.contacts[:m], 0
		n = m
	}
	pos := n
	if n > p.coff && ct.TS < p.contacts[n-1].TS {
		pos = p.coff + contactsAfter(p.contacts[p.coff:], ct.TS)
	}
	p.contacts = append(p.contacts, ct)
	if pos < n {
		copy(p.contacts[pos+1:], p.contacts[pos:n])
		p.contacts[pos] = ct
	}
	if r > 0 {
		cut := subSat(p.contacts[len(p.contacts)-1].TS, r)
		if p.contacts[p.coff].TS <= cut {
			p.dropContacts(contactsAfter(p.contacts[p.coff:], cut))
		}
	}
	if over := len(p.contacts) - p.coff - c.maxEntries; c.maxEntries > 0 && over > 0 {
		p.dropContacts(over)
	}
	c.policyDirty = true
	c.gen++
}

// RemoveContact removes the contact of an offer (a delivery that failed
// releases the cap it held). It reports whether there was one, and marks
// the policy record dirty when it removed it.
func (c *Customer) RemoveContact(offerID string) bool {
	p := &c.pol
	live := p.contacts[p.coff:]
	for i := range live {
		if live[i].OfferID == offerID && offerID != "" {
			k := p.coff + i
			copy(p.contacts[k:], p.contacts[k+1:])
			p.contacts[len(p.contacts)-1] = Contact{}
			p.contacts = p.contacts[:len(p.contacts)-1]
			if p.coff == len(p.contacts) {
				p.contacts, p.coff = p.contacts[:0], 0
			}
			c.policyDirty = true
			c.gen++
			return true
		}
	}
	return false
}

// dropContacts drops the k oldest live contacts.
func (p *policy) dropContacts(k int) {
	clear(p.contacts[p.coff : p.coff+k])
	p.coff += k
	if p.coff == len(p.contacts) {
		p.contacts, p.coff = p.contacts[:0], 0
	}
}

// CountContacts counts the contacts with TS > since that match the
// filters: kind -1, rule "" and channel "" match any. It does not
// allocate.
func (c *Customer) CountContacts(since int64, kind int, rule string, channel string) int {
	live := c.pol.contacts[c.pol.coff:]
	live = live[contactsAfter(live, since):]
	if kind < 0 && rule == "" && channel == "" {
		return len(live)
	}
	n := 0
	for i := range live {
		ct := &live[i]
		if (kind < 0 || int(ct.Kind) == kind) && (rule == "" || ct.Rule == rule) && (channel == "" || ct.Channel == channel) {
			n++
		}
	}
	return n
}

// contactsAfter returns the number of contacts of the TS-ordered cs with
// TS <= ts (the index of the first with TS > ts), by binary search.
func contactsAfter(cs []Contact, ts int64) int {
	lo, hi := 0, len(cs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cs[m].TS <= ts {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// subSat returns a-b for b >= 0, saturating at math.MinInt64.
func subSat(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

// RuleTotal returns the lifetime number of offers of the rule to this
// customer.
func (c *Customer) RuleTotal(rule string) int64 {
	if i, ok := c.findTotal(rule); ok {
		return c.pol.totals[i].n
	}
	return 0
}

// AddRuleTotal adds n to the total of the rule and marks the policy record
// dirty; a total that reaches 0 is removed.
func (c *Customer) AddRuleTotal(rule string, n int64) {
	if n == 0 {
		return
	}
	p := &c.pol
	i, ok := c.findTotal(rule)
	switch {
	case ok:
		p.totals[i].n += n
		if p.totals[i].n == 0 {
			p.totals = slices.Delete(p.totals, i, i+1)
		}
	default:
		p.totals = slices.Insert(p.totals, i, ruleTotal{rule: c.intern(rule), n: n})
	}
	c.policyDirty = true
	c.gen++
}

func (c *Customer) findTotal(rule string) (int, bool) {
	return slices.BinarySearchFunc(c.pol.totals, rule, func(t ruleTotal, r string) int { return strings.Compare(t.rule, r) })
}

// Deferred returns the deferred offers ordered by Release, then ID. The
// slice is a read-only view: do not modify it (nor the Data) or keep it
// across AddDeferred, RemoveDeferred, Commit or Invalidate.
func (c *Customer) Deferred() []Deferred { return c.pol.deferred }

// AddDeferred adds the offer, replacing one with the same ID, and marks the
// policy record dirty. d.Data is copied. Batch.Put keeps the due index
// (see Store.DueDeferred) in step.
func (c *Customer) AddDeferred(d Deferred) {
	p := &c.pol
	if i := c.deferredIndex(d.ID); i >= 0 {
		p.deferred = slices.Delete(p.deferred, i, i+1)
	}
	d.Data = append([]byte(nil), d.Data...)
	i, _ := slices.BinarySearchFunc(p.deferred, d, cmpDeferred)
	p.deferred = slices.Insert(p.deferred, i, d)
	c.policyDirty = true
	c.gen++
}

// RemoveDeferred removes the offer with the ID; it reports whether there
// was one, and then marks the policy record dirty.
func (c *Customer) RemoveDeferred(id string) bool {
	i := c.deferredIndex(id)
	if i < 0 {
		return false
	}
	c.pol.deferred = slices.Delete(c.pol.deferred, i, i+1)
	c.policyDirty = true
	c.gen++
	return true
}

func (c *Customer) deferredIndex(id string) int {
	for i := range c.pol.deferred {
		if c.pol.deferred[i].ID == id {
			return i
		}
	}
	return -1
}

func cmpDeferred(a, b Deferred) int {
	if c := cmp.Compare(a.Release, b.Release); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// AddDecision keeps d among the last keep decisions, dropping the oldest
// beyond keep (keep <= 0 keeps none), and marks the policy record dirty
// when something changed.
func (c *Customer) AddDecision(d Decision, keep int) {
	p := &c.pol
	if keep <= 0 {
		if len(p.decAt) > 0 {
			p.clearDecisions()
			c.policyDirty = true
			c.gen++
		}
		return
	}
	p.addDecision(&d, keep)
	c.policyDirty = true
	c.gen++
}

// Decisions returns the kept decisions, oldest first. The slice is a
// read-only view: do not modify it or keep it across AddDecision, Commit or
// Invalidate. It is decoded on the first call after a change (one string
// for all its strings), for explain; the engine's path only adds.
func (c *Customer) Decisions() []Decision { return c.pol.decisions() }

// intern returns the shard's copy of s; a customer of no shard (Snapshot)
// keeps s.
func (c *Customer) intern(s string) string {
	if c.shard == nil {
		return s
	}
	return c.shard.in.str(s)
}

// internMax bounds an interner; when full it starts over (the strings
// already handed out stay valid).
const internMax = 4096

// interner shares the strings that repeat across customers (rule ids,
// channels, outcomes, reasons), so that decoding a policy record does not
// allocate a string per entry. A nil *interner allocates.
type interner struct {
	m   map[string]string
	tab []string // decoding scratch: the string table of a record
}

// bytes returns the interned string with the bytes of b.
func (in *interner) bytes(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	in.add(s)
	return s
}

// str returns the interned copy of s.
func (in *interner) str(s string) string {
	if in == nil || s == "" {
		return s
	}
	if v, ok := in.m[s]; ok {
		return v
	}
	s = strings.Clone(s)
	in.add(s)
	return s
}

func (in *interner) add(s string) {
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) >= internMax {
		clear(in.m)
	}
	in.m[s] = s
}

// dueRefs sets dst to the due-index refs of the deferred offers, in key
// order, reusing dst.
func dueRefs(dst []dueRef, ds []Deferred) []dueRef {
	dst = dst[:0]
	for i := range ds {
		dst = append(dst, dueRef{release: ds[i].Release, id: ds[i].ID})
	}
	return dst
}

// AddExposure records an exposure in TS order, and drops those with
// TS <= newest.TS-retention (retention <= 0 keeps all; Options.
// MaxSeriesEntries bounds them). Data is copied. It marks the policy
// record dirty.
func (c *Customer) AddExposure(x Exposure, retention time.Duration) {
	p := &c.pol
	x.Rule = c.intern(x.Rule)
	x.Data = append([]byte(nil), x.Data...)
	pos := len(p.exposures)
	for pos > 0 && p.exposures[pos-1].TS > x.TS {
		pos--
	}
	p.exposures = slices.Insert(p.exposures, pos, x)
	if retention > 0 {
		cut := subSat(p.exposures[len(p.exposures)-1].TS, retention.Milliseconds())
		k := 0
		for k < len(p.exposures) && p.exposures[k].TS <= cut {
			k++
		}
		if k > 0 {
			p.exposures = slices.Delete(p.exposures, 0, k)
		}
	}
	if over := len(p.exposures) - c.maxEntries; c.maxEntries > 0 && over > 0 {
		p.exposures = slices.Delete(p.exposures, 0, over)
	}
	c.policyDirty = true
	c.gen++
}

// Exposures returns the kept exposures, oldest first (a read-only view).
func (c *Customer) Exposures() []Exposure { return c.pol.exposures }

// MarkConverted marks the exposure of an offer as converted; it reports
// whether it found one not yet converted.
func (c *Customer) MarkConverted(offerID string) bool {
	for i := range c.pol.exposures {
		if x := &c.pol.exposures[i]; x.OfferID == offerID && !x.Converted {
			x.Converted = true
			c.policyDirty = true
			c.gen++
			return true
		}
	}
	return false
}

const dayMillis = 24 * 3600 * 1000

// Seen records that an event of typ came at tsMillis. Only the day is
// kept, so the policy record is written at most once a day per type.
func (c *Customer) Seen(typ string, tsMillis int64) {
	day := int32(floorDiv(tsMillis, dayMillis))
	p := &c.pol
	i, found := slices.BinarySearchFunc(p.seen, typ, func(s SeenDay, t string) int { return strings.Compare(s.Type, t) })
	if found {
		if p.seen[i].Day >= day {
			return
		}
		p.seen[i].Day = day
	} else {
		p.seen = slices.Insert(p.seen, i, SeenDay{Type: c.intern(typ), Day: day})
	}
	c.policyDirty = true
	c.gen++
}

// LastSeen returns, per event type, the last day one came (a read-only
// view, sorted by type).
func (c *Customer) LastSeen() []SeenDay { return c.pol.seen }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
