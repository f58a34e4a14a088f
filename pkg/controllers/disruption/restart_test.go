package disruption

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// dyingClient lets the first n writes through and fails every later one, as
// a leader killed after its n-th write.
func dyingClient(base client.Client, n int32) client.Client {
	var writes atomic.Int32
	dead := func() bool { return writes.Add(1) > n }
	return interceptor.NewClient(base.(client.WithWatch), interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if dead() {
				return errors.New("leader killed")
			}
			return c.Create(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if dead() {
				return errors.New("leader killed")
			}
			return c.Patch(ctx, obj, p, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if dead() {
				return errors.New("leader killed")
			}
			return c.Delete(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if dead() {
				return errors.New("leader killed")
			}
			return c.Update(ctx, obj, opts...)
		},
	})
}

// (Passes on current code: kept as evidence that execute/resume are sound.)
// The leader is killed after each write of a replace command in turn; the
// new leader must end with the command either done (candidate gone, one
// replacement) or undone (candidate untainted and unrecorded, no
// replacement), never with two replacements or a node left tainted.
func TestReplaceCommandSurvivesACrashAtEveryStep(t *testing.T) {
	for n := int32(0); n < 12; n++ {
		for _, multi := range []bool{false, true} {
			t.Run(fmt.Sprint("writes=", n, ",multi=", multi), func(t *testing.T) {
				e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
				mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
				if multi {
					m := mach("b", 1, v1.CapacityTypeOnDemand)
					mustT(t, e.client.Create(context.Background(), m[0]))
					mustT(t, e.client.Create(context.Background(), m[1]))
					mustT(t, e.client.Create(context.Background(), pod("web2", "b", "1")))
				}
				base := e.client
				e.ctrl = NewController(Deps{Client: dyingClient(base, n), CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock, Recorder: e.recorder})
				_ = e.ctrl.Pass(context.Background())
				e.clock.Step(DefaultValidationDelay)
				_ = e.ctrl.Pass(context.Background())

				e.ctrl = NewController(Deps{Client: base, CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock, Recorder: e.recorder})
				for i := 0; i < 6; i++ {
					e.clock.Step(10 * time.Second)
					for _, name := range e.claims(t) {
						if strings.HasPrefix(name, "p-") {
							e.setReady(t, name)
						}
					}
					e.pass(t)
				}
				var repl []string
				for _, name := range e.claims(t) {
					if strings.HasPrefix(name, "p-") {
						repl = append(repl, name)
					}
				}
				t.Logf("claims at the end: %v", e.claims(t))
				if len(repl) > 1 {
					t.Errorf("replacements %v: bought more than once", repl)
				}
				nodes := &corev1.NodeList{}
				mustT(t, base.List(context.Background(), nodes))
				claims := map[string]*v1.NodeClaim{}
				list := &v1.NodeClaimList{}
				mustT(t, base.List(context.Background(), list))
				for i := range list.Items {
					claims[list.Items[i].Name] = &list.Items[i]
				}
				for i := range nodes.Items {
					n := &nodes.Items[i]
					c := claims[n.Name]
					if c != nil && hasDisruptedTaint(n) {
						t.Errorf("node %s is still tainted and its claim lives (command %q)", n.Name, c.Annotations[AnnotationCommand])
					}
				}
			})
		}
	}
}

// An emptiness command is recorded on its candidate, and the leader dies
// before the candidate is tainted. While no leader runs, the scheduler puts
// a pod on the (untainted, empty-looking) node. The new leader resumes the
// recorded command as it stands and deletes the node, evicting the pod,
// without checking that the node is still empty.
func TestResumedCommandNeverTaintedIsRolledBack(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("keep", "b", "1", annotated(v1.AnnotationDoNotDisrupt, "true"))))
	base := e.client
	e.ctrl = NewController(Deps{Client: dyingClient(base, 1), CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock, Recorder: e.recorder})
	_ = e.ctrl.Pass(context.Background())
	e.clock.Step(DefaultValidationDelay)
	_ = e.ctrl.Pass(context.Background())
	claim := &v1.NodeClaim{}
	mustT(t, base.Get(context.Background(), client.ObjectKey{Name: "a"}, claim))
	if claim.Annotations[AnnotationCommand] == "" || e.tainted(t, "a") {
		t.Fatalf("setup: command %q, tainted %v; want recorded, not tainted", claim.Annotations[AnnotationCommand], e.tainted(t, "a"))
	}
	// The scheduler places a pod on the untainted node meanwhile.
	mustT(t, base.Create(context.Background(), pod("late", "a", "1")))

	e.ctrl = NewController(Deps{Client: base, CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock, Recorder: e.recorder})
	e.clock.Step(10 * time.Second)
	e.pass(t)
	if err := base.Get(context.Background(), client.ObjectKey{Name: "a"}, claim); err != nil {
		t.Errorf("node a, now running pod default/late, was deleted by an emptiness command resumed without validation: %v", err)
	}
}
