// Command demo runs Stowage end to end on this machine: a local control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), the
// operator in-process with the fake cloud, example NodePools and GPU
// workloads. It shows what was bought, why, and what it costs per hour next
// to buying one on-demand machine per pod. Ctrl-C stops it; nothing is left
// running when it exits.
//
//	go run ./test/demo [-v] [-timeout 5m] [-launch-latency 2s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/fake"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// reservation is the demo's capacity reservation: two g5.4xlarge already
// paid for, which the inference-reserved pool fills first.
var reservation = fake.Reservation{ID: "cr-demo-inference", InstanceType: "g5.4xlarge", Zone: "us-east-1a", Count: 2}

func main() {
	verbose := flag.Bool("v", false, "print the operator's logs to stderr")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up when the workloads are not running after this long")
	latency := flag.Duration("launch-latency", fake.DefaultLaunchLatency, "time the fake cloud takes to boot a machine")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *verbose, *timeout, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, verbose bool, timeout, latency time.Duration) (retErr error) {
	logOut := io.Discard
	if verbose {
		logOut = os.Stderr
	}
	opts := operator.DefaultOptions()
	opts.CloudProvider = fake.Name
	opts.ClusterName = "demo"
	opts.LeaderElection = false
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	opts.LogFormat = "console"
	logger, err := operator.NewLogger(opts, logOut)
	if err != nil {
		return err
	}
	log.SetLogger(logger)

	step("starting the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)")
	cp, err := controlplane.Start(ctx, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	if err != nil {
		return fmt.Errorf("starting the local control plane: %w", err)
	}
	defer func() {
		step("stopping the local control plane")
		if err := cp.Stop(); err != nil && retErr == nil {
			retErr = fmt.Errorf("stopping the local control plane: %w", err)
		}
	}()

	step(fmt.Sprintf("starting Stowage with the fake cloud (aws/us-east-1 catalog, %s launch latency, reservation %s: %d x %s in %s)",
		latency, reservation.ID, reservation.Count, reservation.InstanceType, reservation.Zone))
	op, err := operator.New(ctx, cp.Config, opts,
		operator.WithProvider(fake.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			return fake.New(fake.Options{
				Client: d.Client, ClusterName: d.ClusterName, Clock: clock.RealClock{},
				LaunchLatency: latency, Reservations: []fake.Reservation{reservation},
			})
		}))
	if err != nil {
		return fmt.Errorf("building the operator: %w", err)
	}
	opCtx, stopOperator := context.WithCancel(ctx)
	opDone := make(chan error, 1)
	go func() { opDone <- op.Start(opCtx) }()
	defer func() {
		step("stopping Stowage")
		stopOperator()
		if err := <-opDone; err != nil && retErr == nil {
			retErr = err
		}
	}()

	step("applying NodePools: inference-reserved (weight 100), inference (on-demand, weight 50), training (spot), batch (spot)")
	if err := apply(ctx, cp.Client, "manifests/nodepools.yaml"); err != nil {
		return err
	}
	step("applying workloads: inference 3 x (1 GPU, 8 CPU, 16Gi), api 5 x (4 CPU, 8Gi), trainer 2 x (8 GPU, 64 CPU, 512Gi), job eval 2 x (2 CPU, 4Gi)")
	if err := apply(ctx, cp.Client, "manifests/workloads.yaml"); err != nil {
		return err
	}

	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := waitForWorkloads(waitCtx, cp.Client, os.Stderr); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return errors.New("interrupted")
		}
		// Show what was bought so far: it says why the rest is missing.
		_ = report(ctx, cp.Client, os.Stdout)
		return err
	}
	catalog, err := pricing.Load(fake.DefaultCatalog)
	if err != nil {
		return err
	}
	if err := report(ctx, cp.Client, os.Stdout); err != nil {
		return err
	}
	return reportNaive(ctx, cp.Client, catalog, os.Stdout)
}

func step(msg string) { fmt.Fprintf(os.Stderr, "==> %s\n", msg) }
