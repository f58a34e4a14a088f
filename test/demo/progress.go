package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// demoNamespace holds the example workloads.
const demoNamespace = "demo"

// expectedPods is how many pods the workloads make.
const expectedPods = 3 + 5 + 2 + 2

type progress struct {
	podsDone, pods      int
	claimsReady, claims int
}

func (p progress) String() string {
	return fmt.Sprintf("pods running %d/%d, nodeclaims ready %d/%d", p.podsDone, p.pods, p.claimsReady, p.claims)
}

func (p progress) done() bool {
	return p.pods >= expectedPods && p.podsDone == p.pods && p.claimsReady == p.claims
}

// waitForWorkloads polls until every demo pod runs (or has completed) and
// every NodeClaim is Ready, keeping one live progress line on w.
func waitForWorkloads(ctx context.Context, c client.Client, w io.Writer) error {
	live := isTerminal(w)
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	started := time.Now()
	last := ""
	for {
		p, err := observe(ctx, c)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("    %s  (%s)", p, time.Since(started).Round(time.Second))
		switch {
		case live:
			fmt.Fprintf(w, "\r\033[K%s", line)
		case p.String() != last:
			fmt.Fprintln(w, line)
		}
		last = p.String()
		if p.done() {
			if live {
				fmt.Fprintln(w)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if live {
				fmt.Fprintln(w)
			}
			return fmt.Errorf("waiting for the workloads (%s): %w", p, ctx.Err())
		case <-ticker.C:
		}
	}
}

func observe(ctx context.Context, c client.Client) (progress, error) {
	var p progress
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(demoNamespace)); err != nil {
		return p, fmt.Errorf("listing pods: %w", err)
	}
	for _, pod := range pods.Items {
		p.pods++
		if pod.Status.Phase == corev1.PodRunning || pod.Status.Phase == corev1.PodSucceeded {
			p.podsDone++
		}
	}
	claims := &v1.NodeClaimList{}
	if err := c.List(ctx, claims); err != nil {
		return p, fmt.Errorf("listing nodeclaims: %w", err)
	}
	for _, claim := range claims.Items {
		p.claims++
		if meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionReady) {
			p.claimsReady++
		}
	}
	return p, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
