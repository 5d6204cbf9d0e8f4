package rehearsal

import (
	"encoding/xml"
	"fmt"
	"io"

	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// junitSuite is the JUnit XML that CI systems show a rehearsal as: one
// test case per step.
type junitSuite struct {
	XMLName  xml.Name    `xml:"testsuite"`
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the result as a JUnit XML test suite.
func (r *Result) WriteJUnit(w io.Writer) error {
	suite := junitSuite{Name: fmt.Sprintf("caravan rehearse %s %s..%s", r.Cluster, configrepo.Short(r.From), configrepo.Short(r.To)), Tests: len(r.Steps)}
	var total float64
	for _, s := range r.Steps {
		c := junitCase{Name: s.Name, Classname: "caravan.rehearse." + s.Kind, Time: seconds(s.Duration.Seconds())}
		if s.Failure != "" {
			suite.Failures++
			c.Failure = &junitFailure{Message: s.Failure, Text: s.Failure}
		}
		total += s.Duration.Seconds()
		suite.Cases = append(suite.Cases, c)
	}
	suite.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(suite); err != nil {
		return fmt.Errorf("writing JUnit XML: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func seconds(s float64) string { return fmt.Sprintf("%.3f", s) }
