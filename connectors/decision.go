package connectors

import (
	"encoding/json"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Decision outcomes.
const (
	Emitted    = "emitted"
	Suppressed = "suppressed"
	Deferred   = "deferred"
	// Converted records a conversion attributed to an offer (or a
	// holdout decision): its event is the conversion event.
	Converted = "converted"
)

// Conversion groups.
const (
	GroupTreatment = "treatment"
	GroupHoldout   = "holdout"
)

// Decision is the record of what the engine decided for one rule match,
// published to <prefix>.decisions.<rule_id> (docs/contracts.md). Every match
// has exactly one final decision (emitted or suppressed); a match deferred
// by quiet hours has a deferred decision first.
type Decision struct {
	ID          string `msgpack:"id" json:"id"` // the offer id
	RuleID      string `msgpack:"rule_id" json:"rule_id"`
	RuleVersion string `msgpack:"rule_version" json:"rule_version"`
	CustomerID  string `msgpack:"customer_id" json:"customer_id"`
	Kind        string `msgpack:"kind" json:"kind"`
	Outcome     string `msgpack:"outcome" json:"outcome"`
	Reason      string `msgpack:"reason" json:"reason,omitempty"`
	Channel     string `msgpack:"channel" json:"channel,omitempty"`
	Priority    int    `msgpack:"priority" json:"priority"`
	EventID     string `msgpack:"event_id" json:"event_id"`
	EventType   string `msgpack:"event_type" json:"event_type"`
	EventTS     int64  `msgpack:"event_ts" json:"event_ts"`
	DecidedAt   int64  `msgpack:"decided_at" json:"decided_at"`
	ReleaseAt   int64  `msgpack:"release_at,omitempty" json:"release_at,omitempty"`
	// Mode is "shadow" for a shadow rule's decision (what it would have
	// done; nothing was sent or counted), empty for a live one.
	Mode string `msgpack:"mode,omitempty" json:"mode,omitempty"`
	// Group is treatment or holdout, for a conversion.
	Group string `msgpack:"group,omitempty" json:"group,omitempty"`
}

// EncodeDecision encodes d and appends the bytes to dst.
func (e *Encoder) EncodeDecision(dst []byte, d *Decision, enc Encoding) ([]byte, error) {
	e.buf.Reset()
	var err error
	if enc == JSON {
		err = e.js.Encode(d)
		if err == nil {
			e.buf.Truncate(e.buf.Len() - 1)
		}
	} else {
		err = e.mp.Encode(d)
	}
	if err != nil {
		return dst, fmt.Errorf("encode decision %s: %w", d.ID, err)
	}
	return append(dst, e.buf.Bytes()...), nil
}

// DecodeDecision decodes a decision in either encoding.
func DecodeDecision(data []byte) (*Decision, error) {
	var d Decision
	var err error
	if len(data) > 0 && data[0] == '{' {
		err = json.Unmarshal(data, &d)
	} else if err = checkMsgpack(data); err == nil {
		err = msgpack.Unmarshal(data, &d)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return &d, nil
}
