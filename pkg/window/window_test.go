package window

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"Mon-Fri 08:00-17:00 Europe/Berlin", "Mon-Fri 08:00-17:00 Europe/Berlin"},
		{"Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC; Sun 22:00-02:00 America/New_York",
			"Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC; Sun 22:00-02:00 America/New_York"},
		{"  mon-FRI \t08:00-17:00  Europe/Berlin ;; sat 00:00-06:00 UTC ;\n", "Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC"},
		{"Fri-Mon 22:00-02:00 UTC", "Fri-Mon 22:00-02:00 UTC"},
		{"Mon,Fri,Sat,Sun 22:00-02:00 UTC", "Fri-Mon 22:00-02:00 UTC"},
		{"Mon,Wed,Fri-Sun 10:00-11:00 Asia/Kolkata", "Wed,Fri-Mon 10:00-11:00 Asia/Kolkata"},
		{"Sun,Wed,Mon 10:00-11:00 UTC", "Wed,Sun-Mon 10:00-11:00 UTC"},
		{"Mon,Mon,Mon-Tue,tue 10:00-11:00 UTC", "Mon-Tue 10:00-11:00 UTC"},
		{"Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-24:00 UTC", "daily 00:00-24:00 UTC"},
		{"Tue-Mon 00:00-24:00 UTC", "daily 00:00-24:00 UTC"},
		{"DAILY 22:00-00:00 UTC", "daily 22:00-24:00 UTC"},
		{"Wed 12:00-12:01 UTC", "Wed 12:00-12:01 UTC"},
		{"Sat 23:59-00:00 Australia/Lord_Howe", "Sat 23:59-24:00 Australia/Lord_Howe"},
		{"Sun 00:00-00:01 America/New_York", "Sun 00:00-00:01 America/New_York"},
		{"daily 09:15:30-10:15:30 UTC", "daily 09:15:30-10:15:30 UTC"},
		{"Mon 08:00:00-17:00:00 UTC", "Mon 08:00-17:00 UTC"},
		{"Mon 23:59:59-00:00:00 UTC", "Mon 23:59:59-24:00 UTC"},
		{"Mon 00:00:00-24:00:00 UTC", "Mon 00:00-24:00 UTC"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			s, err := Parse(c.in)
			require.NoError(t, err)
			assert.Equal(t, c.want, s.String())
			assert.Equal(t, c.in == "", s.Always())
			again, err := Parse(s.String())
			require.NoError(t, err)
			assert.Equal(t, s, again, "the canonical form parses to an equal schedule")
			assert.Equal(t, c.want, again.String())
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"   ", `position 1: no windows (want e.g. Mon-Fri 08:00-17:00 UTC; an empty schedule is always open)`},
		{" ; ;", `position 1: no windows (want e.g. Mon-Fri 08:00-17:00 UTC; an empty schedule is always open)`},
		{"Mnn 08:00-17:00 UTC", `position 1: unknown day "Mnn" (want Mon, Tue, ..., Sun or daily)`},
		{"Mon,Mnn 08:00-17:00 UTC", `position 5: unknown day "Mnn" (want Mon, Tue, ..., Sun or daily)`},
		{"Mon-Frii 08:00-17:00 UTC", `position 5: unknown day "Frii" (want Mon, Tue, ..., Sun or daily)`},
		{"Monday 08:00-17:00 UTC", `position 1: unknown day "Monday" (want Mon, Tue, ..., Sun or daily)`},
		{"08:00-17:00 UTC", `position 1: unknown day "08:00" (want Mon, Tue, ..., Sun or daily)`},
		{"Mon,,Fri 08:00-17:00 UTC", `position 5: missing day in "Mon,,Fri" (want e.g. Mon-Fri or Mon,Wed)`},
		{"Mon- 08:00-17:00 UTC", `position 5: missing day in "Mon-" (want e.g. Mon-Fri or Mon,Wed)`},
		{"Sat,Mon-Fri-Sat 08:00-09:00 UTC", `position 5: "Mon-Fri-Sat" is not a range of days (want e.g. Mon-Fri)`},
		{"Mon-mon 08:00-09:00 UTC", `position 1: "Mon-mon" starts and ends on the same day (write Mon alone, or daily)`},
		{"Mon,daily 08:00-09:00 UTC", `position 5: daily cannot be combined with other days`},
		{"Mon", `position 4: missing time range after "Mon" (want START-END, e.g. 08:00-17:00)`},
		{"Mon 0800 UTC", `position 5: "0800" is not a time range (want START-END, e.g. 08:00-17:00)`},
		{"Mon 08:00–17:00 UTC", `position 5: "08:00–17:00" is not a time range (want START-END, e.g. 08:00-17:00)`},
		{"Mon-Fri 25:00-17:00 UTC", `position 9: "25:00" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00-17:60 UTC", `position 11: "17:60" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 8:00-17:00 UTC", `position 5: "8:00" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00-24:30 UTC", `position 11: "24:30" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00-24:00:01 UTC", `position 11: "24:00:01" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00:60-09:00 UTC", `position 5: "08:00:60" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00:5-09:00 UTC", `position 5: "08:00:5" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00-17:00-18:00 UTC", `position 11: "17:00-18:00" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 08:00- UTC", `position 11: "" is not a time (want HH:MM or HH:MM:SS from 00:00 to 24:00)`},
		{"Mon 24:00-02:00 UTC", `position 5: a window cannot start at 24:00 (want a start from 00:00 to 23:59:59)`},
		{"Mon 08:00-08:00 UTC", `position 5: a window must not be empty; use 00:00-24:00 for a whole day`},
		{"Mon 08:00-08:00:00 UTC", `position 5: a window must not be empty; use 00:00-24:00 for a whole day`},
		{"Mon 00:00-00:00 UTC", `position 5: a window must not be empty; use 00:00-24:00 for a whole day`},
		{"Mon 08:00-17:00", `position 16: missing time zone (e.g. UTC or Europe/Berlin)`},
		{"Mon 08:00-17:00 ; Tue 09:00-10:00 UTC", `position 16: missing time zone (e.g. UTC or Europe/Berlin)`},
		{"Mon 08:00-17:00 UTC; Tue 09:00-10:00", `position 37: missing time zone (e.g. UTC or Europe/Berlin)`},
		{"Mon 08:00-17:00 Europe/Berln", `position 17: unknown time zone "Europe/Berln" (want an IANA name such as UTC or Europe/Berlin)`},
		{"Mon 08:00-17:00 Local", `position 17: time zone Local is not allowed, machines differ in theirs (want an IANA name such as UTC or Europe/Berlin)`},
		{"Mon 08:00-17:00 UTC extra", `position 21: unexpected "extra" after the time zone (separate windows with ";")`},
		{"Mon 08:00-17:00 UTC Sat 00:00-06:00 UTC", `position 21: unexpected "Sat" after the time zone (separate windows with ";")`},
		{"Mon 08:00-17:00 UTC;Mön 08:00-17:00 UTC", `position 21: unknown day "Mön" (want Mon, Tue, ..., Sun or daily)`},
		{"Mon\u00a008:00-17:00\u00a0UTC\u00a0x", `position 24: unexpected "x" after the time zone (separate windows with ";")`},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			s, err := Parse(c.in)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "want a *ParseError, got %v", err)
			assert.Equal(t, c.want, err.Error())
			assert.Equal(t, Schedule{}, s)
		})
	}
}

// instant reads an RFC 3339 time; "never" is the zero time.
func instant(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "never" {
		return time.Time{}
	}
	at, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return at
}

func TestSchedule(t *testing.T) {
	cases := []struct {
		name, schedule, at string
		contains           bool
		opening, closing   string
	}{
		{"empty is always open", "", "2024-06-03T09:00:00Z", true, "2024-06-03T09:00:00Z", "never"},
		{"whole week", "daily 00:00-24:00 UTC", "2028-02-29T12:00:00Z", true, "2028-02-29T12:00:00Z", "never"},
		{"whole week in pieces", "Mon-Wed 00:00-24:00 UTC; Wed-Sun 00:00-24:00 Asia/Kolkata; Sun 12:00-24:00 UTC", "2024-06-09T20:00:00Z", true, "2024-06-09T20:00:00Z", "never"},
		{"start inclusive", "Mon-Fri 08:00-17:00 Europe/Berlin", "2024-06-03T06:00:00Z", true, "2024-06-03T06:00:00Z", "2024-06-03T15:00:00Z"},
		{"just before start", "Mon-Fri 08:00-17:00 Europe/Berlin", "2024-06-03T05:59:59.999999999Z", false, "2024-06-03T06:00:00Z", "2024-06-03T05:59:59.999999999Z"},
		{"end exclusive", "Mon-Fri 08:00-17:00 Europe/Berlin", "2024-06-03T15:00:00Z", false, "2024-06-04T06:00:00Z", "2024-06-03T15:00:00Z"},
		{"friday evening", "Mon-Fri 08:00-17:00 Europe/Berlin", "2024-06-07T16:00:00Z", false, "2024-06-10T06:00:00Z", "2024-06-07T16:00:00Z"},

		// Europe/Berlin 2024: 02:00 CET becomes 03:00 CEST at 01:00Z on 31 March,
		// 03:00 CEST becomes 02:00 CET at 01:00Z on 27 October.
		{"berlin spring, start in the gap", "Sun 02:30-04:00 Europe/Berlin", "2024-03-31T00:30:00Z", false, "2024-03-31T01:00:00Z", "2024-03-31T00:30:00Z"},
		{"berlin spring, open at the jump", "Sun 02:30-04:00 Europe/Berlin", "2024-03-31T01:00:00Z", true, "2024-03-31T01:00:00Z", "2024-03-31T02:00:00Z"},
		{"berlin spring, window in the gap", "Sun 02:00-03:00 Europe/Berlin", "2024-03-31T00:00:00Z", false, "2024-04-07T00:00:00Z", "2024-03-31T00:00:00Z"},
		{"berlin spring, end in the gap", "Sun 01:00-02:00 Europe/Berlin", "2024-03-31T00:30:00Z", true, "2024-03-31T00:30:00Z", "2024-03-31T01:00:00Z"},
		{"berlin fall, before", "Sun 02:00-03:00 Europe/Berlin", "2024-10-26T23:00:00Z", false, "2024-10-27T00:00:00Z", "2024-10-26T23:00:00Z"},
		{"berlin fall, first pass", "Sun 02:00-03:00 Europe/Berlin", "2024-10-27T00:30:00Z", true, "2024-10-27T00:30:00Z", "2024-10-27T02:00:00Z"},
		{"berlin fall, second pass", "Sun 02:00-03:00 Europe/Berlin", "2024-10-27T01:30:00Z", true, "2024-10-27T01:30:00Z", "2024-10-27T02:00:00Z"},
		{"berlin fall, clocks go back out", "Sun 02:30-04:00 Europe/Berlin", "2024-10-27T00:45:00Z", true, "2024-10-27T00:45:00Z", "2024-10-27T01:00:00Z"},
		{"berlin fall, and in again", "Sun 02:30-04:00 Europe/Berlin", "2024-10-27T01:00:00Z", false, "2024-10-27T01:30:00Z", "2024-10-27T01:00:00Z"},
		{"berlin fall, hour before", "Sun 01:00-02:00 Europe/Berlin", "2024-10-26T23:30:00Z", true, "2024-10-26T23:30:00Z", "2024-10-27T00:00:00Z"},
		{"berlin fall, hour before, repeat", "Sun 01:00-02:00 Europe/Berlin", "2024-10-27T01:30:00Z", false, "2024-11-03T00:00:00Z", "2024-10-27T01:30:00Z"},

		// America/New_York 2024: 02:00 EST becomes 03:00 EDT at 07:00Z on 10
		// March, 02:00 EDT becomes 01:00 EST at 06:00Z on 3 November.
		{"new york spring, window in the gap", "Sun 02:00-03:00 America/New_York", "2024-03-10T06:30:00Z", false, "2024-03-17T06:00:00Z", "2024-03-10T06:30:00Z"},
		{"new york spring, start in the gap", "Sun 02:30-04:00 America/New_York", "2024-03-10T06:30:00Z", false, "2024-03-10T07:00:00Z", "2024-03-10T06:30:00Z"},
		{"new york spring, open at the jump", "Sun 02:30-04:00 America/New_York", "2024-03-10T07:00:00Z", true, "2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"},
		{"new york spring, end in the gap", "Sun 01:00-02:00 America/New_York", "2024-03-10T06:30:00Z", true, "2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z"},
		{"new york fall, before", "Sun 01:00-02:00 America/New_York", "2024-11-03T04:59:59Z", false, "2024-11-03T05:00:00Z", "2024-11-03T04:59:59Z"},
		{"new york fall, both passes", "Sun 01:00-02:00 America/New_York", "2024-11-03T05:30:00Z", true, "2024-11-03T05:30:00Z", "2024-11-03T07:00:00Z"},
		{"new york fall, after the repeat", "Sun 02:00-03:00 America/New_York", "2024-11-03T05:30:00Z", false, "2024-11-03T07:00:00Z", "2024-11-03T05:30:00Z"},
		{"new york fall, hour after", "Sun 02:00-03:00 America/New_York", "2024-11-03T07:00:00Z", true, "2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"},

		// Australia/Lord_Howe moves by half an hour: 02:00 +10:30 becomes
		// 02:30 +11 at 15:30Z on 5 October 2024; 02:00 +11 becomes 01:30
		// +10:30 at 15:00Z on 6 April 2024.
		{"lord howe spring, window in the gap", "Sun 02:00-02:30 Australia/Lord_Howe", "2024-10-05T15:00:00Z", false, "2024-10-12T15:00:00Z", "2024-10-05T15:00:00Z"},
		{"lord howe fall, both passes", "Sun 01:30-02:00 Australia/Lord_Howe", "2024-04-06T14:45:00Z", true, "2024-04-06T14:45:00Z", "2024-04-06T15:30:00Z"},

		{"across midnight, evening", "Sat 22:00-02:00 UTC", "2024-06-01T23:00:00Z", true, "2024-06-01T23:00:00Z", "2024-06-02T02:00:00Z"},
		{"across midnight, next morning", "Sat 22:00-02:00 UTC", "2024-06-02T01:59:59Z", true, "2024-06-02T01:59:59Z", "2024-06-02T02:00:00Z"},
		{"across midnight, end", "Sat 22:00-02:00 UTC", "2024-06-02T02:00:00Z", false, "2024-06-08T22:00:00Z", "2024-06-02T02:00:00Z"},
		{"across midnight, morning of its day", "Sat 22:00-02:00 UTC", "2024-06-01T01:00:00Z", false, "2024-06-01T22:00:00Z", "2024-06-01T01:00:00Z"},
		{"sunday into monday", "Sun 22:00-02:00 UTC", "2024-06-03T01:00:00Z", true, "2024-06-03T01:00:00Z", "2024-06-03T02:00:00Z"},
		{"sunday into monday, new york", "Sun 22:00-02:00 America/New_York", "2024-06-03T05:00:00Z", true, "2024-06-03T05:00:00Z", "2024-06-03T06:00:00Z"},
		{"to midnight", "Fri 23:00-00:00 UTC", "2024-06-07T23:30:00Z", true, "2024-06-07T23:30:00Z", "2024-06-08T00:00:00Z"},

		{"wrapping days, outside", "Fri-Mon 09:00-10:00 UTC", "2024-06-04T09:30:00Z", false, "2024-06-07T09:00:00Z", "2024-06-04T09:30:00Z"},
		{"wrapping days, monday", "Fri-Mon 09:00-10:00 UTC", "2024-06-03T09:30:00Z", true, "2024-06-03T09:30:00Z", "2024-06-03T10:00:00Z"},
		{"wrapping days across midnight", "Sat-Mon 22:00-02:00 UTC", "2024-06-04T01:00:00Z", true, "2024-06-04T01:00:00Z", "2024-06-04T02:00:00Z"},

		{"overlapping", "Mon 08:00-12:00 UTC; Mon 11:00-14:00 UTC", "2024-06-03T09:00:00Z", true, "2024-06-03T09:00:00Z", "2024-06-03T14:00:00Z"},
		{"overlapping, earliest opening", "Mon 11:00-14:00 UTC; Mon 08:00-12:00 UTC", "2024-06-03T07:00:00Z", false, "2024-06-03T08:00:00Z", "2024-06-03T07:00:00Z"},
		{"adjacent", "Mon 08:00-12:00 UTC; Mon 12:00-13:00 UTC", "2024-06-03T09:00:00Z", true, "2024-06-03T09:00:00Z", "2024-06-03T13:00:00Z"},
		{"adjacent over midnight", "Mon 20:00-24:00 UTC; Tue 00:00-03:00 UTC", "2024-06-03T21:00:00Z", true, "2024-06-03T21:00:00Z", "2024-06-04T03:00:00Z"},
		{"adjacent in other zones", "Mon 08:00-12:00 UTC; Mon 14:00-16:00 Europe/Berlin", "2024-06-03T09:00:00Z", true, "2024-06-03T09:00:00Z", "2024-06-03T14:00:00Z"},
		// In summer London is an hour ahead and the two windows cover the
		// whole week; the gap opens when it goes back to UTC.
		{"gap only in winter", "daily 00:00-12:00 UTC; daily 13:00-01:00 Europe/London", "2024-07-01T00:00:00Z", true, "2024-07-01T00:00:00Z", "2024-10-27T12:00:00Z"},

		{"leap day", "Tue 10:00-11:00 UTC", "2028-02-28T12:00:00Z", false, "2028-02-29T10:00:00Z", "2028-02-28T12:00:00Z"},
		{"into the leap day", "Mon 23:00-01:00 UTC", "2028-02-29T00:30:00Z", true, "2028-02-29T00:30:00Z", "2028-02-29T01:00:00Z"},
		{"out of the leap day", "Tue 23:00-01:00 UTC", "2028-02-28T23:30:00Z", false, "2028-02-29T23:00:00Z", "2028-02-28T23:30:00Z"},
		{"leap day to march", "Tue 23:00-01:00 UTC", "2028-02-29T23:30:00Z", true, "2028-02-29T23:30:00Z", "2028-03-01T01:00:00Z"},

		{"one minute", "Wed 12:00-12:01 UTC", "2024-06-05T12:00:30Z", true, "2024-06-05T12:00:30Z", "2024-06-05T12:01:00Z"},
		{"one minute, last instant", "Wed 12:00-12:01 UTC", "2024-06-05T12:00:59.999999999Z", true, "2024-06-05T12:00:59.999999999Z", "2024-06-05T12:01:00Z"},
		{"one minute, after", "Wed 12:00-12:01 UTC", "2024-06-05T12:01:00Z", false, "2024-06-12T12:00:00Z", "2024-06-05T12:01:00Z"},
		{"one minute, before", "Wed 12:00-12:01 UTC", "2024-06-05T11:59:59.5Z", false, "2024-06-05T12:00:00Z", "2024-06-05T11:59:59.5Z"},
		{"seconds, before", "daily 09:15:30-10:15:30 UTC", "2024-06-05T09:15:29.5Z", false, "2024-06-05T09:15:30Z", "2024-06-05T09:15:29.5Z"},
		{"seconds, inside", "daily 09:15:30-10:15:30 UTC", "2024-06-05T09:15:30Z", true, "2024-06-05T09:15:30Z", "2024-06-05T10:15:30Z"},
		{"one second", "Wed 23:59:59-00:00 Asia/Kolkata", "2024-06-05T18:29:59.25Z", true, "2024-06-05T18:29:59.25Z", "2024-06-05T18:30:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(c.schedule)
			require.NoError(t, err)
			at := instant(t, c.at)
			assert.Equal(t, c.contains, s.Contains(at), "Contains")
			assertInstant(t, instant(t, c.opening), s.NextOpening(at), "NextOpening")
			assertInstant(t, instant(t, c.closing), s.NextClosing(at), "NextClosing")
		})
	}
}

func assertInstant(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	assert.True(t, want.Equal(got), "%s: want %s, got %s", what, want.UTC(), got.UTC())
}

func TestResultsInTheCallersLocation(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	s, err := Parse("Mon-Fri 08:00-17:00 America/New_York")
	require.NoError(t, err)
	at := time.Date(2024, 6, 3, 12, 0, 0, 0, berlin)
	opening := s.NextOpening(at)
	assert.Equal(t, berlin, opening.Location())
	assert.Equal(t, "2024-06-03 14:00:00 +0200 CEST", opening.String())
	closing := s.NextClosing(opening)
	assert.Equal(t, berlin, closing.Location())
	assert.Equal(t, "2024-06-03 23:00:00 +0200 CEST", closing.String())
}

// The property test checks the package against a brute-force oracle: a naive
// membership test of the generated windows, stepped minute by minute. All
// offsets and transitions of propertyZones are whole minutes, so membership
// only changes at whole minutes.

var propertyZones = []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"}

const (
	propertyCases = 10000
	// propertyShards share the cases out to run in parallel, each with its
	// own generator seeded by the seed and the shard's number.
	propertyShards = 2
	// oracleDays bounds the oracle's walk.
	oracleDays = 9
)

// naiveWindow is a generated window: days indexed by time.Weekday, start
// and end in minutes after midnight, end 0 meaning midnight.
type naiveWindow struct {
	days       [7]bool
	start, end int
	loc        *time.Location
}

// contains counts the wall clock's seconds since 1970-01-01, a Thursday,
// rather than asking package time for the clock and the weekday; the
// generated instants are all later.
func (w naiveWindow) contains(t time.Time) bool {
	_, offset := t.In(w.loc).Zone()
	wall := t.Unix() + int64(offset)
	days := wall / (24 * 3600)
	second := int(wall - days*24*3600)
	today := int((days + 4) % 7)
	yesterday := (today + 6) % 7
	if w.end > w.start {
		return w.days[today] && second >= w.start*60 && second < w.end*60
	}
	return w.days[today] && second >= w.start*60 || w.days[yesterday] && second < w.end*60
}

type naiveSchedule []naiveWindow

func (s naiveSchedule) contains(t time.Time) bool {
	for _, w := range s {
		if w.contains(t) {
			return true
		}
	}
	return false
}

// first is the first instant at or after t, t or a later whole minute,
// where the schedule contains an instant (or not), and whether one was found
// within oracleDays.
func (s naiveSchedule) first(t time.Time, contained bool) (time.Time, bool) {
	if s.contains(t) == contained {
		return t, true
	}
	limit := t.Add(oracleDays * 24 * time.Hour)
	for m := t.Truncate(time.Minute).Add(time.Minute); m.Before(limit); m = m.Add(time.Minute) {
		if s.contains(m) == contained {
			return m, true
		}
	}
	return time.Time{}, false
}

var dayAbbrevs = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// randomCase spells a day name in upper, lower or title case.
func randomCase(r *rand.Rand, s string) string {
	switch r.IntN(4) {
	case 0:
		return strings.ToUpper(s)
	case 1:
		return strings.ToLower(s)
	}
	return s
}

// genDays returns a random set of days and a spelling of it.
func genDays(r *rand.Rand) ([7]bool, string) {
	var set [7]bool
	if r.IntN(10) == 0 {
		return [7]bool{true, true, true, true, true, true, true}, randomCase(r, "daily")
	}
	var items []string
	for range 1 + r.IntN(3) {
		from := r.IntN(7)
		if r.IntN(2) == 0 {
			set[from] = true
			items = append(items, randomCase(r, dayAbbrevs[from]))
			continue
		}
		n := 1 + r.IntN(6)
		for i := 0; i <= n; i++ {
			set[(from+i)%7] = true
		}
		items = append(items, randomCase(r, dayAbbrevs[from])+"-"+randomCase(r, dayAbbrevs[(from+n)%7]))
	}
	return set, strings.Join(items, ",")
}

// genMinute is a time of day, often in the early hours when clocks change.
func genMinute(r *rand.Rand, max int) int {
	if r.IntN(3) == 0 {
		return r.IntN(4 * 60)
	}
	return r.IntN(max)
}

func genWindow(r *rand.Rand, zones []*time.Location) (naiveWindow, string) {
	days, spelled := genDays(r)
	w := naiveWindow{days: days, start: genMinute(r, 24*60), loc: zones[r.IntN(len(zones))]}
	for w.end = genMinute(r, 24*60+1); w.end == w.start; w.end = genMinute(r, 24*60+1) {
	}
	return w, fmt.Sprintf("%s %02d:%02d-%02d:%02d %s", spelled, w.start/60, w.start%60, w.end/60, w.end%60, w.loc)
}

func genSchedule(r *rand.Rand, zones []*time.Location) (naiveSchedule, string) {
	var s naiveSchedule
	var spelled []string
	for range 1 + r.IntN(3) {
		w, text := genWindow(r, zones)
		s = append(s, w)
		spelled = append(spelled, text)
	}
	return s, strings.Join(spelled, "; ")
}

var (
	propertyFrom = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	propertyTo   = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
)

// genInstant is an instant in 2024-2030, half of them within two days of a
// change of clocks, some with fractions of a second, in a random zone.
func genInstant(r *rand.Rand, zones []*time.Location, changes []time.Time) time.Time {
	var t time.Time
	if r.IntN(2) == 0 {
		t = changes[r.IntN(len(changes))].Add(time.Duration(r.IntN(4*24*3600)-2*24*3600) * time.Second)
	} else {
		t = propertyFrom.Add(time.Duration(r.Int64N(int64(propertyTo.Sub(propertyFrom)/time.Second))) * time.Second)
	}
	if r.IntN(4) == 0 {
		t = t.Add(time.Duration(r.IntN(int(time.Second))))
	}
	return t.In(zones[r.IntN(len(zones))])
}

// clockChanges are the instants in 2024-2030 where a zone's offset changes.
func clockChanges(zones []*time.Location) []time.Time {
	var ts []time.Time
	for _, loc := range zones {
		for _, end := propertyFrom.In(loc).ZoneBounds(); !end.IsZero() && end.Before(propertyTo); _, end = end.ZoneBounds() {
			ts = append(ts, end)
		}
	}
	return ts
}

func propertySeed(t *testing.T) uint64 {
	seed := uint64(20240331)
	if env := os.Getenv("WINDOW_SEED"); env != "" {
		var err error
		seed, err = strconv.ParseUint(env, 10, 64)
		require.NoError(t, err, "WINDOW_SEED")
	}
	t.Logf("seed %d (set WINDOW_SEED to change it)", seed)
	return seed
}

// propertyCase is a generated schedule and instant.
type propertyCase struct {
	naive   naiveSchedule
	spelled string
	at      time.Time
}

func (c propertyCase) String() string {
	return fmt.Sprintf("%q at %s", c.spelled, c.at.Format(time.RFC3339Nano))
}

func TestProperties(t *testing.T) {
	seed := propertySeed(t)
	var zones []*time.Location
	for _, name := range propertyZones {
		loc, err := time.LoadLocation(name)
		require.NoError(t, err)
		zones = append(zones, loc)
	}
	changes := clockChanges(zones)
	for shard := range propertyShards {
		t.Run(fmt.Sprint("shard ", shard), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, uint64(shard)))
			for range propertyCases / propertyShards {
				naive, spelled := genSchedule(r, zones)
				c := propertyCase{naive, spelled, genInstant(r, zones, changes)}
				opening, closing := checkInvariants(t, c)
				checkAgainstOracle(t, c, opening, closing)
			}
			t.Logf("%d cases, each checked against the oracle", propertyCases/propertyShards)
		})
	}
}

// checkInvariants checks what needs no walk, returning NextOpening(at) and
// NextClosing of that.
func checkInvariants(t *testing.T, c propertyCase) (opening, closing time.Time) {
	s, err := Parse(c.spelled)
	require.NoError(t, err, c)
	again, err := Parse(s.String())
	require.NoError(t, err, c)
	require.Equal(t, s, again, "%v: String round trip", c)
	require.Equal(t, c.naive.contains(c.at), s.Contains(c.at), "%v: Contains", c)
	if !c.naive.contains(c.at) {
		require.True(t, s.NextClosing(c.at).Equal(c.at), "%v: NextClosing outside a window", c)
	}

	opening = s.NextOpening(c.at)
	require.False(t, opening.IsZero(), "%v: never opens", c)
	require.False(t, opening.Before(c.at), "%v: opens at %s, before", c, opening)
	require.Same(t, c.at.Location(), opening.Location(), "%v: NextOpening's location", c)
	require.True(t, c.naive.contains(opening), "%v: opens at %s, outside", c, opening)

	closing = s.NextClosing(opening)
	if closing.IsZero() {
		return opening, closing
	}
	require.True(t, closing.After(opening), "%v: closes at %s, not after opening at %s", c, closing, opening)
	require.Same(t, c.at.Location(), closing.Location(), "%v: NextClosing's location", c)
	require.False(t, c.naive.contains(closing), "%v: closes at %s, inside", c, closing)
	return opening, closing
}

// checkAgainstOracle checks that no instant before opening is inside and
// none before closing outside, by walking minute by minute.
func checkAgainstOracle(t *testing.T, c propertyCase, opening, closing time.Time) {
	want, found := c.naive.first(c.at, true)
	require.True(t, found, "%v: the oracle finds no opening", c)
	require.True(t, want.Equal(opening), "%v: opens at %s, the oracle at %s", c, opening, want)
	want, found = c.naive.first(opening, false)
	if closing.IsZero() || closing.Sub(opening) > oracleDays*24*time.Hour {
		require.False(t, found, "%v: never closes, the oracle at %s", c, want)
		return
	}
	require.True(t, want.Equal(closing), "%v: closes at %s, the oracle at %s", c, closing, want)
}
