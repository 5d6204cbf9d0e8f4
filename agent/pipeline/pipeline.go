// Package pipeline is the one way a commit of the config repo becomes what
// a cluster applies: the assignment's encrypted config items decrypted,
// the manifests rendered, the cluster stack and every node pool's stack
// rendered. The agent's reconcile, its plans, `caravan render` and
// `caravan rehearse` all call Render, so what a user renders or rehearses
// is what an agent applies.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Step names the step of the pipeline that failed, as the problem types
// of a cluster's status do.
type Step string

// The steps that can fail.
const (
	StepSecrets Step = "secrets"
	StepRender  Step = "render"
)

// Error is a failed step. A render error wraps a *render.Error, which names
// the file and line.
type Error struct {
	Step Step
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// StepOf is the step err failed in, "" when err did not come from Render.
func StepOf(err error) Step {
	var e *Error
	if errors.As(err, &e) {
		return e.Step
	}
	return ""
}

// Options say where the pipeline runs.
type Options struct {
	// KMS decrypts aws:kms: config items; nil where the agent has no AWS
	// access, which is fine until a value is encrypted.
	KMS cloud.Decrypter
	// KeepCiphertext leaves aws:kms: values as their ciphertext: a render
	// outside the cluster has no access to its key, and shows no secret.
	KeepCiphertext bool
	// Renderer, when set, shares kustomize builds between the clusters of
	// one commit; it must have been made for the same files.
	Renderer *render.Renderer
}

// Rendered is a commit rendered for one cluster.
type Rendered struct {
	// Assignment is the assignment the commit was rendered for, its config
	// items decrypted unless KeepCiphertext was set. It lives in memory
	// only.
	Assignment api.Assignment
	Manifests  *render.Result
	// Cluster is the cluster stack, nil when the repo has no templates.
	Cluster *render.Stack
	// NodePools are the pools' stacks, rendered with placeholders for the
	// cluster stack's outputs (placeholder-<output name>), which only the
	// applied cluster stack has: a pool template that would fail is found
	// before any stack changes. An agent renders each again with the real
	// outputs when it applies it.
	NodePools []*render.Stack
}

// Render decrypts, renders the manifests and renders the stacks of the
// commit files for the assignment. Any error means nothing of the commit
// may be applied; it is an *Error naming its step.
func Render(ctx context.Context, files fs.FS, a api.Assignment, o Options) (*Rendered, error) {
	plain := a
	if !o.KeepCiphertext {
		var err error
		if plain, err = cloud.DecryptAssignment(ctx, o.KMS, a); err != nil {
			return nil, &Error{Step: StepSecrets, Err: err}
		}
	}
	var manifests *render.Result
	var err error
	if o.Renderer != nil {
		manifests, err = o.Renderer.Render(plain)
	} else {
		manifests, err = render.Render(files, plain)
	}
	if err != nil {
		return nil, &Error{Step: StepRender, Err: err}
	}
	out := &Rendered{Assignment: plain, Manifests: manifests}
	if out.Cluster, out.NodePools, err = render.Stacks(files, plain, manifests.ConfigItems); err != nil {
		return nil, &Error{Step: StepRender, Err: err}
	}
	return out, nil
}
