package batchgen

import (
	"time"

	"github.com/kairos-engine/kairos/engine/internal/civil"
)

// MaxDaysAhead bounds Birthday's daysAhead, in both directions.
const MaxDaysAhead = 366

// zoneSlack is how far, in days, a customer's date can be from the UTC
// date: zones are within a day of UTC.
const zoneSlack = 2

// Birthday makes the birthday event of one profile, if its birthday falls
// on the customer's today plus daysAhead. Today is the date of runAt in
// the customer's zone: the profile's "timezone" attribute (an IANA name),
// else jobLoc (nil is UTC).
//
// The "birthday" attribute is a string YYYY-MM-DD, MM-DD or --MM-DD (year
// unknown), an RFC 3339 time, or a time.Time; for the last two the date is
// taken as written, in the value's own offset or location. 29 February
// falls on 28 February in a non-leap year (and not on 1 March). A profile
// without the attribute (or with null) does not match; a malformed one is
// an *AttrError (ErrAttribute), as is a birth year after the birthday's
// year. A birthday in its birth year (age 0) does not match.
//
// The event: type "birthday", id birthday:<customer>:<date of the
// occurrence>, ts runAt, attrs birthday (YYYY-MM-DD or MM-DD), age (int,
// years, only when the year is known), days_ahead (int) and date (the
// occurrence's YYYY-MM-DD).
func Birthday(runAt time.Time, jobLoc *time.Location, daysAhead int, id string, profile map[string]any) (Event, bool, error) {
	if daysAhead < -MaxDaysAhead || daysAhead > MaxDaysAhead {
		return Event{}, false, argErr("days_ahead must be within ±366")
	}
	v, ok := profile[AttrBirthday]
	if !ok || v == nil {
		return Event{}, false, nil
	}
	b, text, reason := parseBirthday(v)
	if reason != "" {
		return Event{}, false, attrErr(id, AttrBirthday, reason)
	}
	if !near(b.m, b.d, floorDiv(runAt.Unix(), 86400)+int64(daysAhead), zoneSlack) {
		return Event{}, false, nil
	}
	if jobLoc == nil {
		jobLoc = time.UTC
	}
	loc, err := customerLoc(profile, id, jobLoc)
	if err != nil {
		return Event{}, false, err
	}
	target := dayOf(runAt, loc) + int64(daysAhead)
	ty, _, _ := civil.CivilFromDays(target)
	if occurrence(ty, b.m, b.d) != target {
		return Event{}, false, nil
	}
	age := ty - b.y
	if b.y != 0 {
		if age < 0 {
			return Event{}, false, attrErr(id, AttrBirthday, "the birth year is after the birthday's year")
		}
		if age == 0 {
			return Event{}, false, nil
		}
	}
	if err := checkCustomerID(id); err != nil {
		return Event{}, false, err
	}
	evID, at, err := makeID(TypeBirthday, id, target, true)
	if err != nil {
		return Event{}, false, err
	}
	attrs := make(map[string]any, 4)
	attrs["birthday"] = text
	if b.y != 0 {
		attrs["age"] = int64(age)
	}
	attrs["days_ahead"] = int64(daysAhead)
	attrs["date"] = evID[at:]
	return Event{ID: evID, CustomerID: id, Type: TypeBirthday, TS: runAt.UnixMilli(), Attrs: attrs}, true, nil
}

// Anniversary makes the account-anniversary event of one profile, if the
// anniversary of its "opened_at" falls on the customer's today (as for
// Birthday: the date of runAt in the profile's "timezone", else jobLoc),
// one year or more after the opening (the opening day itself does not
// match). opened_at is as for NewCustomer; an instant's date is taken in
// the customer's zone. 29 February falls on 28 February in non-leap years.
//
// The event: type "anniversary", id anniversary:<customer>:<date>, ts
// runAt, attrs years (int), opened_at (as given) and date (YYYY-MM-DD).
func Anniversary(runAt time.Time, jobLoc *time.Location, id string, profile map[string]any) (Event, bool, error) {
	v, ok := profile[AttrOpenedAt]
	if !ok || v == nil {
		return Event{}, false, nil
	}
	o, reason := parseOpenedAt(v)
	if reason != "" {
		return Event{}, false, attrErr(id, AttrOpenedAt, reason)
	}
	// The opening date in UTC is within a day of the customer's.
	oy, om, od := civil.CivilFromDays(o.day(time.UTC))
	if !near(om, od, floorDiv(runAt.Unix(), 86400), zoneSlack+1) {
		return Event{}, false, nil
	}
	if jobLoc == nil {
		jobLoc = time.UTC
	}
	loc, err := customerLoc(profile, id, jobLoc)
	if err != nil {
		return Event{}, false, err
	}
	if !o.dateOnly {
		oy, om, od = civil.CivilFromDays(o.day(loc))
	}
	today := dayOf(runAt, loc)
	ty, _, _ := civil.CivilFromDays(today)
	years := ty - oy
	if years < 1 || occurrence(ty, om, od) != today {
		return Event{}, false, nil
	}
	if err := checkCustomerID(id); err != nil {
		return Event{}, false, err
	}
	evID, at, err := makeID(TypeAnniversary, id, today, true)
	if err != nil {
		return Event{}, false, err
	}
	attrs := map[string]any{
		"years":     int64(years),
		"opened_at": o.text,
		"date":      evID[at:],
	}
	return Event{ID: evID, CustomerID: id, Type: TypeAnniversary, TS: runAt.UnixMilli(), Attrs: attrs}, true, nil
}
