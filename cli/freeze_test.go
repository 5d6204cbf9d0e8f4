package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

func TestFreezeUsageErrors(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"freeze", "create", "--reason", "r", "--until", "48h"}, "say what to freeze: --channel C, --environment E"},
		{[]string{"freeze", "create", "--reason", "r", "--until", "48h", "--all", "--channel", "stable"}, "--all freezes the whole fleet and goes alone"},
		{[]string{"freeze", "create", "--reason", "r", "--until", "48h", "--all", "--environment", "production"}, "--all freezes the whole fleet and goes alone"},
		{[]string{"freeze", "create", "--reason", "r", "--until", "next week", "--all"}, `--until must be an RFC 3339 time such as 2026-12-01T00:00:00Z or a duration from now such as 48h, got "next week"`},
		{[]string{"freeze", "create", "--reason", "r", "--until", "2030-01-01", "--all"}, "--until must be an RFC 3339 time"},
		{[]string{"freeze", "create", "--reason", "r", "--until", "-2h", "--all"}, "--until must be a time to come: a positive duration such as 48h, got -2h"},
		{[]string{"freeze", "create", "--reason", "r", "--until", "2h", "--from", "soon", "--all"}, "--from must be an RFC 3339 time"},
		{[]string{"freeze", "create", "--reason", "r", "--until", "2h", "--from", "3h", "--all"}, "--until ("},
		{[]string{"freeze", "create", "--reason", "r", "--until", "2001-01-01T00:00:00Z", "--all"}, "must be later than the start of the freeze"},
		{[]string{"freeze", "create", "--reason", " ", "--until", "2h", "--all"}, "--reason must say why changes must wait"},
		{[]string{"freeze", "create", "--until", "2h", "--all"}, `required flag(s) "reason" not set`},
		{[]string{"freeze", "create", "--reason", "r", "--all"}, `required flag(s) "until" not set`},
		{[]string{"freeze", "create", "--reason", "r", "--until", "2h", "--all", "-o", "wide"}, "must be one of text, json, yaml"},
		{[]string{"freeze", "list", "--active=maybe"}, `invalid argument "maybe" for "--active" flag`},
		{[]string{"freeze", "list", "-o", "xml"}, "must be one of table, wide, json, yaml"},
		{[]string{"freeze", "delete"}, "accepts 1 arg(s), received 0"},
		{[]string{"freeze", "thaw"}, `unknown command "thaw" for "caravan freeze"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, "", append(tc.args, "--server", "http://127.0.0.1:1", "--token", "t")...)
			assert.Equal(t, ExitUsage, code, stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
			assert.Contains(t, stderr, "--help' for usage.")
		})
	}
}

func TestFreezeHelpSaysWhatTTakes(t *testing.T) {
	isolate(t)
	code, stdout, _ := run(t, "", "freeze", "create", "--help")
	require.Equal(t, ExitOK, code)
	assert.Contains(t, stdout, "RFC 3339 time")
	assert.Contains(t, stdout, "a duration from now such as 48h")
	assert.Contains(t, stdout, "--override-gate --reason")
}

var freezeCreated = regexp.MustCompile(`^freeze ([0-9a-f]{16}) of `)

// createFreeze runs freeze create and returns the new freeze's id.
func (e *e2e) createFreeze(args ...string) string {
	e.t.Helper()
	out := e.run(append([]string{"freeze", "create"}, args...)...)
	m := freezeCreated.FindStringSubmatch(out)
	require.NotNil(e.t, m, out)
	assert.Contains(e.t, out, "Lift it early with: caravan freeze delete "+m[1]+"\n")
	return m[1]
}

func TestE2EFreezeCreateListDelete(t *testing.T) {
	e := startE2E(t)
	e.seed()
	start := time.Now().UTC()

	channel := e.createFreeze("--reason", "incident 4711", "--channel", "dev", "--until", "48h")
	out := e.run("freeze", "list")
	assert.Regexp(t, `^ID\s+STATE\s+SCOPE\s+SINCE\s+UNTIL\s+BY\s+REASON\n`+channel+`\s+ACTIVE\s+channel dev\s+20\d\d-\S+Z\s+20\d\d-\S+Z\s+admin-\S+\s+incident 4711\n$`, out)

	later := e.createFreeze("--reason", "Cyber Week", "--environment", "test", "--channel", "dev",
		"--from", start.Add(24*time.Hour).Format(time.RFC3339), "--until", start.Add(72*time.Hour).Format(time.RFC3339))
	fleet := e.createFreeze("--reason", "registry migration", "--all", "--until", "1h")

	var freezes []api.Freeze
	require.NoError(t, json.Unmarshal([]byte(e.run("freeze", "list", "-o", "json")), &freezes))
	require.Len(t, freezes, 3)
	assert.Equal(t, later, freezes[0].ID, "the latest start first")
	assert.Equal(t, "Cyber Week", freezes[0].Reason)
	assert.Equal(t, "dev", freezes[0].Channel)
	assert.Equal(t, "test", freezes[0].Environment)
	assert.Equal(t, start.Add(24*time.Hour).Truncate(time.Second), freezes[0].Since)
	assert.True(t, strings.HasPrefix(freezes[0].By, "admin-"), "the token's name: %s", freezes[0].By)
	assert.True(t, freezes[2].Since.Before(freezes[1].Since) || freezes[2].Since.Equal(freezes[1].Since))
	byID := map[string]api.Freeze{}
	for _, f := range freezes {
		byID[f.ID] = f
	}
	assert.True(t, byID[fleet].All)
	assert.WithinDuration(t, start.Add(time.Hour), byID[fleet].Until, 5*time.Second, "--until 1h is an hour from now")
	assert.WithinDuration(t, start.Add(48*time.Hour), byID[channel].Until, 5*time.Second)

	table := e.run("freeze", "list")
	assert.Regexp(t, `(?m)^`+later+`\s+SCHEDULED\s+channel dev, environment test\s+`, table)
	assert.Regexp(t, `(?m)^`+fleet+`\s+ACTIVE\s+the whole fleet\s+`, table)
	active := e.run("freeze", "list", "--active")
	assert.Contains(t, active, channel)
	assert.Contains(t, active, fleet)
	assert.NotContains(t, active, later, "--active leaves out those to come")
	wide := strings.Split(e.run("freeze", "list", "-o", "wide"), "\n")
	assert.Regexp(t, `^ID\s+STATE\s+SCOPE\s+SINCE\s+UNTIL\s+BY\s+REASON\s+CREATED$`, wide[0])

	long := strings.Repeat("a long reason ", 10)
	id := e.createFreeze("--reason", long, "--environment", "production", "--until", "2h")
	assert.Contains(t, e.run("freeze", "list"), strings.TrimSpace(long)[:59]+"…", "the table cuts a long reason")
	assert.Contains(t, e.run("freeze", "list", "-o", "wide"), strings.TrimSpace(long), "-o wide keeps it whole")
	assert.Contains(t, e.run("freeze", "list", "-o", "yaml"), "\n  reason: Cyber Week\n")

	assert.Regexp(t, `^freeze `+channel+` of channel dev deleted \(active, until 20\S+ \S+ UTC, by admin-\S+: incident 4711\)\n$`, e.run("freeze", "delete", channel))
	assert.NotContains(t, e.run("freeze", "list"), channel)
	e.run("freeze", "delete", id)

	code, _, stderr := e.try("", "freeze", "delete", channel)
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "(HTTP 404)")

	code, _, stderr = e.try("", "freeze", "create", "--reason", "r", "--channel", "nope", "--until", "1h")
	assert.Equal(t, ExitError, code, "the registry knows no channel nope")
	assert.Contains(t, stderr, "channel")

	var audit []api.AuditEntry
	require.NoError(t, json.Unmarshal([]byte(e.run("audit", "--resource-type", "freeze", "-o", "json")), &audit))
	actions := map[string]int{}
	for _, a := range audit {
		actions[a.Action]++
	}
	assert.Equal(t, map[string]int{"create": 4, "delete": 2}, actions, "the audit log keeps every freeze made and lifted")

	code, stdout, _ := e.try("", "freeze", "create", "--reason", "r", "--all", "--until", "1h", "-o", "json")
	require.Equal(t, ExitOK, code)
	var created api.Freeze
	require.NoError(t, json.Unmarshal([]byte(stdout), &created))
	assert.True(t, created.All)
	assert.Len(t, created.ID, 16)
}

// closedWindow is a one-hour weekly window that opens a few hours from
// now, so that it is closed now whatever the day and hour, and when it opens.
func closedWindow(now time.Time) (string, time.Time) {
	opens := now.UTC().Add(3 * time.Hour).Truncate(time.Hour)
	end := fmt.Sprintf("%02d:00", opens.Hour()+1)
	return fmt.Sprintf("%s %02d:00-%s UTC", opens.Weekday().String()[:3], opens.Hour(), end), opens
}

func TestE2EClustersShowWindowsAndFreezes(t *testing.T) {
	e := startE2E(t)
	e.seed()
	window, opens := closedWindow(time.Now())

	assert.Regexp(t, `(?m)^`+e2eCluster+`\s.*\s+open$`, e.run("clusters", "list", "-o", "wide"), "no window: always open")
	lines := strings.Split(e.run("clusters", "list", "-o", "wide"), "\n")
	assert.Regexp(t, `\s+NODEPOOLS\s+NEXT WINDOW$`, lines[0])

	e.run("clusters", "config", "set", e2eCluster, "update_windows", window)
	e.run("clusters", "config", "set", e2eCluster, "node_update_windows", "daily 01:00-05:00 Europe/Berlin")
	wide := e.run("clusters", "list", "-o", "wide")
	assert.Regexp(t, `(?m)^`+e2eCluster+`\s.*\s+`+regexp.QuoteMeta(clock(opens))+` \(in [23]h\)$`, wide)

	status := e.run("clusters", "status", e2eCluster)
	assert.Contains(t, status, "the agent has not reported yet\n\nSchedule:\n")
	assert.Contains(t, status, "  Update windows:       "+window+"\n")
	assert.Contains(t, status, "  Node update windows:  daily 01:00-05:00 Europe/Berlin\n")
	assert.Regexp(t, `  Next version starts:  `+regexp.QuoteMeta(clock(opens))+` \(in [23]h\), when the update window opens\n`, status)

	freeze := e.createFreeze("--reason", "Cyber Week", "--environment", "test", "--until", "24h")
	later := e.createFreeze("--reason", "release party", "--all", "--from", "30h", "--until", "31h")
	var c api.Cluster
	require.NoError(t, json.Unmarshal([]byte(e.run("clusters", "get", e2eCluster, "-o", "json")), &c))
	require.NotNil(t, c.Schedule)
	require.Len(t, c.Schedule.Freezes, 2)
	frozenTill := clock(c.Schedule.Freezes[0].Until)
	assert.Regexp(t, `(?m)^`+e2eCluster+`\s.*\s+frozen until `+regexp.QuoteMeta(frozenTill)+`$`, e.run("clusters", "list", "-o", "wide"))

	agent, err := registry.New(e.server.URL, e.server.Token(t, api.RoleAgent, e2eCluster))
	require.NoError(t, err)
	next := opens.Add(7 * 24 * time.Hour)
	paused := opens.Add(-time.Hour)
	version := "0123456789abcdef0123456789abcdef01234567#fedcba9876543210"
	require.NoError(t, agent.PutClusterStatus(context.Background(), e2eCluster, &api.ClusterStatus{
		CurrentVersion: version, NextVersion: "89abcdef89abcdef89abcdef89abcdef89abcdef#0011223344556677",
		Phase: api.PhaseWaitingForWindow, NextWindow: &next, AgentVersion: "v0.1.0", Heartbeat: time.Now().UTC(),
		NodePools: []api.NodePoolProgress{{Name: "workers", NodesTotal: 3, Outdated: 2, NextWindow: &paused}, {Name: "system", NodesTotal: 2}},
	}))
	status = e.run("clusters", "status", e2eCluster)
	assert.Contains(t, status, "Phase:            waiting-for-window\n")
	assert.Regexp(t, `Window opens:     `+regexp.QuoteMeta(clock(next))+` \(in [67]d\)\n`, status)
	assert.Contains(t, status, "Current version:  "+version+"\n", "the fields stay aligned")
	require.NotNil(t, c.Schedule.NextOpening)
	assert.Equal(t, opens.Add(7*24*time.Hour), c.Schedule.NextOpening.UTC(), "the window's opening after the freeze")
	assert.Regexp(t, `  Next version starts:  `+regexp.QuoteMeta(clock(*c.Schedule.NextOpening))+` \(in [67]d\), when the update window opens after the freeze \(frozen until `+regexp.QuoteMeta(frozenTill)+`\)\n`, status)
	assert.Regexp(t, `\nFreezes:\nID\s+STATE\s+SCOPE\s+SINCE\s+UNTIL\s+BY\s+REASON\n`+freeze+`\s+ACTIVE\s+environment test\s+\S+\s+\S+\s+admin-\S+\s+Cyber Week\n`+later+`\s+SCHEDULED\s+the whole fleet\s+\S+\s+\S+\s+admin-\S+\s+release party\n`, status)
	assert.Regexp(t, `\nNode pools:\nNAME\s+NODES\s+OUTDATED\s+DRAINING\s+ROLL PAUSED UNTIL\nworkers\s+3\s+2\s+0\s+`+regexp.QuoteMeta(clock(paused))+` \(in [12]h\)\nsystem\s+2\s+0\s+0\s+-\n`, status)
}

func TestNextWindow(t *testing.T) {
	opening := now.Add(3*time.Hour + 30*time.Minute)
	freeze := func(from, until time.Duration) api.Freeze {
		return api.Freeze{ID: "f", Reason: "r", By: "ops", All: true, Since: now.Add(from), Until: now.Add(until)}
	}
	for _, tc := range []struct {
		name     string
		schedule *api.ClusterSchedule
		want     string
	}{
		{"a registry without schedules", nil, ""},
		{"open", &api.ClusterSchedule{Open: true}, "open"},
		{"closed", &api.ClusterSchedule{NextOpening: &opening}, "2030-01-06 15:30 UTC (in 3h)"},
		{"a window that does not parse", &api.ClusterSchedule{Error: `update_windows: position 5: unknown day "Someday"`}, "invalid window"},
		{"invalid even when frozen", &api.ClusterSchedule{Error: "update_windows: x", Freezes: []api.Freeze{freeze(-time.Hour, time.Hour)}}, "invalid window"},
		{"frozen", &api.ClusterSchedule{NextOpening: &opening, Freezes: []api.Freeze{freeze(-time.Hour, 90*time.Second)}}, "frozen until 2030-01-06 12:01:30 UTC"},
		{"frozen by freezes one after another", &api.ClusterSchedule{NextOpening: &opening, Freezes: []api.Freeze{
			freeze(time.Hour, 3*time.Hour), freeze(-time.Hour, time.Hour), freeze(5*time.Hour, 6*time.Hour),
		}}, "frozen until 2030-01-06 15:00 UTC"},
		{"a freeze to come", &api.ClusterSchedule{NextOpening: &opening, Freezes: []api.Freeze{freeze(time.Hour, 2*time.Hour)}}, "2030-01-06 15:30 UTC (in 3h)"},
		{"no opening ahead", &api.ClusterSchedule{}, "no opening ahead"},
	} {
		assert.Equal(t, tc.want, nextWindow(tc.schedule, now), tc.name)
	}
}

func TestStatusShowsWindowsFreezesAndPausedPools(t *testing.T) {
	c := fixtureClusters()[0]
	next := now.Add(20 * time.Hour)
	paused := now.Add(10 * time.Hour)
	c.Status.Phase = api.PhaseWaitingForWindow
	c.Status.NextWindow = &next
	c.Status.NodePools = []api.NodePoolProgress{{Name: "workers", NodesTotal: 4, Outdated: 4, NextWindow: &paused}}
	opening := now.Add(48 * time.Hour)
	c.Schedule = &api.ClusterSchedule{
		UpdateWindows: "Mon-Fri 08:00-17:00 Europe/Berlin", NextOpening: &opening,
		Freezes: []api.Freeze{
			{ID: "0001", Reason: "Cyber Week", By: "alice", Environment: "production", Since: now.Add(-time.Hour), Until: now.Add(24 * time.Hour)},
			{ID: "0002", Reason: "release party", By: "bob", Channel: "stable", Since: now.Add(30 * time.Hour), Until: now.Add(31 * time.Hour)},
		},
	}
	var out bytes.Buffer
	require.NoError(t, writeStatus(&out, &c, now))
	assert.Equal(t, `Cluster:          aws:123456789012:eu-central-1:kube-1 (kube-1)
Status:           waiting-for-window
Phase:            waiting-for-window
Window opens:     2030-01-07 08:00 UTC (in 20h)
Current version:  0123456789abcdef0123456789abcdef01234567#fedcba9876543210
Next version:     0123456789abcdef0123456789abcdef01234567#fedcba9876543210
Last version:     0123456789abcdef0123456789abcdef01234567#fedcba9876543210
Agent:            -
Heartbeat:        2030-01-06T11:59:18Z (42s ago)

Schedule:
  Update windows:       Mon-Fri 08:00-17:00 Europe/Berlin
  Node update windows:  always (none set)
  Next version starts:  2030-01-08 12:00 UTC (in 2d), when the update window opens after the freeze (frozen until 2030-01-07 12:00 UTC)

Freezes:
ID     STATE       SCOPE                    SINCE                  UNTIL                  BY      REASON
0001   ACTIVE      environment production   2030-01-06T11:00:00Z   2030-01-07T12:00:00Z   alice   Cyber Week
0002   SCHEDULED   channel stable           2030-01-07T18:00:00Z   2030-01-07T19:00:00Z   bob     release party

Node pools:
NAME      NODES   OUTDATED   DRAINING   ROLL PAUSED UNTIL
workers   4       4          0          2030-01-06 22:00 UTC (in 10h)

Drift:
  Mode:       enabled (drift is corrected)
  Detected:   3
  Corrected:  3
`, out.String())

	c.Schedule = &api.ClusterSchedule{Error: `update_windows: position 1: unknown day "Someday"`}
	c.Status = nil
	out.Reset()
	require.NoError(t, writeStatus(&out, &c, now))
	assert.Equal(t, `Cluster aws:123456789012:eu-central-1:kube-1 (kube-1): the agent has not reported yet

Schedule:
  Update windows:       always (none set)
  Node update windows:  always (none set)
  Next version starts:  never while its window does not parse (update_windows: position 1: unknown day "Someday"): fix the config item
`, out.String())
}
