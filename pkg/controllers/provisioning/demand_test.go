package provisioning

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

type fakeDemands struct {
	demands  []Demand
	outcomes map[string]Outcome
}

func (f *fakeDemands) Demands() []Demand { return f.demands }
func (f *fakeDemands) Planned(_ context.Context, key string, o Outcome, book func()) {
	f.outcomes[key] = o
	if book != nil {
		book()
	}
}

func standIns(request string, n int) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range n {
		p := withPod(pendingPod(fmt.Sprintf("%s-0-%d", request, i)), tolerateGPU)
		p.UID = types.UID(fmt.Sprintf("pr-%s-%d", request, i))
		p.Annotations = map[string]string{provreqv1.ConsumeAnnotation: request}
		out = append(out, p)
	}
	return out
}

// Demands are planned in the same pass as pending pods: a bought demand's
// claims are marked as held for it and its stand-ins booked on them, never
// nominated or sent events; a check-only demand is solved on its own and
// only capacity that exists is booked.
func TestScheduleServesDemands(t *testing.T) {
	buy := Demand{Key: "default/job", Pods: standIns("job", 2)}
	fits := Demand{Key: "default/fits", Pods: standIns("fits", 1), CheckOnly: true}
	wouldBuy := Demand{Key: "default/buy", Pods: standIns("buy", 1), CheckOnly: true}
	src := &fakeDemands{demands: []Demand{buy, fits, wouldBuy}, outcomes: map[string]Outcome{}}
	plan := func(snap *solver.Snapshot) *solver.Plan {
		// A check for "fits" finds room on the existing node n1.
		if len(snap.Pods) == 1 && snap.Pods[0] == fits.Pods[0] {
			return &solver.Plan{Bindings: []solver.Binding{{Pod: fits.Pods[0], NodeName: "n1"}}}
		}
		return onePerPod(snap)
	}
	f := newFixture(t, plan)
	f.ctrl.demands = src
	f.cluster.UpdatePod(withPod(pendingPod("web"), tolerateGPU))
	r := f.schedule(t)
	if len(r.Created) != 3 {
		t.Fatalf("created %d claims, want one for the pending pod and two for the demand", len(r.Created))
	}
	held := 0
	for _, cl := range r.Created {
		if cl.Annotations[v1.AnnotationBookedBy] == "default/job" {
			held++
		}
	}
	if held != 2 {
		t.Errorf("%d claims marked as held for default/job, want 2", held)
	}
	o := src.outcomes["default/job"]
	if !o.Placed || len(o.Claims) != 2 {
		t.Errorf("default/job outcome %+v, want placed on its two claims", o)
	}
	if b := f.cluster.Booking("default/job"); len(b) != 2 {
		t.Errorf("booking of default/job %v, want two claims", b)
	}
	for _, p := range buy.Pods {
		if f.cluster.IsNominated(p) {
			t.Errorf("stand-in %s was nominated", p.Name)
		}
	}
	if evs := f.drainEvents(); len(evs) != 1 || !strings.Contains(evs[0], "planned onto nodeclaim") {
		t.Errorf("events %q, want only the pending pod's Nominated", evs)
	}
	if o := src.outcomes["default/fits"]; !o.Placed || o.NewNodes != 0 || f.cluster.Booking("default/fits")["n1"] != 1 {
		t.Errorf("default/fits outcome %+v, booking %v; want found on n1 and booked there", o, f.cluster.Booking("default/fits"))
	}
	if o := src.outcomes["default/buy"]; !o.Placed || o.NewNodes != 1 || f.cluster.Booking("default/buy") != nil {
		t.Errorf("default/buy outcome %+v, booking %v; want buyable, nothing booked", o, f.cluster.Booking("default/buy"))
	}

	// A pod consuming the held capacity is left to the kube-scheduler.
	consumer := withPod(pendingPod("job-worker-0"), tolerateGPU, func(p *corev1.Pod) {
		p.ObjectMeta = metav1.ObjectMeta{Namespace: "default", Name: p.Name, UID: p.UID,
			Annotations: map[string]string{provreqv1.ConsumeAnnotation: "job"}}
	})
	f.cluster.UpdatePod(consumer)
	src.demands = nil
	r = f.schedule(t)
	for _, p := range r.Pods {
		if p.Name == consumer.Name {
			t.Error("a pod consuming a held booking was planned again")
		}
	}
}

// A request's stand-ins mounting a zonal volume are planned in its zone:
// machines bought elsewhere would never take the real pods.
func TestDemandStandInsFollowTheirVolumes(t *testing.T) {
	f := newFixture(t, onePerPod)
	f.zonalClaim(t, "data", "us-east-1b")
	pods := standIns("job", 1)
	withClaim("data")(pods[0])
	f.ctrl.demands = &fakeDemands{demands: []Demand{{Key: "default/job", Pods: pods}}, outcomes: map[string]Outcome{}}

	f.schedule(t)
	snap := f.solver.snapshots[0]
	p := snap.Pods[0]
	if p.Spec.Affinity == nil || p.Spec.Affinity.NodeAffinity == nil ||
		p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatalf("stand-in %s reached the solver without its volume's zone (us-east-1b): capacity may be bought in a zone the volume cannot attach to", p.Name)
	}
}

// A check-only demand is answered against the cluster as the pass left it,
// pool limits included: once the pass's own purchase used up the pool's
// limit, the capacity is no longer buyable.
func TestCheckDemandSeesTheLimitThePassUsedUp(t *testing.T) {
	f := newFixture(t, func(snap *solver.Snapshot) *solver.Plan {
		plan, err := solver.Solve(context.Background(), snap)
		if err != nil {
			t.Fatal(err)
		}
		return plan
	})
	pool := gpuPool()
	pool.Spec.Template.Spec.GPU = nil
	pool.Spec.Limits = v1.Limits(res("nvidia.com/gpu", "4"))
	f.cluster.UpdateNodePool(pool)
	whole := func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = res("cpu", "1", "nvidia.com/gpu", "4")
	}
	check := Demand{Key: "default/check", Pods: standIns("check", 1), CheckOnly: true}
	whole(check.Pods[0])
	src := &fakeDemands{demands: []Demand{check}, outcomes: map[string]Outcome{}}
	f.ctrl.demands = src
	f.cluster.UpdatePod(withPod(pendingPod("train"), tolerateGPU, whole))

	if r := f.schedule(t); len(r.Created) != 1 {
		t.Fatalf("created %d claims, want one for the pending pod", len(r.Created))
	}
	if o := src.outcomes["default/check"]; o.Placed {
		t.Errorf("check-only outcome %+v, want not placed: the pool's 4 GPUs are all bought", o)
	}
}

// A pod the kube-scheduler is preempting for (status.nominatedNodeName set by
// the scheduler, no nomination of Stowage's) will run on that node once its
// victims leave; buying a machine for it is a second purchase.
