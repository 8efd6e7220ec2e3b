package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a duration such as "90s", "15m", "24h", "7d" or "1h30m".
// It accepts Go's units (ms, s, m, h) plus "d" (24 hours) and "w" (7 days).
// Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrDuration)
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%w %q: expected a number", ErrDuration, s)
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w %q: %v", ErrDuration, s, err)
		}
		rest = rest[i:]
		j := 0
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		var unit time.Duration
		switch rest[:j] {
		case "ms":
			unit = time.Millisecond
		case "s":
			unit = time.Second
		case "m":
			unit = time.Minute
		case "h":
			unit = time.Hour
		case "d":
			unit = 24 * time.Hour
		case "w":
			unit = 7 * 24 * time.Hour
		case "":
			return 0, fmt.Errorf("%w %q: missing unit (use ms, s, m, h, d or w)", ErrDuration, s)
		default:
			return 0, fmt.Errorf("%w %q: unknown unit %q (use ms, s, m, h, d or w)", ErrDuration, s, rest[:j])
		}
		rest = rest[j:]
		if n > int64((1<<63-1)/unit) {
			return 0, fmt.Errorf("%w %q: too large", ErrDuration, s)
		}
		total += time.Duration(n) * unit
		if total < 0 {
			return 0, fmt.Errorf("%w %q: too large", ErrDuration, s)
		}
	}
	return total, nil
}

// FormatDuration writes d with the largest exact unit among d, h, m, s, ms.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strings.TrimSuffix(d.String(), "0s")
}
