package health

import (
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// Load reads one Kubernetes object from a YAML file, decoded as a client of the API server decodes
// it (integers as int64), which is what both Argo CD and kstatus are given.
func Load(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// Kstatus is what Flux concludes about obj: kstatus's Compute, which Flux's health checks and
// `wait: true` run on every applied object without a custom check of its own. Flux builds on its
// fork github.com/fluxcd/cli-utils, whose pkg/kstatus/status is this same code (v0.37.2).
func Kstatus(obj *unstructured.Unstructured) (*status.Result, error) {
	return status.Compute(obj)
}
