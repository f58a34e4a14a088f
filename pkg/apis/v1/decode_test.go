package v1_test

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A list as an informer receives it: one pool each of valid, a duration Go
// cannot hold (issue 10 #1) and a field that does not decode at all.
const poolList = `{
  "apiVersion": "stowage.dev/v1", "kind": "NodePoolList", "metadata": {},
  "items": [
    {"apiVersion": "stowage.dev/v1", "kind": "NodePool", "metadata": {"name": "good"},
     "spec": {"template": {"spec": {"expireAfter": "720h"}}}},
    {"apiVersion": "stowage.dev/v1", "kind": "NodePool", "metadata": {"name": "huge", "uid": "u-huge"},
     "spec": {"template": {"spec": {"expireAfter": "99999999999999h"}}}},
    {"apiVersion": "stowage.dev/v1", "kind": "NodePool", "metadata": {"name": "soon"},
     "spec": {"template": {"spec": {"terminationGracePeriod": "soon"}}},
     "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
  ]}`

func decodeList(t *testing.T, data string) *v1.NodePoolList {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode([]byte(data), nil, nil)
	if err != nil {
		t.Fatalf("decoding a list with one bad pool failed, so an informer would list nothing: %v", err)
	}
	return obj.(*v1.NodePoolList)
}

func TestOneBadPoolDoesNotStopTheList(t *testing.T) {
	list := decodeList(t, poolList)
	if len(list.Items) != 3 {
		t.Fatalf("decoded %d pools, want 3", len(list.Items))
	}
	good, huge, soon := &list.Items[0], &list.Items[1], &list.Items[2]

	if err := good.DecodeError(); err != nil {
		t.Errorf("good pool: %v", err)
	}
	if err := good.Spec.Template.Spec.ExpireAfter.Err(); err != nil || good.Spec.Template.Spec.ExpireAfter.String() != "720h0m0s" {
		t.Errorf("good pool expireAfter = %v (%v)", good.Spec.Template.Spec.ExpireAfter, err)
	}

	exp := huge.Spec.Template.Spec.ExpireAfter
	if huge.DecodeError() != nil || exp.Err() == nil || !strings.Contains(exp.Err().Error(), "99999999999999h") {
		t.Errorf("huge pool: decode error %v, expireAfter error %v; want the duration reported by Err", huge.DecodeError(), exp.Err())
	}
	if !exp.IsNever() {
		t.Errorf("an unparsable expireAfter must read as Never (nothing expires on a guess)")
	}
	// Written back unchanged: a status update never rewrites the user's value.
	b, err := json.Marshal(huge)
	if err != nil || !strings.Contains(string(b), `"expireAfter":"99999999999999h"`) {
		t.Errorf("huge pool re-encoded as %s (%v); want the stored text kept", b, err)
	}

	derr := soon.DecodeError()
	var de *v1.DecodeError
	if derr == nil || !asDecodeError(derr, &de) || de.Field != "spec.template.spec.terminationGracePeriod" {
		t.Fatalf("soon pool: DecodeError = %v; want one naming spec.template.spec.terminationGracePeriod", derr)
	}
	if soon.Name != "soon" || len(soon.Status.Conditions) != 1 {
		t.Errorf("soon pool lost its metadata or status: %+v", soon.ObjectMeta)
	}
	// Encoding it (for an update or a patch) keeps the stored spec exactly.
	soon.Labels = map[string]string{"team": "ml"}
	b, err = json.Marshal(soon)
	if err != nil || !strings.Contains(string(b), `"terminationGracePeriod":"soon"`) || !strings.Contains(string(b), `"team":"ml"`) {
		t.Errorf("re-encoded as %s (%v); want the stored spec and the new label", b, err)
	}
	if cp := soon.DeepCopy(); cp.DecodeError() == nil {
		t.Errorf("DeepCopy dropped the decode error")
	}
}

func asDecodeError(err error, out **v1.DecodeError) bool {
	de, ok := err.(*v1.DecodeError)
	*out = de
	return ok
}

func TestNodeClaimWithBadDurationDecodes(t *testing.T) {
	var nc v1.NodeClaim
	in := `{"metadata": {"name": "c"}, "spec": {"registrationTimeout": "1y", "offerings": [{"instanceType": "m5.large", "zone": "a", "capacityType": "spot"}]}}`
	if err := json.Unmarshal([]byte(in), &nc); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if err := nc.DecodeError(); err == nil || !strings.Contains(err.Error(), "spec.registrationTimeout") {
		t.Errorf("DecodeError = %v; want one naming spec.registrationTimeout", err)
	}
}

func TestNillableDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: `"Never"`, want: "Never"},
		{in: `"1h30m"`, want: "1h30m0s"},
		{in: `"-5s"`, wantErr: "invalid duration"},
		{in: `"99999999999999h"`, wantErr: "at most 999999h"},
		{in: `5`, wantErr: "must be a string"},
	} {
		var d v1.NillableDuration
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Errorf("%s: UnmarshalJSON failed: %v", tc.in, err)
			continue
		}
		switch err := d.Err(); {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Err() = %v, want %q", tc.in, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || d.String() != tc.want):
			t.Errorf("%s: %q (%v), want %q", tc.in, d.String(), err, tc.want)
		}
		b, err := json.Marshal(d)
		if err != nil || (tc.wantErr != "" && string(b) != tc.in) {
			t.Errorf("%s: re-encoded as %s (%v)", tc.in, b, err)
		}
	}
	if _, err := v1.ParseNillableDuration("1000000h"); err == nil {
		t.Errorf("ParseNillableDuration accepted 1000000h, beyond the CRD's bound")
	}
}
