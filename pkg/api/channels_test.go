package api

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChannelPromotionSoak(t *testing.T) {
	for soak, want := range map[string]time.Duration{"0": 0, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute, "1.5h": 90 * time.Minute, "8760h": 8760 * time.Hour} {
		c := Channel{Name: "beta", Branch: "beta", PromotionSoak: soak}
		require.NoError(t, c.Validate(), soak)
		assert.Equal(t, want, c.Soak(), soak)
	}
	for _, soak := range []string{"1 day", "-1h", "+1h", ".5h", "1µs", "8761h", "h", "10", "1h ", "99999999999h"} {
		c := Channel{Name: "beta", Branch: "beta", PromotionSoak: soak}
		err := c.Validate()
		require.Error(t, err, soak)
		var verr *ValidationError
		require.ErrorAs(t, err, &verr)
		assert.Equal(t, "promotion_soak", verr.Errors[0].Field, soak)
	}
}

func TestDefaultPromotionSoaks(t *testing.T) {
	for name, want := range map[string]time.Duration{"dev": 0, "alpha": time.Hour, "beta": 24 * time.Hour, "stable": 24 * time.Hour, "canary": 24 * time.Hour} {
		c := Channel{Name: name}
		assert.Equal(t, want, c.Soak(), name)
	}
}

func TestChannelGate(t *testing.T) {
	for name, want := range map[string]string{"stable": GateEnforced, "beta": GateAdvisory, "dev": GateAdvisory, "production": GateAdvisory} {
		c := Channel{Name: name, Branch: name}
		assert.Equal(t, want, c.GateSetting(), name)
	}
	for _, gate := range []string{GateEnforced, GateAdvisory} {
		c := Channel{Name: "stable", Branch: "stable", Gate: gate}
		require.NoError(t, c.Validate(), gate)
		assert.Equal(t, gate, c.GateSetting())
	}
	for _, gate := range []string{"Enforced", "strict", " advisory"} {
		c := Channel{Name: "beta", Branch: "beta", Gate: gate}
		var verr *ValidationError
		require.ErrorAs(t, c.Validate(), &verr, gate)
		assert.Equal(t, "gate", verr.Errors[0].Field, gate)
		assert.Equal(t, `must be enforced or advisory, got "`+gate+`"`, verr.Errors[0].Detail)
	}
	assert.True(t, (&Promotion{GateMet: true}).PassedGate())
	assert.True(t, (&Promotion{OverrideReason: "incident 4711"}).PassedGate())
	assert.False(t, (&Promotion{GateReasons: []string{"kube-1: silent"}}).PassedGate())
}

func TestPromotionRequestValidate(t *testing.T) {
	sha := strings.Repeat("0", 40)
	require.NoError(t, (&PromotionRequest{From: "dev", Commit: sha}).Validate())
	require.NoError(t, (&PromotionRequest{From: "dev", Commit: sha, PreviousCommit: sha, OverrideReason: "incident 4711"}).Validate())
	for field, req := range map[string]PromotionRequest{
		"from":            {From: "Dev", Commit: sha},
		"commit":          {From: "dev", Commit: sha[:39]},
		"previous_commit": {From: "dev", Commit: sha, PreviousCommit: "HEAD"},
		"override_reason": {From: "dev", Commit: sha, OverrideReason: strings.Repeat("x", 1025)},
	} {
		err := req.Validate()
		var verr *ValidationError
		require.ErrorAs(t, err, &verr, field)
		assert.Equal(t, field, verr.Errors[0].Field)
	}
	assert.True(t, ValidCommit(sha))
	assert.False(t, ValidCommit(strings.ToUpper(strings.Repeat("a", 40))))
}
