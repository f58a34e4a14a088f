package importer

import (
	"strings"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// labelKeys maps Karpenter's well-known label keys to Stowage's. Values are
// unchanged: both count memory in MiB and use the same capacity type names.
var labelKeys = map[string]string{
	"karpenter.sh/capacity-type":                  v1.LabelCapacityType,
	"karpenter.k8s.aws/instance-gpu-name":         v1.LabelGPUName,
	"karpenter.k8s.aws/instance-gpu-count":        v1.LabelGPUCount,
	"karpenter.k8s.aws/instance-gpu-memory":       v1.LabelGPUMemory,
	"karpenter.k8s.aws/instance-gpu-manufacturer": v1.LabelGPUManufacturer,
	"karpenter.k8s.aws/instance-family":           v1.LabelInstanceFamily,
	"karpenter.k8s.aws/instance-cpu":              v1.LabelInstanceCPU,
	"karpenter.k8s.aws/instance-memory":           v1.LabelInstanceMemory,
}

// isKarpenterKey is true for label, annotation and tag keys in Karpenter's
// domains (karpenter.sh/..., karpenter.k8s.aws/..., and their subdomains).
func isKarpenterKey(k string) bool {
	prefix, _, found := strings.Cut(k, "/")
	if !found {
		return false
	}
	return prefix == "karpenter.sh" || prefix == "karpenter.k8s.aws" ||
		strings.HasSuffix(prefix, ".karpenter.sh") || strings.HasSuffix(prefix, ".karpenter.k8s.aws")
}

func (c *converter) nodePool(in map[string]any) map[string]any {
	out := map[string]any{
		"apiVersion": stowageAPIVersion,
		"kind":       "NodePool",
		"metadata":   c.metadata(in),
	}
	spec := c.spec(in)
	outSpec := map[string]any{}
	c.copyFields("spec", spec, outSpec, map[string]func(string, any) (any, bool){
		"template":   c.template,
		"disruption": c.disruption,
		"limits":     nil,
		"weight":     nil,
	})
	out["spec"] = outSpec
	return out
}

func (c *converter) template(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"metadata": c.templateMetadata,
		"spec":     c.templateSpec,
	})
	return out, true
}

func (c *converter) templateMetadata(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	keep := func(field string) func(string, any) (any, bool) {
		return func(p string, v any) (any, bool) {
			m, ok := v.(map[string]any)
			if !ok {
				c.warn(p, "not a map; dropped")
				return nil, false
			}
			kept := map[string]any{}
			for _, k := range sortedKeys(m) {
				switch {
				case isKarpenterKey(k):
					c.warn(p+"["+k+"]", "Karpenter-owned key dropped")
				case field == "labels" && strings.HasPrefix(k, v1.Group+"/"):
					c.warn(p+"["+k+"]", "labels in the %s domain are reserved; use a requirement instead; dropped", v1.Group)
				case field == "labels" && validation.IsMachineLabel(k):
					c.warn(p+"["+k+"]", "comes from each node's machine; use a requirement instead; dropped")
				default:
					kept[k] = m[k]
				}
			}
			return kept, len(kept) > 0
		}
	}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"labels":      keep("labels"),
		"annotations": keep("annotations"),
	})
	return out, len(out) > 0
}

func (c *converter) templateSpec(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"requirements":           c.requirements,
		"taints":                 nil,
		"startupTaints":          nil,
		"nodeClassRef":           c.nodeClassRef,
		"expireAfter":            nil,
		"terminationGracePeriod": nil,
	})
	return out, true
}

func (c *converter) requirements(path string, v any) (any, bool) {
	out, ok := c.eachObject(path, v, func(p string, req map[string]any) (any, bool) {
		key, _ := req["key"].(string)
		if to, ok := labelKeys[key]; ok {
			key = to
		} else if isKarpenterKey(key) {
			c.warn(p+".key", "%s has no Stowage equivalent; requirement dropped (constrain %s or %s instead)",
				key, v1.LabelInstanceType, v1.LabelInstanceFamily)
			return nil, false
		}
		r := map[string]any{}
		c.copyFields(p, req, r, map[string]func(string, any) (any, bool){
			"key":       func(string, any) (any, bool) { return key, true },
			"operator":  nil,
			"values":    nil,
			"minValues": nil,
		})
		return r, true
	})
	if !ok {
		return nil, false
	}
	return out, len(out) > 0
}

func (c *converter) nodeClassRef(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	group, _ := in["group"].(string)
	kind, _ := in["kind"].(string)
	if group != KarpenterAWSGroup || kind != "EC2NodeClass" {
		c.warn(path, "%s/%s is not convertible (only %s/EC2NodeClass is); dropped, set it by hand", group, kind, KarpenterAWSGroup)
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"group": func(string, any) (any, bool) { return stowageAWSGroup, true },
		"kind":  nil,
		"name":  nil,
	})
	return out, true
}

func (c *converter) disruption(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"consolidationPolicy": nil,
		"consolidateAfter":    nil,
		"budgets":             c.budgets,
	})
	return out, true
}

func (c *converter) budgets(path string, v any) (any, bool) {
	out, ok := c.eachObject(path, v, func(p string, b map[string]any) (any, bool) {
		o := map[string]any{}
		c.copyFields(p, b, o, map[string]func(string, any) (any, bool){
			"nodes":    nil,
			"schedule": nil,
			"duration": nil,
			"reasons":  nil,
		})
		return o, true
	})
	if !ok {
		return nil, false
	}
	return out, len(out) > 0
}
