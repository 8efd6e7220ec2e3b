package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	rd      bytes.Reader
	mp      *msgpack.Decoder // reads d.rd, which has no buffer of its own: d.rawString may read it too
	mapDec  func(*msgpack.Decoder) (any, error)
	payload []byte // the msgpack event being decoded
	// interned holds attribute names and short string values: they repeat
	// from event to event, so the decoder keeps one copy of each rather
	// than allocating it per event. At most maxInterned.
	interned map[string]string
}

// maxInterned bounds eventDecoder.interned; maxInternedLen is the longest
// string interned.
const (
	maxInterned    = 4096
	maxInternedLen = 64
)

func newEventDecoder() *eventDecoder {
	d := &eventDecoder{interned: make(map[string]string)}
	d.mp = msgpack.NewDecoder(&d.rd)
	d.mp.UseLooseInterfaceDecoding(true) // ints as int64/uint64, floats as float64
	d.mapDec = func(*msgpack.Decoder) (any, error) { return d.decodeStringMap(1) }
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
		err = d.decodeMsgpack(payload, subjType, subjCustomer, ev)
	}
	if err != nil {
		return err
	}
	return validateEvent(ev, subjType, subjCustomer)
}

// decodeMsgpack decodes a msgpack event. The customer id and the type
// share the strings of the subject's tokens when they are the same, as
// they are unless the event is invalid; field names are not allocated.
func (d *eventDecoder) decodeMsgpack(payload []byte, subjType, subjCustomer string, ev *Event) error {
	d.rd.Reset(payload)
	d.payload = payload
	defer func() { d.payload = nil }()
	dec := d.mp
	// Nothing of one event's decoding may outlive it: the reset drops
	// the msgpack decoder's state of a stream (its dictionary of
	// interned strings), and the map decoder is set again after it.
	dec.ResetReader(&d.rd)
	dec.SetMapDecoder(d.mapDec)
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return decodeErr("msgpack: the event must be a map")
	}
	var haveTS bool
	for i := 0; i < n; i++ {
		key, err := d.rawString()
		if err != nil {
			return decodeErr("msgpack: field %d: key is not a string", i)
		}
		switch string(key) {
		case "id":
			ev.ID, err = d.decodeString("id", "")
		case "customer_id":
			ev.CustomerID, err = d.decodeString("customer_id", subjCustomer)
		case "type":
			ev.Type, err = d.decodeString("type", subjType)
		case "ts":
			ev.TS, err = decodeMsgpackTS(dec)
			haveTS = err == nil
		case "attrs":
			ev.Attrs, err = d.decodeAttrs()
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

// decodeString decodes the string value of field; same, when the value
// equals it, is returned instead of a new string.
func (d *eventDecoder) decodeString(field, same string) (string, error) {
	c, err := d.mp.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsString(c) && c != msgpcode.Bin8 && c != msgpcode.Bin16 && c != msgpcode.Bin32 {
		return "", invalidErr("%s must be a string", field)
	}
	b, err := d.rawString()
	if err != nil {
		return "", err
	}
	if string(b) == same {
		return same, nil
	}
	return string(b), nil
}

// rawString reads a msgpack string or binary (nil reads as empty) and
// returns its bytes in the payload, without a copy: they are valid until
// the next event.
func (d *eventDecoder) rawString() ([]byte, error) {
	c, err := d.rd.ReadByte()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case c == msgpcode.Nil:
		return nil, nil
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8 || c == msgpcode.Bin8:
		n, err = d.length(1)
	case c == msgpcode.Str16 || c == msgpcode.Bin16:
		n, err = d.length(2)
	case c == msgpcode.Str32 || c == msgpcode.Bin32:
		n, err = d.length(4)
	default:
		return nil, fmt.Errorf("msgpack: invalid code=%x decoding string/bytes length", c)
	}
	if err != nil {
		return nil, err
	}
	if n > d.rd.Len() {
		return nil, io.ErrUnexpectedEOF
	}
	off := len(d.payload) - d.rd.Len()
	if _, err := d.rd.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return d.payload[off : off+n : off+n], nil
}

// length reads a big-endian length of size bytes.
func (d *eventDecoder) length(size int) (int, error) {
	n := 0
	for range size {
		b, err := d.rd.ReadByte()
		if err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		n = n<<8 | int(b)
	}
	return n, nil
}

// intern returns b as a string: the decoder's copy when it has one, else
// a new string, kept when it is short and the decoder has room.
func (d *eventDecoder) intern(b []byte) string {
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(s) <= maxInternedLen && len(d.interned) < maxInterned {
		d.interned[s] = s
	}
	return s
}

func decodeMsgpackTS(dec *msgpack.Decoder) (int64, error) {
	// A list or map is no timestamp, and must not reach the library's
	// decoding of lists (decodeValue).
	c, err := dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32 ||
		msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 {
		return 0, invalidErr("ts must be unix milliseconds")
	}
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

func (d *eventDecoder) decodeAttrs() (map[string]any, error) {
	dec := d.mp
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
	return d.decodeStringMap(1)
}

// maxAttrDepth is how deep lists and maps may nest in an event's attrs.
const maxAttrDepth = 32

// errListLength is the error of a list that claims more elements than its
// payload has bytes left.
const errListLength = "attrs: a list claims %d elements, more than the payload holds"

// errTooDeep is the error of attrs whose lists and maps nest deeper than
// maxAttrDepth.
func errTooDeep() error {
	return invalidErr("attrs: lists and maps nest deeper than %d levels", maxAttrDepth)
}

// decodeStringMap decodes a msgpack map whose keys are strings, at depth
// (the attrs are 1), its values loosely (ints as int64 or uint64, floats as
// float64, lists and maps alike). Keys and short string values are
// interned.
func (d *eventDecoder) decodeStringMap(depth int) (map[string]any, error) {
	n, err := d.mp.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	m := make(map[string]any, min(n, 64))
	for i := 0; i < n; i++ {
		k, err := d.rawString()
		if err != nil {
			return nil, invalidErr("attrs: keys must be strings")
		}
		v, err := d.decodeValue(depth)
		if err != nil {
			return nil, err
		}
		m[d.intern(k)] = v
	}
	return m, nil
}

// decodeValue decodes an attribute's value in a list or map at depth.
// Lists and maps are decoded here rather than by the msgpack library,
// which sizes a list by the length it claims (up to a million elements,
// 16 MB, per level): a few hundred bytes of nested lists would make it
// allocate gigabytes.
func (d *eventDecoder) decodeValue(depth int) (any, error) {
	c, err := d.mp.PeekCode()
	if err != nil {
		return nil, err
	}
	isMap := msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
	isList := msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
	switch {
	case msgpcode.IsString(c):
		b, err := d.rawString()
		if err != nil {
			return nil, err
		}
		return d.intern(b), nil
	case (isMap || isList) && depth >= maxAttrDepth:
		return nil, errTooDeep()
	case isMap:
		return d.decodeStringMap(depth + 1)
	case isList:
		return d.decodeList(depth + 1)
	}
	v, err := d.mp.DecodeInterfaceLoose()
	return signed(v), err
}

// decodeList decodes a msgpack list at depth. Each element takes a byte
// at least, so a list that claims more than the payload has left is
// refused before anything is allocated for it.
func (d *eventDecoder) decodeList(depth int) ([]any, error) {
	n, err := d.mp.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > d.rd.Len() {
		return nil, decodeErr(errListLength, n)
	}
	l := make([]any, n)
	for i := range l {
		if l[i], err = d.decodeValue(depth); err != nil {
			return nil, err
		}
	}
	return l, nil
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
		if nestsDeeper(m, 1) {
			return errTooDeep()
		}
		ev.Attrs = normalizeJSON(m).(map[string]any)
	}
	return nil
}

// nestsDeeper tells whether v, at depth (the attrs are 1), has lists or
// maps nested deeper than maxAttrDepth: the msgpack decoder's limit, which
// a JSON event keeps too.
func nestsDeeper(v any, depth int) bool {
	switch t := v.(type) {
	case map[string]any:
		if depth > maxAttrDepth {
			return true
		}
		for _, e := range t {
			if nestsDeeper(e, depth+1) {
				return true
			}
		}
	case []any:
		if depth > maxAttrDepth {
			return true
		}
		for _, e := range t {
			if nestsDeeper(e, depth+1) {
				return true
			}
		}
	}
	return false
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
