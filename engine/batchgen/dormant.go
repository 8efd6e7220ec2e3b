package batchgen

import "time"

// Dormant makes the dormancy event of one customer, if none of the
// watched event types came in the last days days. lastSeen maps an event
// type to when one last came, in unix milliseconds; the engine keeps it at
// UTC-day precision (state.SeenDay), so the comparison is in whole UTC
// days: days_inactive = (UTC day of runAt) - (UTC day of the latest
// watched type), and the customer is dormant when days_inactive >= days.
// A watched type "*" watches every type in lastSeen.
//
// A customer none of whose watched types was ever seen is not dormant: it
// has no history to be dormant from (a customer who never logged in is a
// different campaign).
//
// The event: type "dormant", id dormant:<customer>:<date of runAt in
// jobLoc> (at most one a day; a customer who stays dormant gets one every
// day the job runs, which the contact policy caps), ts runAt, attrs
// days_inactive (int) and last_seen (RFC 3339, UTC).
func Dormant(runAt time.Time, jobLoc *time.Location, days int, types []string, id string, lastSeen map[string]int64) (Event, bool, error) {
	if days < 1 {
		return Event{}, false, argErr("days must be at least 1")
	}
	if len(types) == 0 {
		return Event{}, false, argErr("no event types to watch")
	}
	var last int64
	seen := false
	for _, typ := range types {
		if typ == "*" {
			for _, ts := range lastSeen {
				if !seen || ts > last {
					last, seen = ts, true
				}
			}
			continue
		}
		if ts, ok := lastSeen[typ]; ok && (!seen || ts > last) {
			last, seen = ts, true
		}
	}
	if !seen {
		return Event{}, false, nil
	}
	inactive := floorDiv(runAt.UnixMilli(), dayMillis) - floorDiv(last, dayMillis)
	if inactive < int64(days) {
		return Event{}, false, nil
	}
	if err := checkCustomerID(id); err != nil {
		return Event{}, false, err
	}
	if jobLoc == nil {
		jobLoc = time.UTC
	}
	evID, _, err := makeID(TypeDormant, id, dayOf(runAt, jobLoc), true)
	if err != nil {
		return Event{}, false, err
	}
	attrs := map[string]any{
		"days_inactive": inactive,
		"last_seen":     time.UnixMilli(last).UTC().Format(time.RFC3339),
	}
	return Event{ID: evID, CustomerID: id, Type: TypeDormant, TS: runAt.UnixMilli(), Attrs: attrs}, true, nil
}
