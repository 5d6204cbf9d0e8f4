package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// encryptedPrefix marks a config item value that is KMS ciphertext (made by
// `caravan secrets encrypt`, decrypted only by the cluster's agent). The
// registry stores nothing else secret in config items; the UI shows such a
// value only as a fingerprint, so that a change is visible but the
// ciphertext never reaches a browser.
const encryptedPrefix = "aws:kms:"

var templateFuncs = template.FuncMap{
	"version":    shortVersion,
	"timestamp":  timestamp,
	"phaseClass": phaseClass,
	"join":       strings.Join,
	"pathEscape": url.PathEscape,
	"windows":    windowsText,
}

// configItem is one config item as the UI shows it.
type configItem struct {
	Key   string
	Value string
	// Encrypted marks a value shown as its fingerprint only.
	Encrypted bool
}

// configItems sorts config items by key and masks encrypted values.
func configItems(items map[string]string) []configItem {
	out := make([]configItem, 0, len(items))
	for k, v := range items {
		out = append(out, maskedItem(k, v))
	}
	slices.SortFunc(out, func(a, b configItem) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func maskedItem(key, value string) configItem {
	if !strings.HasPrefix(value, encryptedPrefix) {
		return configItem{Key: key, Value: value}
	}
	sum := sha256.Sum256([]byte(value))
	return configItem{Key: key, Value: encryptedPrefix + "… (encrypted, fingerprint " + hex.EncodeToString(sum[:4]) + ")", Encrypted: true}
}

// shortVersion shortens "<commit sha>#<assignment hash>" to 8 characters of each.
func shortVersion(v string) string {
	commit, hash, found := strings.Cut(v, "#")
	short := func(s string) string {
		if len(s) > 8 {
			return s[:8]
		}
		return s
	}
	if !found {
		return short(commit)
	}
	return short(commit) + "#" + short(hash)
}

// timestamp shows a time in UTC to the second; the zero time shows as a dash.
func timestamp(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return "–"
		}
		return v.UTC().Format("2006-01-02 15:04:05Z")
	case *time.Time:
		if v == nil {
			return "–"
		}
		return timestamp(*v)
	}
	return "–"
}

// phaseClass is the CSS class that colours a phase: unknown phases (and no
// report yet) are grey.
func phaseClass(phase string) string {
	switch phase {
	case api.PhaseIdle, api.PhaseDecommissioned:
		return "phase-ok"
	case api.PhaseRendering, api.PhaseUpdatingInfrastructure, api.PhaseApplying, api.PhaseRollingNodes, api.PhaseDecommissioning:
		return "phase-busy"
	case api.PhaseBlocked:
		return "phase-blocked"
	case api.PhaseFailed:
		return "phase-failed"
	case api.PhaseWaitingForWindow:
		return "phase-waiting"
	}
	return "phase-unknown"
}

// bar is a horizontal bar of coloured segments, drawn as SVG: the page's
// Content-Security-Policy forbids the inline styles a CSS width would need.
type bar struct {
	Label    string
	Segments []barSegment
}

type barSegment struct {
	Class    string
	X, Width string
	Label    string
}

// barPart is one segment before layout: its CSS class, what it counts and how many.
type barPart struct {
	class, label string
	count        int
}

func newBar(label string, parts ...barPart) bar {
	total := 0
	for _, p := range parts {
		total += p.count
	}
	b := bar{Label: label}
	if total == 0 {
		return b
	}
	x := 0.0
	for _, p := range parts {
		if p.count == 0 {
			continue
		}
		w := float64(p.count) * 100 / float64(total)
		b.Segments = append(b.Segments, barSegment{
			Class: p.class, X: strconv.FormatFloat(x, 'f', 2, 64), Width: strconv.FormatFloat(w, 'f', 2, 64),
			Label: strconv.Itoa(p.count) + " " + p.label,
		})
		x += w
	}
	return b
}
