package aws

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

const (
	zoneA = "us-east-1a"
	zoneB = "us-east-1b"
)

func p5Info() ec2types.InstanceTypeInfo {
	return ec2types.InstanceTypeInfo{
		InstanceType:          "p5.48xlarge",
		CurrentGeneration:     aws.Bool(true),
		VCpuInfo:              &ec2types.VCpuInfo{DefaultVCpus: aws.Int32(192)},
		MemoryInfo:            &ec2types.MemoryInfo{SizeInMiB: aws.Int64(2097152)},
		ProcessorInfo:         &ec2types.ProcessorInfo{SupportedArchitectures: []ec2types.ArchitectureType{ec2types.ArchitectureTypeX8664}},
		SupportedUsageClasses: []ec2types.UsageClassType{ec2types.UsageClassTypeOnDemand, ec2types.UsageClassTypeSpot},
		GpuInfo: &ec2types.GpuInfo{Gpus: []ec2types.GpuDeviceInfo{{
			Name: aws.String("H100"), Manufacturer: aws.String("NVIDIA"), Count: aws.Int32(8),
			MemoryInfo: &ec2types.GpuDeviceMemoryInfo{SizeInMiB: aws.Int32(81920)},
		}}},
		NetworkInfo: &ec2types.NetworkInfo{MaximumNetworkInterfaces: aws.Int32(64), Ipv4AddressesPerInterface: aws.Int32(50)},
	}
}

func g5Info() ec2types.InstanceTypeInfo {
	return ec2types.InstanceTypeInfo{
		InstanceType:          "g5.xlarge",
		CurrentGeneration:     aws.Bool(true),
		VCpuInfo:              &ec2types.VCpuInfo{DefaultVCpus: aws.Int32(4)},
		MemoryInfo:            &ec2types.MemoryInfo{SizeInMiB: aws.Int64(16384)},
		ProcessorInfo:         &ec2types.ProcessorInfo{SupportedArchitectures: []ec2types.ArchitectureType{ec2types.ArchitectureTypeX8664}},
		SupportedUsageClasses: []ec2types.UsageClassType{ec2types.UsageClassTypeOnDemand, ec2types.UsageClassTypeSpot},
		GpuInfo: &ec2types.GpuInfo{Gpus: []ec2types.GpuDeviceInfo{{
			Name: aws.String("A10G"), Manufacturer: aws.String("NVIDIA"), Count: aws.Int32(1),
			MemoryInfo: &ec2types.GpuDeviceMemoryInfo{SizeInMiB: aws.Int32(22888)},
		}}},
		NetworkInfo: &ec2types.NetworkInfo{MaximumNetworkInterfaces: aws.Int32(4), Ipv4AddressesPerInterface: aws.Int32(15)},
	}
}

func m5Info() ec2types.InstanceTypeInfo {
	return ec2types.InstanceTypeInfo{
		InstanceType:          "m5.large",
		VCpuInfo:              &ec2types.VCpuInfo{DefaultVCpus: aws.Int32(2)},
		MemoryInfo:            &ec2types.MemoryInfo{SizeInMiB: aws.Int64(8192)},
		ProcessorInfo:         &ec2types.ProcessorInfo{SupportedArchitectures: []ec2types.ArchitectureType{ec2types.ArchitectureTypeX8664}},
		SupportedUsageClasses: []ec2types.UsageClassType{ec2types.UsageClassTypeOnDemand, ec2types.UsageClassTypeSpot},
		NetworkInfo:           &ec2types.NetworkInfo{MaximumNetworkInterfaces: aws.Int32(3), Ipv4AddressesPerInterface: aws.Int32(10)},
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nodeClass is a Ready node class as the nodeclass controller leaves it.
func nodeClass() *awsv1.EC2NodeClass {
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu", Generation: 1},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SelectorTerm{{Tags: map[string]string{"k": "v"}}},
			SecurityGroupSelectorTerms: []awsv1.SelectorTerm{{Tags: map[string]string{"k": "v"}}},
			Role:                       "node-role",
			Tags:                       map[string]string{"team": "ml"},
		},
		Status: awsv1.EC2NodeClassStatus{
			Subnets:         []awsv1.Subnet{{ID: "subnet-a", Zone: zoneA}, {ID: "subnet-b", Zone: zoneB}},
			SecurityGroups:  []awsv1.SecurityGroup{{ID: "sg-1"}},
			AMIs:            []awsv1.AMI{{ID: "ami-std", Arch: "amd64", Variant: "standard"}, {ID: "ami-gpu", Arch: "amd64", Variant: "nvidia"}},
			InstanceProfile: "node-role",
			CapacityReservations: []awsv1.CapacityReservation{
				{ID: "cr-1", InstanceType: "p5.48xlarge", Zone: zoneB, Type: "default"},
				{ID: "cr-block", InstanceType: "p5.48xlarge", Zone: zoneA, Type: "capacity-block"},
			},
			Conditions: []metav1.Condition{{Type: awsv1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: 1, Reason: "Ready"}},
		},
	}
}

// gpuPool is a NodePool using nodeClass().
func gpuPool() *v1.NodePool {
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	pool.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "gpu"}
	return pool
}

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

type env struct {
	ec2   *fakeEC2
	clock *clocktesting.FakeClock
	reg   *prometheus.Registry
	p     *Provider
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	f := newFakeEC2()
	f.addType(p5Info(), zoneA, zoneB)
	f.addType(g5Info(), zoneA, zoneB)
	f.addType(m5Info(), zoneA, zoneB)
	f.subnetZones = map[string]string{"subnet-a": zoneA, "subnet-b": zoneB}
	f.spotPrices = []ec2types.SpotPrice{
		{InstanceType: "g5.xlarge", AvailabilityZone: aws.String(zoneA), SpotPrice: aws.String("0.40"), Timestamp: aws.Time(time.Unix(100, 0))},
		{InstanceType: "g5.xlarge", AvailabilityZone: aws.String(zoneA), SpotPrice: aws.String("0.45"), Timestamp: aws.Time(time.Unix(200, 0))},
	}
	f.reservations = []ec2types.CapacityReservation{
		{CapacityReservationId: aws.String("cr-1"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String(zoneB),
			AvailableInstanceCount: aws.Int32(2), State: ec2types.CapacityReservationStateActive, ReservationType: ec2types.CapacityReservationTypeDefault},
		{CapacityReservationId: aws.String("cr-block"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String(zoneA),
			AvailableInstanceCount: aws.Int32(1), State: ec2types.CapacityReservationStateActive, ReservationType: ec2types.CapacityReservationTypeCapacityBlock},
		{CapacityReservationId: aws.String("cr-expired"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String(zoneA),
			AvailableInstanceCount: aws.Int32(4), State: ec2types.CapacityReservationStateExpired},
	}
	if len(objs) == 0 {
		objs = []client.Object{nodeClass()}
	}
	kube := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).Build()
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	reg := prometheus.NewRegistry()
	p, err := New(Options{
		ClusterName: "test", Region: "us-east-1", EC2: f,
		Pricing: &fakePricing{docs: []string{mustRead(t, "testdata/pricelist-p5.48xlarge.json"),
			`{"product":{"attributes":{"instanceType":"g5.xlarge"}},"terms":{"OnDemand":{"a":{"priceDimensions":{"b":{"unit":"Hrs","pricePerUnit":{"USD":"1.0060000000"}}}}}}}`}},
		Kube: kube, Clock: clk, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{ec2: f, clock: clk, reg: reg, p: p}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := g.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func find(its []*cloudprovider.InstanceType, name string) *cloudprovider.InstanceType {
	for _, it := range its {
		if it.Name == name {
			return it
		}
	}
	return nil
}

func TestInstanceTypesLabelsAndGPU(t *testing.T) {
	e := newEnv(t)
	its, err := e.p.InstanceTypes(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p5 := find(its, "p5.48xlarge")
	if p5 == nil {
		t.Fatal("p5.48xlarge missing")
	}
	wantLabels := map[string]string{
		v1.LabelInstanceType: "p5.48xlarge", v1.LabelArch: "amd64", v1.LabelOS: "linux", v1.LabelRegion: "us-east-1",
		v1.LabelInstanceFamily: "p5", v1.LabelInstanceCPU: "192", v1.LabelInstanceMemory: "2097152",
		v1.LabelGPUName: "h100", v1.LabelGPUCount: "8", v1.LabelGPUMemory: "81920", v1.LabelGPUManufacturer: "nvidia",
	}
	if diff := cmp.Diff(wantLabels, p5.Labels); diff != "" {
		t.Errorf("p5 labels (-want +got):\n%s", diff)
	}
	if got := p5.Capacity[v1.ResourceNvidiaGPU]; got.Value() != 8 {
		t.Errorf("p5 nvidia.com/gpu = %s, want 8", got.String())
	}
	if p5.GPU == nil || p5.GPU.Name != "h100" || len(p5.GPU.MIGProfiles) == 0 {
		t.Errorf("p5 GPU = %+v, want h100 with MIG profiles", p5.GPU)
	}
	g5 := find(its, "g5.xlarge")
	if got := g5.Capacity[v1.ResourcePods]; got.Value() != 4*(15-1)+2 {
		t.Errorf("g5.xlarge pods = %s, want the VPC CNI limit 58", got.String())
	}
	if oh := g5.Overhead.Total(); oh.Cpu().IsZero() {
		t.Error("g5.xlarge must carry kubelet overhead")
	}
}

func TestInstanceTypesPricesAndSources(t *testing.T) {
	e := newEnv(t)
	its, err := e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	sortOfferings := cmpopts.SortSlices(func(a, b cloudprovider.Offering) bool {
		return a.Zone+a.CapacityType+a.ReservationID < b.Zone+b.CapacityType+b.ReservationID
	})
	tests := []struct {
		name string
		want []cloudprovider.Offering
	}{
		{"p5.48xlarge", []cloudprovider.Offering{
			// On-demand from the Pricing API; spot has no history, so the static regional figure.
			{Zone: zoneA, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 55.04, Available: true},
			{Zone: zoneA, CapacityType: v1.CapacityTypeSpot, PricePerHour: 19.49, Available: true},
			{Zone: zoneB, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 55.04, Available: true},
			{Zone: zoneB, CapacityType: v1.CapacityTypeSpot, PricePerHour: 19.49, Available: true},
			{Zone: zoneB, CapacityType: v1.CapacityTypeReserved, PricePerHour: 55.04 / reservedPriceDivisor, Available: true, ReservationID: "cr-1", ReservedCount: 2},
			{Zone: zoneA, CapacityType: v1.CapacityTypeReserved, PricePerHour: 55.04 / reservedPriceDivisor, Available: true, ReservationID: "cr-block", ReservedCount: 1},
		}},
		{"g5.xlarge", []cloudprovider.Offering{
			{Zone: zoneA, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 1.006, Available: true},
			{Zone: zoneA, CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.45, Available: true}, // newest history entry
			{Zone: zoneB, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 1.006, Available: true},
			{Zone: zoneB, CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.509, Available: true},
		}},
		{"m5.large", []cloudprovider.Offering{
			// Not in the Pricing API answer: static prices for both.
			{Zone: zoneA, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 0.096, Available: true},
			{Zone: zoneA, CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.0384, Available: true},
			{Zone: zoneB, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 0.096, Available: true},
			{Zone: zoneB, CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.0384, Available: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := find(its, tt.name)
			if it == nil {
				t.Fatalf("%s missing", tt.name)
			}
			if diff := cmp.Diff(tt.want, it.Offerings, sortOfferings, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("offerings (-want +got):\n%s", diff)
			}
		})
	}
	// api: 2 p5 od + 2 g5 od + 1 g5 spot; static: the rest of the 12 spot/od offerings.
	if got := gaugeValue(t, e.p.priceSources.WithLabelValues("api")); got != 5 {
		t.Errorf("price_source{source=api} = %v, want 5", got)
	}
	if got := gaugeValue(t, e.p.priceSources.WithLabelValues("static")); got != 7 {
		t.Errorf("price_source{source=static} = %v, want 7", got)
	}
}

func TestPricingAPIDownFallsBackToStatic(t *testing.T) {
	e := newEnv(t)
	e.p.opts.Pricing = &fakePricing{err: errors.New("dial tcp: no route to host")}
	its, err := e.p.InstanceTypes(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range find(its, "p5.48xlarge").Offerings {
		if o.CapacityType == v1.CapacityTypeOnDemand && o.PricePerHour != 55.04 {
			t.Errorf("p5 on-demand in %s = %v, want the static 55.04", o.Zone, o.PricePerHour)
		}
	}
	if got := gaugeValue(t, e.p.priceSources.WithLabelValues("api")); got != 1 {
		t.Errorf("price_source{source=api} = %v, want 1 (the g5 spot history price only)", got)
	}
}

func TestCatalogRefreshFollowsClock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for range 2 {
		if _, err := e.p.InstanceTypes(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.ec2.Calls("DescribeInstanceTypeOfferings"); got != 1 {
		t.Fatalf("catalog fetched %d times within its TTL, want 1", got)
	}
	if got := e.ec2.Calls("DescribeCapacityReservations"); got != 1 {
		t.Fatalf("reservations fetched %d times within their TTL, want 1", got)
	}
	e.clock.Step(DefaultReservationTTL)
	if _, err := e.p.InstanceTypes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := e.ec2.Calls("DescribeCapacityReservations"); got != 2 {
		t.Fatalf("reservations fetched %d times after their TTL, want 2", got)
	}
	e.clock.Step(DefaultCatalogTTL)
	e.ec2.errs["DescribeInstanceTypes"] = errors.New("throttled")
	its, err := e.p.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatalf("a failed refresh must keep the previous catalog: %v", err)
	}
	if got := e.ec2.Calls("DescribeInstanceTypes"); got != 4 { // 3 pages, then the failed refresh
		t.Fatalf("DescribeInstanceTypes calls = %d, want 4", got)
	}
	if find(its, "g5.xlarge") == nil {
		t.Fatal("previous catalog lost after a failed refresh")
	}
}

func TestStaticCatalogWhenEC2Unreachable(t *testing.T) {
	e := newEnv(t)
	e.ec2.errs["DescribeInstanceTypeOfferings"] = errors.New("dial tcp: connection refused")
	its, err := e.p.InstanceTypes(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(its) < 100 || find(its, "p5.48xlarge") == nil {
		t.Fatalf("got %d types, want the built-in aws/us-east-1 catalog", len(its))
	}
}

func TestInstanceTypesOnlyInNodeClassZones(t *testing.T) {
	nc := nodeClass()
	nc.Status.Subnets = nc.Status.Subnets[:1]
	e := newEnv(t, nc)
	its, err := e.p.InstanceTypes(context.Background(), gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range its {
		for _, o := range it.Offerings {
			if o.Zone != zoneA {
				t.Errorf("%s offered in %s; the node class only has a subnet in %s", it.Name, o.Zone, zoneA)
			}
		}
	}
}

func claim(name string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec: v1.NodeClaimSpec{
			Offerings:    offerings,
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "gpu"},
		},
	}
}

func choice(it, zone, ct string) v1.OfferingChoice {
	return v1.OfferingChoice{InstanceType: it, Zone: zone, CapacityType: ct}
}

func TestCreateFallsBackInClaimOrder(t *testing.T) {
	e := newEnv(t)
	e.ec2.noCapacity["g5.xlarge/us-east-1a/spot"] = "InsufficientInstanceCapacity"
	c := claim("a", choice("g5.xlarge", zoneA, "spot"), choice("g5.xlarge", zoneB, "spot"), choice("g5.xlarge", zoneA, "on-demand"))
	got, err := e.p.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Zone != zoneB || got.Status.CapacityType != "spot" || got.Status.InstanceType != "g5.xlarge" {
		t.Fatalf("launched %s/%s/%s, want g5.xlarge/us-east-1b/spot", got.Status.InstanceType, got.Status.Zone, got.Status.CapacityType)
	}
	if !strings.HasPrefix(got.Status.ProviderID, "aws:///us-east-1b/i-") {
		t.Errorf("providerID = %q", got.Status.ProviderID)
	}
	if got.Status.ImageID != "ami-gpu" {
		t.Errorf("imageID = %q, want the NVIDIA image for a GPU type", got.Status.ImageID)
	}
	if diff := cmp.Diff([]string{"g5.xlarge/us-east-1a/spot"}, got.Status.UnavailableOfferings); diff != "" {
		t.Errorf("unavailable offerings (-want +got):\n%s", diff)
	}
	u := e.p.Unavailable()
	if !u.IsUnavailable(cloudprovider.ChoiceID(c.Spec.Offerings[0])) {
		t.Error("the pool that reported ICE must be marked unavailable")
	}
	for _, ch := range c.Spec.Offerings[1:] {
		if u.IsUnavailable(cloudprovider.ChoiceID(ch)) {
			t.Errorf("%s marked unavailable but never failed", cloudprovider.ChoiceID(ch))
		}
	}
	if len(e.ec2.fleets) != 1 {
		t.Fatalf("CreateFleet calls = %d, want 1: both spot offerings go in one call", len(e.ec2.fleets))
	}
	in := e.ec2.fleets[0]
	if in.Type != ec2types.FleetTypeInstant || aws.ToInt32(in.TargetCapacitySpecification.TotalTargetCapacity) != 1 {
		t.Errorf("fleet type %s capacity %d, want instant 1", in.Type, aws.ToInt32(in.TargetCapacitySpecification.TotalTargetCapacity))
	}
	if in.SpotOptions == nil || in.SpotOptions.AllocationStrategy != ec2types.SpotAllocationStrategyPriceCapacityOptimized {
		t.Errorf("spot options = %+v, want price-capacity-optimized", in.SpotOptions)
	}
	var gotOverrides []string
	for _, o := range in.LaunchTemplateConfigs[0].Overrides {
		gotOverrides = append(gotOverrides, string(o.InstanceType)+"@"+aws.ToString(o.SubnetId)+"#"+v1.FormatPrice(aws.ToFloat64(o.Priority)))
	}
	if diff := cmp.Diff([]string{"g5.xlarge@subnet-a#0", "g5.xlarge@subnet-b#1"}, gotOverrides); diff != "" {
		t.Errorf("overrides (-want +got):\n%s", diff)
	}
	tags := map[string]string{}
	for _, tg := range in.TagSpecifications[0].Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	wantTags := map[string]string{TagCluster: "test", TagNodePool: "gpu", TagNodeClaim: "a", TagNodeClass: "gpu", TagName: "a", "team": "ml"}
	if diff := cmp.Diff(wantTags, tags); diff != "" {
		t.Errorf("instance tags (-want +got):\n%s", diff)
	}
}

func TestCreateAllPoolsOutOfCapacity(t *testing.T) {
	e := newEnv(t)
	e.ec2.noCapacity["g5.xlarge/us-east-1a/spot"] = "MaxSpotInstanceCountExceeded"
	e.ec2.noCapacity["g5.xlarge/us-east-1a/on-demand"] = "VcpuLimitExceeded"
	e.ec2.noCapacity["p5.48xlarge/us-east-1b/on-demand"] = "UnfulfillableCapacity"
	c := claim("b", choice("g5.xlarge", zoneA, "spot"), choice("g5.xlarge", zoneA, "on-demand"), choice("p5.48xlarge", zoneB, "on-demand"))
	_, err := e.p.Create(context.Background(), c)
	if !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("err = %v, want insufficient capacity", err)
	}
	want := []cloudprovider.OfferingID{cloudprovider.ChoiceID(c.Spec.Offerings[0]), cloudprovider.ChoiceID(c.Spec.Offerings[1]), cloudprovider.ChoiceID(c.Spec.Offerings[2])}
	if diff := cmp.Diff(want, cloudprovider.InsufficientCapacityOfferings(err)); diff != "" {
		t.Errorf("ICE offerings (-want +got):\n%s", diff)
	}
	if len(e.ec2.fleets) != 2 {
		t.Fatalf("CreateFleet calls = %d, want one per capacity type", len(e.ec2.fleets))
	}
	od := e.ec2.fleets[1]
	if od.TargetCapacitySpecification.DefaultTargetCapacityType != ec2types.DefaultTargetCapacityTypeOnDemand ||
		od.OnDemandOptions == nil || od.OnDemandOptions.AllocationStrategy != ec2types.FleetOnDemandAllocationStrategyPrioritized {
		t.Errorf("second call = %+v / %+v, want prioritized on-demand", od.TargetCapacitySpecification, od.OnDemandOptions)
	}
	// A retry skips pools still known to be empty without asking EC2 again.
	if _, err := e.p.Create(context.Background(), claim("b2", c.Spec.Offerings...)); !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("retry err = %v, want insufficient capacity", err)
	}
	if len(e.ec2.fleets) != 2 {
		t.Errorf("CreateFleet calls = %d after retry, want still 2", len(e.ec2.fleets))
	}
}

func TestCreateOtherFleetErrorIsNotICE(t *testing.T) {
	e := newEnv(t)
	e.ec2.noCapacity["g5.xlarge/us-east-1a/on-demand"] = "InvalidParameterValue"
	_, err := e.p.Create(context.Background(), claim("c", choice("g5.xlarge", zoneA, "on-demand")))
	if err == nil || cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("err = %v, want a plain error", err)
	}
	if !strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Errorf("error %q does not name the EC2 code", err)
	}
	if e.p.Unavailable().IsUnavailable(cloudprovider.OfferingID{InstanceType: "g5.xlarge", Zone: zoneA, CapacityType: "on-demand"}) {
		t.Error("a non-capacity error must not mark the pool unavailable")
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	e := newEnv(t)
	c := claim("d", choice("m5.large", zoneA, "on-demand"))
	first, err := e.p.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	// A restarted controller (fresh provider) finds the tagged instance.
	p2, err := New(Options{ClusterName: "test", Region: "us-east-1", EC2: e.ec2, Kube: e.p.opts.Kube, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	second, err := p2.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if first.Status.ProviderID != second.Status.ProviderID || len(e.ec2.fleets) != 1 {
		t.Fatalf("second Create launched again: %s vs %s, %d fleets", first.Status.ProviderID, second.Status.ProviderID, len(e.ec2.fleets))
	}
	// If the tag lookup misses (eventual consistency), the client token still
	// makes EC2 return the first instance.
	id, _ := ParseProviderID(first.Status.ProviderID)
	e.ec2.instances[id].Tags = nil
	third, err := p2.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if third.Status.ProviderID != first.Status.ProviderID {
		t.Fatalf("retry with the same token launched %s, want %s", third.Status.ProviderID, first.Status.ProviderID)
	}
	if got := []string{aws.ToString(e.ec2.fleets[0].ClientToken), aws.ToString(e.ec2.fleets[1].ClientToken)}; got[0] != got[1] {
		t.Errorf("client tokens differ across retries: %v", got)
	}
	if first.Status.PricePerHour != "0.096" {
		t.Errorf("price = %q, want 0.096", first.Status.PricePerHour)
	}
	if got := first.Status.Capacity.Cpu().Value(); got != 2 {
		t.Errorf("capacity cpu = %d, want 2", got)
	}
}

func TestFleetClientToken(t *testing.T) {
	long := claim(strings.Repeat("n", 200))
	spot := &offeringGroup{capacityType: "spot"}
	od := &offeringGroup{capacityType: "on-demand"}
	tok := fleetClientToken(long, spot, 0)
	if len(tok) > maxClientTokenLen {
		t.Errorf("token has %d characters, EC2 allows %d", len(tok), maxClientTokenLen)
	}
	if tok != fleetClientToken(long, spot, 0) {
		t.Error("token must be deterministic")
	}
	if tok == fleetClientToken(long, od, 0) {
		t.Error("different capacity-type calls must not share a token")
	}
	other := claim(strings.Repeat("n", 200))
	other.UID = "another"
	if tok == fleetClientToken(other, spot, 0) {
		t.Error("a recreated claim (new UID) must get a new token")
	}
	if tok == fleetClientToken(long, spot, 1) {
		t.Error("a call after a fleet that launched nothing must get a new token")
	}
}

func TestCreateTargetsReservation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.p.InstanceTypes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, reservation, zone string
		wantTarget              ec2types.DefaultTargetCapacityType
		wantMarket              ec2types.MarketType
	}{
		{"odcr", "cr-1", zoneB, ec2types.DefaultTargetCapacityTypeOnDemand, ""},
		{"block", "cr-block", zoneA, ec2types.DefaultTargetCapacityTypeCapacityBlock, ec2types.MarketTypeCapacityBlock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := choice("p5.48xlarge", tt.zone, "reserved")
			ch.ReservationID = tt.reservation
			got, err := e.p.Create(ctx, claim("r-"+tt.name, ch))
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.CapacityType != v1.CapacityTypeReserved {
				t.Errorf("capacity type = %s, want reserved", got.Status.CapacityType)
			}
			in := e.ec2.fleets[len(e.ec2.fleets)-1]
			if in.TargetCapacitySpecification.DefaultTargetCapacityType != tt.wantTarget {
				t.Errorf("target capacity type = %s, want %s", in.TargetCapacitySpecification.DefaultTargetCapacityType, tt.wantTarget)
			}
			lt := e.ec2.templates[aws.ToString(in.LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
			if lt.CapacityReservationSpecification == nil || aws.ToString(lt.CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId) != tt.reservation {
				t.Fatalf("launch template does not target %s: %+v", tt.reservation, lt.CapacityReservationSpecification)
			}
			var market ec2types.MarketType
			if lt.InstanceMarketOptions != nil {
				market = lt.InstanceMarketOptions.MarketType
			}
			if market != tt.wantMarket {
				t.Errorf("market type = %q, want %q", market, tt.wantMarket)
			}
		})
	}
}

// A failed reservation refresh empties the provider's list; a claim planned
// into a Capacity Block before it must still launch as one (EC2 refuses a
// block without market type capacity-block), from the node class's status,
// and a reservation neither knows must fail rather than launch as default.
func TestCreateCapacityBlockAfterFailedReservationRefresh(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.p.InstanceTypes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	e.ec2.errs["DescribeCapacityReservations"] = errors.New("throttled")
	e.clock.Step(DefaultReservationTTL)

	ch := choice("p5.48xlarge", zoneA, "reserved")
	ch.ReservationID = "cr-block"
	if _, err := e.p.Create(ctx, claim("block", ch)); err != nil {
		t.Fatal(err)
	}
	if got := e.ec2.Calls("DescribeCapacityReservations"); got != 2 {
		t.Fatalf("DescribeCapacityReservations calls = %d, want the failed refresh too", got)
	}
	in := e.ec2.fleets[len(e.ec2.fleets)-1]
	if got := in.TargetCapacitySpecification.DefaultTargetCapacityType; got != ec2types.DefaultTargetCapacityTypeCapacityBlock {
		t.Errorf("target capacity type = %s, want capacity-block", got)
	}
	lt := e.ec2.templates[aws.ToString(in.LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
	if lt.InstanceMarketOptions == nil || lt.InstanceMarketOptions.MarketType != ec2types.MarketTypeCapacityBlock {
		t.Errorf("launch template market options = %+v, want capacity-block", lt.InstanceMarketOptions)
	}

	// Neither the list nor the status knows the reservation.
	unknown := choice("p5.48xlarge", zoneA, "reserved")
	unknown.ReservationID = "cr-0123abcd"
	fleets := e.ec2.Calls("CreateFleet")
	_, err := e.p.Create(ctx, claim("unknown", unknown))
	if err == nil || !strings.Contains(err.Error(), "cr-0123abcd") || cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("Create = %v, want an error naming the unknown reservation (not insufficient capacity)", err)
	}
	if got := e.ec2.Calls("CreateFleet"); got != fleets {
		t.Errorf("CreateFleet called %d times for an unknown reservation, want none", got-fleets)
	}
}

func TestCreateReservationFullFallsBackToOnDemand(t *testing.T) {
	e := newEnv(t)
	e.ec2.noCapacity["p5.48xlarge/us-east-1b/reserved"] = "ReservationCapacityExceeded"
	ch := choice("p5.48xlarge", zoneB, "reserved")
	ch.ReservationID = "cr-1"
	got, err := e.p.Create(context.Background(), claim("r", ch, choice("p5.48xlarge", zoneB, "on-demand")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.CapacityType != v1.CapacityTypeOnDemand {
		t.Errorf("capacity type = %s, want on-demand after the reservation was full", got.Status.CapacityType)
	}
	if !e.p.Unavailable().IsUnavailable(cloudprovider.ChoiceID(ch)) {
		t.Error("full reservation not marked unavailable")
	}
	if n := len(e.ec2.templates); n != 2 {
		t.Errorf("launch templates = %d, want one targeting the reservation and one without", n)
	}
}

func TestCreateNeedsReadyNodeClass(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*awsv1.EC2NodeClass)
		want   []string
	}{
		{"Ready False", func(nc *awsv1.EC2NodeClass) {
			nc.Status.Conditions[0].Status = metav1.ConditionFalse
			nc.Status.Conditions[0].Message = "SubnetsReady: no subnet matches spec.subnetSelectorTerms: id subnet-typo"
		}, []string{"gpu", "subnet-typo"}},
		{"spec changed since it was resolved", func(nc *awsv1.EC2NodeClass) { nc.Generation = 2 }, []string{"gpu", "not been resolved", "generation 2"}},
		{"Ready but empty", func(nc *awsv1.EC2NodeClass) {
			nc.Status = awsv1.EC2NodeClassStatus{Subnets: nc.Status.Subnets, Conditions: nc.Status.Conditions}
		}, []string{"gpu", "security groups", "AMIs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := nodeClass()
			tt.mutate(nc)
			e := newEnv(t, nc)
			_, err := e.p.Create(context.Background(), claim("e", choice("m5.large", zoneA, "on-demand")))
			if !errors.Is(err, ErrNodeClassNotReady) {
				t.Fatalf("err = %v, want ErrNodeClassNotReady", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if _, err := e.p.InstanceTypes(context.Background(), gpuPool()); !errors.Is(err, ErrNodeClassNotReady) {
				t.Errorf("InstanceTypes err = %v, want ErrNodeClassNotReady: the pool must buy nothing", err)
			}
			if e.ec2.Calls("CreateFleet")+e.ec2.Calls("CreateLaunchTemplate") != 0 {
				t.Error("must not call EC2 for an unready node class")
			}
		})
	}
}

func TestDeleteGetList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := e.p.Create(ctx, claim("f", choice("m5.large", zoneA, "spot")))
	if err != nil {
		t.Fatal(err)
	}
	// An instance of another cluster must not be listed.
	e.ec2.instances["i-other"] = &ec2types.Instance{InstanceId: aws.String("i-other"), State: &ec2types.InstanceState{Name: "running"},
		Tags: []ec2types.Tag{{Key: aws.String(TagCluster), Value: aws.String("other")}}}
	list, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "f" || list[0].Status.ProviderID != c.Status.ProviderID || list[0].Labels[v1.LabelNodeClaim] != "f" {
		t.Fatalf("List = %+v, want the one claim f", list)
	}
	if list[0].Status.CapacityType != v1.CapacityTypeSpot {
		t.Errorf("listed capacity type %q, want spot", list[0].Status.CapacityType)
	}
	got, err := e.p.Get(ctx, c.Status.ProviderID)
	if err != nil || got.Status.InstanceType != "m5.large" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if err := e.p.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, c); !cloudprovider.IsNotFound(err) {
		t.Errorf("second Delete err = %v, want NotFound", err)
	}
	if _, err := e.p.Get(ctx, c.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get after delete err = %v, want NotFound", err)
	}
	if _, err := e.p.Get(ctx, "aws:///us-east-1a/i-missing"); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get of unknown instance err = %v, want NotFound", err)
	}
	if list, _ := e.p.List(ctx); len(list) != 0 {
		t.Errorf("List after delete = %d claims, want 0", len(list))
	}
}

func TestParseProviderID(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"aws:///us-east-1a/i-0123", "i-0123", true},
		{"aws:///us-east-1a/", "", false},
		{"aws://us-east-1a/i-0123", "", false},
		{"gce://p/z/n", "", false},
		{"aws:///us-east-1a/i-1/x", "", false},
	}
	for _, tt := range tests {
		got, err := ParseProviderID(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseProviderID(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidProviderID) {
			t.Errorf("error %v does not wrap ErrInvalidProviderID", err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Options{ClusterName: "x"}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("missing EC2: err = %v", err)
	}
	if _, err := New(Options{EC2: newFakeEC2()}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("missing cluster: err = %v", err)
	}
}

func TestCreateSkipsTypesWithoutImage(t *testing.T) {
	e := newEnv(t)
	e.ec2.addType(ec2types.InstanceTypeInfo{
		InstanceType:  "m7g.large",
		VCpuInfo:      &ec2types.VCpuInfo{DefaultVCpus: aws.Int32(2)},
		MemoryInfo:    &ec2types.MemoryInfo{SizeInMiB: aws.Int64(8192)},
		ProcessorInfo: &ec2types.ProcessorInfo{SupportedArchitectures: []ec2types.ArchitectureType{ec2types.ArchitectureTypeArm64}},
	}, zoneA)
	got, err := e.p.Create(context.Background(), claim("arm", choice("m7g.large", zoneA, "on-demand"), choice("m5.large", zoneA, "on-demand")))
	if err != nil {
		t.Fatalf("an arm64 type without an arm64 image must not block the amd64 one: %v", err)
	}
	if got.Status.InstanceType != "m5.large" || got.Status.ImageID != "ami-std" {
		t.Errorf("launched %s from %s, want m5.large from ami-std", got.Status.InstanceType, got.Status.ImageID)
	}
	for _, o := range e.ec2.fleets[0].LaunchTemplateConfigs[0].Overrides {
		if o.InstanceType == "m7g.large" {
			t.Error("m7g.large was sent to CreateFleet without an arm64 image")
		}
	}
	_, err = e.p.Create(context.Background(), claim("arm-only", choice("m7g.large", zoneA, "on-demand")))
	if err == nil || cloudprovider.IsInsufficientCapacity(err) || !strings.Contains(err.Error(), "no image for m7g.large") {
		t.Errorf("err = %v, want one naming the missing image", err)
	}
}

func TestDeleteWithoutProviderIDFindsTaggedInstance(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := claim("lost", choice("m5.large", zoneA, "on-demand"))
	launched, err := e.p.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	// The status write after the launch was lost: the claim has no providerID.
	if err := e.p.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	id, _ := ParseProviderID(launched.Status.ProviderID)
	if e.ec2.instances[id].State.Name != ec2types.InstanceStateNameTerminated {
		t.Error("the claim's instance was not terminated")
	}
	if err := e.p.Delete(ctx, c); !cloudprovider.IsNotFound(err) {
		t.Errorf("second Delete err = %v, want NotFound", err)
	}
}

func TestStartRefreshesPricesOnSchedule(t *testing.T) {
	e := newEnv(t)
	fp := e.p.opts.Pricing.(*fakePricing)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.p.Start(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("Start returned early (%v) while waiting for %s", err, what)
			default:
				time.Sleep(time.Millisecond)
			}
		}
	}
	waitFor("the first refresh", func() bool { return fp.calls.Load() == 1 && e.clock.HasWaiters() })
	e.clock.Step(DefaultPriceTTL)
	waitFor("the scheduled refresh", func() bool { return fp.calls.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func TestCreateFleetCallLevelCapacityError(t *testing.T) {
	e := newEnv(t)
	e.ec2.errs["CreateFleet"] = apiError("InsufficientInstanceCapacity")
	c := claim("g", choice("g5.xlarge", zoneA, "spot"), choice("g5.xlarge", zoneB, "spot"))
	_, err := e.p.Create(context.Background(), c)
	if !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("err = %v, want insufficient capacity", err)
	}
	for _, ch := range c.Spec.Offerings {
		if !e.p.Unavailable().IsUnavailable(cloudprovider.ChoiceID(ch)) {
			t.Errorf("%s not marked unavailable", cloudprovider.ChoiceID(ch))
		}
	}
	e.ec2.errs["CreateFleet"] = apiError("UnauthorizedOperation")
	_, err = e.p.Create(context.Background(), claim("h", choice("m5.large", zoneA, "on-demand")))
	if err == nil || cloudprovider.IsInsufficientCapacity(err) || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Errorf("err = %v, want the permission error as is", err)
	}
}

// A pool label the kubelet may not set itself (node-role.kubernetes.io/...)
// stays out of its --node-labels, where it would stop the kubelet from
// starting; registration puts it on the Node.
func TestKubeletLabelsLeaveOutRestrictedOnes(t *testing.T) {
	e := newEnv(t)
	c := claim("roles", choice("m5.large", zoneA, "on-demand"))
	c.Labels["node-role.kubernetes.io/gpu"] = ""
	c.Labels["team"] = "ml"
	if _, err := e.p.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	lt := e.ec2.templates[aws.ToString(e.ec2.fleets[0].LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
	ud := decode(t, aws.ToString(lt.UserData))
	if strings.Contains(ud, "node-role.kubernetes.io/gpu") || !strings.Contains(ud, "team=ml") {
		t.Errorf("user data should pass team=ml and leave out node-role.kubernetes.io/gpu:\n%s", ud)
	}
}

// A drift check that comes first after a start (a new leader) reads the
// catalog before judging a GPU node's image, rather than taking the type
// for a standard amd64 one and reporting its NVIDIA image as drift.
func TestDriftBeforeTheCatalogIsLoaded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := e.p.Create(ctx, claim("gpu-node", choice("g5.xlarge", zoneA, "on-demand")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status.ImageID != "ami-gpu" {
		t.Fatalf("launched with %s, want the NVIDIA image ami-gpu", c.Status.ImageID)
	}
	fresh, err := New(Options{ClusterName: "test", Region: "us-east-1", EC2: e.ec2, Kube: e.p.opts.Kube, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := fresh.IsDrifted(ctx, c); err != nil || r != "" {
		t.Errorf("IsDrifted on a fresh provider = %q, %v; want no drift: the node runs the image its class picks", r, err)
	}
}

// EC2 answers a reused client token with its first answer: a retried
// Create after a fleet that launched nothing asks again with a new token,
// rather than replaying the failure until the claim times out.
func TestRetriedCreateAsksEC2Again(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.ec2.noCapacity["g5.xlarge/us-east-1a/spot"] = "InsufficientInstanceCapacity"
	e.ec2.noCapacity["g5.xlarge/us-east-1a/on-demand"] = "InsufficientFreeAddressesInSubnet"
	c := claim("retry", choice("g5.xlarge", zoneA, "spot"), choice("g5.xlarge", zoneA, "on-demand"))
	if _, err := e.p.Create(ctx, c); err == nil {
		t.Fatal("the first Create should fail")
	}
	delete(e.ec2.noCapacity, "g5.xlarge/us-east-1a/spot")
	delete(e.ec2.noCapacity, "g5.xlarge/us-east-1a/on-demand")
	e.clock.Step(4 * time.Minute) // past the unavailable-offerings window
	got, err := e.p.Create(ctx, c)
	if err != nil {
		t.Fatalf("the retry after capacity came back still fails (%d CreateFleet calls): %v", len(e.ec2.fleets), err)
	}
	if got.Status.ProviderID == "" {
		t.Error("the retry launched no instance")
	}
}

type fullReservationEC2 struct {
	*fakeEC2
	full string
}

func (f *fullReservationEC2) CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, o ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	f.mu.Lock()
	lt := f.templates[aws.ToString(in.LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
	f.mu.Unlock()
	if r := lt.CapacityReservationSpecification; r != nil && r.CapacityReservationTarget != nil &&
		aws.ToString(r.CapacityReservationTarget.CapacityReservationId) == f.full {
		out := &ec2.CreateFleetOutput{}
		for _, ov := range in.LaunchTemplateConfigs[0].Overrides {
			out.Errors = append(out.Errors, ec2types.CreateFleetError{ErrorCode: aws.String("ReservationCapacityExceeded"),
				LaunchTemplateAndOverrides: &ec2types.LaunchTemplateAndOverridesResponse{Overrides: &ec2types.FleetLaunchTemplateOverrides{
					InstanceType: ov.InstanceType, SubnetId: ov.SubnetId}}})
		}
		return out, nil
	}
	return f.fakeEC2.CreateFleet(ctx, in, o...)
}

// One full capacity reservation says nothing of another of the same type
// and zone: the launch moves on to it, and the catalog still offers it.
func TestFullReservationDoesNotHideAnother(t *testing.T) {
	nc := nodeClass()
	nc.Status.CapacityReservations = append(nc.Status.CapacityReservations,
		awsv1.CapacityReservation{ID: "cr-2", InstanceType: "p5.48xlarge", Zone: zoneB})
	e := newEnv(t, []client.Object{nc}...)
	e.ec2.reservations = append(e.ec2.reservations, ec2types.CapacityReservation{
		CapacityReservationId: aws.String("cr-2"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String(zoneB),
		AvailableInstanceCount: aws.Int32(4), State: ec2types.CapacityReservationStateActive, ReservationType: ec2types.CapacityReservationTypeDefault})
	p, err := New(Options{ClusterName: "test", Region: "us-east-1", EC2: &fullReservationEC2{fakeEC2: e.ec2, full: "cr-1"},
		Kube: e.p.opts.Kube, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cr1 := choice("p5.48xlarge", zoneB, "reserved")
	cr1.ReservationID = "cr-1"
	cr2 := choice("p5.48xlarge", zoneB, "reserved")
	cr2.ReservationID = "cr-2"
	got, err := p.Create(ctx, claim("two-res", cr1, cr2, choice("p5.48xlarge", zoneB, "on-demand")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.CapacityType != v1.CapacityTypeReserved {
		t.Errorf("launched %s although reservation cr-2 has 4 free instances; fleets: %d", got.Status.CapacityType, len(e.ec2.fleets))
	}
	its, err := p.InstanceTypes(ctx, gpuPool())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range find(its, "p5.48xlarge").Offerings {
		if o.ReservationID == "cr-2" && !o.Available {
			t.Errorf("reservation cr-2 (4 free) offered as unavailable because cr-1 was full")
		}
	}
}

// A machine launched on a commitment's covered offering records the covered
// price the plan gave it, whether or not the same offering at list price
// also made the claim's list of choices.
func TestCoveredLaunchRecordsThePlannedPrice(t *testing.T) {
	p := &Provider{}
	covered := v1.OfferingChoice{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.0001"}
	plain := v1.OfferingChoice{InstanceType: "m5.xlarge", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.1920"}
	l := launched{id: "i-1", instanceType: "m5.xlarge", zone: "us-east-1a", capacityType: v1.CapacityTypeOnDemand}
	a := p.launchedClaim(&v1.NodeClaim{Spec: v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{covered, plain}}}, l)
	b := p.launchedClaim(&v1.NodeClaim{Spec: v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{covered}}}, l)
	if a.Status.PricePerHour != covered.PricePerHour || b.Status.PricePerHour != covered.PricePerHour {
		t.Errorf("the same covered machine recorded at %q and %q; want the planned %q for both",
			a.Status.PricePerHour, b.Status.PricePerHour, covered.PricePerHour)
	}
}
