package schedule

import (
	"strconv"
	"strings"
)

// Schedule is a parsed 5-field cron expression (minute hour day-of-month
// month day-of-week). It is immutable and safe for concurrent use.
type Schedule struct {
	minute uint64 // bits 0-59
	hour   uint64 // bits 0-23
	dom    uint64 // bits 1-31
	month  uint64 // bits 1-12
	dow    uint64 // bits 0-6, Sunday = 0
	// domStar and dowStar are set when the field starts with "*": the
	// day-of-month/day-of-week OR rule applies only when neither is.
	domStar, dowStar bool
	// hourStar is set when the hour field starts with "*": wall times in
	// a spring-forward gap are then skipped instead of moved (see Next).
	hourStar bool
	// domOnly is set when the day of week does not restrict the day (every
	// weekday, and the AND rule), so Next and Prev can jump between the
	// days of month.
	domOnly bool
	expr    string
}

type fieldSpec struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	monthNames = map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}
	dowNames = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

	fields = [5]fieldSpec{
		{name: "minute", min: 0, max: 59},
		{name: "hour", min: 0, max: 23},
		{name: "day-of-month", min: 1, max: 31},
		{name: "month", min: 1, max: 12, names: monthNames},
		// 7 is Sunday too; folded onto 0 after parsing.
		{name: "day-of-week", min: 0, max: 7, names: dowNames},
	}

	macros = map[string]string{
		"@yearly":   "0 0 1 1 *",
		"@annually": "0 0 1 1 *",
		"@monthly":  "0 0 1 * *",
		"@weekly":   "0 0 * * 0",
		"@daily":    "0 0 * * *",
		"@midnight": "0 0 * * *",
		"@hourly":   "0 * * * *",
	}
)

// Parse parses a 5-field cron expression or one of the macros @yearly,
// @annually, @monthly, @weekly, @daily, @midnight and @hourly. The syntax
// is described in the package documentation. A *ParseError (wrapping
// ErrSyntax) names the field and the token at fault.
func Parse(expr string) (*Schedule, error) {
	fs := strings.Fields(expr)
	if len(fs) == 1 && strings.HasPrefix(fs[0], "@") {
		name := strings.ToLower(fs[0])
		exp, ok := macros[name]
		if !ok {
			return nil, &ParseError{Expr: expr, Token: fs[0], Msg: "unknown macro (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"}
		}
		s, err := parseFields(expr, strings.Fields(exp))
		if err != nil {
			return nil, err
		}
		s.expr = name
		return s, nil
	}
	if len(fs) != 5 {
		msg := strconv.Itoa(len(fs)) + " fields, want 5 (minute hour day-of-month month day-of-week) or a macro such as @daily"
		if len(fs) == 6 {
			msg += "; seconds and years are not supported"
		}
		return nil, &ParseError{Expr: expr, Msg: msg}
	}
	s, err := parseFields(expr, fs)
	if err != nil {
		return nil, err
	}
	s.expr = strings.Join(fs, " ")
	return s, nil
}

func parseFields(expr string, fs []string) (*Schedule, error) {
	var bits [5]uint64
	for i, f := range fs {
		b, err := parseField(expr, f, &fields[i])
		if err != nil {
			return nil, err
		}
		bits[i] = b
	}
	s := &Schedule{
		minute:   bits[0],
		hour:     bits[1],
		dom:      bits[2],
		month:    bits[3],
		dow:      bits[4],
		hourStar: fs[1][0] == '*',
		domStar:  fs[2][0] == '*',
		dowStar:  fs[4][0] == '*',
	}
	if s.dow&(1<<7) != 0 {
		s.dow = s.dow&^(1<<7) | 1
	}
	s.domOnly = s.dow == 0x7f && (s.domStar || s.dowStar)
	return s, nil
}

// parseField parses a comma-separated list of items, each *, n, a-b, *
// with a step (*/s), a-b/s or n/s (n to the field's maximum).
func parseField(expr, field string, spec *fieldSpec) (uint64, error) {
	var bits uint64
	for item := range strings.SplitSeq(field, ",") {
		fail := func(msg string) error {
			return &ParseError{Expr: expr, Field: spec.name, Token: item, Msg: msg}
		}
		if item == "" {
			return 0, &ParseError{Expr: expr, Field: spec.name, Token: field, Msg: "empty list item"}
		}
		rng, stepStr, hasStep := strings.Cut(item, "/")
		lo, hi := spec.min, spec.max
		if spec.max == 7 { // day-of-week: * is 0-6, 7 only when written
			hi = 6
		}
		switch {
		case rng == "*":
		case rng == "":
			return 0, fail("missing range before /")
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err string
			if lo, err = parseValue(a, spec); err != "" {
				return 0, fail(err)
			}
			switch {
			case isRange:
				if hi, err = parseValue(b, spec); err != "" {
					return 0, fail(err)
				}
				if lo > hi {
					return 0, fail("range start after its end (ranges do not wrap around)")
				}
			case hasStep:
				hi = spec.max
				if spec.max == 7 {
					hi = 6
				}
				if lo > hi {
					hi = lo
				}
			default:
				hi = lo
			}
		}
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			span := spec.max - spec.min + 1
			if spec.max == 7 {
				span = 7
			}
			if err != nil || n < 1 || n > span || !isDigits(stepStr) {
				return 0, fail("step must be a whole number from 1 to " + strconv.Itoa(span))
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

// parseValue parses a number or, where the field has names, a name.
func parseValue(s string, spec *fieldSpec) (int, string) {
	if s == "" {
		return 0, "missing value"
	}
	if isDigits(s) {
		if len(s) > 2 {
			return 0, "out of range " + strconv.Itoa(spec.min) + "-" + strconv.Itoa(spec.max)
		}
		n, _ := strconv.Atoi(s)
		if n < spec.min || n > spec.max {
			return 0, "out of range " + strconv.Itoa(spec.min) + "-" + strconv.Itoa(spec.max)
		}
		return n, ""
	}
	if spec.names != nil {
		if n, ok := spec.names[strings.ToLower(s)]; ok {
			return n, ""
		}
		if spec.max == 7 {
			return 0, "not a number 0-7 or a day name (sun-sat)"
		}
		return 0, "not a number 1-12 or a month name (jan-dec)"
	}
	return 0, "not a number " + strconv.Itoa(spec.min) + "-" + strconv.Itoa(spec.max)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String returns the expression: its fields separated by single spaces, or
// the macro in lower case.
func (s *Schedule) String() string { return s.expr }
