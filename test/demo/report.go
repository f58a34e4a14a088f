package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// report prints every machine Stowage bought, why, and the total per hour.
func report(ctx context.Context, c client.Client, w io.Writer) error {
	claims := &v1.NodeClaimList{}
	if err := c.List(ctx, claims); err != nil {
		return fmt.Errorf("listing nodeclaims: %w", err)
	}
	pools := &v1.NodePoolList{}
	if err := c.List(ctx, pools); err != nil {
		return fmt.Errorf("listing nodepools: %w", err)
	}
	byName := map[string]*v1.NodePool{}
	for i := range pools.Items {
		byName[pools.Items[i].Name] = &pools.Items[i]
	}
	podsByNode, err := podsByNode(ctx, c)
	if err != nil {
		return err
	}
	sort.Slice(claims.Items, func(i, j int) bool {
		a, b := claims.Items[i], claims.Items[j]
		if pa, pb := a.Labels[v1.LabelNodePool], b.Labels[v1.LabelNodePool]; pa != pb {
			return pa < pb
		}
		return a.Name < b.Name
	})

	fmt.Fprintf(w, "\nWhat Stowage bought (%d machines):\n\n", len(claims.Items))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODEPOOL\tINSTANCE TYPE\tZONE\tCAPACITY\t$/H\tPODS\tWHY")
	total := 0.0
	for _, claim := range claims.Items {
		it, zone, capType, price := launched(&claim)
		total += price
		pool := claim.Labels[v1.LabelNodePool]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4f\t%s\t%s\n", pool, it, zone, capType, price,
			strings.Join(podsByNode[claim.Status.NodeName], ","), why(&claim, byName[pool], len(podsByNode[claim.Status.NodeName])))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nStowage: $%.2f/h\n", total)
	return nil
}

// launched is what the claim became, or its first choice while it launches.
func launched(claim *v1.NodeClaim) (instanceType, zone, capacityType string, price float64) {
	s := claim.Status
	if s.InstanceType != "" {
		p, _ := strconv.ParseFloat(s.PricePerHour, 64)
		return s.InstanceType, s.Zone, s.CapacityType, p
	}
	if len(claim.Spec.Offerings) == 0 {
		return "?", "?", "?", 0
	}
	o := claim.Spec.Offerings[0]
	p, _ := strconv.ParseFloat(o.PricePerHour, 64)
	return o.InstanceType, o.Zone, o.CapacityType, p
}

// why explains a purchase from what the pool allowed and what was chosen.
func why(claim *v1.NodeClaim, pool *v1.NodePool, pods int) string {
	var parts []string
	if pool != nil && pool.Spec.Weight != nil {
		parts = append(parts, fmt.Sprintf("pool weight %d", *pool.Spec.Weight))
	}
	_, _, capType, _ := launched(claim)
	switch allowed := capacityTypes(pool); {
	case capType == v1.CapacityTypeReserved:
		parts = append(parts, "reserved capacity, already paid for")
	case len(allowed) == 1:
		parts = append(parts, capType+", the only capacity type the pool allows")
	default:
		parts = append(parts, capType+", the cheapest capacity type the pool allows")
	}
	parts = append(parts, choices(len(claim.Spec.Offerings), pods))
	return strings.Join(parts, "; ")
}

// choices says how the claim's offering was picked. The claim keeps the
// cheapest offerings that hold its pods, the first chosen and the rest tried
// in order if the cloud has no capacity for it.
func choices(offerings, pods int) string {
	podsText := "its pod"
	if pods != 1 {
		podsText = fmt.Sprintf("its %d pods", pods)
	}
	if offerings <= 1 {
		return "the only offering that holds " + podsText
	}
	if offerings == 2 {
		return "the cheapest offering that holds " + podsText + ", 1 more kept as a launch fallback"
	}
	return fmt.Sprintf("the cheapest offering that holds %s, %d more kept as launch fallbacks", podsText, offerings-1)
}

// capacityTypes lists what a pool's requirements allow; nil means any.
func capacityTypes(pool *v1.NodePool) []string {
	if pool == nil {
		return nil
	}
	for _, r := range pool.Spec.Template.Spec.Requirements {
		if r.Key == v1.LabelCapacityType && r.Operator == corev1.NodeSelectorOpIn {
			return r.Values
		}
	}
	return nil
}

func podsByNode(ctx context.Context, c client.Client) (map[string][]string, error) {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(demoNamespace)); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := map[string][]string{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Name)
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out, nil
}

// reportNaive prices the same pods bought the simple way, one on-demand
// machine per pod, the cheapest that fits, and compares.
func reportNaive(ctx context.Context, c client.Client, catalog *pricing.Catalog, w io.Writer) error {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(demoNamespace)); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	claims := &v1.NodeClaimList{}
	if err := c.List(ctx, claims); err != nil {
		return fmt.Errorf("listing nodeclaims: %w", err)
	}
	stowage := 0.0
	for i := range claims.Items {
		_, _, _, p := launched(&claims.Items[i])
		stowage += p
	}
	naive := 0.0
	for _, p := range pods.Items {
		price, ok := cheapestOnDemand(catalog, requests(&p))
		if !ok {
			return fmt.Errorf("no instance type in %s/%s fits pod %s/%s", catalog.Cloud, catalog.Region, p.Namespace, p.Name)
		}
		naive += price
	}
	fmt.Fprintf(w, "Naive (one on-demand machine per pod, cheapest that fits, %d pods): $%.2f/h\n", len(pods.Items), naive)
	if naive > 0 {
		fmt.Fprintf(w, "Saved: $%.2f/h (%.0f%%)\n", naive-stowage, 100*(naive-stowage)/naive)
	}
	return nil
}

func requests(p *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, c := range p.Spec.Containers {
		for k, q := range c.Resources.Requests {
			cur := out[k]
			cur.Add(q)
			out[k] = cur
		}
	}
	return out
}

func cheapestOnDemand(catalog *pricing.Catalog, req corev1.ResourceList) (float64, bool) {
	best := math.Inf(1)
	for _, it := range catalog.InstanceTypes {
		// The demo's images are amd64, as the solver assumes by default.
		if it.Labels[v1.LabelArch] != "amd64" || !fits(it, req) {
			continue
		}
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && o.PricePerHour > 0 && o.PricePerHour < best {
				best = o.PricePerHour
			}
		}
	}
	return best, !math.IsInf(best, 1)
}

func fits(it *cloudprovider.InstanceType, req corev1.ResourceList) bool {
	alloc := it.Allocatable()
	for k, q := range req {
		have, ok := alloc[k]
		if !ok {
			have = resource.Quantity{}
		}
		if have.Cmp(q) < 0 {
			return false
		}
	}
	return true
}
