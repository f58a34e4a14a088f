// Command gen writes the generated scenarios as manifests, so they can be fed
// to `stowage simulate` like any other:
//
//	go run ./test/scenarios/gen -pods 10000 > /tmp/diverse-10k.yaml
//	go run ./test/scenarios/gen -mix gpu -pods 50000 > /tmp/gpu-cpu-50k.yaml
//	stowage simulate -f /tmp/diverse-10k.yaml
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/stowage-k8s/stowage/test/scenarios"
)

func main() {
	pods := flag.Int("pods", 10_000, "number of pods")
	mix := flag.String("mix", "diverse", "diverse (five equal kinds of constraint) or gpu (GPU and CPU workloads, as gpu-cpu-50k)")
	flag.Parse()
	if *pods <= 0 {
		fmt.Fprintln(os.Stderr, "gen: -pods must be positive")
		os.Exit(2)
	}
	var set []*corev1.Pod
	switch *mix {
	case "diverse":
		set = scenarios.Diverse(*pods)
	case "gpu":
		set = scenarios.GPUMix(*pods)
	default:
		fmt.Fprintf(os.Stderr, "gen: -mix %q: want diverse or gpu\n", *mix)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	err := write(w, set)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write emits pods as a multi-document YAML stream.
func write(w io.Writer, pods []*corev1.Pod) error {
	for _, p := range pods {
		// Only what a user would write: no status, no server-set metadata.
		out := &corev1.Pod{TypeMeta: p.TypeMeta, Spec: p.Spec}
		out.Name, out.Namespace, out.Labels = p.Name, p.Namespace, p.Labels
		data, err := yaml.Marshal(out)
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", data); err != nil {
			return err
		}
	}
	return nil
}
