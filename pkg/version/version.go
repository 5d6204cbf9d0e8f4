// Package version is the version of Caravan's binaries, stamped at build time
// so that caravan, caravan-central and caravan-agent built together report
// the same one.
package version

import "runtime/debug"

// Unstamped is the value of Version in a build that did not set it.
const Unstamped = "dev"

// Template is the cobra version template of every binary: the version
// alone, the same line from all three, easy to compare in a script.
const Template = "{{.Version}}\n"

// Version is set by the build:
//
//	go build -ldflags "-X github.com/caravan-gitops/caravan/pkg/version.Version=v1.2.3"
var Version = Unstamped

// String is the version a binary reports: Version when the build stamped one
// (an empty stamp, from an unset build variable, counts as none); otherwise "dev" with the commit the go command recorded, so that two
// unstamped builds from different commits still tell themselves apart.
func String() string {
	if Version != Unstamped && Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Unstamped
	}
	return fromBuildSettings(info.Settings)
}

// fromBuildSettings reads the vcs.revision and vcs.modified settings that
// `go build` records in a git checkout: "dev+0123456789ab", with ".dirty"
// appended when the working tree had uncommitted changes.
func fromBuildSettings(settings []debug.BuildSetting) string {
	var revision string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision == "" {
		return Unstamped
	}
	v := Unstamped + "+" + shortRevision(revision)
	if modified {
		v += ".dirty"
	}
	return v
}

// shortRevisionLength is enough to be unique in any repository of this size,
// as git's own abbreviations are.
const shortRevisionLength = 12

func shortRevision(revision string) string {
	if len(revision) > shortRevisionLength {
		return revision[:shortRevisionLength]
	}
	return revision
}
