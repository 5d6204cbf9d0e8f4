package drift

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Settings are the config items of drift correction.
type Settings struct {
	// Mode is api.DriftEnabled, api.DriftReport or api.DriftDisabled.
	Mode string
	// FightCorrections corrections of one object within FightPeriod make a
	// fight; the agent then leaves the object alone for FightExpiry, or
	// until a version changes it.
	FightCorrections int
	FightPeriod      time.Duration
	FightExpiry      time.Duration
}

// Config items of drift correction, with their defaults in
// manifests/config-defaults.yaml.
const (
	ItemMode             = "drift_correction"
	ItemFightCorrections = "drift_fight_corrections"
	ItemFightPeriod      = "drift_fight_period"
	ItemFightExpiry      = "drift_fight_expiry"
)

// DefaultSettings apply where a config item is unset.
var DefaultSettings = Settings{Mode: api.DriftEnabled, FightCorrections: 3, FightPeriod: 10 * time.Minute, FightExpiry: time.Hour}

// SettingsOf reads the settings from config items. An invalid item is an
// error, and the default stands for it.
func SettingsOf(items map[string]string) (Settings, error) {
	s := DefaultSettings
	var errs []error
	switch m := items[ItemMode]; m {
	case "":
	case api.DriftEnabled, api.DriftReport, api.DriftDisabled:
		s.Mode = m
	default:
		errs = append(errs, fmt.Errorf("%s %q is none of enabled, report, disabled", ItemMode, m))
	}
	if v := items[ItemFightCorrections]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s %q is not a positive number", ItemFightCorrections, v))
		} else {
			s.FightCorrections = n
		}
	}
	for item, d := range map[string]*time.Duration{ItemFightPeriod: &s.FightPeriod, ItemFightExpiry: &s.FightExpiry} {
		v := items[item]
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed <= 0 {
			errs = append(errs, fmt.Errorf("%s %q is not a positive duration", item, v))
			continue
		}
		*d = parsed
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("drift correction settings: %v", errs)
	}
	return s, nil
}
