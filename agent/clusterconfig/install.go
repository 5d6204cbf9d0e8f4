package clusterconfig

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

//go:embed crd.yaml
var crdYAML []byte

// CRD is the ClusterConfig CustomResourceDefinition.
func CRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(crdYAML, crd); err != nil {
		return nil, fmt.Errorf("decoding the ClusterConfig CRD: %w", err)
	}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	return crd, nil
}

// Install applies the CRD, waits until it is served, and creates the
// ClusterConfig object when it is missing.
func Install(ctx context.Context, c client.Client, fieldManager string) error {
	crd, err := CRD()
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(crdYAML, &u.Object); err != nil {
		return fmt.Errorf("decoding the ClusterConfig CRD: %w", err)
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the ClusterConfig CRD: %w", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, got); err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the ClusterConfig CRD to be established: %w", err)
	}
	// An established CRD can still be missing from the API server's
	// discovery for a moment, and the client's mapper then knows no such
	// kind: the create is tried again until discovery has caught up.
	var createErr error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		obj := &ClusterConfig{}
		obj.SetName(Name)
		obj.SetGroupVersionKind(GroupVersion.WithKind("ClusterConfig"))
		createErr = c.Create(ctx, obj)
		switch {
		case createErr == nil, apierrors.IsAlreadyExists(createErr):
			return true, nil
		case meta.IsNoMatchError(createErr):
			return false, nil
		}
		return false, createErr
	})
	if err != nil && createErr != nil {
		err = createErr
	}
	if err != nil {
		return fmt.Errorf("creating ClusterConfig %s: %w", Name, err)
	}
	return nil
}
