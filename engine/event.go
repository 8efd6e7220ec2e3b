package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Event is a decoded, validated customer event (docs/contracts.md).
type Event struct {
	ID         string
	CustomerID string
	Type       string
	TS         int64 // unix milliseconds
	Attrs      map[string]any
}

// Dead-letter reasons: the last token of kairos.dlq.<reason>.
const (
	ReasonDecode   = "decode"   // the payload is not a msgpack or JSON event
	ReasonInvalid  = "invalid"  // a field is missing, malformed or disagrees with the subject
	ReasonOversize = "oversize" // the payload is larger than engine.max_event_bytes
	ReasonEval     = "eval"     // a rule failed on the event (the event itself was applied)
)

// EventError is why an event was rejected; Reason is one of the Reason constants.
type EventError struct {
	Reason string
	Msg    string
}

func (e *EventError) Error() string { return e.Reason + ": " + e.Msg }

func decodeErr(format string, args ...any) error {
	return &EventError{Reason: ReasonDecode, Msg: fmt.Sprintf(format, args...)}
}

func invalidErr(format string, args ...any) error {
	return &EventError{Reason: ReasonInvalid, Msg: fmt.Sprintf(format, args...)}
}

const maxIDLen = 256

// eventDecoder decodes events. It reuses its buffers, so use one per
// goroutine.
type eventDecoder struct {
	rd  bytes.Reader
	mp  *msgpack.Decoder
	str []byte
}

func newEventDecoder() *eventDecoder {
	d := &eventDecoder{}
	d.mp = msgpack.NewDecoder(&d.rd)
	d.mp.UseLooseInterfaceDecoding(true) // ints as int64/uint64, floats as float64
	d.mp.SetMapDecoder(func(dec *msgpack.Decoder) (any, error) { return decodeStringMap(dec) })
	return d
}

// Decode decodes an event from payload, which is JSON when json is set or
// its first byte is '{', and msgpack otherwise, and checks it against the
// type and customer tokens of its subject.
func (d *eventDecoder) Decode(payload []byte, isJSON bool, subjType, subjCustomer string, ev *Event) error {
	*ev = Event{}
	if len(payload) == 0 {
		return decodeErr("empty payload")
	}
	var err error
	if isJSON || payload[0] == '{' {
		err = decodeJSONEvent(payload, ev)
	} else {
		err = d.decodeMsgpack(payload, ev)
	}
	if err != nil {
		return err
	}
	return validateEvent(ev, subjType, subjCustomer)
}

func (d *eventDecoder) decodeMsgpack(payload []byte, ev *Event) error {
	d.rd.Reset(payload)
	dec := d.mp
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return decodeErr("msgpack: the event must be a map")
	}
	var haveTS bool
	for i := 0; i < n; i++ {
		key, err := dec.DecodeString()
		if err != nil {
			return decodeErr("msgpack: field %d: key is not a string", i)
		}
		switch key {
		case "id":
			ev.ID, err = d.decodeString(key)
		case "customer_id":
			ev.CustomerID, err = d.decodeString(key)
		case "type":
			ev.Type, err = d.decodeString(key)
		case "ts":
			ev.TS, err = decodeMsgpackTS(dec)
			haveTS = err == nil
		case "attrs":
			ev.Attrs, err = decodeAttrs(dec)
		default:
			err = dec.Skip() // unknown fields are ignored, for forward compatibility
		}
		if err != nil {
			var ee *EventError
			if errors.As(err, &ee) {
				return err
			}
			return decodeErr("msgpack: field %q: %v", key, err)
		}
	}
	if d.rd.Len() != 0 {
		return decodeErr("msgpack: %d trailing bytes after the event", d.rd.Len())
	}
	if !haveTS {
		return invalidErr("ts is missing")
	}
	return nil
}

func (d *eventDecoder) decodeString(field string) (string, error) {
	c, err := d.mp.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsString(c) && c != msgpcode.Bin8 && c != msgpcode.Bin16 && c != msgpcode.Bin32 {
		return "", invalidErr("%s must be a string", field)
	}
	return d.mp.DecodeString()
}

func decodeMsgpackTS(dec *msgpack.Decoder) (int64, error) {
	v, err := dec.DecodeInterfaceLoose()
	if err != nil {
		return 0, err
	}
	switch t := v.(type) {
	case nil:
		return 0, invalidErr("ts is missing")
	case int64:
		return t, nil
	case uint64:
		if t > math.MaxInt64 {
			return 0, invalidErr("ts out of range")
		}
		return int64(t), nil
	case float64:
		if t != math.Trunc(t) || math.Abs(t) > 1<<53 {
			return 0, invalidErr("ts must be whole unix milliseconds")
		}
		return int64(t), nil
	case time.Time:
		return t.UnixMilli(), nil
	case string:
		return parseTSString(t)
	}
	return 0, invalidErr("ts must be unix milliseconds")
}

func parseTSString(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, invalidErr("ts %q is neither unix milliseconds nor RFC 3339", truncate(s, 40))
	}
	return t.UnixMilli(), nil
}

func decodeAttrs(dec *msgpack.Decoder) (map[string]any, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	if c == msgpcode.Nil {
		return nil, dec.DecodeNil()
	}
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return nil, invalidErr("attrs must be a map")
	}
	return decodeStringMap(dec)
}

// decodeStringMap decodes a msgpack map whose keys are strings, its values
// loosely (ints as int64 or uint64, floats as float64, nested maps alike).
func decodeStringMap(dec *msgpack.Decoder) (map[string]any, error) {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	m := make(map[string]any, min(n, 64))
	for i := 0; i < n; i++ {
		k, err := dec.DecodeString()
		if err != nil {
			return nil, invalidErr("attrs: keys must be strings")
		}
		v, err := dec.DecodeInterfaceLoose()
		if err != nil {
			return nil, err
		}
		m[k] = signed(v)
	}
	return m, nil
}

// signed turns a uint64 that fits into an int64, so that 500 is the same
// CEL type whichever msgpack integer format carried it (msgpack encoders
// pick unsigned formats for positive numbers; CEL has no int/uint
// arithmetic). Lists are converted in place; maps are decoded by
// decodeStringMap, which already calls signed.
func signed(v any) any {
	switch t := v.(type) {
	case uint64:
		if t <= math.MaxInt64 {
			return int64(t)
		}
	case []any:
		for i, e := range t {
			t[i] = signed(e)
		}
	}
	return v
}

type jsonEvent struct {
	ID         *string         `json:"id"`
	CustomerID *string         `json:"customer_id"`
	Type       *string         `json:"type"`
	TS         json.RawMessage `json:"ts"`
	Attrs      json.RawMessage `json:"attrs"`
}

func decodeJSONEvent(payload []byte, ev *Event) error {
	var je jsonEvent
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&je); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return invalidErr("%s must be a %s", ute.Field, jsonKind(ute.Field))
		}
		return decodeErr("json: %v", err)
	}
	if dec.More() {
		return decodeErr("json: trailing data after the event")
	}
	if je.ID != nil {
		ev.ID = *je.ID
	}
	if je.CustomerID != nil {
		ev.CustomerID = *je.CustomerID
	}
	if je.Type != nil {
		ev.Type = *je.Type
	}
	switch {
	case len(je.TS) == 0 || string(je.TS) == "null":
		return invalidErr("ts is missing")
	case je.TS[0] == '"':
		var s string
		if err := json.Unmarshal(je.TS, &s); err != nil {
			return invalidErr("ts: %v", err)
		}
		ts, err := parseTSString(s)
		if err != nil {
			return err
		}
		ev.TS = ts
	default:
		var n json.Number
		if err := json.Unmarshal(je.TS, &n); err != nil {
			return invalidErr("ts must be unix milliseconds or an RFC 3339 string")
		}
		ts, err := n.Int64()
		if err != nil {
			return invalidErr("ts must be whole unix milliseconds")
		}
		ev.TS = ts
	}
	if len(je.Attrs) > 0 && string(je.Attrs) != "null" {
		if je.Attrs[0] != '{' {
			return invalidErr("attrs must be an object")
		}
		ad := json.NewDecoder(bytes.NewReader(je.Attrs))
		ad.UseNumber()
		var m map[string]any
		if err := ad.Decode(&m); err != nil {
			return decodeErr("json: attrs: %v", err)
		}
		ev.Attrs = normalizeJSON(m).(map[string]any)
	}
	return nil
}

func jsonKind(field string) string {
	if field == "attrs" {
		return "object"
	}
	return "string"
}

// normalizeJSON turns json.Number into int64 when whole and in range, and
// float64 otherwise, so JSON and msgpack events look alike to rules.
func normalizeJSON(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeJSON(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = normalizeJSON(e)
		}
		return t
	}
	return v
}

func validateEvent(ev *Event, subjType, subjCustomer string) error {
	switch {
	case ev.ID == "":
		return invalidErr("id is missing")
	case len(ev.ID) > maxIDLen:
		return invalidErr("id is longer than %d bytes", maxIDLen)
	case ev.CustomerID == "":
		return invalidErr("customer_id is missing")
	case ev.CustomerID != subjCustomer:
		return invalidErr("customer_id %q differs from the subject's customer token %q", truncate(ev.CustomerID, 64), truncate(subjCustomer, 64))
	case ev.Type == "":
		return invalidErr("type is missing")
	case !validType(ev.Type):
		return invalidErr("type %q must match [a-z0-9_]+", truncate(ev.Type, 64))
	case ev.Type != subjType:
		return invalidErr("type %q differs from the subject's type token %q", ev.Type, truncate(subjType, 64))
	}
	return nil
}

func validType(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// splitEventSubject returns the type and customer tokens of
// <prefix>.events.<type>.<customer>.
func splitEventSubject(subject string, prefixLen int) (typ, customer string, ok bool) {
	if len(subject) <= prefixLen {
		return "", "", false
	}
	rest := subject[prefixLen:]
	i := strings.IndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	typ, customer = rest[:i], rest[i+1:]
	if strings.IndexByte(customer, '.') >= 0 {
		return "", "", false
	}
	return typ, customer, true
}
