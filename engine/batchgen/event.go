package batchgen

import (
	"sync"
	"sync/atomic"
	"time"
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
	y, m, d := civilFromDays(day)
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
	return daysFromCivil(y, int(m), d)
}

const dayMillis = 86400 * 1000

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	yy := int64(y)
	if m <= 2 {
		yy--
	}
	era := yy / 400
	if yy < 0 && yy%400 != 0 {
		era--
	}
	yoe := yy - era*400
	mp := int64(m+9) % 12
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is daysFromCivil's inverse.
func civilFromDays(z int64) (y, m, d int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	yy := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		yy++
	}
	return int(yy), m, d
}

// occurrence returns the day in year y on which a yearly date (m, d)
// falls: 29 February falls on 28 February in a non-leap year.
func occurrence(y, m, d int) int64 {
	if m == 2 && d == 29 && !isLeap(y) {
		d = 28
	}
	return daysFromCivil(y, m, d)
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
