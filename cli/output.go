package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Output formats of the -o flag.
const (
	formatTable = "table"
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"
	formatText  = "text"
)

// outputFlag is a -o value restricted to a command's formats, so that a
// wrong format is a usage error found while parsing flags.
type outputFlag struct {
	value   string
	allowed []string
}

func (o *outputFlag) String() string { return o.value }

func (o *outputFlag) Type() string { return "format" }

func (o *outputFlag) Set(v string) error {
	for _, a := range o.allowed {
		if v == a {
			o.value = v
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(o.allowed, ", "))
}

// addOutputFlag adds -o to cmd; the first format is the default.
func addOutputFlag(cmd *cobra.Command, formats ...string) *outputFlag {
	o := &outputFlag{value: formats[0], allowed: formats}
	cmd.Flags().VarP(o, "output", "o", "output format: "+strings.Join(formats, ", "))
	return o
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

func writeYAML(w io.Writer, v any) error {
	out, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding YAML: %w", err)
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("writing YAML: %w", err)
	}
	return nil
}

// writeObject prints v as JSON or YAML, the formats every command shares.
func writeObject(w io.Writer, format string, v any) error {
	if format == formatJSON {
		return writeJSON(w, v)
	}
	return writeYAML(w, v)
}

// writeTable aligns columns with spaces. Cells are single-line so that a
// row is always one line that awk and grep can work with.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	return nil
}

// writeList prints items as a table, one row each, or as a JSON array or a
// YAML list of the items as the registry returned them.
func writeList[T any](w io.Writer, format string, items []T, columns []string, row func(T) []string) error {
	if format != formatTable {
		return writeObject(w, format, items)
	}
	rows := make([][]string, len(items))
	for i, item := range items {
		rows[i] = row(item)
	}
	return writeTable(w, columns, rows)
}

// writeFields prints one "name: value" line per field, values aligned.
func writeFields(w io.Writer, fields [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], cell(f[1]))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing fields: %w", err)
	}
	return nil
}

// cell makes a value fit one table cell: never empty, never multi-line.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

// readInput reads a file, or stdin for "-".
func readInput(stdin io.Reader, path string) ([]byte, error) {
	if path == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// decodeObject reads a JSON or YAML document into a T. Unknown fields are
// refused: a misspelt field would otherwise be silently dropped.
func decodeObject[T any](data []byte, source string) (*T, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s is empty", source)
	}
	doc, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s is neither JSON nor YAML: %w", source, err)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return &v, nil
}

// readObject reads a T from a JSON or YAML file, or stdin for "-".
func readObject[T any](stdin io.Reader, path string) (*T, error) {
	data, err := readInput(stdin, path)
	if err != nil {
		return nil, err
	}
	return decodeObject[T](data, sourceName(path))
}

func sourceName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}
