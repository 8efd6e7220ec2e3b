package batchgen

import "time"

// NewCustomer makes the welcome event of one profile, if its "opened_at"
// is within the last days days of runAt, both ends included: an instant
// in [runAt.AddDate(0, 0, -days), runAt], or a date at most days calendar
// days before runAt's date, in runAt's location (pass runAt in the job's
// zone). A future opening does not match. Both ends are included so that
// a daily job with days >= 1 reaches every customer whose profile arrived
// before its next run, even one opened "yesterday" and run at midnight.
//
// opened_at is an RFC 3339 time or a time.Time (an instant), or a string
// YYYY-MM-DD (a date). A profile without the attribute does not match; a
// malformed one is an *AttrError. days must be at least 1.
//
// The event: type "new_customer", id new_customer:<customer> (once ever:
// the engine drops a second event with the same id), ts runAt, attrs
// opened_at (as given) and days_since_open (int: calendar days from the
// opening date to runAt's date, in runAt's location).
func NewCustomer(runAt time.Time, days int, id string, profile map[string]any) (Event, bool, error) {
	if days < 1 {
		return Event{}, false, argErr("days must be at least 1")
	}
	v, ok := profile[AttrOpenedAt]
	if !ok || v == nil {
		return Event{}, false, nil
	}
	o, reason := parseOpenedAt(v)
	if reason != "" {
		return Event{}, false, attrErr(id, AttrOpenedAt, reason)
	}
	loc := runAt.Location()
	since := dayOf(runAt, loc) - o.day(loc)
	if o.dateOnly {
		if since < 0 || since > int64(days) {
			return Event{}, false, nil
		}
	} else if o.at.After(runAt) || o.at.Before(runAt.AddDate(0, 0, -days)) {
		return Event{}, false, nil
	}
	if err := checkCustomerID(id); err != nil {
		return Event{}, false, err
	}
	evID, _, err := makeID(TypeNewCustomer, id, 0, false)
	if err != nil {
		return Event{}, false, err
	}
	attrs := map[string]any{
		"opened_at":       o.text,
		"days_since_open": since,
	}
	return Event{ID: evID, CustomerID: id, Type: TypeNewCustomer, TS: runAt.UnixMilli(), Attrs: attrs}, true, nil
}
