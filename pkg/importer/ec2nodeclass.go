package importer

import (
	"fmt"
	"regexp"
	"strings"
)

// amiAliases maps Karpenter's alias families to Stowage's. Both resolve an
// al2023 or bottlerocket alias to the standard and the NVIDIA image of the
// family, so GPU pools keep getting driver images and the alias carries over.
var amiAliases = map[string]string{
	"al2023":       "al2023",
	"bottlerocket": "bottlerocket",
}

// volumeSize is the quantity form Stowage's EC2NodeClass accepts.
var volumeSize = regexp.MustCompile(`^[0-9]+(Gi|Ti)$`)

func (c *converter) ec2NodeClass(in map[string]any) map[string]any {
	out := map[string]any{
		"apiVersion": stowageAWSAPIVersion,
		"kind":       "EC2NodeClass",
		"metadata":   c.metadata(in),
	}
	spec := c.spec(in)
	outSpec := map[string]any{}
	c.copyFields("spec", spec, outSpec, map[string]func(string, any) (any, bool){
		"amiFamily":                        c.amiFamily,
		"amiSelectorTerms":                 c.amiSelectorTerms,
		"subnetSelectorTerms":              c.selectorTerms,
		"securityGroupSelectorTerms":       c.selectorTerms,
		"capacityReservationSelectorTerms": c.capacityReservationSelectorTerms,
		"role":                             nil,
		"instanceProfile":                  nil,
		"kubelet":                          c.kubelet,
		"tags":                             c.tags,
		"blockDeviceMappings":              c.blockDeviceMappings,
		"userData":                         nil,
		"metadataOptions":                  c.metadataOptions,
	})
	c.aliasNamesFamily(outSpec)
	out["spec"] = outSpec
	return out
}

// amiFamilies are the Karpenter AMI families Stowage's amiFamily takes.
var amiFamilies = map[string]bool{"AL2023": true, "Bottlerocket": true, "Custom": true}

// amiFamily carries the bootstrap format of images picked by id, name or
// tags: without it Stowage would bootstrap a Bottlerocket or custom image as AL2023.
func (c *converter) amiFamily(path string, v any) (any, bool) {
	family, _ := v.(string)
	if !amiFamilies[family] {
		c.warn(path, "%v has no Stowage equivalent (AL2023, Bottlerocket and Custom are supported); dropped, so images picked by id, name or tags are bootstrapped as AL2023", v)
		return nil, false
	}
	return family, true
}

// aliasNamesFamily drops amiFamily beside an alias term: Stowage takes the
// family from the alias and refuses both. Karpenter allows the alias's own
// family (nothing is lost) or Custom (which Stowage cannot express).
func (c *converter) aliasNamesFamily(spec map[string]any) {
	family, ok := spec["amiFamily"].(string)
	if !ok {
		return
	}
	terms, _ := spec["amiSelectorTerms"].([]any)
	for _, t := range terms {
		term, _ := t.(map[string]any)
		alias, _ := term["alias"].(string)
		if alias == "" {
			continue
		}
		delete(spec, "amiFamily")
		aliasFamily, _, _ := strings.Cut(alias, "@")
		if !strings.EqualFold(strings.TrimSuffix(aliasFamily, "-nvidia"), family) {
			c.warn("spec.amiFamily", "%s beside alias %s cannot be converted: Stowage takes the family from the alias; dropped", family, alias)
		}
		return
	}
}

// capacityReservationSelectorTerms carries the reservations the class may
// launch into; without them Stowage uses none.
func (c *converter) capacityReservationSelectorTerms(path string, v any) (any, bool) {
	out, ok := c.eachObject(path, v, func(p string, in map[string]any) (any, bool) {
		o := map[string]any{}
		c.copyFields(p, in, o, map[string]func(string, any) (any, bool){
			"id":      nil,
			"tags":    nil,
			"ownerID": nil,
		})
		return o, len(o) > 0
	})
	if !ok {
		return nil, false
	}
	return out, len(out) > 0
}

// kubelet carries the kubelet settings Stowage writes into user data and
// plans with (max pods, reservations, eviction thresholds, image GC).
func (c *converter) kubelet(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"maxPods":                     nil,
		"systemReserved":              nil,
		"kubeReserved":                nil,
		"evictionHard":                nil,
		"evictionSoft":                nil,
		"evictionSoftGracePeriod":     nil,
		"imageGCHighThresholdPercent": nil,
		"imageGCLowThresholdPercent":  nil,
	})
	return out, len(out) > 0
}

func (c *converter) amiSelectorTerms(path string, v any) (any, bool) {
	return c.terms(path, v, func(p string, in map[string]any) (map[string]any, bool) {
		out := map[string]any{}
		c.copyFields(p, in, out, map[string]func(string, any) (any, bool){
			"alias": c.amiAlias,
			"id":    nil,
			"tags":  nil,
			"name":  nil,
			"owner": nil,
		})
		if _, hasTags := out["tags"]; !hasTags && out["name"] == nil && out["owner"] != nil {
			// Stowage refines tags and name terms by owner but does not select by owner alone.
			c.warn(p, "owner without tags or name cannot be converted; term dropped (add tags or a name, or use an id)")
			return nil, false
		}
		return out, len(out) > 0
	})
}

func (c *converter) amiAlias(path string, v any) (any, bool) {
	alias, _ := v.(string)
	family, version, _ := strings.Cut(alias, "@")
	to, ok := amiAliases[family]
	if !ok {
		c.warn(path, "alias %q has no Stowage equivalent (al2023 and bottlerocket are supported); term dropped", alias)
		return nil, false
	}
	if version == "" {
		return to, true
	}
	return to + "@" + version, true
}

func (c *converter) selectorTerms(path string, v any) (any, bool) {
	return c.terms(path, v, func(p string, in map[string]any) (map[string]any, bool) {
		out := map[string]any{}
		c.copyFields(p, in, out, map[string]func(string, any) (any, bool){
			"id":   nil,
			"tags": nil,
		})
		return out, len(out) > 0
	})
}

// terms converts a list of selector terms; one that converts to nothing is dropped.
func (c *converter) terms(path string, v any, term func(string, map[string]any) (map[string]any, bool)) (any, bool) {
	out, ok := c.eachObject(path, v, func(p string, m map[string]any) (any, bool) { return term(p, m) })
	if !ok {
		return nil, false
	}
	if len(out) == 0 {
		c.warn(path, "no term could be converted; the field is required, set it by hand")
		return nil, false
	}
	return out, true
}

func (c *converter) tags(path string, v any) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not a map; dropped")
		return nil, false
	}
	kept := c.dropKarpenterKeys(path, m)
	return kept, len(kept) > 0
}

func (c *converter) blockDeviceMappings(path string, v any) (any, bool) {
	out, ok := c.eachObject(path, v, func(p string, m map[string]any) (any, bool) {
		o := map[string]any{}
		c.copyFields(p, m, o, map[string]func(string, any) (any, bool){
			"deviceName": nil,
			"rootVolume": nil,
			"ebs":        c.ebs,
		})
		if _, ok := o["ebs"]; !ok {
			c.warn(p, "no convertible ebs settings; mapping dropped")
			return nil, false
		}
		return o, true
	})
	if !ok {
		return nil, false
	}
	return out, len(out) > 0
}

func (c *converter) ebs(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"volumeSize": func(p string, v any) (any, bool) {
			s, _ := v.(string)
			if !volumeSize.MatchString(s) {
				c.warn(p, "%v is not a whole number of Gi or Ti as Stowage requires", v)
				return nil, false
			}
			return s, true
		},
		"volumeType":          nil,
		"iops":                nil,
		"throughput":          nil,
		"encrypted":           nil,
		"kmsKeyID":            nil,
		"deleteOnTermination": nil,
		"snapshotID":          nil,
	})
	if _, ok := out["volumeSize"]; !ok {
		return nil, false
	}
	return out, true
}

func (c *converter) metadataOptions(path string, v any) (any, bool) {
	in, ok := v.(map[string]any)
	if !ok {
		c.warn(path, "not an object; dropped")
		return nil, false
	}
	out := map[string]any{}
	c.copyFields(path, in, out, map[string]func(string, any) (any, bool){
		"httpEndpoint":            nil,
		"httpTokens":              nil,
		"httpPutResponseHopLimit": nil,
	})
	return out, len(out) > 0
}

// eachObject converts a list of objects one item at a time: an item that is
// not an object is warned about and dropped, as is one convert drops. It
// reports false, with a warning, when v is not a list.
func (c *converter) eachObject(path string, v any, convert func(p string, item map[string]any) (any, bool)) ([]any, bool) {
	in, ok := v.([]any)
	if !ok {
		c.warn(path, "not a list; dropped")
		return nil, false
	}
	var out []any
	for i, item := range in {
		p := fmt.Sprintf("%s[%d]", path, i)
		m, ok := item.(map[string]any)
		if !ok {
			c.warn(p, "not an object; dropped")
			continue
		}
		if o, ok := convert(p, m); ok {
			out = append(out, o)
		}
	}
	return out, true
}
