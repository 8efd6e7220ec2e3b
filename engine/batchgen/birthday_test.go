package batchgen_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

type attrs = map[string]any

func TestBirthday(t *testing.T) {
	madrid := mustLoad(t, "Europe/Madrid")
	tests := []struct {
		name      string
		runAt     string // wall time in zone
		zone      string // the job's zone; "" is nil (UTC)
		daysAhead int
		profile   attrs
		wantID    string // "" for no match
		wantAttrs attrs
		wantErr   error
	}{
		// Leap years.
		{"29 February falls on 28 February in a non-leap year", "2027-02-28 09:00", "UTC", 0, attrs{"birthday": "2000-02-29"},
			"birthday:C1:2027-02-28", attrs{"birthday": "2000-02-29", "age": int64(27), "days_ahead": int64(0), "date": "2027-02-28"}, nil},
		{"29 February does not fall on 1 March in a non-leap year", "2027-03-01 09:00", "UTC", 0, attrs{"birthday": "2000-02-29"}, "", nil, nil},
		{"29 February falls on 29 February in a leap year", "2028-02-29 09:00", "UTC", 0, attrs{"birthday": "2000-02-29"},
			"birthday:C1:2028-02-29", attrs{"birthday": "2000-02-29", "age": int64(28), "days_ahead": int64(0), "date": "2028-02-29"}, nil},
		{"29 February does not fall on 28 February in a leap year", "2028-02-28 09:00", "UTC", 0, attrs{"birthday": "2000-02-29"}, "", nil, nil},
		{"29 February without a year in a non-leap year", "2027-02-28 09:00", "UTC", 0, attrs{"birthday": "02-29"},
			"birthday:C1:2027-02-28", attrs{"birthday": "02-29", "days_ahead": int64(0), "date": "2027-02-28"}, nil},
		{"28 February stays on 28 February in a leap year", "2028-02-28 09:00", "UTC", 0, attrs{"birthday": "1999-02-28"},
			"birthday:C1:2028-02-28", attrs{"birthday": "1999-02-28", "age": int64(29), "days_ahead": int64(0), "date": "2028-02-28"}, nil},
		{"28 February does not fall on 29 February", "2028-02-29 09:00", "UTC", 0, attrs{"birthday": "1999-02-28"}, "", nil, nil},
		{"29 February in 2100, not a leap year", "2100-02-28 09:00", "UTC", 0, attrs{"birthday": "2096-02-29"},
			"birthday:C1:2100-02-28", attrs{"birthday": "2096-02-29", "age": int64(4), "days_ahead": int64(0), "date": "2100-02-28"}, nil},

		// Time zones.
		{"a customer in Los Angeles is still on the previous day at 09:00 in Shanghai", "2026-05-17 09:00", "Asia/Shanghai", 0,
			attrs{"birthday": "1990-05-17", "timezone": "America/Los_Angeles"}, "", nil, nil},
		{"the Los Angeles customer whose birthday is that previous day matches", "2026-05-17 09:00", "Asia/Shanghai", 0,
			attrs{"birthday": "1990-05-16", "timezone": "America/Los_Angeles"},
			"birthday:C1:2026-05-16", attrs{"birthday": "1990-05-16", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-16"}, nil},
		{"the Los Angeles customer matches with the next day's run", "2026-05-18 09:00", "Asia/Shanghai", 0,
			attrs{"birthday": "1990-05-17", "timezone": "America/Los_Angeles"},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"a customer without a time zone is in the job's", "2026-05-17 09:00", "Asia/Shanghai", 0, attrs{"birthday": "1990-05-17"},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"an empty time zone is the job's", "2026-05-17 09:00", "Asia/Shanghai", 0, attrs{"birthday": "1990-05-17", "timezone": ""},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"a customer in Tokyo is already on the next day at 20:00 in Los Angeles", "2026-05-16 20:00", "America/Los_Angeles", 0,
			attrs{"birthday": "05-17", "timezone": "Asia/Tokyo"},
			"birthday:C1:2026-05-17", attrs{"birthday": "05-17", "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"a nil job zone is UTC", "2026-05-17 01:00", "", 0, attrs{"birthday": "05-17"},
			"birthday:C1:2026-05-17", attrs{"birthday": "05-17", "days_ahead": int64(0), "date": "2026-05-17"}, nil},

		// Days ahead.
		{"seven days ahead", "2026-05-10 09:00", "UTC", 7, attrs{"birthday": "05-17"},
			"birthday:C1:2026-05-17", attrs{"birthday": "05-17", "days_ahead": int64(7), "date": "2026-05-17"}, nil},
		{"seven days ahead does not match today's birthday", "2026-05-10 09:00", "UTC", 7, attrs{"birthday": "05-10"}, "", nil, nil},
		{"days ahead across a year end count the next year's age", "2026-12-30 09:00", "UTC", 3, attrs{"birthday": "1980-01-02"},
			"birthday:C1:2027-01-02", attrs{"birthday": "1980-01-02", "age": int64(47), "days_ahead": int64(3), "date": "2027-01-02"}, nil},
		{"days ahead onto 28 February of a non-leap year", "2027-02-21 09:00", "UTC", 7, attrs{"birthday": "--02-29"},
			"birthday:C1:2027-02-28", attrs{"birthday": "02-29", "days_ahead": int64(7), "date": "2027-02-28"}, nil},
		{"negative days ahead look back", "2026-05-18 09:00", "UTC", -1, attrs{"birthday": "05-17"},
			"birthday:C1:2026-05-17", attrs{"birthday": "05-17", "days_ahead": int64(-1), "date": "2026-05-17"}, nil},
		{"days ahead beyond a year are an argument error", "2026-05-18 09:00", "UTC", 400, attrs{"birthday": "05-17"}, "", nil, batchgen.ErrArgument},

		// Age.
		{"age on the last day of the year", "2026-12-31 09:00", "UTC", 0, attrs{"birthday": "1990-12-31"},
			"birthday:C1:2026-12-31", attrs{"birthday": "1990-12-31", "age": int64(36), "days_ahead": int64(0), "date": "2026-12-31"}, nil},
		{"the day of birth is not a birthday", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "2026-05-17"}, "", nil, nil},
		{"the first birthday", "2027-05-17 09:00", "UTC", 0, attrs{"birthday": "2026-05-17"},
			"birthday:C1:2027-05-17", attrs{"birthday": "2026-05-17", "age": int64(1), "days_ahead": int64(0), "date": "2027-05-17"}, nil},
		{"a birth year in the future is malformed", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "2030-05-17"}, "", nil, batchgen.ErrAttribute},

		// Formats accepted.
		{"MM-DD", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "05-17"},
			"birthday:C1:2026-05-17", attrs{"birthday": "05-17", "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"--MM-DD", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "--05-17"},
			"birthday:C1:2026-05-17", attrs{"birthday": "05-17", "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"RFC 3339 in UTC", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-05-17T00:00:00Z"},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"RFC 3339 with an offset keeps the date as written", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-05-17T23:30:00-05:00"},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"a time.Time in UTC", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": time.Date(1990, 5, 17, 0, 0, 0, 0, time.UTC)},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"a time.Time keeps the date of its location", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": time.Date(1990, 5, 17, 0, 30, 0, 0, madrid)},
			"birthday:C1:2026-05-17", attrs{"birthday": "1990-05-17", "age": int64(36), "days_ahead": int64(0), "date": "2026-05-17"}, nil},
		{"no birthday does not match", "2026-05-17 09:00", "UTC", 0, attrs{"name": "x"}, "", nil, nil},
		{"a null birthday does not match", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": nil}, "", nil, nil},
		{"a nil profile does not match", "2026-05-17 09:00", "UTC", 0, nil, "", nil, nil},

		// Formats rejected.
		{"slashes", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990/05/17"}, "", nil, batchgen.ErrAttribute},
		{"day first", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "17-05-1990"}, "", nil, batchgen.ErrAttribute},
		{"single-digit month", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-5-17"}, "", nil, batchgen.ErrAttribute},
		{"29 February of a non-leap year", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-02-29"}, "", nil, batchgen.ErrAttribute},
		{"30 February", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "02-30"}, "", nil, batchgen.ErrAttribute},
		{"month 13", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "13-01"}, "", nil, batchgen.ErrAttribute},
		{"day 0", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-05-00"}, "", nil, batchgen.ErrAttribute},
		{"year 0000", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "0000-05-17"}, "", nil, batchgen.ErrAttribute},
		{"empty string", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": ""}, "", nil, batchgen.ErrAttribute},
		{"a space instead of T", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-05-17 00:00:00"}, "", nil, batchgen.ErrAttribute},
		{"a bad RFC 3339 time", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "1990-05-17T25:00:00Z"}, "", nil, batchgen.ErrAttribute},
		{"a number", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": int64(19900517)}, "", nil, batchgen.ErrAttribute},
		{"a boolean", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": true}, "", nil, batchgen.ErrAttribute},
		{"the zero time", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": time.Time{}}, "", nil, batchgen.ErrAttribute},
		{"a malformed birthday is an error on any day", "2026-01-01 09:00", "UTC", 0, attrs{"birthday": "May 17"}, "", nil, batchgen.ErrAttribute},

		// Time zone attribute.
		{"an unknown time zone", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "05-17", "timezone": "Mars/Olympus_Mons"}, "", nil, batchgen.ErrAttribute},
		{"a time zone that is not a string", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "05-17", "timezone": int64(8)}, "", nil, batchgen.ErrAttribute},
		{"the server's Local zone is refused", "2026-05-17 09:00", "UTC", 0, attrs{"birthday": "05-17", "timezone": "Local"}, "", nil, batchgen.ErrAttribute},
		{"a bad time zone is not read far from the birthday", "2026-01-01 09:00", "UTC", 0, attrs{"birthday": "05-17", "timezone": "Mars/Olympus_Mons"}, "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runAt := wall(t, tt.runAt, tt.zone)
			ev, ok, err := batchgen.Birthday(runAt, mustLoad(t, tt.zone), tt.daysAhead, "C1", tt.profile)
			check(t, result{ev, ok, err}, runAt, "C1", "birthday", tt.wantID, tt.wantAttrs, tt.wantErr)
		})
	}
}

func TestBirthdayCustomerIDs(t *testing.T) {
	runAt := wall(t, "2026-05-17 09:00", "UTC")
	p := attrs{"birthday": "05-17"}
	for _, tt := range []struct{ name, id string }{
		{"a dot", "C.1"},
		{"a wildcard", "C*"},
		{"a full wildcard", "C>1"},
		{"a space", "C 1"},
		{"a tab", "C\t1"},
		{"empty", ""},
		{"too long for a 256-byte event id", strings.Repeat("x", 240)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ok, err := batchgen.Birthday(runAt, time.UTC, 0, tt.id, p)
			if ok || !errors.Is(err, batchgen.ErrCustomerID) {
				t.Fatalf("ok=%v err=%v, want ErrCustomerID", ok, err)
			}
			if tt.id != "" && strings.Contains(err.Error(), tt.id) {
				t.Errorf("error %q quotes the invalid id", err)
			}
		})
	}
}

func TestAttrErrorNamesCustomerAndAttributeOnly(t *testing.T) {
	runAt := wall(t, "2026-05-17 09:00", "UTC")
	secret := "1990/05/17-private"
	_, _, err := batchgen.Birthday(runAt, time.UTC, 0, "C42", attrs{"birthday": secret})
	want := `customer "C42": attribute "birthday": not a date: want YYYY-MM-DD, MM-DD, an RFC 3339 time or a timestamp`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	var ae *batchgen.AttrError
	if !errors.As(err, &ae) || ae.CustomerID != "C42" || ae.Attr != "birthday" {
		t.Errorf("AttrError %+v", ae)
	}
	_, _, err = batchgen.Birthday(runAt, time.UTC, 0, "C42", attrs{"birthday": "05-17", "timezone": "Secret/Zone_Name"})
	if err == nil || strings.Contains(err.Error(), "Secret") {
		t.Errorf("error %v quotes the value", err)
	}
}

func TestAnniversary(t *testing.T) {
	tests := []struct {
		name      string
		runAt     string
		zone      string
		profile   attrs
		wantID    string
		wantAttrs attrs
		wantErr   error
	}{
		{"sixth anniversary of a date", "2026-03-15 09:00", "UTC", attrs{"opened_at": "2020-03-15"},
			"anniversary:C1:2026-03-15", attrs{"years": int64(6), "opened_at": "2020-03-15", "date": "2026-03-15"}, nil},
		{"the opening day is not an anniversary (year 0)", "2020-03-15 09:00", "UTC", attrs{"opened_at": "2020-03-15"}, "", nil, nil},
		{"the day before an anniversary", "2026-03-14 09:00", "UTC", attrs{"opened_at": "2020-03-15"}, "", nil, nil},
		{"an opening in the future", "2026-03-15 09:00", "UTC", attrs{"opened_at": "2030-03-15"}, "", nil, nil},
		{"29 February falls on 28 February in a non-leap year", "2025-02-28 09:00", "UTC", attrs{"opened_at": "2024-02-29"},
			"anniversary:C1:2025-02-28", attrs{"years": int64(1), "opened_at": "2024-02-29", "date": "2025-02-28"}, nil},
		{"29 February does not fall on 1 March", "2025-03-01 09:00", "UTC", attrs{"opened_at": "2024-02-29"}, "", nil, nil},
		{"29 February in a leap year", "2028-02-29 09:00", "UTC", attrs{"opened_at": "2024-02-29"},
			"anniversary:C1:2028-02-29", attrs{"years": int64(4), "opened_at": "2024-02-29", "date": "2028-02-29"}, nil},
		{"not 28 February in a leap year", "2028-02-28 09:00", "UTC", attrs{"opened_at": "2024-02-29"}, "", nil, nil},
		{"an instant's date is the customer's", "2026-03-16 09:00", "Asia/Tokyo", attrs{"opened_at": "2020-03-15T23:30:00Z", "timezone": "Asia/Tokyo"},
			"anniversary:C1:2026-03-16", attrs{"years": int64(6), "opened_at": "2020-03-15T23:30:00Z", "date": "2026-03-16"}, nil},
		{"an instant's UTC date is not the Tokyo customer's", "2026-03-15 12:00", "UTC", attrs{"opened_at": "2020-03-15T23:30:00Z", "timezone": "Asia/Tokyo"}, "", nil, nil},
		{"an instant in the job's zone without a customer zone", "2026-03-15 12:00", "America/New_York", attrs{"opened_at": "2020-03-16T02:00:00Z"},
			"anniversary:C1:2026-03-15", attrs{"years": int64(6), "opened_at": "2020-03-16T02:00:00Z", "date": "2026-03-15"}, nil},
		{"a time.Time", "2026-03-15 09:00", "UTC", attrs{"opened_at": time.Date(2021, 3, 15, 10, 0, 0, 0, time.UTC)},
			"anniversary:C1:2026-03-15", attrs{"years": int64(5), "opened_at": "2021-03-15T10:00:00Z", "date": "2026-03-15"}, nil},
		{"no opened_at", "2026-03-15 09:00", "UTC", attrs{}, "", nil, nil},
		{"a date without a year is malformed", "2026-03-15 09:00", "UTC", attrs{"opened_at": "03-15"}, "", nil, batchgen.ErrAttribute},
		{"a word is malformed", "2026-03-15 09:00", "UTC", attrs{"opened_at": "yesterday"}, "", nil, batchgen.ErrAttribute},
		{"a unix time is malformed", "2026-03-15 09:00", "UTC", attrs{"opened_at": int64(1584230400000)}, "", nil, batchgen.ErrAttribute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runAt := wall(t, tt.runAt, tt.zone)
			ev, ok, err := batchgen.Anniversary(runAt, mustLoad(t, tt.zone), "C1", tt.profile)
			check(t, result{ev, ok, err}, runAt, "C1", "anniversary", tt.wantID, tt.wantAttrs, tt.wantErr)
		})
	}
}
