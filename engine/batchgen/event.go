package batchgen

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kairos-engine/kairos/engine/internal/civil"
)

// Event is a synthetic event in the public contract shape
// (docs/contracts.md): the engine publishes it to
// <prefix>.batch.<Type>.<CustomerID> with Nats-Msg-Id set to ID.
type Event struct {
	ID         string
	CustomerID string
	Type       string
	TS         int64 // unix milliseconds: the job's run time
	Attrs      map[string]any
}

// Event types.
const (
	TypeBirthday    = "birthday"
	TypeNewCustomer = "new_customer"
	TypeAnniversary = "anniversary"
	TypeDormant     = "dormant"
	// A list campaign's type is ListTypePrefix + the campaign name.
	ListTypePrefix = "list_"
)

// Profile attributes the generators read.
const (
	AttrBirthday = "birthday"
	AttrOpenedAt = "opened_at"
	AttrTimezone = "timezone"
)

// maxIDLen is the contract's limit on event ids.
const maxIDLen = 256

// checkCustomerID returns an ErrCustomerID error unless id can be the last
// token of a NATS subject: non-empty, without '.', '*', '>', space or
// control characters. The error does not quote the id.
func checkCustomerID(id string) error {
	if id == "" {
		return &idError{"customer id is empty"}
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '.':
			return &idError{"customer id contains '.'"}
		case c == '*' || c == '>':
			return &idError{"customer id contains a wildcard ('*' or '>')"}
		case c <= ' ' || c == 0x7f:
			return &idError{"customer id contains a space or a control character"}
		}
	}
	return nil
}

type idError struct{ msg string }

func (e *idError) Error() string { return e.msg }
func (e *idError) Unwrap() error { return ErrCustomerID }

var errIDTooLong = &idError{"customer id too long: the event id would exceed 256 bytes"}

// makeID returns prefix + ":" + customer, followed by ":" + date when date
// is set (date is a days-since-1970 day, written YYYY-MM-DD), in one
// allocation. dateAt is the offset of the date in the id, for sharing.
func makeID(prefix, customer string, day int64, withDate bool) (id string, dateAt int, err error) {
	n := len(prefix) + 1 + len(customer)
	if withDate {
		n += 11
	}
	if n > maxIDLen {
		return "", 0, errIDTooLong
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	b = append(b, ':')
	b = append(b, customer...)
	if withDate {
		b = append(b, ':')
		dateAt = len(b)
		b = appendDate(b, day)
	}
	return string(b), dateAt, nil
}

// appendDate appends the day (days since 1970-01-01) as YYYY-MM-DD.
func appendDate(b []byte, day int64) []byte {
	y, m, d := civil.CivilFromDays(day)
	if y < 0 || y > 9999 {
		return time.Unix(day*86400, 0).UTC().AppendFormat(b, time.DateOnly)
	}
	return append(b,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-',
		byte('0'+d/10), byte('0'+d%10))
}

func dateString(day int64) string { return string(appendDate(make([]byte, 0, 10), day)) }

// dayOf returns the civil day (days since 1970-01-01) of t's wall clock in
// loc.
func dayOf(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return civil.DaysFromCivil(y, int(m), d)
}

const dayMillis = 86400 * 1000

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// occurrence returns the day in year y on which a yearly date (m, d)
// falls: 29 February falls on 28 February in a non-leap year.
func occurrence(y, m, d int) int64 {
	if m == 2 && d == 29 && !civil.IsLeap(y) {
		d = 28
	}
	return civil.DaysFromCivil(y, m, d)
}

// Time zones named by profiles, loaded once. Only successful loads are
// kept, at most maxZones of them, so garbage names cannot grow the cache.
var (
	zoneCache sync.Map // string → *time.Location
	zoneCount atomic.Int32
)

const maxZones = 2048

// customerLoc returns the customer's zone: the profile's timezone
// attribute (an IANA name) when set, else def.
func customerLoc(profile map[string]any, customer string, def *time.Location) (*time.Location, error) {
	v, ok := profile[AttrTimezone]
	if !ok || v == nil {
		return def, nil
	}
	name, ok := v.(string)
	if !ok {
		return nil, attrErr(customer, AttrTimezone, "not a string")
	}
	if name == "" {
		return def, nil
	}
	if l, ok := zoneCache.Load(name); ok {
		return l.(*time.Location), nil
	}
	// "Local" is the server's zone, never a customer's.
	if len(name) > 64 || name == "Local" {
		return nil, attrErr(customer, AttrTimezone, "not an IANA time zone name")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, attrErr(customer, AttrTimezone, "not an IANA time zone name")
	}
	if zoneCount.Add(1) <= maxZones {
		zoneCache.Store(name, loc)
	}
	return loc, nil
}
