package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"
)

// Opportunity statuses.
const (
	StatusOpen    = "open"
	StatusClaimed = "claimed"
	StatusDone    = "done"
)

// Opportunity outcomes a member of staff records.
var Outcomes = []string{"contacted", "accepted", "declined"}

// EventOpportunityOutcome is the event type an outcome is published as.
const EventOpportunityOutcome = "opportunity_outcome"

// Opportunity is a lead in a branch's worklist.
type Opportunity struct {
	Offer     Offer  `json:"offer"`
	Branch    string `json:"branch"`
	Status    string `json:"status"`
	DueAt     int64  `json:"due_at"` // unix ms: the SLA; after it the lead is overdue
	CreatedAt int64  `json:"created_at"`
	ClaimedBy string `json:"claimed_by,omitempty"`
	ClaimedAt int64  `json:"claimed_at,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	Note      string `json:"note,omitempty"`
	DoneAt    int64  `json:"done_at,omitempty"`
}

// Overdue reports whether the lead is past its SLA and not done.
func (o *Opportunity) Overdue(now time.Time) bool {
	return o.Status != StatusDone && o.DueAt > 0 && now.UnixMilli() > o.DueAt
}

// Worklist is the branches' worklists of opportunities, kept in a
// JetStream key-value bucket under "<branch>.<offer id>". Every change is
// a compare-and-set on the entry's revision, so two members of staff
// cannot both claim a lead.
type Worklist struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	prefix string
	now    func() time.Time
}

// ErrConflict marks a change refused because the lead changed meanwhile
// or is not in the state the change needs.
var ErrConflict = errors.New("opportunity changed or not in the required state")

// ErrNotFound marks an unknown lead.
var ErrNotFound = errors.New("no such opportunity")

// OpenWorklist opens (creating when missing) the worklist bucket.
func OpenWorklist(ctx context.Context, js jetstream.JetStream, bucket, prefix string, now func() time.Time) (*Worklist, error) {
	if bucket == "" {
		bucket = "KAIROS_OPPORTUNITIES"
	}
	if prefix == "" {
		prefix = "kairos"
	}
	if now == nil {
		now = time.Now
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 10, Description: "Kairos opportunity worklists, by branch"})
	}
	if err != nil {
		return nil, fmt.Errorf("opportunity bucket %s: %w", bucket, err)
	}
	return &Worklist{kv: kv, js: js, prefix: prefix, now: now}, nil
}

func key(branch, id string) string { return branch + "." + id }

// Add puts a new lead in its branch's list. Adding the same offer twice
// is a no-op (deliveries are idempotent).
func (w *Worklist) Add(ctx context.Context, op *Opportunity) error {
	data, err := json.Marshal(op)
	if err != nil {
		return err
	}
	_, err = w.kv.Create(ctx, key(op.Branch, op.Offer.ID), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}

func (w *Worklist) get(ctx context.Context, branch, id string) (*Opportunity, uint64, error) {
	e, err := w.kv.Get(ctx, key(branch, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: %s in %s", ErrNotFound, id, branch)
	}
	if err != nil {
		return nil, 0, err
	}
	var op Opportunity
	if err := json.Unmarshal(e.Value(), &op); err != nil {
		return nil, 0, err
	}
	return &op, e.Revision(), nil
}

// List returns a branch's leads, oldest first; done ones only with all.
func (w *Worklist) List(ctx context.Context, branch string, all bool) ([]*Opportunity, error) {
	lister, err := w.kv.ListKeysFiltered(ctx, branch+".>")
	if err != nil {
		return nil, err
	}
	var out []*Opportunity
	for k := range lister.Keys() {
		_, id, _ := strings.Cut(k, ".")
		op, _, err := w.get(ctx, branch, id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		if all || op.Status != StatusDone {
			out = append(out, op)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, nil
}

// Claim assigns an open lead to a member of staff.
func (w *Worklist) Claim(ctx context.Context, branch, id, by string) (*Opportunity, error) {
	if by == "" {
		return nil, errors.New("claim: who claims it is required")
	}
	op, rev, err := w.get(ctx, branch, id)
	if err != nil {
		return nil, err
	}
	if op.Status != StatusOpen && !(op.Status == StatusClaimed && op.ClaimedBy == by) {
		return op, fmt.Errorf("%w: %s is %s (by %s)", ErrConflict, id, op.Status, op.ClaimedBy)
	}
	op.Status, op.ClaimedBy, op.ClaimedAt = StatusClaimed, by, w.now().UnixMilli()
	return op, w.update(ctx, op, rev)
}

// Record stores the outcome of a claimed lead and publishes it as an
// opportunity_outcome event for the customer, so rules, windows and
// reports see it.
func (w *Worklist) Record(ctx context.Context, branch, id, by, result, note string) (*Opportunity, error) {
	valid := false
	for _, o := range Outcomes {
		valid = valid || o == result
	}
	if !valid {
		return nil, fmt.Errorf("outcome %q: use %s", result, strings.Join(Outcomes, ", "))
	}
	op, rev, err := w.get(ctx, branch, id)
	if err != nil {
		return nil, err
	}
	if op.Status == StatusDone && op.Outcome == result {
		return op, nil // a repeat of the same outcome
	}
	if op.Status != StatusClaimed || (by != "" && op.ClaimedBy != by) {
		return op, fmt.Errorf("%w: %s is %s (by %s); claim it first", ErrConflict, id, op.Status, op.ClaimedBy)
	}
	op.Status, op.Outcome, op.Note, op.DoneAt = StatusDone, result, note, w.now().UnixMilli()
	if err := w.update(ctx, op, rev); err != nil {
		return nil, err
	}
	return op, w.publishOutcome(ctx, op)
}

func (w *Worklist) update(ctx context.Context, op *Opportunity, rev uint64) error {
	data, err := json.Marshal(op)
	if err != nil {
		return err
	}
	if _, err := w.kv.Update(ctx, key(op.Branch, op.Offer.ID), data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %s changed meanwhile", ErrConflict, op.Offer.ID)
		}
		return err
	}
	return nil
}

func (w *Worklist) publishOutcome(ctx context.Context, op *Opportunity) error {
	ev := feedbackEvent{
		ID: EventOpportunityOutcome + ":" + op.Offer.ID, CustomerID: op.Offer.CustomerID, Type: EventOpportunityOutcome, TS: op.DoneAt,
		Attrs: map[string]any{"offer_id": op.Offer.ID, "rule_id": op.Offer.RuleID, "branch": op.Branch, "result": op.Outcome, "product": op.Offer.Product},
	}
	data, err := msgpack.Marshal(&ev)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(w.prefix + ".events." + EventOpportunityOutcome + "." + op.Offer.CustomerID)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	_, err = w.js.PublishMsg(ctx, msg)
	return err
}

// OpportunitySettings configure the opportunity connector.
type OpportunitySettings struct {
	Bucket string `yaml:"bucket"` // default KAIROS_OPPORTUNITIES
	// BranchParam names the offer param that holds the branch (default
	// "branch"); offers without it go to DefaultBranch ("unassigned").
	BranchParam   string `yaml:"branch_param"`
	DefaultBranch string `yaml:"default_branch"`
	// SLA is how long staff have to act (default: until the offer expires).
	SLA string `yaml:"sla"`
}

// OpportunityConnector delivers opportunities into the branches'
// worklists. It needs the JetStream handle of its Config.
type OpportunityConnector struct {
	s   OpportunitySettings
	sla time.Duration
	js  jetstream.JetStream
	pre string
	wl  *Worklist
}

// NewOpportunity builds an opportunity connector.
func NewOpportunity(cfg Config) (Connector, error) {
	var s OpportunitySettings
	if err := decodeSettings(cfg.Settings, &s); err != nil {
		return nil, err
	}
	if s.BranchParam == "" {
		s.BranchParam = "branch"
	}
	if s.DefaultBranch == "" {
		s.DefaultBranch = "unassigned"
	}
	c := &OpportunityConnector{s: s, js: cfg.JS, pre: cfg.Prefix}
	if s.SLA != "" {
		d, err := time.ParseDuration(s.SLA)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("sla %q must be a positive duration", s.SLA)
		}
		c.sla = d
	}
	return c, nil
}

// Deliver adds the offer to its branch's worklist.
func (c *OpportunityConnector) Deliver(ctx context.Context, o *Offer) error {
	if c.wl == nil {
		if c.js == nil {
			return &PermanentError{Err: errors.New("opportunity connector without JetStream")}
		}
		wl, err := OpenWorklist(ctx, c.js, c.s.Bucket, c.pre, nil)
		if err != nil {
			return err
		}
		c.wl = wl
	}
	branch, _ := o.Params[c.s.BranchParam].(string)
	if branch == "" || strings.ContainsAny(branch, ". *>") {
		branch = c.s.DefaultBranch
	}
	now := c.wl.now()
	due := o.ExpiresAt
	if c.sla > 0 {
		due = now.Add(c.sla).UnixMilli()
	}
	return c.wl.Add(ctx, &Opportunity{Offer: *o, Branch: branch, Status: StatusOpen, DueAt: due, CreatedAt: now.UnixMilli()})
}

// Close does nothing: the worklist lives in JetStream.
func (c *OpportunityConnector) Close(context.Context) error { return nil }
