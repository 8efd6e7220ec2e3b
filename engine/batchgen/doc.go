// Package batchgen decides which customers a batch job selects and makes
// the synthetic event for each: birthdays, new customers, account
// anniversaries, dormant customers and list campaigns (issue 6). It is a
// leaf of pure functions over one profile (a customer id and its
// map[string]any attributes) or one list: it imports only the standard
// library; the engine iterates its state, calls a generator per customer
// and publishes the events to KAIROS_BATCH with Nats-Msg-Id set to the
// event id.
//
// # Events and ids
//
// Events have the public contract's shape (docs/contracts.md): id,
// customer_id, type, ts (unix milliseconds: the job's run time, runAt) and
// attrs. Ids are deterministic, so re-running a job makes the same ids and
// the engine drops the duplicates:
//
//	birthday:<customer>:<YYYY-MM-DD>     the date of the birthday occurrence (the target date)
//	anniversary:<customer>:<YYYY-MM-DD>  the date of the anniversary
//	new_customer:<customer>              once ever
//	dormant:<customer>:<YYYY-MM-DD>      the date of runAt in the job's zone: at most one a day
//	list:<campaign>:<customer>           once per campaign
//
// A customer id must be a NATS subject token: not empty, without '.', '*',
// '>', space or control characters (ErrCustomerID), and the event id must
// fit the contract's 256 bytes.
//
// # Dates and time zones
//
// A customer's "today" is the date of runAt in the customer's zone: the
// profile's "timezone" attribute (an IANA name such as Europe/Madrid), else
// the job's zone (jobLoc; nil is UTC). A job that runs once a day therefore
// reaches every customer on the customer's own date, at whatever local hour
// the run falls: at 09:00 Asia/Shanghai it is still the previous day in
// America/Los_Angeles, whose customers are matched by the next day's run.
// Zones are loaded once and cached.
//
// 29 February, as a birthday or an opening date, falls on 28 February in
// non-leap years (not on 1 March), and the event id carries 28 February.
//
// Attribute formats:
//
//	birthday   "YYYY-MM-DD", "MM-DD" or "--MM-DD" (year unknown: no age), an RFC 3339
//	           time or a time.Time (as msgpack timestamps decode). A birthday is a
//	           date, not an instant: for a time the date is taken as written, in
//	           its own offset or location, never converted to a zone.
//	opened_at  an RFC 3339 time or a time.Time (an instant), or "YYYY-MM-DD" (a
//	           date). NewCustomer compares an instant with runAt and a date with
//	           runAt's date; Anniversary takes an instant's date in the
//	           customer's zone.
//	timezone   an IANA zone name; "Local" is refused.
//
// Numbers (unix times, 19900517) are refused, as are dates that do not
// exist (2023-02-29, 13-01) and the year 0000. An attribute is read only
// when the generator needs it: a profile without a birthday is not checked
// for its time zone, and a time zone is loaded only for profiles whose
// date is within two days of the target.
//
// # Generators
//
// Birthday matches when the birthday's (month, day) is the customer's
// today plus daysAhead (within ±366; negative looks back). age is the
// occurrence's year minus the birth year; a birthday in its birth year
// (age 0) does not match, and a birth year after the occurrence's year is
// malformed. Attrs: birthday (YYYY-MM-DD or MM-DD), age (when the year is
// known), days_ahead, date.
//
// NewCustomer matches when opened_at is within the last days days of
// runAt, both ends included: an instant in [runAt - days, runAt] (calendar
// days in runAt's location, AddDate), a date at most days days before
// runAt's date. A future opening does not match. With both ends included a
// daily job reaches every new customer whose profile arrived before the
// next run, even a job at midnight with days = 1. Attrs: opened_at (as given), days_since_open (calendar
// days between the opening date and runAt's date). The id has no date: the
// engine keeps one welcome per customer ever.
//
// Anniversary matches on the anniversary of the opening date in the
// customer's zone, one year or more after it. Attrs: years, opened_at,
// date.
//
// Dormant reads the last-seen time of each event type (unix
// milliseconds), which the engine keeps per UTC day, so it counts whole
// UTC days: days_inactive = UTC day of runAt - UTC day of the latest
// watched type, and a customer is dormant when days_inactive >= days
// (seen on 1 January, dormant for 30 days on 31 January). A customer none
// of whose watched types was ever seen is not dormant: it has no history.
// The watched type "*" means every type in lastSeen, synthetic batch types
// included; name the real-time types to avoid that. A customer who stays
// dormant makes one event a day (the id carries runAt's date); rules and
// the contact policy decide how often to act on it. Attrs: days_inactive,
// last_seen (RFC 3339 UTC).
//
// Integer attrs are int64 and dates are strings, as rules see JSON events.
//
// # Lists
//
// ReadList reads a CSV (header row with customer_id; other columns are
// attrs) or JSONL (customer_id plus attrs) list and calls back with events
// list_<campaign>. Campaign names match [a-z0-9_]+. CSV cells are typed:
// empty cells are omitted, true/false (any case) are booleans, numbers in
// JSON's grammar are int64 or float64, and everything else (007,
// +33612345678, integers beyond int64) stays a string so that identifiers
// keep every digit. Bad rows are skipped and reported with their line
// (ErrBadRow) and reading goes on, up to MaxBadRows; a bad header, a CSV
// quoting error, a read error or too many bad rows stop it (ErrList), as
// does the callback's error. So errors.Is(err, ErrList) tells a list not
// read to the end from one whose bad rows alone were skipped. Since the
// engine drops duplicate ids, a list fixed and read again publishes only
// the rows that were missing. See ReadList.
//
// # Errors
//
// A generator returns (event, true, nil) for a match, (zero, false, nil)
// otherwise, and an error for a malformed attribute (*AttrError wrapping
// ErrAttribute: count it, log it, go on with the next customer), an
// invalid customer id (ErrCustomerID) or a job argument out of range
// (ErrArgument: the job's configuration is wrong; stop). Errors name the
// customer id and the attribute, never an attribute's value, a list cell
// or an invalid customer id, so they can be logged under the house rule
// that logs carry customer ids only as opaque ids.
package batchgen
