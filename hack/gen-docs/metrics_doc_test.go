package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMetricsDocListsEveryMetric finds every Prometheus metric the code
// defines (the Namespace/Subsystem/Name of each prometheus.*Opts literal) and
// fails when docs/metrics.md does not mention one, so a new metric cannot ship
// undocumented.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, dir := range []string{"pkg", "providers", "pricing"} {
		names = append(names, metricNames(t, filepath.Join(root, dir))...)
	}
	if len(names) == 0 {
		t.Fatal("found no metric definitions; the scanner is broken")
	}
	if !slices.Contains(names, "stowage_cost_per_hour") {
		t.Fatalf("scanner missed stowage_cost_per_hour; found %v", names)
	}
	t.Logf("%d metrics defined: %v", len(names), names)
	for _, n := range names {
		// A part set from a variable (a provider's name as the subsystem)
		// matches any word: each provider's metric is listed on its own.
		pattern := "`" + strings.ReplaceAll(regexp.QuoteMeta(n), variablePart, "[a-z0-9]+") + "`"
		if !regexp.MustCompile(pattern).Match(doc) {
			t.Errorf("docs/metrics.md does not list %s", strings.ReplaceAll(n, variablePart, "<name>"))
		}
	}
}

// variablePart stands for a name part the scanner cannot resolve.
const variablePart = "VARIABLE"

// metricNames parses every non-test Go file under dir, package by package.
func metricNames(t *testing.T, dir string) []string {
	t.Helper()
	byDir := map[string][]*ast.File{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		byDir[filepath.Dir(path)] = append(byDir[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, files := range byDir {
		consts := stringConsts(files)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok || !isOpts(lit.Type) {
					return true
				}
				parts := map[string]string{}
				for _, e := range lit.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					key, _ := kv.Key.(*ast.Ident)
					if key == nil {
						continue
					}
					parts[key.Name] = valueOf(kv.Value, consts)
				}
				if parts["Name"] == "" {
					return true
				}
				var segs []string
				for _, k := range []string{"Namespace", "Subsystem", "Name"} {
					if parts[k] != "" {
						segs = append(segs, parts[k])
					}
				}
				out = append(out, strings.Join(segs, "_"))
				return true
			})
		}
	}
	return out
}

// isOpts matches prometheus.CounterOpts, GaugeOpts, HistogramOpts, SummaryOpts.
func isOpts(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, _ := sel.X.(*ast.Ident)
	return pkg != nil && pkg.Name == "prometheus" && strings.HasSuffix(sel.Sel.Name, "Opts")
}

// valueOf resolves a string literal, a package constant, or metrics.Namespace.
func valueOf(e ast.Expr, consts map[string]string) string {
	switch v := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(v.Value)
		if err == nil {
			return s
		}
	case *ast.Ident:
		if c, ok := consts[v.Name]; ok {
			return c
		}
		return variablePart
	case *ast.SelectorExpr:
		if v.Sel.Name == "Namespace" {
			return "stowage" // metrics.Namespace
		}
		return consts[v.Sel.Name]
	}
	return ""
}

func stringConsts(files []*ast.File) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							out[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	return out
}
