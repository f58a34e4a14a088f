// Command gen-docs writes a CRD's field reference as Markdown, so the
// reference in docs/ never drifts from the schema the API server enforces:
//
//	go run ./hack/gen-docs -crd pkg/apis/crds/stowage.dev_nodepools.yaml \
//	    -intro hack/gen-docs/nodepool-intro.md -o docs/nodepool.md
//
// Every field gets its path, type, default, validation and description;
// CEL rules are listed with the message the API server returns.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	crdPath := flag.String("crd", "", "CRD YAML file to document (required)")
	introPath := flag.String("intro", "", "Markdown placed before the generated reference")
	outPath := flag.String("o", "", "output file (default stdout)")
	flag.Parse()
	if err := run(*crdPath, *introPath, *outPath); err != nil {
		fmt.Fprintln(os.Stderr, "gen-docs:", err)
		os.Exit(1)
	}
}

func run(crdPath, introPath, outPath string) error {
	if crdPath == "" {
		return fmt.Errorf("-crd is required")
	}
	data, err := os.ReadFile(crdPath)
	if err != nil {
		return err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		return fmt.Errorf("%s: %w", crdPath, err)
	}
	var buf bytes.Buffer
	if introPath != "" {
		intro, err := os.ReadFile(introPath)
		if err != nil {
			return err
		}
		buf.Write(intro)
		buf.WriteString("\n")
	}
	if err := reference(&buf, &crd); err != nil {
		return fmt.Errorf("%s: %w", crdPath, err)
	}
	if outPath == "" {
		_, err = os.Stdout.Write(buf.Bytes())
		return err
	}
	return os.WriteFile(outPath, buf.Bytes(), 0o644)
}

func reference(buf *bytes.Buffer, crd *apiextensionsv1.CustomResourceDefinition) error {
	for _, v := range crd.Spec.Versions {
		if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		fmt.Fprintf(buf, "## Field reference: %s/%s %s\n\n", crd.Spec.Group, v.Name, crd.Spec.Names.Kind)
		fmt.Fprintf(buf, "Generated from `%s` by `hack/gen-docs`; do not edit by hand.\n\n", "pkg/apis/crds/"+crd.Spec.Group+"_"+crd.Spec.Names.Plural+".yaml")
		spec, ok := v.Schema.OpenAPIV3Schema.Properties["spec"]
		if !ok {
			return fmt.Errorf("version %s has no spec", v.Name)
		}
		w := &writer{buf: buf}
		w.walk("spec", &spec)
		return nil
	}
	return fmt.Errorf("no served version with a schema")
}

type writer struct{ buf *bytes.Buffer }

// walk writes one section per object, listing its fields, then recurses.
func (w *writer) walk(path string, s *apiextensionsv1.JSONSchemaProps) {
	if s.Items != nil && s.Items.Schema != nil {
		w.walk(path+"[]", s.Items.Schema)
		return
	}
	if len(s.Properties) == 0 {
		return
	}
	fmt.Fprintf(w.buf, "### `%s`\n\n", path)
	if s.Description != "" {
		fmt.Fprintf(w.buf, "%s\n\n", oneLine(s.Description))
	}
	for _, rule := range s.XValidations {
		fmt.Fprintf(w.buf, "- Rule: %s (`%s`)\n", rule.Message, rule.Rule)
	}
	if len(s.XValidations) > 0 {
		w.buf.WriteString("\n")
	}
	fmt.Fprintln(w.buf, "| Field | Type | Required | Default | Validation | Description |")
	fmt.Fprintln(w.buf, "|---|---|---|---|---|---|")
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := s.Properties[n]
		required := ""
		if slices.Contains(s.Required, n) {
			required = "yes"
		}
		fmt.Fprintf(w.buf, "| `%s` | %s | %s | %s | %s | %s |\n", n, typeOf(&p), required, defaultOf(&p), validation(&p), cell(p.Description))
	}
	w.buf.WriteString("\n")
	for _, n := range names {
		p := s.Properties[n]
		w.walk(path+"."+n, &p)
	}
}

func typeOf(s *apiextensionsv1.JSONSchemaProps) string {
	switch {
	case s.XIntOrString:
		return "int or string"
	case s.Type == "array" && s.Items != nil && s.Items.Schema != nil:
		return "[]" + typeOf(s.Items.Schema)
	case s.Type == "object" && s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil:
		return "map[string]" + typeOf(s.AdditionalProperties.Schema)
	case s.Type == "":
		return "any"
	}
	return s.Type
}

func defaultOf(s *apiextensionsv1.JSONSchemaProps) string {
	if s.Default == nil {
		return ""
	}
	return "`" + strings.ReplaceAll(string(s.Default.Raw), "|", `\|`) + "`"
}

func validation(s *apiextensionsv1.JSONSchemaProps) string {
	var parts []string
	if len(s.Enum) > 0 {
		var vals []string
		for _, e := range s.Enum {
			vals = append(vals, strings.Trim(string(e.Raw), `"`))
		}
		parts = append(parts, "one of "+strings.Join(vals, ", "))
	}
	if s.Pattern != "" {
		parts = append(parts, "pattern `"+s.Pattern+"`")
	}
	if s.Minimum != nil {
		parts = append(parts, fmt.Sprintf("min %g", *s.Minimum))
	}
	if s.Maximum != nil {
		parts = append(parts, fmt.Sprintf("max %g", *s.Maximum))
	}
	if s.MinLength != nil {
		parts = append(parts, fmt.Sprintf("min length %d", *s.MinLength))
	}
	if s.MaxLength != nil {
		parts = append(parts, fmt.Sprintf("max length %d", *s.MaxLength))
	}
	if s.MinItems != nil {
		parts = append(parts, fmt.Sprintf("min items %d", *s.MinItems))
	}
	if s.MaxItems != nil {
		parts = append(parts, fmt.Sprintf("max items %d", *s.MaxItems))
	}
	if s.MaxProperties != nil {
		parts = append(parts, fmt.Sprintf("max entries %d", *s.MaxProperties))
	}
	for _, r := range s.XValidations {
		parts = append(parts, r.Message)
	}
	if s.Items != nil && s.Items.Schema != nil && len(s.Items.Schema.Properties) == 0 {
		if each := validation(s.Items.Schema); each != "" {
			parts = append(parts, "each: "+each)
		}
	}
	return cell(strings.Join(parts, "; "))
}

// cell makes text safe for one Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
