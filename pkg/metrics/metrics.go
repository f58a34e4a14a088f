// Package metrics holds the names and helpers every Stowage metric shares,
// and the cost gauges. Controllers define their own metrics beside their code
// (metrics.go) with this Namespace; nothing here registers at import time.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Namespace prefixes every Stowage metric: stowage_<subsystem>_<name>.
const Namespace = "stowage"

// Label names shared across metrics. Values must be bounded: never a pod or
// node name, which would grow the series count with the cluster's churn.
const (
	LabelNodePool     = "nodepool"
	LabelCapacityType = "capacity_type"
	LabelInstanceType = "instance_type"
	LabelZone         = "zone"
	LabelReason       = "reason"
	LabelProvider     = "provider"
	// LabelCommitment is a Commitment's name: a handful per cluster.
	LabelCommitment = "commitment"
)

// Name joins the namespace, subsystem and name the way client_golang does,
// for code and docs that need the full series name.
func Name(subsystem, name string) string {
	return prometheus.BuildFQName(Namespace, subsystem, name)
}

// MustRegister registers collectors on controller-runtime's registry, which
// the manager serves on its metrics endpoint. A collector that is already
// registered (a second manager in the same test binary) is not an error.
func MustRegister(cs ...prometheus.Collector) {
	if err := Register(crmetrics.Registry, cs...); err != nil {
		panic(err)
	}
}

// Register registers collectors on r, tolerating ones already registered.
func Register(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return fmt.Errorf("registering metric collector: %w", err)
		}
	}
	return nil
}
