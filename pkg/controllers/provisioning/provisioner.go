package provisioning

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/devices"
)

// maxConcurrentCreates bounds the NodeClaim creates in flight at once: enough
// to hide API server latency, few enough not to flood it (or its priority
// and fairness queue, whose default queue holds 50) when a plan buys
// hundreds of machines. In bench-e2e 16 wrote about 85 claims/s, 64 about
// 160/s, and 128 no more than 64 while the client began to throttle.
const maxConcurrentCreates = 64

// Window is one batch: when it opened and when it closed.
type Window struct {
	Opened, Closed time.Time
}

// Result is what one provisioning pass did.
type Result struct {
	// Pods are the pods the pass planned for.
	Pods []*corev1.Pod
	// Plan is the solver's answer, nil when there was nothing to plan.
	Plan *solver.Plan
	// Created are the NodeClaims written, in plan order.
	Created []*v1.NodeClaim
}

// Schedule runs one provisioning pass over every pod that is unschedulable
// now and not already nominated to a node that is on its way.
func (c *Controller) Schedule(ctx context.Context, w Window) (*Result, error) {
	logger := log.FromContext(ctx)
	if !c.cluster.Synced() {
		return nil, errNotSynced
	}
	began := c.clock.Now()
	pending := c.cluster.Pods(provisionable)
	for _, p := range pending {
		// Planned before, but the plan no longer holds: say why, since the
		// pod is planned (and may be bought for) again. A pod the scheduler
		// preempts for is not; PruneNominations logs its nomination.
		if target, why := c.cluster.LapsedNomination(p); target != "" && !c.preempting(p) {
			logger.Info("planning pod again", "pod", klog.KObj(p), "nominatedTo", target, "why", why)
			nominationsLapsed.Inc()
		}
	}
	for _, d := range c.cluster.PruneNominations() {
		logger.V(1).Info("dropped nomination", "pod", d.Pod, "nominatedTo", d.Target, "why", d.Why)
	}
	c.forgetResolved(pending)

	pools := c.cluster.NodePools()
	solverPools, lookup, poolErrs := c.instanceTypes(ctx, pools)

	buy, check := c.demandsNow()
	pods, vols, err := c.volumeTopology(ctx, c.compatiblePods(ctx, pending, pools), demandPods(buy, check))
	if err != nil {
		return nil, err
	}
	buy, check = demandTopology(vols, buy), demandTopology(vols, check)
	phantoms := map[*corev1.Pod]string{}
	for _, d := range buy {
		for _, p := range d.Pods {
			phantoms[p] = d.Key
		}
		pods = append(pods, d.Pods...)
	}
	res := &Result{Pods: pods}
	if len(pods) == 0 && len(check) == 0 {
		return res, nil
	}
	daemons, err := c.daemonSetPods(ctx)
	if err != nil {
		return res, err
	}
	snapshotFor := func(pods []*corev1.Pod) (*solver.Snapshot, error) {
		nodes := c.cluster.Nodes(lookup)
		dra, err := devices.Read(ctx, c.client, c.devices, pods, nodes)
		if err != nil {
			return nil, err
		}
		// Usage is read with the nodes: the check-only demands are solved
		// after the pass bought, and its claims count against the limits.
		withUsage := make([]*solver.NodePool, len(solverPools))
		for i, sp := range solverPools {
			withUsage[i] = &solver.NodePool{NodePool: sp.NodePool, InstanceTypes: sp.InstanceTypes, Usage: c.cluster.Usage(sp.Name, lookup)}
		}
		return &solver.Snapshot{
			Pods:          pods,
			Nodes:         nodes,
			Closed:        c.cluster.ClosedNodes(),
			NodePools:     withUsage,
			DaemonSetPods: daemons,
			Gangs:         c.gangs(ctx),
			DRA:           dra,
			Volumes:       vols,
		}, nil
	}
	var errs []error
	if len(pods) > 0 {
		snapshot, err := snapshotFor(pods)
		if err != nil {
			return res, err
		}
		start := c.clock.Now()
		plan, err := c.solver.Solve(ctx, snapshot)
		solverDuration.Observe(c.clock.Since(start).Seconds())
		if err != nil {
			return res, fmt.Errorf("solving for %d pods: %w", len(pods), err)
		}
		res.Plan = plan
		logger.Info("planned pending pods", "pods", len(pods), "newNodes", len(plan.NewNodes),
			"bindings", len(plan.Bindings), "unschedulable", len(plan.Unschedulable),
			"costPerHour", fmt.Sprintf("%.4f", plan.CostPerHour))

		byName := make(map[string]*v1.NodePool, len(pools))
		for _, p := range pools {
			byName[p.Name] = p
		}
		var claimOf map[*solver.NewNode]*v1.NodeClaim
		solved := c.clock.Now()
		res.Created, claimOf, errs = c.launchAll(ctx, byName, plan.NewNodes, w, phantoms)
		// Where a pass spends its time: pods that turn up meanwhile wait
		// for the next one.
		logger.Info("wrote the plan", "nodeClaims", len(res.Created), "failed", len(errs),
			"prepare", start.Sub(began).Round(time.Millisecond).String(),
			"solve", solved.Sub(start).Round(time.Millisecond).String(),
			"write", c.clock.Since(solved).Round(time.Millisecond).String())
		c.bind(plan.Bindings, phantoms)
		for _, u := range plan.Unschedulable {
			if _, ok := phantoms[u.Pod]; !ok {
				c.tellOnce(ctx, u.Pod, ReasonFailedProvisioning, u.Reason)
			}
		}
		c.settleDemands(ctx, buy, phantoms, plan, claimOf)
	}
	if err := c.checkDemands(ctx, check, snapshotFor); err != nil {
		return res, err
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("creating %d of %d nodeclaims failed, first: %w", len(errs), len(res.Plan.NewNodes), errs[0])
	}
	// Pools whose instance types could not be listed sat this pass out; an
	// error makes the loop try again after the next batch window.
	return res, poolErrs
}

// forgetResolved drops first-seen times of pods that are no longer pending.
func (c *Controller) forgetResolved(pending []*corev1.Pod) {
	still := make(map[types.UID]bool, len(pending))
	for _, p := range pending {
		still[p.UID] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid := range c.seen {
		if !still[uid] {
			delete(c.seen, uid)
			delete(c.lastWhy, uid)
		}
	}
	for _, p := range pending {
		if _, ok := c.seen[p.UID]; !ok {
			c.seen[p.UID] = c.clock.Now()
		}
	}
	podsPending.Set(float64(len(c.seen)))
}

// instanceTypes asks the cloud what each pool may buy. A pool whose lookup
// fails is left out of this pass rather than failing every pool.
func (c *Controller) instanceTypes(ctx context.Context, pools []*v1.NodePool) ([]*solver.NodePool, state.InstanceTypeLookup, error) {
	byPool := map[string]map[string]*cloudprovider.InstanceType{}
	var errs []error
	var out []*solver.NodePool
	for _, pool := range pools {
		its, err := c.cloud.InstanceTypes(ctx, pool)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing instance types of nodepool %s: %w", pool.Name, err))
			log.FromContext(ctx).Error(err, "listing instance types; skipping the pool this pass", "nodepool", pool.Name)
			continue
		}
		m := make(map[string]*cloudprovider.InstanceType, len(its))
		for _, it := range its {
			m[it.Name] = it
		}
		byPool[pool.Name] = m
		out = append(out, &solver.NodePool{NodePool: pool, InstanceTypes: its})
	}
	lookup := func(pool, name string) (*cloudprovider.InstanceType, bool) {
		it, ok := byPool[pool][name]
		return it, ok
	}
	return out, lookup, errors.Join(errs...)
}

// compatiblePods returns the pending pods that are not settled (bound since
// they were listed, or nominated) and that at least one pool could hold; the
// others are told why, once per reason.
func (c *Controller) compatiblePods(ctx context.Context, pending []*corev1.Pod, pools []*v1.NodePool) []*corev1.Pod {
	var out []*corev1.Pod
	for _, pod := range pending {
		if c.cluster.Settled(pod) || c.cluster.IsBookedFor(pod) || c.preempting(pod) {
			continue
		}
		var whys []string
		ok := false
		for _, pool := range pools {
			why := poolIncompatibility(pod, pool)
			if why == "" {
				ok = true
				break
			}
			whys = append(whys, fmt.Sprintf("nodepool %s: %s", pool.Name, why))
		}
		if ok {
			out = append(out, pod)
			continue
		}
		msg := "no NodePool can hold this pod"
		if len(pools) == 0 {
			msg = "no NodePool exists"
		} else {
			msg += ": " + strings.Join(whys, "; ")
		}
		c.tellOnce(ctx, pod, ReasonNoCompatibleNodePool, msg)
	}
	return out
}

// preempting reports whether the kube-scheduler has made room for pod by
// preempting others on an existing node (it set nominatedNodeName there and
// waits for the victims to leave): buying a machine for it would be waste.
// Stowage's own steering sets the field too, to the node it planned.
func (c *Controller) preempting(pod *corev1.Pod) bool {
	node := pod.Status.NominatedNodeName
	return node != "" && c.cluster.Node(node) != nil && c.cluster.NominatedNode(pod) != node
}

// tellOnce emits a warning on pod unless the last one it got said the same,
// so a pod stuck for hours is not sent the same event every batch.
func (c *Controller) tellOnce(ctx context.Context, pod *corev1.Pod, reason, msg string) {
	key := reason + ": " + msg
	c.mu.Lock()
	repeated := c.lastWhy[pod.UID] == key
	c.lastWhy[pod.UID] = key
	c.mu.Unlock()
	if repeated {
		return
	}
	log.FromContext(ctx).Info("pod cannot be provisioned", "pod", klog.KObj(pod), "reason", reason, "message", msg)
	switch reason {
	case ReasonNoCompatibleNodePool:
		c.events.noPool(pod, msg)
	case ReasonWaitingForVolume:
		c.events.waitingForVolume(pod, msg)
	default:
		c.events.failed(pod, msg)
	}
}

// volumeTopology confines each pod that mounts PersistentVolumeClaims to
// where its volumes can be attached (scheduling.Volumes.WithTopology). Pods
// whose claims are not ready are told why and left out of the pass: a node
// bought before the volume is bound may be in the wrong zone. The volumes
// it returns, nil when no pod mounts a claim or an in-tree disk, let the
// solver count attach limits.
func (c *Controller) volumeTopology(ctx context.Context, pods, standIns []*corev1.Pod) ([]*corev1.Pod, *scheduling.Volumes, error) {
	if !slices.ContainsFunc(pods, scheduling.AttachesVolumes) && !slices.ContainsFunc(standIns, scheduling.AttachesVolumes) {
		return pods, nil, nil
	}
	vols, err := state.ListVolumes(ctx, c.client)
	if err != nil {
		return nil, nil, err
	}
	vols.NodeZone = func(name string) (string, bool) {
		n := c.cluster.Node(name)
		if n == nil {
			return "", false
		}
		return n.Labels[v1.LabelZone], true
	}
	var users map[types.NamespacedName][]*corev1.Pod // claim -> pods on nodes mounting it, read once
	vols.ClaimUser = func(namespace, claim string, except types.UID) string {
		if users == nil {
			users = claimUsers(c.cluster.Pods(func(p *corev1.Pod) bool {
				return p.Spec.NodeName != "" && !scheduling.Finished(p) && scheduling.UsesClaims(p)
			}))
		}
		for _, p := range users[types.NamespacedName{Namespace: namespace, Name: claim}] {
			if p.UID != except {
				return p.Name
			}
		}
		return ""
	}
	out := make([]*corev1.Pod, 0, len(pods))
	for _, p := range pods {
		q, err := vols.WithTopology(p)
		switch {
		case errors.Is(err, scheduling.ErrVolumeNotReady):
			c.tellOnce(ctx, p, ReasonWaitingForVolume, err.Error())
		case err != nil:
			c.tellOnce(ctx, p, ReasonFailedProvisioning, err.Error())
		default:
			out = append(out, q)
		}
	}
	return out, vols, nil
}

// claimUsers indexes pods by the claims they mount directly.
func claimUsers(pods []*corev1.Pod) map[types.NamespacedName][]*corev1.Pod {
	out := map[types.NamespacedName][]*corev1.Pod{}
	for _, p := range pods {
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				key := types.NamespacedName{Namespace: p.Namespace, Name: v.PersistentVolumeClaim.ClaimName}
				out[key] = append(out[key], p)
			}
		}
	}
	return out
}

// demandPods are the pods of every demand.
func demandPods(demands ...[]Demand) []*corev1.Pod {
	var out []*corev1.Pod
	for _, ds := range demands {
		for _, d := range ds {
			out = append(out, d.Pods...)
		}
	}
	return out
}

// demandTopology confines each demand's stand-ins to where their volumes
// are, as volumeTopology does pending pods, so capacity is not bought where
// the real pods cannot mount them. A stand-in whose claim does not exist or
// is not bound yet is planned as it is: its claim may be made with the pods
// the request is for.
func demandTopology(vols *scheduling.Volumes, demands []Demand) []Demand {
	if vols == nil {
		return demands
	}
	out := make([]Demand, len(demands))
	for i, d := range demands {
		d.Pods = slices.Clone(d.Pods)
		for j, p := range d.Pods {
			if q, err := vols.WithTopology(p); err == nil {
				d.Pods[j] = q
			}
		}
		out[i] = d
	}
	return out
}

// daemonSetPods returns a pod per DaemonSet, from its template: every new
// node runs the ones it matches, so they count against its capacity.
func (c *Controller) daemonSetPods(ctx context.Context) ([]*corev1.Pod, error) {
	list := &appsv1.DaemonSetList{}
	if err := c.client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing daemonsets: %w", err)
	}
	out := make([]*corev1.Pod, 0, len(list.Items))
	runtimes := map[string]Runtime{}
	for i := range list.Items {
		ds := &list.Items[i]
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Name: ds.Name, Labels: ds.Spec.Template.Labels},
			Spec:       *ds.Spec.Template.Spec.DeepCopy(),
		}
		if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
			// The RuntimeClass admission plugin gives the real pods their
			// runtime's overhead and node selector; the template does not
			// carry them. A daemon pod on a node without the class's labels
			// never schedules, so it takes nothing there.
			rt, ok := runtimes[*rc]
			if !ok {
				rt = RuntimeOf(ctx, c.client, *rc)
				runtimes[*rc] = rt
			}
			// The DaemonSet controller picks nodes by the template's own
			// tolerations, so the class's do not widen where the daemon runs.
			rt.Tolerations = nil
			if err := rt.Admit(&pod.Spec); err != nil {
				// Admission rejects every pod of it: it runs nowhere.
				log.FromContext(ctx).V(1).Info("daemonset runs on no new node", "daemonSet", klog.KObj(ds), "error", err.Error())
				continue
			}
		}
		out = append(out, pod)
	}
	return out, nil
}

// Runtime is what the RuntimeClass admission plugin adds to the pods of a
// class: its pod overhead, node selector and tolerations. Pods made from
// templates (DaemonSets, ProvisioningRequests' stand-ins) need it added by
// hand: admission sees only real pods.
type Runtime struct {
	Overhead     corev1.ResourceList
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
}

// RuntimeOf reads the named RuntimeClass. One that is missing or cannot be
// read adds nothing: its pods are planned as they are.
func RuntimeOf(ctx context.Context, c client.Reader, name string) Runtime {
	rc := &nodev1.RuntimeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, rc); err != nil {
		if !apierrors.IsNotFound(err) {
			log.FromContext(ctx).V(1).Info("reading runtimeclass; planning its pods without it", "runtimeClass", name, "error", err.Error())
		}
		return Runtime{}
	}
	var rt Runtime
	if rc.Overhead != nil {
		rt.Overhead = rc.Overhead.PodFixed
	}
	if rc.Scheduling != nil {
		rt.NodeSelector, rt.Tolerations = rc.Scheduling.NodeSelector, rc.Scheduling.Tolerations
	}
	return rt
}

// Admit adds r to a pod spec as the admission plugin does: the overhead
// unless the spec has one, the node selector merged into the spec's, and the
// tolerations merged without duplicates. A key the spec selects with another
// value is an error: admission rejects such pods. The spec's maps and slices
// are replaced, not written to, so templates and r stay as they were.
func (r Runtime) Admit(spec *corev1.PodSpec) error {
	if len(r.NodeSelector) > 0 {
		sel := make(map[string]string, len(spec.NodeSelector)+len(r.NodeSelector))
		for k, v := range spec.NodeSelector {
			sel[k] = v
		}
		for _, k := range slices.Sorted(maps.Keys(r.NodeSelector)) { // the same key named every time
			v := r.NodeSelector[k]
			if own, ok := sel[k]; ok && own != v {
				return fmt.Errorf("runtimeclass %s's nodeSelector %s=%s conflicts with the pod's %s=%s: admission rejects the pods",
					ptr.Deref(spec.RuntimeClassName, ""), k, v, k, own)
			}
			sel[k] = v
		}
		spec.NodeSelector = sel
	}
	if len(r.Tolerations) > 0 {
		spec.Tolerations = scheduling.MergeTolerations(spec.Tolerations, r.Tolerations)
	}
	if spec.Overhead == nil {
		spec.Overhead = r.Overhead
	}
	return nil
}

// launchAll writes the NodeClaims of a plan, up to maxConcurrentCreates at
// a time: one after another, a 200-machine plan waited seconds on API server
// round trips. Every claim is in the cluster view when it returns, so the
// next pass sees them all. Created keeps plan order; a failed create does not
// stop the others. claimOf maps each planned node to the claim that stands for it.
func (c *Controller) launchAll(ctx context.Context, pools map[string]*v1.NodePool, nodes []*solver.NewNode, w Window,
	phantoms map[*corev1.Pod]string) (created []*v1.NodeClaim, claimOf map[*solver.NewNode]*v1.NodeClaim, failed []error) {
	claims := make([]*v1.NodeClaim, len(nodes))
	errs := make([]error, len(nodes))
	var g errgroup.Group
	g.SetLimit(maxConcurrentCreates)
	for _, i := range c.longestWaitingFirst(nodes, w) {
		n := nodes[i]
		g.Go(func() error {
			claims[i], errs[i] = c.launch(ctx, pools[n.NodePool], n, w, phantoms)
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through errs
	for i := range nodes {
		if errs[i] != nil {
			failed = append(failed, errs[i])
			continue
		}
		created = append(created, claims[i])
	}
	if len(failed) > 0 {
		created = c.withdrawBrokenGangs(ctx, nodes, claims, errs)
	}
	claimOf = make(map[*solver.NewNode]*v1.NodeClaim, len(created))
	standing := make(map[*v1.NodeClaim]bool, len(created))
	for _, cl := range created {
		standing[cl] = true
	}
	for i, n := range nodes {
		if standing[claims[i]] {
			claimOf[n] = claims[i]
			c.tellNominated(n, claims[i], phantoms)
		}
	}
	return created, claimOf, failed
}

// tellNominated records the Nominated event of each pod on a written claim.
// It runs once the whole plan is written: an event per pod doubled the
// writes the API server took while the claims were created (the claims of a
// 1,000-pod plan took twice as long), and a claim withdrawn with its gang
// is never announced.
func (c *Controller) tellNominated(n *solver.NewNode, claim *v1.NodeClaim, phantoms map[*corev1.Pod]string) {
	for _, p := range n.Pods {
		if _, ok := phantoms[p]; !ok {
			c.events.nominated(p, claim)
		}
	}
}

// longestWaitingFirst orders the planned nodes for writing by the first
// sighting of the earliest pod on each: pods that turned up while the last
// pass ran have waited longest, and a big plan takes seconds to write, so
// their claims go first. Pods first seen once this batch had opened have
// all waited alike (the batch window is theirs), so among those the claims
// with the most pods go first: a second of writing then delays the fewest
// pods. Nodes only for ProvisioningRequests, which no pod waits on, go
// last; ties keep plan order.
func (c *Controller) longestWaitingFirst(nodes []*solver.NewNode, w Window) []int {
	never := w.Closed.Add(time.Hour)
	first := make([]time.Time, len(nodes))
	c.mu.Lock()
	for i, n := range nodes {
		first[i] = never
		for _, p := range n.Pods {
			if t, ok := c.seen[p.UID]; ok && t.Before(first[i]) {
				first[i] = t
			}
		}
		if first[i].After(w.Opened) && first[i] != never {
			first[i] = w.Opened
		}
	}
	c.mu.Unlock()
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(first[a].Compare(first[b]), cmp.Compare(len(nodes[b].Pods), len(nodes[a].Pods)))
	})
	return order
}

// withdrawBrokenGangs deletes the claims of every gang that did not get all
// of its claims written, so no gang is launched half-built; the next pass
// plans it again whole. It returns the claims that stand.
func (c *Controller) withdrawBrokenGangs(ctx context.Context, nodes []*solver.NewNode, claims []*v1.NodeClaim, errs []error) []*v1.NodeClaim {
	broken := map[string]bool{}
	for i, n := range nodes {
		if errs[i] != nil && n.Gang != "" {
			broken[n.Gang] = true
		}
	}
	var kept []*v1.NodeClaim
	for i, n := range nodes {
		if errs[i] != nil {
			continue
		}
		if !broken[n.Gang] {
			kept = append(kept, claims[i])
			continue
		}
		log.FromContext(ctx).Info("withdrawing nodeclaim of a gang not written whole", "nodeclaim", klog.KObj(claims[i]), "gang", n.Gang)
		if err := c.withdraw(ctx, claims[i]); err != nil {
			// It stands, and stays in view as capacity in flight (no pods
			// nominated to it): the next pass plans the gang with its room,
			// and consolidation removes it if the gang goes elsewhere.
			log.FromContext(ctx).Error(err, "withdrawing nodeclaim failed; it stands", "nodeclaim", klog.KObj(claims[i]))
			continue
		}
		c.cluster.DeleteNodeClaim(claims[i].Name)
	}
	return kept
}

// withdraw deletes a claim just written, retrying briefly: the write that
// broke its gang often failed for the same passing reason (an overloaded
// API server), and the pass's own context may be ending (a lost lease).
func (c *Controller) withdraw(ctx context.Context, claim *v1.NodeClaim) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), withdrawTimeout)
	defer cancel()
	return retry.OnError(retry.DefaultBackoff, func(error) bool { return ctx.Err() == nil }, func() error {
		return client.IgnoreNotFound(c.client.Delete(ctx, claim))
	})
}

// withdrawTimeout bounds the withdrawal of one claim.
const withdrawTimeout = 30 * time.Second

// launch writes the NodeClaim for one planned machine and nominates its pods.
// It runs concurrently with the launches of the same plan.
func (c *Controller) launch(ctx context.Context, pool *v1.NodePool, n *solver.NewNode, w Window, phantoms map[*corev1.Pod]string) (*v1.NodeClaim, error) {
	if pool == nil {
		return nil, fmt.Errorf("plan names nodepool %q, which is not in the snapshot", n.NodePool)
	}
	claim, err := claims.FromPlan(pool, n)
	if err != nil {
		return nil, err
	}
	var real []*corev1.Pod
	for _, p := range n.Pods {
		if key, ok := phantoms[p]; ok {
			// Bought for a ProvisioningRequest: held for its pods to come.
			if claim.Annotations == nil {
				claim.Annotations = map[string]string{}
			}
			claim.Annotations[v1.AnnotationBookedBy] = key
			continue
		}
		real = append(real, p)
	}
	if err := c.client.Create(ctx, claim); err != nil {
		err = fmt.Errorf("creating nodeclaim for nodepool %s: %w", pool.Name, err)
		for _, p := range real {
			c.events.failed(p, err.Error())
		}
		return nil, err
	}
	created := c.clock.Now()
	// Record it now: the informer may deliver it after the next decision.
	c.cluster.UpdateNodeClaim(claim)
	nodeClaimsCreated.WithLabelValues(pool.Name).Inc()
	log.FromContext(ctx).Info("created nodeclaim", "nodeclaim", klog.KObj(claim), "nodepool", pool.Name,
		"instanceType", claim.Spec.Offerings[0].InstanceType, "zone", claim.Spec.Offerings[0].Zone,
		"capacityType", claim.Spec.Offerings[0].CapacityType, "pricePerHour", claim.Spec.Offerings[0].PricePerHour,
		"pods", len(n.Pods), "gang", n.Gang, "placementGroup", n.PlacementGroup)
	c.forgetWhy(real)
	for _, p := range real {
		c.cluster.Nominate(p, claim.Name)
		decisionDuration.Observe(c.decisionLatency(p, w, created).Seconds())
	}
	return claim, nil
}

// decisionLatency is the time from the pod first seen unschedulable to its
// claim's creation, less the part of it spent waiting for the batch to close.
func (c *Controller) decisionLatency(pod *corev1.Pod, w Window, created time.Time) time.Duration {
	c.mu.Lock()
	seen, ok := c.seen[pod.UID]
	c.mu.Unlock()
	if !ok || seen.After(created) {
		seen = w.Opened
	}
	waitFrom := seen
	if w.Opened.After(waitFrom) {
		waitFrom = w.Opened
	}
	d := created.Sub(seen)
	if batch := w.Closed.Sub(waitFrom); batch > 0 {
		d -= batch
	}
	if d < 0 {
		return 0
	}
	return d
}

// forgetWhy clears the last warning of pods that got a plan, so a later
// failure is reported even if it repeats an earlier one.
func (c *Controller) forgetWhy(pods []*corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pods {
		delete(c.lastWhy, p.UID)
	}
}

// bind nominates pods the plan put on existing or launching nodes, and
// steers those planned onto nodes that are up; the stand-ins for a demand's
// pods are booked by settleDemands instead.
func (c *Controller) bind(bindings []solver.Binding, phantoms map[*corev1.Pod]string) {
	for _, b := range bindings {
		if _, ok := phantoms[b.Pod]; ok {
			continue
		}
		c.forgetWhy([]*corev1.Pod{b.Pod})
		c.cluster.Nominate(b.Pod, b.NodeName)
		if c.cluster.NodeClaim(b.NodeName) != nil {
			c.events.nominatedInFlight(b.Pod, b.NodeName)
		}
		c.steer.enqueue(c.cluster.NominatedNode(b.Pod))
	}
}
