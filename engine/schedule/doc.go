// Package schedule parses cron expressions and computes their times in a
// time zone, for the batch-job scheduler (engine) and kairos batch. It is a
// leaf: it imports only the standard library and knows nothing of jobs,
// NATS or state. The caller persists when a job last fired and asks Due.
//
// # Syntax
//
// Five fields separated by white space:
//
//	minute        0-59
//	hour          0-23
//	day-of-month  1-31
//	month         1-12 or jan-dec
//	day-of-week   0-7 or sun-sat (0 and 7 are both Sunday)
//
// Each field is a comma-separated list of items:
//
//	5         one value
//	*         every value
//	1-5       a range, inclusive; the start may not be after the end (no wrap-around: use 22-23,0-2)
//	*/15      every 15th value from the field's minimum
//	10-50/10  every 10th value of a range
//	5/15      every 15th value from 5 to the field's maximum (as in Quartz and robfig/cron)
//	mon-fri   names, in any case, where a number is allowed in the month and day-of-week fields
//
// A step must be from 1 to the number of values in the field (*/61 in the
// minute field is an error). Instead of the five fields, an expression may be
// one macro: @yearly and @annually (0 0 1 1 *), @monthly (0 0 1 * *),
// @weekly (0 0 * * 0), @daily and @midnight (0 0 * * *), @hourly
// (0 * * * *). Seconds, years, ?, L, W and # are not supported. Parse
// errors are *ParseError values wrapping ErrSyntax and name the field and
// the token: cron expression "0 25 * * *": hour field: "25": out of range 0-23.
//
// Day of month and day of week: as in Vixie cron and cronie, when both
// fields are restricted a day matches when either matches (0 0 13 * fri is
// every 13th and every Friday). A field counts as unrestricted when it
// starts with "*", so */2 is unrestricted for this rule (0 0 */2 * mon is
// the odd days that are Mondays), which is what cronie does and differs
// from robfig/cron.
//
// # Time zones and daylight saving
//
// Times are wall-clock times of the location passed to Next, Prev and Due
// (the job's zone; nil is UTC), and the returned times are in that
// location. Where daylight saving changes the clock:
//
//   - A wall time that happens twice (fall back: 01:30 on 2026-11-01 in
//     America/New_York) fires once, at its first occurrence (01:30 EDT).
//   - A wall time that does not exist (spring forward: 02:30 on 2026-03-08
//     in America/New_York) fires at the end of the gap, the first instant
//     that exists (03:00 EDT), so a daily job still runs that day, late,
//     as Vixie cron does for jobs at a fixed hour. Several missing times of
//     one gap fire once. A scheduled time at the end of the gap itself
//     (03:00) is the same instant and fires once too.
//   - Exception: when the hour field starts with "*" (*, */2), missing wall
//     times are skipped, as Vixie cron does for wildcard jobs: the job runs
//     every hour or more often anyway, and moving the missing run would
//     only add one just before the next regular run (30 * * * * fires at
//     01:30 EST and 03:30 EDT on 2026-03-08, not at 03:00 too).
//
// Zones that skip a whole day (Pacific/Apia on 2011-12-30) follow the same
// rule: a fixed-hour time on the missing day fires at the start of the
// next day.
//
// # Searching
//
// Next and Prev walk the calendar field by field: a month that is not in
// the month field, or a day that does not match, is skipped whole, and
// within a day only the scheduled hours and minutes are visited, with bit
// sets. They allocate nothing. The search is bounded to eight years (the
// longest wait between two 29 Februaries, 2096 to 2104); a schedule
// without a time in that span (0 0 31 2 *) returns the zero time. Parse
// accepts such schedules: callers that want to reject them check that Next
// is not zero.
//
// # Catch-up
//
// Due(last, now) returns the latest scheduled time in (last, now]: after a
// downtime that missed several runs the job runs once, for the latest
// missed time, and the scheduler persists that time as the new last. A
// scheduler loop is therefore:
//
//	if at, ok := s.Due(last, now, loc); ok {
//		run(at) // the job's logical time is at, not now
//		last = at // persist
//	}
//	sleep until s.Next(now, loc)
package schedule
