package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// p5EFAInfo is p5.48xlarge as EC2 describes it: 32 network cards, one EFA
// each, and cluster placement.
func p5EFAInfo() ec2types.InstanceTypeInfo {
	info := p5Info()
	info.NetworkInfo.EfaSupported = aws.Bool(true)
	info.NetworkInfo.EfaInfo = &ec2types.EfaInfo{MaximumEfaInterfaces: aws.Int32(32)}
	info.NetworkInfo.MaximumNetworkCards = aws.Int32(32)
	info.PlacementGroupInfo = &ec2types.PlacementGroupInfo{SupportedStrategies: []ec2types.PlacementGroupStrategy{"cluster", "partition", "spread"}}
	return info
}

func newTrainingEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	e := newEnv(t, objs...)
	e.ec2.types[0] = p5EFAInfo()
	return e
}

func gangClaim(name, group string) *v1.NodeClaim {
	c := claim(name, choice("p5.48xlarge", zoneA, "on-demand"), choice("g5.xlarge", zoneA, "on-demand"))
	c.Spec.Placement = &v1.Placement{Group: group}
	return c
}

func TestGangLaunchesIntoOnePlacementGroupWithEFA(t *testing.T) {
	e := newTrainingEnv(t)
	ctx := context.Background()
	for i := range 2 {
		if _, err := e.p.Create(ctx, gangClaim(fmt.Sprintf("trainer-%d", i), "llama-70b")); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.ec2.Calls("CreatePlacementGroup"); got != 1 {
		t.Errorf("CreatePlacementGroup calls = %d, want 1 for the gang", got)
	}
	tags := map[string]string{}
	for _, tg := range e.ec2.groups["stowage-test-llama-70b"] {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if diff := cmp.Diff(map[string]string{TagCluster: "test", TagPlacementGroup: "llama-70b"}, tags); diff != "" {
		t.Errorf("placement group tags (-want +got):\n%s", diff)
	}
	for i, in := range e.ec2.fleets {
		if len(in.LaunchTemplateConfigs) != 2 {
			t.Fatalf("fleet %d has %d launch template configs, want one with 32 EFA interfaces (p5) and one without (g5)", i, len(in.LaunchTemplateConfigs))
		}
		for _, cfg := range in.LaunchTemplateConfigs {
			lt := e.ec2.templates[aws.ToString(cfg.LaunchTemplateSpecification.LaunchTemplateName)]
			for _, o := range cfg.Overrides {
				switch o.InstanceType {
				case "p5.48xlarge":
					if o.Placement == nil || aws.ToString(o.Placement.GroupName) != "stowage-test-llama-70b" {
						t.Errorf("p5 override placement = %+v, want the gang's cluster placement group", o.Placement)
					}
					checkEFA(t, lt, 32)
				case "g5.xlarge":
					// No cluster placement and no EFA on this type: it launches plain.
					if o.Placement != nil {
						t.Errorf("g5 override placement = %+v, want none", o.Placement)
					}
					if len(lt.NetworkInterfaces) != 0 || len(lt.SecurityGroupIds) != 1 {
						t.Errorf("g5 template: %d interfaces, groups %v; want plain security groups", len(lt.NetworkInterfaces), lt.SecurityGroupIds)
					}
				}
			}
		}
	}
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		id, _ := ParseProviderID(c.Status.ProviderID)
		if g := e.ec2.instances[id].Placement.GroupName; aws.ToString(g) != "stowage-test-llama-70b" {
			t.Errorf("%s launched in placement group %q", c.Name, aws.ToString(g))
		}
	}
}

// checkEFA asserts EC2's recommended layout: an ENA primary on card 0, an
// EFA-only interface beside it, one EFA-only interface per further card,
// each with the node class's security groups.
func checkEFA(t *testing.T, lt *ec2types.RequestLaunchTemplateData, efa int) {
	t.Helper()
	if len(lt.SecurityGroupIds) != 0 {
		t.Errorf("template sets SecurityGroupIds %v beside network interfaces; EC2 rejects that", lt.SecurityGroupIds)
	}
	if len(lt.NetworkInterfaces) != efa+1 {
		t.Fatalf("template has %d network interfaces, want %d EFA and the primary", len(lt.NetworkInterfaces), efa)
	}
	var got []string
	for _, ni := range lt.NetworkInterfaces[:3] {
		got = append(got, fmt.Sprintf("%d/%d/%s/%v", aws.ToInt32(ni.NetworkCardIndex), aws.ToInt32(ni.DeviceIndex), aws.ToString(ni.InterfaceType), ni.Groups))
	}
	want := []string{"0/0/interface/[sg-1]", "0/1/efa-only/[sg-1]", "1/0/efa-only/[sg-1]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first interfaces (-want +got):\n%s", diff)
	}
	last := lt.NetworkInterfaces[efa]
	if aws.ToInt32(last.NetworkCardIndex) != int32(efa-1) || aws.ToString(last.InterfaceType) != "efa-only" {
		t.Errorf("last interface = card %d %s, want card %d efa-only", aws.ToInt32(last.NetworkCardIndex), aws.ToString(last.InterfaceType), efa-1)
	}
}

func p5Gang() *v1.NodeClaim {
	c := claim("gang", choice("p5.48xlarge", zoneA, "on-demand"))
	c.Spec.Placement = &v1.Placement{Group: "g"}
	return c
}

func TestEFAOnlyWhenAskedAndAllowed(t *testing.T) {
	efaPods := claim("efa-pods", choice("p5.48xlarge", zoneA, "on-demand"))
	efaPods.Spec.Resources.Requests = corev1.ResourceList{ResourceEFA: resource.MustParse("32")}
	tests := []struct {
		name    string
		claim   *v1.NodeClaim
		efa     string
		wantEFA int
	}{
		{"plain claim", claim("plain", choice("p5.48xlarge", zoneA, "on-demand")), "", 0},
		{"pods request EFA", efaPods, "", 32},
		{"gang", p5Gang(), "", 32},
		{"gang, EFA disabled", p5Gang(), awsv1.EFADisabled, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := nodeClass()
			nc.Spec.EFA = tt.efa
			e := newTrainingEnv(t, nc)
			if _, err := e.p.Create(context.Background(), tt.claim); err != nil {
				t.Fatal(err)
			}
			lt := e.ec2.templates[aws.ToString(e.ec2.fleets[0].LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
			if tt.wantEFA > 0 {
				checkEFA(t, lt, tt.wantEFA)
			} else if len(lt.NetworkInterfaces) != 0 {
				t.Errorf("template has %d network interfaces, want none", len(lt.NetworkInterfaces))
			}
		})
	}
}

func TestInstanceTypesCarryPlacementAndEFA(t *testing.T) {
	e := newTrainingEnv(t)
	if !e.p.HonoursPlacement() || !cloudprovider.CapabilitiesOf(e.p).Placement || !cloudprovider.CapabilitiesOf(e.p).Drift {
		t.Fatal("the AWS provider honours placement and checks drift")
	}
	its, err := e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	p5, g5 := find(its, "p5.48xlarge"), find(its, "g5.xlarge")
	if !p5.Placement || g5.Placement {
		t.Errorf("placement: p5 %v, g5 %v; want p5 only", p5.Placement, g5.Placement)
	}
	if q := p5.Capacity[ResourceEFA]; q.Value() != 32 {
		t.Errorf("p5 %s = %s, want 32", ResourceEFA, q.String())
	}
	if _, ok := g5.Capacity[ResourceEFA]; ok {
		t.Error("g5.xlarge has no EFA")
	}
	nc := nodeClass()
	nc.Spec.EFA = awsv1.EFADisabled
	e = newTrainingEnv(t, nc)
	its, err = e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := find(its, "p5.48xlarge").Capacity[ResourceEFA]; ok {
		t.Error("a node class with EFA disabled must not offer EFA devices")
	}
}

func TestPlacementGroupsAreCollectedWhenUnused(t *testing.T) {
	ctx := context.Background()
	nc := nodeClass()
	kept := gangClaim("kept", "kept-gang")
	e := newTrainingEnv(t, nc, kept)
	for _, c := range []*v1.NodeClaim{gangClaim("gone", "gone-gang"), gangClaim("busy", "busy-gang"), kept} {
		if _, err := e.p.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// "gone" and "busy" have no NodeClaim any more; busy's machine still runs.
	for id, inst := range e.ec2.instances {
		if tagValue(inst.Tags, TagNodeClaim) == "gone" {
			e.ec2.instances[id].State = &ec2types.InstanceState{Name: ec2types.InstanceStateNameTerminated}
		}
	}
	e.ec2.groups["someone-elses"] = nil // untagged: not ours
	if err := e.p.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.ec2.groups) != 4 {
		t.Fatalf("placement groups = %v; nothing may go within the grace period", keys(e.ec2.groups))
	}
	e.clock.Step(PlacementGroupGrace)
	if err := e.p.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"someone-elses", "stowage-test-busy-gang", "stowage-test-kept-gang"}, keys(e.ec2.groups)); diff != "" {
		t.Errorf("placement groups left (-want +got):\n%s", diff)
	}
	// A gang that comes back gets its group made again.
	if _, err := e.p.Create(ctx, gangClaim("again", "gone-gang")); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.ec2.groups["stowage-test-gone-gang"]; !ok {
		t.Error("placement group not recreated for a new claim of the gang")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestLaunchTemplatesAreCollectedAndRebuiltFromTags(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.p.Create(ctx, claim("a", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatal(err)
	}
	if len(e.ec2.templates) != 1 {
		t.Fatalf("templates = %d, want 1", len(e.ec2.templates))
	}
	// A restarted controller finds the template by its cluster tag and does
	// not make it again.
	p2, err := New(Options{ClusterName: "test", Region: "us-east-1", EC2: e.ec2, Kube: e.p.opts.Kube, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Create(ctx, claim("b", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatal(err)
	}
	if got := e.ec2.Calls("CreateLaunchTemplate"); got != 1 {
		t.Errorf("CreateLaunchTemplate calls = %d, want 1: the restarted provider must reuse the tagged template", got)
	}
	// Used within the TTL: kept. Idle past it: deleted.
	e.clock.Step(TemplateIdleTTL / 2)
	if err := p2.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.ec2.templates) != 1 {
		t.Fatal("a recently used template was deleted")
	}
	e.clock.Step(TemplateIdleTTL)
	if err := p2.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.ec2.templates) != 0 {
		t.Errorf("templates = %v, want the idle one deleted", keys(e.ec2.templates))
	}
	// The next launch makes it again: the cached name was forgotten.
	if _, err := p2.Create(ctx, claim("c", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatal(err)
	}
	if len(e.ec2.templates) != 1 {
		t.Error("template not recreated after collection")
	}
}

func TestTemplateDeletedUnderTheCacheIsMadeAgain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.p.Create(ctx, claim("a", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatal(err)
	}
	for name := range e.ec2.templates {
		delete(e.ec2.templates, name) // deleted by hand, or by another replica's GC
	}
	if _, err := e.p.Create(ctx, claim("b", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatalf("a launch after the template vanished must make it again: %v", err)
	}
}

func TestDeleteLaunchTemplatesOfANodeClass(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.p.Create(ctx, claim("a", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatal(err)
	}
	e.ec2.templates["stowage/test/other-class"] = &ec2types.RequestLaunchTemplateData{}
	e.ec2.templateTags["stowage/test/other-class"] = []ec2types.Tag{{Key: aws.String(TagCluster), Value: aws.String("test")}, {Key: aws.String(TagNodeClass), Value: aws.String("other")}}
	if err := e.p.DeleteLaunchTemplates(ctx, "gpu"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"stowage/test/other-class"}, keys(e.ec2.templates)); diff != "" {
		t.Errorf("templates left (-want +got):\n%s", diff)
	}
}

func TestDrift(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*awsv1.EC2NodeClass)
		want   cloudprovider.DriftReason
	}{
		{"nothing changed", func(*awsv1.EC2NodeClass) {}, ""},
		{"new image", func(nc *awsv1.EC2NodeClass) { nc.Status.AMIs[1].ID = "ami-gpu-new" }, DriftImage},
		{"other arch's image changed", func(nc *awsv1.EC2NodeClass) {
			nc.Status.AMIs = append(nc.Status.AMIs, awsv1.AMI{ID: "ami-arm", Arch: "arm64", Variant: "standard"})
		}, ""},
		{"subnet no longer selected", func(nc *awsv1.EC2NodeClass) {
			nc.Status.Subnets = []awsv1.Subnet{{ID: "subnet-c", Zone: zoneA}}
		}, DriftSubnet},
		{"security group added", func(nc *awsv1.EC2NodeClass) {
			nc.Status.SecurityGroups = append(nc.Status.SecurityGroups, awsv1.SecurityGroup{ID: "sg-2"})
		}, DriftSecurityGroup},
		{"node class not Ready reports no drift", func(nc *awsv1.EC2NodeClass) {
			nc.Status.AMIs[1].ID = "ami-gpu-new"
			nc.Status.Conditions[0].Status = metav1.ConditionFalse
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			launched, err := e.p.Create(ctx, claim("d", choice("g5.xlarge", zoneA, "on-demand")))
			if err != nil {
				t.Fatal(err)
			}
			nc := &awsv1.EC2NodeClass{}
			if err := e.p.opts.Kube.Get(ctx, client.ObjectKey{Name: "gpu"}, nc); err != nil {
				t.Fatal(err)
			}
			tt.mutate(nc)
			if err := e.p.opts.Kube.(client.Client).Update(ctx, nc); err != nil {
				t.Fatal(err)
			}
			got, err := e.p.IsDrifted(ctx, launched)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("IsDrifted = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDriftOfAMissingNodeClassIsAnError(t *testing.T) {
	e := newEnv(t)
	c := claim("d", choice("g5.xlarge", zoneA, "on-demand"))
	c.Status.ProviderID = "aws:///us-east-1a/i-1"
	c.Spec.NodeClassRef.Name = "missing"
	if _, err := e.p.IsDrifted(context.Background(), c); err == nil {
		t.Error("a node class that cannot be read must be an error, not drift")
	}
}

func TestDeleteRefusesAnotherClustersMachine(t *testing.T) {
	e := newEnv(t)
	e.ec2.instances["i-other"] = &ec2types.Instance{InstanceId: aws.String("i-other"), State: &ec2types.InstanceState{Name: "running"},
		Tags: []ec2types.Tag{{Key: aws.String(TagCluster), Value: aws.String("other")}}}
	c := claim("stolen", choice("m5.large", zoneA, "on-demand"))
	c.Status.ProviderID = "aws:///us-east-1a/i-other"
	err := e.p.Delete(context.Background(), c)
	if !errors.Is(err, ErrForeignInstance) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("err = %v, want ErrForeignInstance naming the owner", err)
	}
	if e.ec2.Calls("TerminateInstances") != 0 || e.ec2.instances["i-other"].State.Name != "running" {
		t.Error("another cluster's machine was terminated")
	}
}

func TestKubeletSettingsShapeAllocatable(t *testing.T) {
	nc := nodeClass()
	nc.Spec.BlockDeviceMappings = []awsv1.BlockDeviceMapping{{DeviceName: "/dev/xvda", RootVolume: true, EBS: awsv1.BlockDevice{VolumeSize: "500Gi"}}}
	nc.Spec.Kubelet = &awsv1.KubeletConfiguration{
		MaxPods:        ptr.To[int32](30),
		SystemReserved: map[string]awsv1.Quantity{"cpu": "500m", "memory": "1Gi"},
		KubeReserved:   map[string]awsv1.Quantity{"cpu": "250m"},
		EvictionHard:   map[string]awsv1.Threshold{"memory.available": "1Gi", "nodefs.available": "5%"},
		EvictionSoft:   map[string]awsv1.Threshold{"memory.available": "2Gi"},
	}
	e := newEnv(t, nc)
	its, err := e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	g5 := find(its, "g5.xlarge")
	got := map[corev1.ResourceName]string{}
	for _, r := range []corev1.ResourceName{corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
		q := g5.Capacity[r]
		got[r] = q.String()
	}
	alloc := g5.Allocatable()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		q := alloc[r]
		got["allocatable "+r] = q.String()
	}
	want := map[corev1.ResourceName]string{
		corev1.ResourcePods:             "30",
		corev1.ResourceEphemeralStorage: "500Gi",
		// 4 vCPU - 250m kube - 500m system.
		"allocatable cpu": "3250m",
		// 16 GiB - (255 + 11 x 30 pods) MiB kube - 1 GiB system - 2 GiB (the larger of hard and soft).
		"allocatable memory": fmt.Sprintf("%dMi", 16384-(255+11*30)-1024-2048),
		// 500 GiB - 5%.
		"allocatable ephemeral-storage": "475Gi",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("g5.xlarge with the node class's kubelet settings (-want +got):\n%s", diff)
	}
}

func TestDefaultsWithoutKubeletSettings(t *testing.T) {
	nc := nodeClass()
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}}
	e := newEnv(t, nc)
	its, err := e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	g5 := find(its, "g5.xlarge")
	// Bottlerocket keeps containers on the 100 GiB data volume, not the 4 GiB OS volume.
	if q := g5.Capacity[corev1.ResourceEphemeralStorage]; q.Cmp(resource.MustParse("100Gi")) != 0 {
		t.Errorf("ephemeral-storage = %s, want 100Gi", q.String())
	}
	if q := g5.Overhead.EvictionThreshold[corev1.ResourceEphemeralStorage]; q.Value() != (100<<30)/10 {
		t.Errorf("ephemeral-storage eviction = %s, want nodefs.available 10%%", q.String())
	}
	if q := g5.Overhead.EvictionThreshold[corev1.ResourceMemory]; q.Cmp(resource.MustParse("100Mi")) != 0 {
		t.Errorf("memory eviction = %s, want 100Mi", q.String())
	}
}

func TestReservationsOnlyWhenSelectedAndNotEnding(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// The expiring block ends in 20 minutes: too soon to launch into.
	e.ec2.reservations[1].EndDate = aws.Time(e.clock.Now().Add(20 * time.Minute))
	nc := &awsv1.EC2NodeClass{}
	if err := e.p.opts.Kube.Get(ctx, client.ObjectKey{Name: "gpu"}, nc); err != nil {
		t.Fatal(err)
	}
	nc.Status.CapacityReservations = nc.Status.CapacityReservations[1:] // only cr-block selected
	if err := e.p.opts.Kube.(client.Client).Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	its, err := e.p.InstanceTypes(ctx, gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range find(its, "p5.48xlarge").Offerings {
		if o.CapacityType == v1.CapacityTypeReserved {
			t.Errorf("offered reservation %s: cr-1 is not selected and cr-block ends too soon", o.ReservationID)
		}
	}
	its, err = e.p.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range find(its, "p5.48xlarge").Offerings {
		if o.CapacityType == v1.CapacityTypeReserved {
			t.Errorf("offered reservation %s without a node class selecting it", o.ReservationID)
		}
	}
}

func TestOnDemandNeverConsumesAnUnselectedReservation(t *testing.T) {
	e := newEnv(t)
	if _, err := e.p.Create(context.Background(), claim("od", choice("m5.large", zoneA, "on-demand"), choice("m5.large", zoneA, "spot"))); err != nil {
		t.Fatal(err)
	}
	lt := e.ec2.templates[aws.ToString(e.ec2.fleets[0].LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
	if r := lt.CapacityReservationSpecification; r == nil || r.CapacityReservationPreference != ec2types.CapacityReservationPreferenceNone {
		t.Errorf("on-demand template reservation spec = %+v, want preference none", r)
	}
}

func TestPlaceholderSpotPricesAreIgnored(t *testing.T) {
	e := newEnv(t)
	e.ec2.spotPrices = nil
	for i := range 30 {
		e.ec2.spotPrices = append(e.ec2.spotPrices, ec2types.SpotPrice{InstanceType: ec2types.InstanceType(fmt.Sprintf("t%d.large", i)),
			AvailabilityZone: aws.String(zoneA), SpotPrice: aws.String("0.000010"), Timestamp: aws.Time(time.Unix(100, 0))})
	}
	e.ec2.spotPrices = append(e.ec2.spotPrices, ec2types.SpotPrice{InstanceType: "g5.xlarge", AvailabilityZone: aws.String(zoneA),
		SpotPrice: aws.String("0.000010"), Timestamp: aws.Time(time.Unix(100, 0))})
	its, err := e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range find(its, "g5.xlarge").Offerings {
		if o.CapacityType == v1.CapacityTypeSpot && o.PricePerHour != 0.509 {
			t.Errorf("g5.xlarge spot in %s = %v, want the static 0.509 instead of the placeholder", o.Zone, o.PricePerHour)
		}
	}
}

// TestReservationOnlyType: a type with no on-demand price anywhere (p5e is
// sold through Capacity Blocks and reservations) is still offered live
// through a reservation the node class selects.
func TestReservationOnlyType(t *testing.T) {
	ctx := context.Background()
	nc := nodeClass()
	nc.Status.CapacityReservations = append(nc.Status.CapacityReservations, awsv1.CapacityReservation{ID: "cr-p5e", InstanceType: "p5e.48xlarge", Zone: zoneA})
	e := newTrainingEnv(t, nc)
	p5e := p5EFAInfo()
	p5e.InstanceType = "p5e.48xlarge"
	p5e.GpuInfo.Gpus[0].Name, p5e.GpuInfo.Gpus[0].MemoryInfo.SizeInMiB = aws.String("H200"), aws.Int32(144384)
	e.ec2.addType(p5e, zoneA)
	e.ec2.reservations = append(e.ec2.reservations, ec2types.CapacityReservation{CapacityReservationId: aws.String("cr-p5e"),
		InstanceType: aws.String("p5e.48xlarge"), AvailabilityZone: aws.String(zoneA), AvailableInstanceCount: aws.Int32(2),
		State: ec2types.CapacityReservationStateActive, ReservationType: ec2types.CapacityReservationTypeCapacityBlock})
	its, err := e.p.InstanceTypes(ctx, gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	it := find(its, "p5e.48xlarge")
	if it == nil {
		t.Fatal("p5e.48xlarge not offered although a selected Capacity Block holds two")
	}
	if diff := cmp.Diff([]cloudprovider.Offering{{Zone: zoneA, CapacityType: v1.CapacityTypeReserved, Available: true, ReservationID: "cr-p5e", ReservedCount: 2}}, it.Offerings); diff != "" {
		t.Errorf("p5e offerings (-want +got):\n%s", diff)
	}
	if it.Labels[v1.LabelGPUName] != "h200" || !it.Placement {
		t.Errorf("p5e labels %v placement %v, want h200 and cluster placement", it.Labels, it.Placement)
	}
}

func TestNetworkTopology(t *testing.T) {
	e := newEnv(t)
	e.ec2.topology = map[string][]string{"i-1": {"nn-a", "nn-b", "nn-c"}}
	var ids []string
	for i := range 150 { // two calls: EC2 takes 100 IDs at a time
		ids = append(ids, fmt.Sprintf("aws:///us-east-1a/i-%d", i))
	}
	got, err := e.p.NetworkTopology(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"aws:///us-east-1a/i-1": {"nn-a", "nn-b", "nn-c"}}, got); diff != "" {
		t.Errorf("topology (-want +got):\n%s", diff)
	}
	if n := e.ec2.Calls("DescribeInstanceTopology"); n != 2 {
		t.Errorf("DescribeInstanceTopology calls = %d, want 2", n)
	}
}

// Drift reads an instance's subnet and security groups once per networkTTL,
// not at every check: at 5,000 nodes checked every minute, one
// DescribeInstances per claim per check is past EC2's request limits. The
// node class's side is still compared at every check.
func TestDriftReadsAnInstanceOncePerTTL(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	launched, err := e.p.Create(ctx, claim("d", choice("g5.xlarge", zoneA, "on-demand")))
	if err != nil {
		t.Fatal(err)
	}
	before := e.ec2.Calls("DescribeInstances")
	for range 3 {
		if got, err := e.p.IsDrifted(ctx, launched); err != nil || got != "" {
			t.Fatalf("IsDrifted = %q, %v; want no drift", got, err)
		}
	}
	if n := e.ec2.Calls("DescribeInstances") - before; n != 1 {
		t.Errorf("%d DescribeInstances for 3 checks within the TTL, want 1", n)
	}
	nc := &awsv1.EC2NodeClass{}
	if err := e.p.opts.Kube.Get(ctx, client.ObjectKey{Name: "gpu"}, nc); err != nil {
		t.Fatal(err)
	}
	nc.Status.Subnets = []awsv1.Subnet{{ID: "subnet-c", Zone: zoneA}}
	if err := e.p.opts.Kube.(client.Client).Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if got, err := e.p.IsDrifted(ctx, launched); err != nil || got != DriftSubnet {
		t.Errorf("IsDrifted after the node class dropped the subnet = %q, %v; want %q from the cached instance", got, err, DriftSubnet)
	}
	e.clock.Step(networkTTL)
	if _, err := e.p.IsDrifted(ctx, launched); err != nil {
		t.Fatal(err)
	}
	if n := e.ec2.Calls("DescribeInstances") - before; n != 2 {
		t.Errorf("%d DescribeInstances after the TTL, want 2", n)
	}
}
