//go:build unix

package controlplane

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// kwokModuleDirFile, written by hack/build-controlplane.sh next to the
// binaries, names kwok's module directory in the Go module cache.
const kwokModuleDirFile = "kwok-module-dir"

// kwokStageFiles are kwok's own Stage objects for fast node and pod
// lifecycles, relative to its module; kwok refuses to start without stages.
var kwokStageFiles = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat/node-heartbeat.yaml",
	"kustomize/stage/pod/fast/pod-*.yaml",
}

// writeKwokStages concatenates kwok's stage manifests into one config file in
// dir and returns its path. They are read from the module cache rather than
// copied into this repository.
func writeKwokStages(binDir, dir string) (string, error) {
	recorded := filepath.Join(binDir, kwokModuleDirFile)
	data, err := os.ReadFile(recorded)
	if err != nil {
		return "", fmt.Errorf("reading kwok's module directory from %s: %w: run `make controlplane`", recorded, err)
	}
	moduleDir := strings.TrimSpace(string(data))
	if moduleDir == "" {
		return "", fmt.Errorf("%s is empty: run `make controlplane`", recorded)
	}
	var out bytes.Buffer
	for _, pattern := range kwokStageFiles {
		matches, err := filepath.Glob(filepath.Join(moduleDir, pattern))
		if err != nil || len(matches) == 0 {
			return "", fmt.Errorf("kwok stage manifest %s not found in %s (named by %s): run `make controlplane`",
				pattern, moduleDir, recorded)
		}
		sort.Strings(matches)
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				return "", fmt.Errorf("reading kwok stage %s: %w", m, err)
			}
			out.WriteString("---\n")
			out.Write(bytes.TrimPrefix(bytes.TrimSpace(b), []byte("---\n")))
			out.WriteString("\n")
		}
	}
	path := filepath.Join(dir, "kwok-stages.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}
