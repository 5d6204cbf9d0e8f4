package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// ref names one resource: its key, and for a node pool its cluster.
type ref struct {
	parent string
	key    string
}

// kind describes a resource type so that get, create, update, patch and
// delete are the same commands with the same help for every resource.
type kind[T any] struct {
	noun       string // "cluster"
	command    string // "clusters"
	keyArg     string // "ID"
	keyField   string // "id": the field of a file that holds the key
	keyExample string
	// parentArg is set for resources that live in a cluster.
	parentArg     string
	parentExample string
	fileExample   string
	// sample is a small YAML document of a valid resource, for the help of create.
	sample       string
	patchExample string
	// key points at the key field of a resource.
	key   func(*T) *string
	calls calls[T]
}

// calls are the registry requests behind the commands of a kind.
type calls[T any] struct {
	get    func(context.Context, *registry.Client, ref) (*T, string, error)
	create func(ctx context.Context, cl *registry.Client, parent string, v *T) (*T, string, error)
	update func(context.Context, *registry.Client, ref, *T) (*T, string, error)
	patch  func(context.Context, *registry.Client, ref, json.RawMessage) (*T, string, error)
	delete func(context.Context, *registry.Client, ref) error
}

// keyedCalls makes the calls of a resource named by its key alone out of
// the client's methods for it, given as method expressions. Changes are
// unconditional: the commands send no If-Match.
func keyedCalls[T any](
	get func(*registry.Client, context.Context, string) (*T, string, error),
	create func(*registry.Client, context.Context, *T) (*T, string, error),
	update func(*registry.Client, context.Context, string, *T, string) (*T, string, error),
	patch func(*registry.Client, context.Context, string, any, string) (*T, string, error),
	remove func(*registry.Client, context.Context, string, string) error,
) calls[T] {
	return calls[T]{
		get: func(ctx context.Context, cl *registry.Client, r ref) (*T, string, error) {
			return get(cl, ctx, r.key)
		},
		create: func(ctx context.Context, cl *registry.Client, _ string, v *T) (*T, string, error) {
			return create(cl, ctx, v)
		},
		update: func(ctx context.Context, cl *registry.Client, r ref, v *T) (*T, string, error) {
			return update(cl, ctx, r.key, v, "")
		},
		patch: func(ctx context.Context, cl *registry.Client, r ref, p json.RawMessage) (*T, string, error) {
			return patch(cl, ctx, r.key, p, "")
		},
		delete: func(ctx context.Context, cl *registry.Client, r ref) error {
			return remove(cl, ctx, r.key, "")
		},
	}
}

func (k kind[T]) commands(a *app) []*cobra.Command {
	return []*cobra.Command{k.getCommand(a), k.createCommand(a), k.updateCommand(a), k.patchCommand(a), k.deleteCommand(a)}
}

// args is the usage of the arguments naming one resource.
func (k kind[T]) args() string {
	if k.parentArg != "" {
		return k.parentArg + " " + k.keyArg
	}
	return k.keyArg
}

func (k kind[T]) exampleArgs() string {
	if k.parentArg != "" {
		return k.parentExample + " " + k.keyExample
	}
	return k.keyExample
}

func (k kind[T]) arity() int {
	if k.parentArg != "" {
		return 2
	}
	return 1
}

func (k kind[T]) refOf(args []string) ref {
	if k.parentArg != "" {
		return ref{parent: args[0], key: args[1]}
	}
	return ref{key: args[0]}
}

// display names a resource in messages: cluster "x", node pool "p" of cluster "x".
func (k kind[T]) display(r ref) string {
	if k.parentArg != "" {
		return fmt.Sprintf("%s %q of cluster %q", k.noun, r.key, r.parent)
	}
	return fmt.Sprintf("%s %q", k.noun, r.key)
}

func (k kind[T]) getCommand(a *app) *cobra.Command {
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "get " + k.args(),
		Short: "Show one " + k.noun,
		Long:  fmt.Sprintf("Show one %s with every field, as YAML or JSON.", k.noun),
		Example: fmt.Sprintf("  caravan %s get %s\n  caravan %s get %s -o json",
			k.command, k.exampleArgs(), k.command, k.exampleArgs()),
		Args: cobra.ExactArgs(k.arity()),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			v, _, err := k.calls.get(cmd.Context(), cl, k.refOf(args))
			if err != nil {
				return err
			}
			return writeObject(a.out, output.value, v)
		},
	}
	output = addOutputFlag(cmd, formatYAML, formatJSON)
	return cmd
}

func (k kind[T]) createCommand(a *app) *cobra.Command {
	var file string
	var output *outputFlag
	use, target := "create -f FILE", ""
	if k.parentArg != "" {
		use, target = "create "+k.parentArg+" -f FILE", " "+k.parentExample
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Register a new " + k.noun + " from a file",
		Long: fmt.Sprintf(`Register a new %s described by a JSON or YAML file ("-" reads stdin).
Fields the registry fills itself (created_at, updated_at) and fields with
defaults may be left out; unknown fields are refused.`, k.noun),
		Example: fmt.Sprintf("  caravan %s create%s -f %s\n  caravan %s create%s -f - <<EOF\n%s  EOF",
			k.command, target, k.fileExample, k.command, target, indent(k.sample, "  ")),
		Args: cobra.ExactArgs(k.arity() - 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := readObject[T](a.in, file)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			var parent string
			if k.parentArg != "" {
				parent = args[0]
			}
			created, _, err := k.calls.create(cmd.Context(), cl, parent, v)
			if err != nil {
				return err
			}
			return a.report(output.value, created, k.display(ref{parent: parent, key: *k.key(created)})+" created")
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `JSON or YAML file that describes the `+k.noun+` ("-" for stdin)`)
	_ = cmd.MarkFlagRequired("filename")
	output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

// indent prefixes every line of text.
func indent(text, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		b.WriteString(prefix + line)
	}
	return b.String()
}

func (k kind[T]) updateCommand(a *app) *cobra.Command {
	var file string
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "update " + k.args() + " -f FILE",
		Short: "Replace a " + k.noun + " by the content of a file",
		Long: fmt.Sprintf(`Replace a %s by the JSON or YAML file ("-" reads stdin): fields left out
of the file are reset to their defaults. The file's %q may be left out;
when it is set it must match %s. To change a few fields, use 'caravan %s patch'.`,
			k.noun, k.keyField, k.keyArg, k.command),
		Example: fmt.Sprintf("  caravan %s get %s > %s\n  $EDITOR %s\n  caravan %s update %s -f %s",
			k.command, k.exampleArgs(), k.fileExample, k.fileExample, k.command, k.exampleArgs(), k.fileExample),
		Args: cobra.ExactArgs(k.arity()),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := k.refOf(args)
			v, err := readObject[T](a.in, file)
			if err != nil {
				return err
			}
			switch key := k.key(v); *key {
			case "":
				*key = r.key
			case r.key:
			default:
				return usagef("%s names %s %q, not %q", sourceName(file), k.keyField, *key, r.key)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			updated, _, err := k.calls.update(cmd.Context(), cl, r, v)
			if err != nil {
				return err
			}
			return a.report(output.value, updated, k.display(r)+" updated")
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `JSON or YAML file with the whole `+k.noun+` ("-" for stdin)`)
	_ = cmd.MarkFlagRequired("filename")
	output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

func (k kind[T]) patchCommand(a *app) *cobra.Command {
	var patch string
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "patch " + k.args() + " --patch JSON",
		Short: "Change some fields of a " + k.noun,
		Long: fmt.Sprintf(`Change some fields of a %s with a JSON merge patch (RFC 7396): fields
of the patch replace those of the %s, objects are merged key by key, and
null removes a key.`, k.noun, k.noun),
		Example: fmt.Sprintf(`  caravan %s patch %s --patch '%s'`, k.command, k.exampleArgs(), k.patchExample),
		Args:    cobra.ExactArgs(k.arity()),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := json.RawMessage(patch)
			if trimmed := bytes.TrimSpace(body); !json.Valid(trimmed) || !strings.HasPrefix(string(trimmed), "{") {
				return usagef("--patch must be a JSON object, got %s", patch)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			r := k.refOf(args)
			patched, _, err := k.calls.patch(cmd.Context(), cl, r, body)
			if err != nil {
				return err
			}
			return a.report(output.value, patched, k.display(r)+" patched")
		},
	}
	cmd.Flags().StringVarP(&patch, "patch", "p", "", "JSON merge patch to apply")
	_ = cmd.MarkFlagRequired("patch")
	output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

func (k kind[T]) deleteCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "delete " + k.args(),
		Short:   "Delete a " + k.noun,
		Long:    fmt.Sprintf("Delete a %s from the registry. The deletion is recorded in the audit log.", k.noun),
		Example: fmt.Sprintf("  caravan %s delete %s", k.command, k.exampleArgs()),
		Args:    cobra.ExactArgs(k.arity()),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			r := k.refOf(args)
			if err := k.calls.delete(cmd.Context(), cl, r); err != nil {
				return err
			}
			fmt.Fprintln(a.out, k.display(r)+" deleted")
			return nil
		},
	}
}

// report prints the result of a change: a one-line message, or the
// resource as the registry stored it when -o json or yaml asks for it.
func (a *app) report(format string, v any, msg string) error {
	if format == formatText {
		fmt.Fprintln(a.out, msg)
		return nil
	}
	return writeObject(a.out, format, v)
}

// lister is what a list command needs besides its help text and Args check.
type lister[T any] struct {
	// page fetches one page of the items; the command follows every page,
	// so that a list is never cut short by the registry's page size.
	page func(ctx context.Context, cl *registry.Client, args []string, p registry.Page) (*api.List[T], error)
	// formats are the values -o accepts, the first the default.
	formats []string
	write   func(w io.Writer, format string, items []T) error
}

// tableFormats are the -o values of a list printed by table.
var tableFormats = []string{formatTable, formatJSON, formatYAML}

// table is the write of a lister that prints a table, one row per item.
func table[T any](columns []string, row func(T) []string) func(io.Writer, string, []T) error {
	return func(w io.Writer, format string, items []T) error {
		return writeList(w, format, items, columns, row)
	}
}

// listCommand completes cmd, which holds the help and the Args check, into
// a command that prints every item l fetches. Filter flags are the caller's.
func listCommand[T any](a *app, cmd *cobra.Command, l lister[T]) *cobra.Command {
	output := addOutputFlag(cmd, l.formats...)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cl, err := a.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		items, err := registry.All(func(p registry.Page) (*api.List[T], error) {
			return l.page(ctx, cl, args, p)
		})
		if err != nil {
			return err
		}
		return l.write(a.out, output.value, items)
	}
	return cmd
}
