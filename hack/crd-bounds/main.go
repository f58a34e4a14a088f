// Command crd-bounds adds the bounds controller-gen cannot express to the
// generated CRDs, in place. Fields of core Kubernetes types (corev1.Taint)
// carry no length limits, and without them the API server prices every CEL
// rule on them as if each string were megabytes long and refuses the CRD:
//
//	go run ./hack/crd-bounds pkg/apis/crds/stowage.dev_nodepools.yaml ...
//
// Every object schema shaped like a Taint gets maxLength on key and value and
// an enum on effect, matching what the API server checks on a Node; every
// resource quantity and every label value of a validated labels map gets a maxLength.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := patchFile(path); err != nil {
			fmt.Fprintln(os.Stderr, "crd-bounds:", err)
			os.Exit(1)
		}
	}
}

func patchFile(path string) error {
	in, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(in, &crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i := range crd.Spec.Versions {
		if s := crd.Spec.Versions[i].Schema; s != nil && s.OpenAPIV3Schema != nil {
			walk(s.OpenAPIV3Schema)
		}
	}
	b, err := json.Marshal(&crd)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// The typed CRD always has a status; controller-gen writes none.
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	delete(obj, "status")
	out, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// controller-gen writes a leading document separator; keep the file's shape.
	out = append([]byte("---\n"), out...)
	return os.WriteFile(path, out, 0o644)
}

func walk(s *apiextensionsv1.JSONSchemaProps) {
	if isTaint(s) {
		bound(s)
	}
	// A resource quantity: no real one is longer than this, and without a
	// bound the rules that parse quantities cost too much to install.
	if s.XIntOrString && s.Pattern == quantityPattern {
		s.MaxLength = ptr(64)
	}
	for k, p := range s.Properties {
		// Node labels a template sets: values are label values.
		if k == "labels" && p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil &&
			p.AdditionalProperties.Schema.Type == "string" && len(p.XValidations) > 0 {
			p.AdditionalProperties.Schema.MaxLength = ptr(63)
		}
		walk(&p)
		s.Properties[k] = p
	}
	if s.Items != nil && s.Items.Schema != nil {
		walk(s.Items.Schema)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walk(s.AdditionalProperties.Schema)
	}
}

// quantityPattern is the pattern controller-gen gives resource.Quantity.
const quantityPattern = `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`

func isTaint(s *apiextensionsv1.JSONSchemaProps) bool {
	if len(s.Properties) != 4 {
		return false
	}
	for _, k := range []string{"key", "value", "effect", "timeAdded"} {
		if _, ok := s.Properties[k]; !ok {
			return false
		}
	}
	return true
}

func bound(s *apiextensionsv1.JSONSchemaProps) {
	set := func(name string, f func(*apiextensionsv1.JSONSchemaProps)) {
		p := s.Properties[name]
		f(&p)
		s.Properties[name] = p
	}
	set("key", func(p *apiextensionsv1.JSONSchemaProps) { p.MaxLength = ptr(316); p.MinLength = ptr(1) })
	set("value", func(p *apiextensionsv1.JSONSchemaProps) { p.MaxLength = ptr(63) })
	set("effect", func(p *apiextensionsv1.JSONSchemaProps) {
		p.Enum = nil
		for _, e := range []string{"NoSchedule", "PreferNoSchedule", "NoExecute"} {
			b, _ := json.Marshal(e)
			p.Enum = append(p.Enum, apiextensionsv1.JSON{Raw: b})
		}
	})
}

func ptr(n int64) *int64 { return &n }
