package connectors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoding is a wire encoding of offers and events.
type Encoding uint8

// Encodings.
const (
	Msgpack Encoding = iota
	JSON
)

// ParseEncoding parses "msgpack" or "json".
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "", "msgpack":
		return Msgpack, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("unknown encoding %q (use msgpack or json)", s)
}

func (e Encoding) String() string {
	if e == JSON {
		return "json"
	}
	return "msgpack"
}

// ContentType is the Content-Type header value of the encoding.
func (e Encoding) ContentType() string {
	if e == JSON {
		return "application/json"
	}
	return "application/msgpack"
}

// Offer is the record published to kairos.offers.<channel>.<customer_id>.
// Field names are the public contract (docs/contracts.md).
type Offer struct {
	ID          string         `msgpack:"id" json:"id"`
	RuleID      string         `msgpack:"rule_id" json:"rule_id"`
	RuleVersion string         `msgpack:"rule_version" json:"rule_version"`
	CustomerID  string         `msgpack:"customer_id" json:"customer_id"`
	Channel     string         `msgpack:"channel" json:"channel"`
	Product     string         `msgpack:"product" json:"product"`
	Template    string         `msgpack:"template" json:"template"`
	Params      map[string]any `msgpack:"params" json:"params"`
	Priority    int            `msgpack:"priority" json:"priority"`
	EventID     string         `msgpack:"event_id" json:"event_id"`
	EventType   string         `msgpack:"event_type" json:"event_type"`
	EventTS     int64          `msgpack:"event_ts" json:"event_ts"`
	DecidedAt   int64          `msgpack:"decided_at" json:"decided_at"`
	ExpiresAt   int64          `msgpack:"expires_at" json:"expires_at"`
}

// Encoder encodes offers into a reusable buffer. It is not safe for
// concurrent use.
type Encoder struct {
	buf bytes.Buffer
	mp  *msgpack.Encoder
	js  *json.Encoder
}

// NewEncoder returns an offer encoder.
func NewEncoder() *Encoder {
	e := &Encoder{}
	e.mp = msgpack.NewEncoder(&e.buf)
	e.mp.SetSortMapKeys(true) // deterministic bytes for a deterministic offer
	e.js = json.NewEncoder(&e.buf)
	e.js.SetEscapeHTML(false)
	return e
}

// Encode encodes o and appends the bytes to dst.
func (e *Encoder) Encode(dst []byte, o *Offer, enc Encoding) ([]byte, error) {
	e.buf.Reset()
	var err error
	if enc == JSON {
		err = e.js.Encode(o)
		if err == nil {
			e.buf.Truncate(e.buf.Len() - 1) // the encoder's newline
		}
	} else {
		err = e.encodeMsgpack(o)
	}
	if err != nil {
		return dst, fmt.Errorf("encode offer %s: %w", o.ID, err)
	}
	return append(dst, e.buf.Bytes()...), nil
}

// encodeMsgpack writes the offer as a msgpack map without reflection.
func (e *Encoder) encodeMsgpack(o *Offer) error {
	m := e.mp
	err := m.EncodeMapLen(14)
	str := func(k, v string) {
		if err == nil {
			err = m.EncodeString(k)
		}
		if err == nil {
			err = m.EncodeString(v)
		}
	}
	num := func(k string, v int64) {
		if err == nil {
			err = m.EncodeString(k)
		}
		if err == nil {
			err = m.EncodeInt(v)
		}
	}
	str("id", o.ID)
	str("rule_id", o.RuleID)
	str("rule_version", o.RuleVersion)
	str("customer_id", o.CustomerID)
	str("channel", o.Channel)
	str("product", o.Product)
	str("template", o.Template)
	if err == nil {
		err = m.EncodeString("params")
	}
	if err == nil {
		if o.Params == nil {
			err = m.EncodeMapLen(0)
		} else {
			err = m.Encode(o.Params)
		}
	}
	num("priority", int64(o.Priority))
	str("event_id", o.EventID)
	str("event_type", o.EventType)
	num("event_ts", o.EventTS)
	num("decided_at", o.DecidedAt)
	num("expires_at", o.ExpiresAt)
	return err
}

// ErrDecode marks an offer that cannot be decoded.
var ErrDecode = errors.New("cannot decode offer")

// DecodeOffer decodes an offer in either encoding (JSON when the first
// byte is '{').
func DecodeOffer(data []byte) (*Offer, error) {
	var o Offer
	var err error
	if len(data) > 0 && data[0] == '{' {
		err = json.Unmarshal(data, &o)
	} else if err = checkMsgpack(data); err == nil {
		err = msgpack.Unmarshal(data, &o)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return &o, nil
}
