// Package manifest reads ordinary Kubernetes manifests (what `kubectl apply -f`
// takes) and turns them into what the solver plans with: pending pods expanded
// from workloads, DaemonSet overhead, NodePools and simulated reservations.
// It never talks to an API server.
package manifest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Set is everything read from one or more manifest files.
type Set struct {
	// Pods are the pods to place, expanded from Pods and workloads, in file order.
	Pods []*corev1.Pod
	// DaemonSetPods are one pod per DaemonSet, built from its template; every
	// node the DaemonSet matches runs one, so they are node overhead.
	DaemonSetPods []*corev1.Pod
	// NodePools are stowage.dev/v1 NodePools.
	NodePools []*v1.NodePool
	// Reservations come from the ConfigMap named ReservationsConfigMap.
	Reservations []Reservation
	// Commitments are stowage.dev/v1 Commitments (Savings Plans, Reserved
	// Instances, committed use, discounts) the plan is priced with.
	Commitments []*v1.Commitment
	// Warnings name the documents that were skipped, e.g. unknown kinds.
	Warnings []string
}

// Append adds other's contents to s.
func (s *Set) Append(other *Set) {
	s.Pods = append(s.Pods, other.Pods...)
	s.DaemonSetPods = append(s.DaemonSetPods, other.DaemonSetPods...)
	s.NodePools = append(s.NodePools, other.NodePools...)
	s.Reservations = append(s.Reservations, other.Reservations...)
	s.Commitments = append(s.Commitments, other.Commitments...)
	s.Warnings = append(s.Warnings, other.Warnings...)
}

// Load reads a manifest file, or every .yaml, .yml and .json file below a
// directory (recursively, in lexical order). Errors name the file relative to
// path's parent so they read the same wherever the command runs.
func Load(path string) (*Set, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading manifests: %w", err)
		}
		return Decode(path, data)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isManifest(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading manifests under %s: %w", path, err)
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("reading manifests: no .yaml, .yml or .json files under %s", path)
	}
	out := &Set{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading manifests: %w", err)
		}
		s, err := Decode(f, data)
		if err != nil {
			return nil, err
		}
		out.Append(s)
	}
	return out, nil
}

func isManifest(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Error is a problem with one object in a manifest file.
type Error struct {
	File string
	// Document is the 1-based index of the YAML document in File.
	Document int
	// Item is the 1-based index inside a List, 0 when not in a List.
	Item int
	// Object is "Kind namespace/name" (or "Kind name" when cluster-scoped),
	// empty when the document could not be read that far.
	Object string
	// Field is the JSON path of the bad field, e.g. "spec.replicas".
	Field string
	Err   error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.location()
	}
	return e.location() + ": " + e.Err.Error()
}

// location is "file: document N item M (Kind ns/name): field".
func (e *Error) location() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: document %d", e.File, e.Document)
	if e.Item > 0 {
		fmt.Fprintf(&b, " item %d", e.Item)
	}
	if e.Object != "" {
		fmt.Fprintf(&b, " (%s)", e.Object)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }
