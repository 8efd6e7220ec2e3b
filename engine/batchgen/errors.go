package batchgen

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Decide with errors.Is; the texts may change. No error
// of this package holds an attribute value, a list cell or an invalid
// customer id, so all of them may be logged.
var (
	// ErrAttribute marks a profile attribute a generator needs that is
	// malformed (an unparseable birthday, an unknown time zone). The
	// customer is skipped: count it, log it and go on. The error is an
	// *AttrError naming the customer and the attribute.
	ErrAttribute = errors.New("malformed attribute")
	// ErrCustomerID marks a customer id that cannot be an event's: empty,
	// not a NATS subject token, or making the event id longer than 256
	// bytes.
	ErrCustomerID = errors.New("invalid customer id")
	// ErrArgument marks a job argument out of range (days < 1, no watched
	// types, a campaign name that is not [a-z0-9_]+, an unknown list
	// format): the job's configuration is wrong and no customer can be
	// processed. Check the configuration with the same values at load.
	ErrArgument = errors.New("invalid job argument")
	// ErrBadRow marks a list row ReadList skipped (a bad customer id, a
	// wrong number of CSV fields, a line that is not a JSON object) and
	// went on after. A bad customer id is ErrCustomerID too.
	ErrBadRow = errors.New("bad list row")
	// ErrList marks a list ReadList could not read to the end: a bad
	// header, a CSV quoting error, a read error, too many bad rows.
	ErrList = errors.New("malformed list")
)

// AttrError is a malformed profile attribute. It names the customer and
// the attribute, never the value.
type AttrError struct {
	CustomerID string
	Attr       string
	Reason     string
}

func (e *AttrError) Error() string {
	return "customer " + strconv.Quote(e.CustomerID) + ": attribute " + strconv.Quote(e.Attr) + ": " + e.Reason
}

// Unwrap returns ErrAttribute.
func (e *AttrError) Unwrap() error { return ErrAttribute }

// ListError is a problem at a line of a list. File is the name of the
// reader when it has one (an *os.File), else empty.
type ListError struct {
	File string
	Line int // 1-based; 0 when the problem is not at a line
	Msg  string
	Err  error // ErrBadRow, ErrList or the callback's error
	// cause is ErrCustomerID for a bad customer id.
	cause error
}

func (e *ListError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		if e.File == "" {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the kind of the problem, ErrBadRow, ErrList or the
// callback's error, and ErrCustomerID for a row with a bad customer id.
func (e *ListError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Err, e.cause}
	}
	return []error{e.Err}
}

func attrErr(customer, attr, reason string) error {
	return &AttrError{CustomerID: customer, Attr: attr, Reason: reason}
}

func argErr(msg string) error {
	return &argError{msg}
}

type argError struct{ msg string }

func (e *argError) Error() string { return "batchgen: " + e.msg }
func (e *argError) Unwrap() error { return ErrArgument }
