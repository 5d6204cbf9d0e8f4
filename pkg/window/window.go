// Package window is the arithmetic of update windows: weekly stretches of
// wall-clock time in IANA time zones.
//
// # Syntax
//
// A schedule is a list of windows separated by ";", for example
//
//	Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC; Sun 22:00-02:00 America/New_York
//
// Whitespace around windows is ignored and so are empty entries between
// semicolons. The empty string is a schedule that is always open; a schedule
// made only of whitespace and semicolons is an error.
//
// Each window is DAYS START-END ZONE, the three parts separated by whitespace:
//
//   - DAYS is a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, in any case), a range
//     of days (Mon-Fri), a range wrapping around the end of the week (Fri-Mon
//     is Fri, Sat, Sun and Mon), a comma-separated list of days and ranges
//     (Mon,Wed,Fri-Sun), or daily for every day of the week.
//   - START and END are 24-hour times HH:MM or HH:MM:SS. START is from
//     00:00 to 23:59:59; END may also be 24:00, the end of the day. When END
//     is before START the window crosses midnight: it belongs to the day it
//     starts on and ends at END on the next day (Sat 22:00-02:00 ends early
//     on Sunday). START and END must differ; 00:00-24:00 is a whole day, and
//     a window of a minute (12:00-12:01) is fine.
//   - ZONE is an IANA time zone name such as UTC or Europe/Berlin. Local is
//     refused, because the machines reading a schedule may each have a
//     different local zone.
//
// # Meaning
//
// Windows are wall-clock times in their zone: an instant is inside a window
// when the clock on the wall in that zone shows a time from START
// (inclusive) to END (exclusive) on one of the window's days, or, for a
// window crossing midnight, a time before END on the day after one of its
// days. A schedule is open when any of its windows is.
//
// Daylight saving time follows from this. When clocks skip an hour, a window
// starting in the skipped hour opens at the moment the clocks jump (a window
// 02:30-04:00 in Europe/Berlin opens at 03:00 on the last Sunday of March),
// and a window lying wholly in the skipped hour does not open that day. When
// clocks repeat an hour, a window covering that hour is open on both passes.
package window

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	// Zones must load on a distroless image without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// Schedule is a set of weekly windows. The zero Schedule, parsed from "",
// is always open.
type Schedule struct {
	windows []window
}

// window is one DAYS START-END ZONE entry; start and end are wall-clock
// times of day, whole seconds, end in (0, 24h] and before start when the
// window crosses midnight.
type window struct {
	days  days
	start time.Duration
	end   time.Duration
	loc   *time.Location
}

// days is a set of weekdays, bit i standing for time.Weekday(i).
type days uint8

const allDays days = 1<<7 - 1

func (d days) has(wd time.Weekday) bool { return d&(1<<wd) != 0 }

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// horizon bounds the search for the next opening or closing. Windows
// repeat every week, so an opening always comes within two weeks even when
// a change of clocks swallows one; but windows that together cover the week
// can close only once their zones' offsets drift apart, which may be months
// away. Whatever is not found within the horizon is taken never to happen.
const horizon = 400 * day

// Always reports whether the schedule has no windows and so is open at every
// instant. Windows that cover the whole week are open at every instant too,
// but are not Always; NextClosing tells them by returning the zero time.
func (s Schedule) Always() bool { return len(s.windows) == 0 }

// Contains reports whether t is inside one of the schedule's windows.
func (s Schedule) Contains(t time.Time) bool {
	if s.Always() {
		return true
	}
	for _, w := range s.windows {
		if w.contains(t) {
			return true
		}
	}
	return false
}

// NextOpening is the earliest instant at or after t inside a window: t
// itself when the schedule contains it. It is in t's location, and the zero
// time only when the schedule never opens.
func (s Schedule) NextOpening(t time.Time) time.Time {
	if s.Contains(t) {
		return t
	}
	return s.next(t, true)
}

// NextClosing is, for a t inside a window, the first instant after t outside
// every window, in t's location; the zero time when the schedule never
// closes. For a t outside every window it is t.
func (s Schedule) NextClosing(t time.Time) time.Time {
	if !s.Contains(t) {
		return t
	}
	if s.Always() {
		return time.Time{}
	}
	return s.next(t, false)
}

// next is the first instant at or after from where Contains reports open. Only
// instants where some window's wall clock shows its START (for openings) or
// END (for closings), or where a zone's offset shifts, can change whether
// the schedule contains them, so it tries those in order, a day at a time.
// While no offset shifts, the windows repeat every week: after a week
// without a result, the search resumes at the next shift.
func (s Schedule) next(from time.Time, open bool) time.Time {
	until := from.Add(horizon)
	steady := from // no offset shifts in [steady, a)
	for a := from; a.Before(until); {
		b := a.Add(day)
		shifts := s.shifts(a, b)
		for _, c := range s.changes(a, b, shifts, open) {
			if s.Contains(c) == open {
				return c.In(from.Location())
			}
		}
		if len(shifts) > 0 {
			steady = slices.MaxFunc(shifts, time.Time.Compare)
		}
		a = b
		if a.Sub(steady) >= week {
			if a = s.nextShift(a); a.IsZero() {
				break
			}
			steady = a
		}
	}
	return time.Time{}
}

// changes are, in order, the instants in [a, b) where a window may open
// (opening) or close (!opening): its edges, and the shifts of offsets.
func (s Schedule) changes(a, b time.Time, shifts []time.Time, opening bool) []time.Time {
	cs := slices.Clone(shifts)
	for _, w := range s.windows {
		cs = append(cs, w.edges(a, opening)...)
	}
	cs = slices.DeleteFunc(cs, func(c time.Time) bool { return c.Before(a) || !c.Before(b) })
	slices.SortFunc(cs, time.Time.Compare)
	return cs
}

// shifts are the instants in [a, b) where a window's zone changes its offset.
func (s Schedule) shifts(a, b time.Time) []time.Time {
	var ts []time.Time
	for _, w := range s.windows {
		// From just before a, so that a shift at a itself is found too.
		for _, end := a.Add(-time.Nanosecond).In(w.loc).ZoneBounds(); !end.IsZero() && end.Before(b); _, end = end.ZoneBounds() {
			ts = append(ts, end)
		}
	}
	return ts
}

// nextShift is the first instant at or after a where a window's zone
// changes its offset; the zero time when none ever does.
func (s Schedule) nextShift(a time.Time) time.Time {
	var next time.Time
	for _, w := range s.windows {
		_, end := a.Add(-time.Nanosecond).In(w.loc).ZoneBounds()
		if !end.IsZero() && (next.IsZero() || end.Before(next)) {
			next = end
		}
	}
	return next
}

// edges are the instants around a's day (a little more than the day after
// a, whatever the clock changes) where w's wall clock shows START
// (opening) or END (!opening) on a day the window belongs to.
func (w window) edges(a time.Time, opening bool) []time.Time {
	y, m, d := a.In(w.loc).Date()
	edge, after := w.start, 0
	if !opening {
		edge = w.end
		if w.crosses() {
			after = 1
		}
	}
	var cs []time.Time
	for i := -1; i <= 2; i++ {
		if !w.days.has(time.Date(y, m, d+i, 0, 0, 0, 0, time.UTC).Weekday()) {
			continue
		}
		c := time.Date(y, m, d+i+after, 0, 0, int(edge/time.Second), 0, w.loc)
		cs = append(cs, c)
		cs = append(cs, twins(c)...)
	}
	return cs
}

// twins are the other instants showing c's wall clock: when clocks go back
// a wall clock happens twice, and time.Date gives only one of them. Such a
// twin lies in a neighbouring zone period, shifted by the change of offset.
func twins(c time.Time) []time.Time {
	_, offset := c.Zone()
	start, end := c.ZoneBounds()
	var neighbours []time.Time
	if !start.IsZero() {
		neighbours = append(neighbours, start.Add(-time.Nanosecond))
	}
	if !end.IsZero() {
		neighbours = append(neighbours, end)
	}
	var ts []time.Time
	for _, n := range neighbours {
		_, other := n.Zone()
		twin := c.Add(time.Duration(offset-other) * time.Second)
		// The twin shows c's wall clock when it has the neighbour's offset.
		if _, at := twin.Zone(); other != offset && at == other {
			ts = append(ts, twin)
		}
	}
	return ts
}

func (w window) crosses() bool { return w.end < w.start }

func (w window) contains(t time.Time) bool {
	local := t.In(w.loc)
	h, m, sec := local.Clock()
	clock := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec)*time.Second + time.Duration(local.Nanosecond())
	today := w.days.has(local.Weekday())
	if !w.crosses() {
		return today && w.start <= clock && clock < w.end
	}
	yesterday := w.days.has((local.Weekday() + 6) % 7)
	return today && clock >= w.start || yesterday && clock < w.end
}

// String is the schedule in its canonical form: windows in their order,
// joined by "; ", days as ranges from Monday on (daily for all), times as
// HH:MM unless they have seconds, END 00:00 as 24:00.
func (s Schedule) String() string {
	parts := make([]string, len(s.windows))
	for i, w := range s.windows {
		parts[i] = fmt.Sprintf("%s %s-%s %s", w.days, clock(w.start), clock(w.end), w.loc)
	}
	return strings.Join(parts, "; ")
}

func clock(d time.Duration) string {
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	if s != 0 {
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", h, m)
}

// weekOrder is the week as written, Monday first.
var weekOrder = [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}

// String writes the days as runs of consecutive days, a run that wraps
// around Sunday staying in one piece (Fri-Mon).
func (d days) String() string {
	if d == allDays {
		return "daily"
	}
	var runs []string
	for i, wd := range weekOrder {
		if !d.has(wd) || d.has(weekOrder[(i+6)%7]) {
			continue
		}
		last := wd
		for j := i + 1; d.has(weekOrder[j%7]); j++ {
			last = weekOrder[j%7]
		}
		run := dayName(wd)
		if last != wd {
			run += "-" + dayName(last)
		}
		runs = append(runs, run)
	}
	return strings.Join(runs, ",")
}

func dayName(wd time.Weekday) string { return wd.String()[:3] }

// ParseError is a schedule that does not parse.
type ParseError struct {
	// Pos is the 1-based byte position in the schedule of the offending
	// token, or where a missing one was expected.
	Pos int
	Msg string
}

func (e *ParseError) Error() string { return fmt.Sprintf("position %d: %s", e.Pos, e.Msg) }

// token is a piece of the schedule and its 0-based byte offset in it.
type token struct {
	text string
	at   int
}

func (t token) end() int { return t.at + len(t.text) }

func errorAt(at int, format string, args ...any) *ParseError {
	return &ParseError{Pos: at + 1, Msg: fmt.Sprintf(format, args...)}
}

// Parse reads a schedule (see the package documentation); "" is always
// open. Its errors are *ParseError.
func Parse(s string) (Schedule, error) {
	if s == "" {
		return Schedule{}, nil
	}
	var sched Schedule
	at := 0
	for _, entry := range strings.Split(s, ";") {
		if fs := fields(entry, at); len(fs) > 0 {
			w, err := parseWindow(fs)
			if err != nil {
				return Schedule{}, err
			}
			sched.windows = append(sched.windows, w)
		}
		at += len(entry) + 1
	}
	if sched.Always() {
		return Schedule{}, errorAt(0, "no windows (want e.g. Mon-Fri 08:00-17:00 UTC; an empty schedule is always open)")
	}
	return sched, nil
}

// fields splits s, which starts at offset at of the schedule, at whitespace.
func fields(s string, at int) []token {
	var ts []token
	start := -1
	for i, r := range s {
		switch {
		case unicode.IsSpace(r) && start >= 0:
			ts = append(ts, token{s[start:i], at + start})
			start = -1
		case !unicode.IsSpace(r) && start < 0:
			start = i
		}
	}
	if start >= 0 {
		ts = append(ts, token{s[start:], at + start})
	}
	return ts
}

func parseWindow(fs []token) (window, error) {
	var w window
	var err error
	if w.days, err = parseDays(fs[0]); err != nil {
		return window{}, err
	}
	if len(fs) < 2 {
		return window{}, errorAt(fs[0].end(), "missing time range after %q (want START-END, e.g. 08:00-17:00)", fs[0].text)
	}
	if w.start, w.end, err = parseTimes(fs[1]); err != nil {
		return window{}, err
	}
	if len(fs) < 3 {
		return window{}, errorAt(fs[1].end(), "missing time zone (e.g. UTC or Europe/Berlin)")
	}
	if w.loc, err = parseZone(fs[2]); err != nil {
		return window{}, err
	}
	if len(fs) > 3 {
		return window{}, errorAt(fs[3].at, "unexpected %q after the time zone (separate windows with \";\")", fs[3].text)
	}
	return w, nil
}

// parseDays reads daily or a comma-separated list of days and ranges.
func parseDays(t token) (days, error) {
	if strings.EqualFold(t.text, "daily") {
		return allDays, nil
	}
	var set days
	at := t.at
	for _, item := range strings.Split(t.text, ",") {
		d, err := parseDayItem(token{item, at}, t.text)
		if err != nil {
			return 0, err
		}
		set |= d
		at += len(item) + 1
	}
	return set, nil
}

// parseDayItem reads a day or a range of days, an item of list.
func parseDayItem(t token, list string) (days, error) {
	first, last, isRange := strings.Cut(t.text, "-")
	from, err := parseDay(token{first, t.at}, list)
	switch {
	case err != nil:
		return 0, err
	case !isRange:
		return 1 << from, nil
	case strings.Contains(last, "-"):
		return 0, errorAt(t.at, "%q is not a range of days (want e.g. Mon-Fri)", t.text)
	}
	to, err := parseDay(token{last, t.at + len(first) + 1}, list)
	if err != nil {
		return 0, err
	}
	if from == to {
		return 0, errorAt(t.at, "%q starts and ends on the same day (write %s alone, or daily)", t.text, dayName(from))
	}
	var set days
	for wd := from; wd != to; wd = (wd + 1) % 7 {
		set |= 1 << wd
	}
	return set | 1<<to, nil
}

func parseDay(t token, list string) (time.Weekday, error) {
	switch {
	case t.text == "":
		return 0, errorAt(t.at, "missing day in %q (want e.g. Mon-Fri or Mon,Wed)", list)
	case strings.EqualFold(t.text, "daily"):
		return 0, errorAt(t.at, "daily cannot be combined with other days")
	}
	for _, wd := range weekOrder {
		if strings.EqualFold(t.text, dayName(wd)) {
			return wd, nil
		}
	}
	return 0, errorAt(t.at, "unknown day %q (want Mon, Tue, ..., Sun or daily)", t.text)
}

// parseTimes reads START-END, returning END 00:00 as 24:00.
func parseTimes(t token) (start, end time.Duration, err error) {
	first, last, ok := strings.Cut(t.text, "-")
	if !ok {
		return 0, 0, errorAt(t.at, "%q is not a time range (want START-END, e.g. 08:00-17:00)", t.text)
	}
	if start, err = parseClock(token{first, t.at}); err != nil {
		return 0, 0, err
	}
	if start == day {
		return 0, 0, errorAt(t.at, "a window cannot start at 24:00 (want a start from 00:00 to 23:59:59)")
	}
	if end, err = parseClock(token{last, t.at + len(first) + 1}); err != nil {
		return 0, 0, err
	}
	if start == end {
		return 0, 0, errorAt(t.at, "a window must not be empty; use 00:00-24:00 for a whole day")
	}
	if end == 0 {
		end = day
	}
	return start, end, nil
}

// parseClock reads HH:MM or HH:MM:SS from 00:00 to 24:00.
func parseClock(t token) (time.Duration, error) {
	bad := errorAt(t.at, "%q is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)", t.text)
	s := t.text
	if len(s) == 5 {
		s += ":00"
	}
	if len(s) != 8 || s[2] != ':' || s[5] != ':' || !digits(s[:2]) || !digits(s[3:5]) || !digits(s[6:]) {
		return 0, bad
	}
	h, m, sec := number(s[:2]), number(s[3:5]), number(s[6:])
	clock := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second
	if m > 59 || sec > 59 || clock > day {
		return 0, bad
	}
	return clock, nil
}

func number(twoDigits string) int { return int(twoDigits[0]-'0')*10 + int(twoDigits[1]-'0') }

func digits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// zones holds one Location per zone name, so that parsing is cheap and
// schedules parsed from the same text are deeply equal.
var zones sync.Map

func parseZone(t token) (*time.Location, error) {
	if t.text == "Local" {
		return nil, errorAt(t.at, "time zone Local is not allowed, machines differ in theirs (want an IANA name such as UTC or Europe/Berlin)")
	}
	if loc, ok := zones.Load(t.text); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(t.text)
	if err != nil {
		return nil, errorAt(t.at, "unknown time zone %q (want an IANA name such as UTC or Europe/Berlin)", t.text)
	}
	cached, _ := zones.LoadOrStore(t.text, loc)
	return cached.(*time.Location), nil
}
