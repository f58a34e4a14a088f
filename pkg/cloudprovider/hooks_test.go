package cloudprovider_test

import (
	"context"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

type drifting struct{ *cloudtest.Provider }

func (drifting) IsDrifted(context.Context, *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	return "ImageDrift", nil
}

type placing struct {
	*cloudtest.Provider
	on bool
}

func (p placing) HonoursPlacement() bool { return p.on }

func TestCapabilitiesOf(t *testing.T) {
	base := cloudtest.New(nil)
	for name, tc := range map[string]struct {
		cp   cloudprovider.CloudProvider
		want cloudprovider.Capabilities
	}{
		"none":          {cp: base, want: cloudprovider.Capabilities{}},
		"drift":         {cp: drifting{base}, want: cloudprovider.Capabilities{Drift: true}},
		"placement":     {cp: placing{base, true}, want: cloudprovider.Capabilities{Placement: true}},
		"placement off": {cp: placing{base, false}, want: cloudprovider.Capabilities{}},
	} {
		if got := cloudprovider.CapabilitiesOf(tc.cp); got != tc.want {
			t.Errorf("%s: CapabilitiesOf = %+v, want %+v", name, got, tc.want)
		}
	}
}
