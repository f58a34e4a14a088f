package taints

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

var (
	ours     = corev1.Taint{Key: "stowage.dev/disrupted", Effect: corev1.TaintEffectNoSchedule}
	notReady = corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute}
	gpu      = corev1.Taint{Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
)

func node(taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{Taints: taints}}
}

// hooks are what a test does around the client's reads and patches.
type hooks struct {
	beforeGet   func(c client.WithWatch, n *corev1.Node)
	afterGet    func(n *corev1.Node)
	beforePatch func(c client.WithWatch)
	gets        int
	patches     int
}

// newClient is a fake client that, like the API server, answers a JSON patch
// it cannot apply (a failed test) with 422 Invalid.
func newClient(h *hooks, objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithObjects(objs...).WithStatusSubresource(&corev1.Node{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				h.gets++
				if h.beforeGet != nil {
					h.beforeGet(c, obj.(*corev1.Node))
				}
				if err := c.Get(ctx, key, obj, opts...); err != nil {
					return err
				}
				if h.afterGet != nil {
					h.afterGet(obj.(*corev1.Node))
				}
				return nil
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
				h.patches++
				if h.beforePatch != nil {
					h.beforePatch(c)
				}
				err := c.Patch(ctx, obj, p, opts...)
				var status apierrors.APIStatus
				if err != nil && p.Type() == types.JSONPatchType && !errors.As(err, &status) {
					return apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
				}
				return err
			},
		}).Build()
}

func stored(t *testing.T, c client.Client) []corev1.Taint {
	t.Helper()
	n := &corev1.Node{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: "n1"}, n); err != nil {
		t.Fatal(err)
	}
	return n.Spec.Taints
}

func keys(taints []corev1.Taint) []string {
	var out []string
	for _, t := range taints {
		out = append(out, t.Key)
	}
	return out
}

func TestAdd(t *testing.T) {
	for _, tt := range []struct {
		name      string
		have      []corev1.Taint
		want      []string
		wantAdded bool
	}{
		{name: "no taints", want: []string{ours.Key}, wantAdded: true},
		{name: "others kept", have: []corev1.Taint{gpu}, want: []string{gpu.Key, ours.Key}, wantAdded: true},
		{name: "already there", have: []corev1.Taint{gpu, ours}, want: []string{gpu.Key, ours.Key}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &hooks{}
			c := newClient(h, node(tt.have...))
			added, err := Add(context.Background(), c, "n1", ours)
			if err != nil {
				t.Fatal(err)
			}
			if added != tt.wantAdded {
				t.Errorf("Add reported added = %v, want %v", added, tt.wantAdded)
			}
			if got := keys(stored(t, c)); !slices.Equal(got, tt.want) {
				t.Errorf("taints = %v, want %v", got, tt.want)
			}
			if !tt.wantAdded && h.patches != 0 {
				t.Errorf("%d patches for a taint already there, want none", h.patches)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	for _, tt := range []struct {
		name        string
		have        []corev1.Taint
		want        []string
		wantRemoved bool
	}{
		{name: "the only taint", have: []corev1.Taint{ours}, wantRemoved: true},
		{name: "others kept", have: []corev1.Taint{gpu, ours, notReady}, want: []string{gpu.Key, notReady.Key}, wantRemoved: true},
		{name: "not there", have: []corev1.Taint{gpu}, want: []string{gpu.Key}},
		{name: "no taints"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &hooks{}
			c := newClient(h, node(tt.have...))
			removed, err := Remove(context.Background(), c, "n1", ours.Key)
			if err != nil {
				t.Fatal(err)
			}
			if removed != tt.wantRemoved {
				t.Errorf("Remove reported removed = %v, want %v", removed, tt.wantRemoved)
			}
			if got := keys(stored(t, c)); !slices.Equal(got, tt.want) {
				t.Errorf("taints = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRemoveFromAMissingNode(t *testing.T) {
	removed, err := Remove(context.Background(), newClient(&hooks{}), "n1", ours.Key)
	if err != nil || removed {
		t.Errorf("Remove on a missing node = (%v, %v), want (false, nil)", removed, err)
	}
	if _, err := Add(context.Background(), newClient(&hooks{}), "n1", ours); !apierrors.IsNotFound(err) {
		t.Errorf("Add on a missing node: error %v, want NotFound", err)
	}
}

// The kubelet's status updates change the Node's resourceVersion between
// the read and the patch; under a resourceVersion lock that was a conflict,
// now the taint goes on at the first attempt.
func TestAStatusUpdateDoesNotConflict(t *testing.T) {
	h := &hooks{}
	h.beforePatch = func(c client.WithWatch) {
		n := &corev1.Node{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: "n1"}, n); err != nil {
			t.Fatal(err)
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		if err := c.Status().Update(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(h, node(gpu))
	if _, err := Add(context.Background(), c, "n1", ours); err != nil {
		t.Fatal(err)
	}
	if h.gets != 1 || h.patches != 1 {
		t.Errorf("%d reads and %d patches, want one of each", h.gets, h.patches)
	}
	if got, want := keys(stored(t, c)), []string{gpu.Key, ours.Key}; !slices.Equal(got, want) {
		t.Errorf("taints = %v, want %v", got, want)
	}
}

// A taint another controller added after the (cached) read is not dropped:
// the test fails, the Node is read again, and both taints stay.
func TestATaintAddedMeanwhileIsKept(t *testing.T) {
	for _, tt := range []struct {
		name string
		have []corev1.Taint
		op   func(client.Client) error
		want []string
	}{
		{name: "add to none", op: func(c client.Client) error { _, err := Add(context.Background(), c, "n1", ours); return err },
			want: []string{notReady.Key, ours.Key}},
		{name: "add to some", have: []corev1.Taint{gpu}, op: func(c client.Client) error { _, err := Add(context.Background(), c, "n1", ours); return err },
			want: []string{gpu.Key, notReady.Key, ours.Key}},
		{name: "remove", have: []corev1.Taint{ours}, op: func(c client.Client) error { _, err := Remove(context.Background(), c, "n1", ours.Key); return err },
			want: []string{notReady.Key}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &hooks{}
			h.afterGet = func(n *corev1.Node) {
				if h.gets == 1 {
					// The first read is a cache behind the API server.
					n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == notReady.Key })
				}
			}
			c := newClient(h, node(append(slices.Clone(tt.have), notReady)...))
			if err := tt.op(c); err != nil {
				t.Fatal(err)
			}
			if h.gets < 2 {
				t.Errorf("%d reads, want the stale one and another", h.gets)
			}
			got := keys(stored(t, c))
			slices.Sort(got)
			slices.Sort(tt.want)
			if !slices.Equal(got, tt.want) {
				t.Errorf("taints = %v, want %v", got, tt.want)
			}
		})
	}
}

// A cache that stays behind ends the retries with ErrStale, not a change.
func TestStaleEveryTimeFails(t *testing.T) {
	h := &hooks{afterGet: func(n *corev1.Node) { n.Spec.Taints = nil }}
	c := newClient(h, node(notReady))
	added, err := Add(context.Background(), c, "n1", ours)
	if !errors.Is(err, ErrStale) || added {
		t.Errorf("Add = (%v, %v), want (false, ErrStale)", added, err)
	}
	h.afterGet = nil
	if got, want := keys(stored(t, c)), []string{notReady.Key}; !slices.Equal(got, want) {
		t.Errorf("taints = %v, want %v", got, want)
	}
}
