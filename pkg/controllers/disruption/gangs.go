package disruption

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// Gang-aware disruption. A gang (a training job's pods that only make
// progress together) is disrupted together or not at all: a command that
// would take one of its nodes is widened to every node its pods run on, or
// dropped when one of them may not go; and it is never consolidated pod by
// pod. Before its nodes are drained, every pod of the gang gets the
// checkpoint signal (the stowage.dev/interruption annotation), not only
// those on the first node.

// GangSignal is the stowage.dev/interruption value a gang's pods get when
// the gang is disrupted on purpose (drift, expiry).
func GangSignal(reason v1.DisruptionReason) string { return "disruption:" + string(reason) }

// gangIndex says where each gang runs.
type gangIndex struct {
	// of maps a node to the gangs of its pods, nodes a gang to its nodes,
	// pods a gang to its pods.
	of    map[string][]string
	nodes map[string][]string
	pods  map[string][]*corev1.Pod
}

func indexGangs(st *ClusterState, gangs scheduling.Gangs) *gangIndex {
	g := &gangIndex{of: map[string][]string{}, nodes: map[string][]string{}, pods: map[string][]*corev1.Pod{}}
	names := make([]string, 0, len(st.PodsByNode))
	for n := range st.PodsByNode {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, node := range names {
		for _, p := range st.PodsByNode[node] {
			name, _, err := gangs.Of(p)
			if name == "" || err != nil {
				continue
			}
			key := p.Namespace + "/" + name
			if len(g.nodes[key]) == 0 || g.nodes[key][len(g.nodes[key])-1] != node {
				g.nodes[key] = append(g.nodes[key], node)
				g.of[node] = append(g.of[node], key)
			}
			g.pods[key] = append(g.pods[key], p)
		}
	}
	return g
}

// wholeGangs returns cmd widened to whole gangs, or the reason it must not
// run: a gang's pods would be consolidated, or a node of one of its gangs
// may not be disrupted now. Commands without gang pods come back unchanged.
// A widened command is planned again, so its replacements hold the whole
// gang (in one zone, as any gang).
//
// With reserved, cmd is already counted in e (a decision just made): the
// check only says whether it could go whole, and cmd comes back as it was;
// it is widened and planned when it is carried out.
func wholeGangs(ctx context.Context, e *Evaluation, all []*Candidate, cmd Command, gangs scheduling.Gangs, reserved bool) (Command, []string, string, error) {
	widened, members, why := widenGangs(e, all, cmd, gangs, reserved, reserved)
	if why != "" {
		return Command{}, nil, why, nil
	}
	if len(members) == 0 {
		return cmd, nil, "", nil
	}
	if len(widened) == len(cmd.Candidates) {
		return cmd, members, "", nil // the gang already lies within the command
	}
	if reserved {
		return cmd, members, "", nil
	}
	sim, err := e.simulate(ctx, widened)
	if err != nil {
		return Command{}, nil, "", err
	}
	if !sim.Feasible() {
		return Command{}, nil, fmt.Sprintf("gangs %s have no place to run whole", strings.Join(members, ", ")), nil
	}
	out := cmd
	out.Candidates = widened
	out.Replacements = sim.Plan.NewNodes
	out.Bindings = sim.Plan.Bindings
	out.SavingsPerHour = 0
	for _, c := range widened {
		out.SavingsPerHour += c.PricePerHour
	}
	out.SavingsPerHour -= sim.Plan.CostPerHour
	return out, members, "", nil
}

// widenGangs is cmd's candidates widened to the nodes of every gang they
// run, the gangs, and why they cannot go whole now: a gang's pods would be
// consolidated, a node of one of its gangs may not be disrupted now (blocked,
// not a candidate, or, unless reserved, taken by another command of the
// pass), or the budget cannot take them all. counted says the pass's
// reservations already count cmd against the budgets.
func widenGangs(e *Evaluation, all []*Candidate, cmd Command, gangs scheduling.Gangs, reserved, counted bool) ([]*Candidate, []string, string) {
	idx := e.gangIndex(gangs)
	byNode := map[string]*Candidate{}
	for _, c := range all {
		byNode[c.Node.Name] = c
	}
	in := map[string]bool{}
	queue := make([]*Candidate, 0, len(cmd.Candidates))
	for _, c := range cmd.Candidates {
		in[c.Node.Name] = true
		queue = append(queue, c)
	}
	var members []string
	seen := map[string]bool{}
	widened := append([]*Candidate(nil), cmd.Candidates...)
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		for _, gang := range idx.of[c.Node.Name] {
			if seen[gang] {
				continue
			}
			seen[gang] = true
			members = append(members, gang)
			if cmd.Reason == v1.DisruptionReasonUnderutilized {
				return nil, nil, fmt.Sprintf("node %s runs pods of gang %s, which is never consolidated pod by pod", c.Node.Name, gang)
			}
			if cmd.Reason == v1.DisruptionReasonUnhealthy {
				// The gang is broken already: repair replaces the dead node
				// alone, as a spot reclaim would, and the peers get the
				// checkpoint signal. Waiting for the peers' blockers (a
				// running Job, a young GPU node) would leave it broken.
				continue
			}
			for _, node := range idx.nodes[gang] {
				if in[node] {
					continue
				}
				other := byNode[node]
				switch {
				case other == nil:
					return nil, nil, fmt.Sprintf("gang %s also runs on node %s, which cannot be disrupted now", gang, node)
				case other.Blocked != "" && !cmd.Forceful:
					return nil, nil, fmt.Sprintf("gang %s also runs on node %s: %s", gang, node, other.Blocked)
				case !reserved && e.Reserved(other):
					// Carried out now: another command of the pass (repair of
					// a dead member) took that node; taking it again would buy
					// its pods a second place.
					return nil, nil, fmt.Sprintf("gang %s also runs on node %s, which another command takes", gang, node)
				}
				in[node] = true
				widened = append(widened, other)
				queue = append(queue, other)
			}
		}
	}
	sort.Strings(members)
	if len(widened) == len(cmd.Candidates) || cmd.Forceful {
		return widened, members, ""
	}
	perPool := map[string]int{}
	for _, c := range widened {
		perPool[c.Pool.Name]++
	}
	if counted {
		// The nodes this pass's commands took count already: cmd's own, and
		// its gang peers' when each member got a command of its own.
		for _, c := range widened {
			if e.Reserved(c) {
				perPool[c.Pool.Name]--
			}
		}
	}
	for _, c := range widened {
		if n := perPool[c.Pool.Name]; n > e.Allowed(c.Pool, cmd.Reason) {
			return nil, nil, fmt.Sprintf("gangs %s need %d nodes of nodepool %s disrupted at once; its budget allows %d",
				strings.Join(members, ", "), n, c.Pool.Name, e.Allowed(c.Pool, cmd.Reason))
		}
	}
	return widened, members, ""
}

// gangHeld says why c, taken by a command of its own for reason, could not
// go with its whole gangs now ("" when it could, or runs no gang). Asked
// before a method takes c, so a gang that cannot go does not take the
// pass's budget from the nodes that can.
func gangHeld(e *Evaluation, all []*Candidate, c *Candidate, reason v1.DisruptionReason, forceful bool, gangs scheduling.Gangs) string {
	_, _, why := widenGangs(e, all, Command{Reason: reason, Candidates: []*Candidate{c}, Forceful: forceful}, gangs, false, false)
	return why
}

// signalGangs gives every pod of the gangs the checkpoint signal before any
// of their nodes is drained.
func signalGangs(ctx context.Context, c client.Client, st *ClusterState, gangs scheduling.Gangs, members []string, value string) error {
	if len(members) == 0 {
		return nil
	}
	idx := indexGangs(st, gangs)
	var errs []error
	for _, gang := range members {
		for _, p := range idx.pods[gang] {
			if p.Annotations[v1.AnnotationInterruption] == value {
				continue
			}
			patched := p.DeepCopy()
			if patched.Annotations == nil {
				patched.Annotations = map[string]string{}
			}
			patched.Annotations[v1.AnnotationInterruption] = value
			if err := c.Patch(ctx, patched, client.MergeFrom(p)); client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("signalling pod %s/%s of gang %s: %w", p.Namespace, p.Name, gang, err))
			}
		}
	}
	return errors.Join(errs...)
}

// gangs recognises gangs as provisioning does. Disruption needs only their
// names, not their sizes, so workloads sized by an API lookup are named
// without one.
func (c *Controller) gangs() scheduling.Gangs { return GangsOf(c.opts.GangSources) }

// GangsOf recognises Stowage's and Kueue's gangs and those of the opted-in
// workload kinds, each sized only to be named (see namesOnly): what a
// what-if and the checkpoint signal need.
func GangsOf(sources map[scheduling.GangSource]bool) scheduling.Gangs {
	return scheduling.Gangs{Sources: sources, Sizes: namesOnly{}}
}

// namesOnly sizes every opted-in workload as a gang of two, which is enough
// to name it.
type namesOnly struct{}

func (namesOnly) IndexedJobSize(string, string) (int, error) { return 2, nil }
func (namesOnly) JobSetSize(string, string) (int, error)     { return 2, nil }

// A LeaderReady set's leader is kept with its workers here: a gang's name is
// all disruption reads, and the replica goes and comes back as one.
func (namesOnly) LeaderWorkerSetLeaderFirst(string, string) (bool, error) { return false, nil }

// SignalGangPeers gives the checkpoint signal value to every running pod, on
// any node, of the gangs pods belong to: when a member of a gang is
// interrupted (a spot reclaim Stowage cannot refuse), the whole gang is told
// to checkpoint, not only the pods on the machine going away. Stowage's and
// Kueue's gang declarations are recognised, and those of the opted-in
// workload kinds (sources).
func SignalGangPeers(ctx context.Context, c client.Client, pods []*corev1.Pod, value string, sources map[scheduling.GangSource]bool) error {
	gangs := GangsOf(sources)
	want := map[string]bool{}
	namespaces := map[string]bool{}
	for _, p := range pods {
		if name, _, err := gangs.Of(p); name != "" && err == nil {
			want[p.Namespace+"/"+name] = true
			namespaces[p.Namespace] = true
		}
	}
	var errs []error
	for ns := range namespaces {
		list := &corev1.PodList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			errs = append(errs, fmt.Errorf("listing pods in %s: %w", ns, err))
			continue
		}
		for i := range list.Items {
			p := &list.Items[i]
			name, _, _ := gangs.Of(p)
			if name == "" || !want[p.Namespace+"/"+name] || scheduling.Finished(p) || p.Annotations[v1.AnnotationInterruption] == value {
				continue
			}
			patched := p.DeepCopy()
			if patched.Annotations == nil {
				patched.Annotations = map[string]string{}
			}
			patched.Annotations[v1.AnnotationInterruption] = value
			if err := c.Patch(ctx, patched, client.MergeFrom(p)); client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("signalling pod %s/%s: %w", p.Namespace, p.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
