// Package importer converts Karpenter objects (karpenter.sh/v1 NodePools and
// karpenter.k8s.aws/v1 EC2NodeClasses) into their Stowage equivalents. It
// works on unstructured maps rather than Karpenter's Go types, so Stowage does
// not depend on Karpenter, and it reports every field it cannot carry over
// by path instead of dropping it silently.
package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Source API groups and versions the importer understands.
const (
	KarpenterGroup    = "karpenter.sh"
	KarpenterAWSGroup = "karpenter.k8s.aws"
	karpenterVersion  = "v1"
)

// lastAppliedAnnotation is kubectl's copy of the applied object.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// Target API versions.
const (
	stowageAPIVersion    = "stowage.dev/v1"
	stowageAWSAPIVersion = "aws.stowage.dev/v1"
	stowageAWSGroup      = "aws.stowage.dev"
)

// Warning is one thing the importer could not convert.
type Warning struct {
	// Source is the input's name and object number, e.g. "pools.yaml#2".
	Source string
	// Object is kind/name of the input object.
	Object string
	// Path is the field path in the input object, e.g. spec.template.spec.requirements[1].
	Path    string
	Message string
}

func (w Warning) String() string {
	if w.Path == "" {
		return fmt.Sprintf("%s: %s: %s", w.Source, w.Object, w.Message)
	}
	return fmt.Sprintf("%s: %s: %s: %s", w.Source, w.Object, w.Path, w.Message)
}

// Result is the converted objects, in input order, the warnings, and the
// objects refused because Stowage would not accept them.
type Result struct {
	Objects  []*unstructured.Unstructured
	Warnings []Warning
	Rejected []Rejection
}

// ConvertYAML converts every document of one YAML (or JSON) stream. name
// identifies the input in warnings and errors. Documents that are not
// Karpenter NodePools or EC2NodeClasses are skipped with a warning.
func ConvertYAML(name string, r io.Reader) (Result, error) {
	var res Result
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	// n counts objects, not YAML documents: empty documents are not counted.
	for n := 1; ; {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return res, fmt.Errorf("%s: object %d: %w", name, n, err)
		}
		if len(doc) == 0 {
			continue // an empty document between two ---
		}
		// `kubectl get -o yaml` wraps several objects in a v1 List.
		if items, ok := doc["items"].([]any); ok && doc["kind"] == "List" {
			for i, item := range items {
				m, ok := item.(map[string]any)
				if !ok {
					return res, fmt.Errorf("%s: object %d: items[%d] is not an object", name, n, i)
				}
				if err := res.add(fmt.Sprintf("%s#%d.items[%d]", name, n, i), m); err != nil {
					return res, fmt.Errorf("%s: object %d: items[%d]: %w", name, n, i, err)
				}
			}
			n++
			continue
		}
		if err := res.add(fmt.Sprintf("%s#%d", name, n), doc); err != nil {
			return res, fmt.Errorf("%s: object %d: %w", name, n, err)
		}
		n++
	}
}

// add converts one object and records its result and warnings.
func (r *Result) add(source string, obj map[string]any) error {
	c := &converter{source: source}
	out, err := c.convert(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return err
	}
	r.Warnings = append(r.Warnings, c.warnings...)
	if len(c.reasons) > 0 {
		r.Rejected = append(r.Rejected, Rejection{Source: source, Object: c.object, Reasons: c.reasons})
		return nil
	}
	if out != nil {
		r.Objects = append(r.Objects, out)
	}
	return nil
}

// MarshalYAML renders objects as one multi-document YAML stream.
func MarshalYAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("rendering %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// converter converts one object and collects its warnings and the reasons
// to reject it.
type converter struct {
	source   string
	object   string
	warnings []Warning
	reasons  []string
}

func (c *converter) reject(path, format string, args ...any) {
	c.reasons = append(c.reasons, path+": "+fmt.Sprintf(format, args...))
}

// spec returns the object's spec, rejecting a spec that is not an object
// (`spec: "hello"` must not become `spec: {}`).
func (c *converter) spec(in map[string]any) map[string]any {
	v, ok := in["spec"]
	if !ok || v == nil {
		return nil
	}
	spec, ok := v.(map[string]any)
	if !ok {
		c.reject("spec", "must be an object, got %T %v", v, v)
	}
	return spec
}

func (c *converter) warn(path, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{Source: c.source, Object: c.object, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *converter) convert(in *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	gvk := in.GroupVersionKind()
	if gvk.Kind == "" || in.GetAPIVersion() == "" {
		return nil, fmt.Errorf("apiVersion and kind must be set")
	}
	c.object = gvk.Kind + "/" + in.GetName()
	if in.GetName() == "" {
		return nil, fmt.Errorf("%s: metadata.name must be set", gvk.Kind)
	}
	switch {
	case gvk.Group == KarpenterGroup && gvk.Kind == "NodePool":
		if gvk.Version != karpenterVersion {
			c.warn("apiVersion", "%s is not supported, only %s/%s: convert it with Karpenter's own upgrade first; skipped", in.GetAPIVersion(), KarpenterGroup, karpenterVersion)
			return nil, nil
		}
		out := c.nodePool(in.Object)
		if len(c.reasons) == 0 {
			c.reasons = validateNodePool(out)
		}
		return &unstructured.Unstructured{Object: out}, nil
	case gvk.Group == KarpenterAWSGroup && gvk.Kind == "EC2NodeClass":
		if gvk.Version != karpenterVersion {
			c.warn("apiVersion", "%s is not supported, only %s/%s; skipped", in.GetAPIVersion(), KarpenterAWSGroup, karpenterVersion)
			return nil, nil
		}
		out := c.ec2NodeClass(in.Object)
		if len(c.reasons) == 0 {
			c.reasons = requiredEC2NodeClassFields(out)
		}
		return &unstructured.Unstructured{Object: out}, nil
	default:
		c.warn("", "%s %s is not a Karpenter NodePool or EC2NodeClass; skipped", in.GetAPIVersion(), gvk.Kind)
		return nil, nil
	}
}

// metadata keeps what a user wrote (name, labels, annotations) and drops what
// the API server or Karpenter set.
func (c *converter) metadata(in map[string]any) map[string]any {
	out := map[string]any{}
	meta, _ := in["metadata"].(map[string]any)
	out["name"] = meta["name"]
	for _, field := range []string{"labels", "annotations"} {
		m, ok := meta[field].(map[string]any)
		if !ok {
			continue
		}
		// kubectl's record of the last apply describes the Karpenter object.
		delete(m, lastAppliedAnnotation)
		kept := c.dropKarpenterKeys("metadata."+field, m)
		if len(kept) > 0 {
			out[field] = kept
		}
	}
	return out
}

// dropKarpenterKeys copies m without keys in Karpenter's domains, which
// Karpenter sets itself (hashes, owner labels) and mean nothing to Stowage.
func (c *converter) dropKarpenterKeys(path string, m map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range sortedKeys(m) {
		if isKarpenterKey(k) {
			c.warn(path+"["+k+"]", "Karpenter-owned key dropped")
			continue
		}
		out[k] = m[k]
	}
	return out
}

// copyFields copies the known fields of in to out and warns about the rest.
// convert, when set for a field, transforms its value; returning ok=false
// drops the field (the function has warned).
func (c *converter) copyFields(path string, in, out map[string]any, known map[string]func(path string, v any) (any, bool)) {
	for _, k := range sortedKeys(in) {
		fieldPath := join(path, k)
		fn, ok := known[k]
		if !ok {
			c.warn(fieldPath, "no Stowage equivalent; dropped")
			continue
		}
		v := in[k]
		if fn != nil {
			if v, ok = fn(fieldPath, v); !ok {
				continue
			}
		}
		out[k] = v
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
