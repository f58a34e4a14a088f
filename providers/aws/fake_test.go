package aws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/pricing"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// fakeEC2 is a hand-written EC2 that records calls and fails chosen pools.
type fakeEC2 struct {
	mu sync.Mutex

	types        []ec2types.InstanceTypeInfo
	offerings    map[string][]string // type -> zones
	spotPrices   []ec2types.SpotPrice
	reservations []ec2types.CapacityReservation
	subnetZones  map[string]string

	// noCapacity maps "type/zone/lifecycle" to an error code CreateFleet reports for that pool.
	noCapacity map[string]string
	// errs fails whole calls by method name.
	errs map[string]error

	templates    map[string]*ec2types.RequestLaunchTemplateData
	templateTags map[string][]ec2types.Tag
	groups       map[string][]ec2types.Tag // placement groups and their tags
	instances    map[string]*ec2types.Instance
	byToken      map[string]*ec2.CreateFleetOutput
	fleets       []*ec2.CreateFleetInput
	topology     map[string][]string // instance ID -> network nodes
	calls        map[string]int
	next         int
}

func newFakeEC2() *fakeEC2 {
	return &fakeEC2{
		offerings:    map[string][]string{},
		subnetZones:  map[string]string{},
		noCapacity:   map[string]string{},
		errs:         map[string]error{},
		templates:    map[string]*ec2types.RequestLaunchTemplateData{},
		templateTags: map[string][]ec2types.Tag{},
		groups:       map[string][]ec2types.Tag{},
		instances:    map[string]*ec2types.Instance{},
		byToken:      map[string]*ec2.CreateFleetOutput{},
		calls:        map[string]int{},
	}
}

var _ EC2API = (*fakeEC2)(nil)

func apiError(code string) error { return &smithy.GenericAPIError{Code: code, Message: code} }

func (f *fakeEC2) call(name string) error {
	f.calls[name]++
	return f.errs[name]
}

func (f *fakeEC2) Calls(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeEC2) addType(info ec2types.InstanceTypeInfo, zones ...string) {
	f.types = append(f.types, info)
	f.offerings[string(info.InstanceType)] = zones
}

func (f *fakeEC2) DescribeInstanceTypes(_ context.Context, in *ec2.DescribeInstanceTypesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstanceTypesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeInstanceTypes"); err != nil {
		return nil, err
	}
	// One type per page exercises the paginator.
	start := 0
	if in.NextToken != nil {
		if _, err := fmt.Sscan(*in.NextToken, &start); err != nil {
			return nil, fmt.Errorf("bad NextToken %q: %w", *in.NextToken, err)
		}
	}
	out := &ec2.DescribeInstanceTypesOutput{}
	if start < len(f.types) {
		out.InstanceTypes = f.types[start : start+1]
	}
	if start+1 < len(f.types) {
		out.NextToken = aws.String(fmt.Sprint(start + 1))
	}
	return out, nil
}

func (f *fakeEC2) DescribeInstanceTypeOfferings(context.Context, *ec2.DescribeInstanceTypeOfferingsInput, ...func(*ec2.Options)) (*ec2.DescribeInstanceTypeOfferingsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeInstanceTypeOfferings"); err != nil {
		return nil, err
	}
	out := &ec2.DescribeInstanceTypeOfferingsOutput{}
	for t, zones := range f.offerings {
		for _, z := range zones {
			out.InstanceTypeOfferings = append(out.InstanceTypeOfferings, ec2types.InstanceTypeOffering{
				InstanceType: ec2types.InstanceType(t), Location: aws.String(z), LocationType: ec2types.LocationTypeAvailabilityZone})
		}
	}
	return out, nil
}

func (f *fakeEC2) DescribeSpotPriceHistory(context.Context, *ec2.DescribeSpotPriceHistoryInput, ...func(*ec2.Options)) (*ec2.DescribeSpotPriceHistoryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeSpotPriceHistory"); err != nil {
		return nil, err
	}
	return &ec2.DescribeSpotPriceHistoryOutput{SpotPriceHistory: f.spotPrices}, nil
}

func (f *fakeEC2) DescribeCapacityReservations(_ context.Context, in *ec2.DescribeCapacityReservationsInput, _ ...func(*ec2.Options)) (*ec2.DescribeCapacityReservationsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeCapacityReservations"); err != nil {
		return nil, err
	}
	var out []ec2types.CapacityReservation
	for _, r := range f.reservations {
		for _, flt := range in.Filters {
			if aws.ToString(flt.Name) == "state" && !slices.Contains(flt.Values, string(r.State)) {
				goto skip
			}
		}
		out = append(out, r)
	skip:
	}
	return &ec2.DescribeCapacityReservationsOutput{CapacityReservations: out}, nil
}

func (f *fakeEC2) DescribeLaunchTemplates(_ context.Context, in *ec2.DescribeLaunchTemplatesInput, _ ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeLaunchTemplates"); err != nil {
		return nil, err
	}
	out := &ec2.DescribeLaunchTemplatesOutput{}
	for _, n := range in.LaunchTemplateNames {
		if _, ok := f.templates[n]; !ok {
			return nil, apiError(codeLaunchTemplateNotFound)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(f.templates)) {
		if len(in.LaunchTemplateNames) > 0 && !slices.Contains(in.LaunchTemplateNames, n) {
			continue
		}
		if tagsMatch(f.templateTags[n], in.Filters) {
			out.LaunchTemplates = append(out.LaunchTemplates, ec2types.LaunchTemplate{LaunchTemplateName: aws.String(n), Tags: f.templateTags[n]})
		}
	}
	return out, nil
}

func (f *fakeEC2) CreateLaunchTemplate(_ context.Context, in *ec2.CreateLaunchTemplateInput, _ ...func(*ec2.Options)) (*ec2.CreateLaunchTemplateOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateLaunchTemplate"); err != nil {
		return nil, err
	}
	name := aws.ToString(in.LaunchTemplateName)
	if _, ok := f.templates[name]; ok {
		return nil, apiError(codeLaunchTemplateAlreadyExists)
	}
	f.templates[name] = in.LaunchTemplateData
	for _, ts := range in.TagSpecifications {
		f.templateTags[name] = append(f.templateTags[name], ts.Tags...)
	}
	return &ec2.CreateLaunchTemplateOutput{}, nil
}

func (f *fakeEC2) DeleteLaunchTemplate(_ context.Context, in *ec2.DeleteLaunchTemplateInput, _ ...func(*ec2.Options)) (*ec2.DeleteLaunchTemplateOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeleteLaunchTemplate"); err != nil {
		return nil, err
	}
	name := aws.ToString(in.LaunchTemplateName)
	if _, ok := f.templates[name]; !ok {
		return nil, apiError(codeLaunchTemplateNotFound)
	}
	delete(f.templates, name)
	delete(f.templateTags, name)
	return &ec2.DeleteLaunchTemplateOutput{}, nil
}

func (f *fakeEC2) CreatePlacementGroup(_ context.Context, in *ec2.CreatePlacementGroupInput, _ ...func(*ec2.Options)) (*ec2.CreatePlacementGroupOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreatePlacementGroup"); err != nil {
		return nil, err
	}
	name := aws.ToString(in.GroupName)
	if _, ok := f.groups[name]; ok {
		return nil, apiError(codePlacementGroupDuplicate)
	}
	if in.Strategy != ec2types.PlacementStrategyCluster {
		return nil, apiError("InvalidParameterValue")
	}
	var tags []ec2types.Tag
	for _, ts := range in.TagSpecifications {
		tags = append(tags, ts.Tags...)
	}
	f.groups[name] = tags
	return &ec2.CreatePlacementGroupOutput{}, nil
}

func (f *fakeEC2) DescribePlacementGroups(_ context.Context, in *ec2.DescribePlacementGroupsInput, _ ...func(*ec2.Options)) (*ec2.DescribePlacementGroupsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribePlacementGroups"); err != nil {
		return nil, err
	}
	out := &ec2.DescribePlacementGroupsOutput{}
	for _, n := range slices.Sorted(maps.Keys(f.groups)) {
		if tagsMatch(f.groups[n], in.Filters) {
			out.PlacementGroups = append(out.PlacementGroups, ec2types.PlacementGroup{GroupName: aws.String(n), Strategy: ec2types.PlacementStrategyCluster, Tags: f.groups[n]})
		}
	}
	return out, nil
}

func (f *fakeEC2) DeletePlacementGroup(_ context.Context, in *ec2.DeletePlacementGroupInput, _ ...func(*ec2.Options)) (*ec2.DeletePlacementGroupOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DeletePlacementGroup"); err != nil {
		return nil, err
	}
	name := aws.ToString(in.GroupName)
	if _, ok := f.groups[name]; !ok {
		return nil, apiError(codePlacementGroupUnknown)
	}
	for _, inst := range f.instances {
		if inst.Placement != nil && aws.ToString(inst.Placement.GroupName) == name && inst.State.Name != ec2types.InstanceStateNameTerminated {
			return nil, apiError(codePlacementGroupInUse)
		}
	}
	delete(f.groups, name)
	return &ec2.DeletePlacementGroupOutput{}, nil
}

func (f *fakeEC2) DescribeInstanceTopology(_ context.Context, in *ec2.DescribeInstanceTopologyInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstanceTopologyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeInstanceTopology"); err != nil {
		return nil, err
	}
	if len(in.InstanceIds) > maxTopologyIDs {
		return nil, apiError("InvalidParameterValue")
	}
	out := &ec2.DescribeInstanceTopologyOutput{}
	for _, id := range in.InstanceIds {
		if nodes, ok := f.topology[id]; ok {
			out.Instances = append(out.Instances, ec2types.InstanceTopology{InstanceId: aws.String(id), NetworkNodes: nodes})
		}
	}
	return out, nil
}

// tagsMatch applies tag:<key> filters.
func tagsMatch(tags []ec2types.Tag, filters []ec2types.Filter) bool {
	for _, flt := range filters {
		key, ok := strings.CutPrefix(aws.ToString(flt.Name), "tag:")
		if !ok {
			continue
		}
		if !slices.ContainsFunc(tags, func(t ec2types.Tag) bool {
			return aws.ToString(t.Key) == key && slices.Contains(flt.Values, aws.ToString(t.Value))
		}) {
			return false
		}
	}
	return true
}

func lifecycleOf(in *ec2.CreateFleetInput) string {
	switch in.TargetCapacitySpecification.DefaultTargetCapacityType {
	case ec2types.DefaultTargetCapacityTypeSpot:
		return "spot"
	}
	return "on-demand"
}

// CreateFleet walks overrides by priority and launches in the first pool
// without an injected error, like the prioritized strategies do.
func (f *fakeEC2) CreateFleet(_ context.Context, in *ec2.CreateFleetInput, _ ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("CreateFleet"); err != nil {
		return nil, err
	}
	f.fleets = append(f.fleets, in)
	token := aws.ToString(in.ClientToken)
	if out, ok := f.byToken[token]; ok {
		return out, nil
	}
	type override struct {
		ec2types.FleetLaunchTemplateOverridesRequest
		lt *ec2types.RequestLaunchTemplateData
	}
	var overrides []override
	for _, cfg := range in.LaunchTemplateConfigs {
		lt := f.templates[aws.ToString(cfg.LaunchTemplateSpecification.LaunchTemplateName)]
		if lt == nil {
			return nil, apiError(codeLaunchTemplateNotFound)
		}
		for _, o := range cfg.Overrides {
			if o.Placement != nil && o.Placement.GroupName != nil {
				if _, ok := f.groups[aws.ToString(o.Placement.GroupName)]; !ok {
					return nil, apiError(codePlacementGroupUnknown)
				}
			}
			overrides = append(overrides, override{o, lt})
		}
	}
	slices.SortStableFunc(overrides, func(a, b override) int {
		return int(aws.ToFloat64(a.Priority) - aws.ToFloat64(b.Priority))
	})
	out := &ec2.CreateFleetOutput{FleetId: aws.String(fmt.Sprintf("fleet-%d", len(f.fleets)))}
	for _, o := range overrides {
		lifecycle := lifecycleOf(in)
		if r := o.lt.CapacityReservationSpecification; r != nil && r.CapacityReservationTarget != nil {
			lifecycle = "reserved"
		}
		zone := f.subnetZones[aws.ToString(o.SubnetId)]
		key := fmt.Sprintf("%s/%s/%s", o.InstanceType, zone, lifecycle)
		resp := &ec2types.LaunchTemplateAndOverridesResponse{Overrides: &ec2types.FleetLaunchTemplateOverrides{
			InstanceType: o.InstanceType, SubnetId: o.SubnetId, ImageId: o.ImageId, Priority: o.Priority}}
		if code, bad := f.noCapacity[key]; bad {
			out.Errors = append(out.Errors, ec2types.CreateFleetError{ErrorCode: aws.String(code), ErrorMessage: aws.String("no capacity"), LaunchTemplateAndOverrides: resp})
			continue
		}
		f.next++
		id := fmt.Sprintf("i-%017d", f.next)
		inst := &ec2types.Instance{
			InstanceId: aws.String(id), InstanceType: o.InstanceType, ImageId: o.ImageId, SubnetId: o.SubnetId,
			Placement:  &ec2types.Placement{AvailabilityZone: aws.String(zone)},
			State:      &ec2types.InstanceState{Name: ec2types.InstanceStateNameRunning},
			LaunchTime: aws.Time(time.Unix(1_800_000_000, 0)),
		}
		if o.Placement != nil {
			inst.Placement.GroupName = o.Placement.GroupName
		}
		groups := o.lt.SecurityGroupIds
		if len(o.lt.NetworkInterfaces) > 0 {
			groups = o.lt.NetworkInterfaces[0].Groups
		}
		for _, g := range groups {
			inst.SecurityGroups = append(inst.SecurityGroups, ec2types.GroupIdentifier{GroupId: aws.String(g)})
		}
		if lifecycle == "spot" {
			inst.InstanceLifecycle = ec2types.InstanceLifecycleTypeSpot
		}
		if lifecycle == "reserved" {
			inst.CapacityReservationId = o.lt.CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId
		}
		for _, ts := range in.TagSpecifications {
			if ts.ResourceType == ec2types.ResourceTypeInstance {
				inst.Tags = append(inst.Tags, ts.Tags...)
			}
		}
		f.instances[id] = inst
		out.Instances = []ec2types.CreateFleetInstance{{InstanceIds: []string{id}, InstanceType: o.InstanceType,
			Lifecycle: ec2types.InstanceLifecycle(lifecycle), LaunchTemplateAndOverrides: resp, SubnetId: o.SubnetId}}
		break
	}
	f.byToken[token] = out
	return out, nil
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("DescribeInstances"); err != nil {
		return nil, err
	}
	var res ec2types.Reservation
	for _, id := range in.InstanceIds {
		inst, ok := f.instances[id]
		if !ok {
			return nil, apiError(codeInstanceNotFound)
		}
		res.Instances = append(res.Instances, *inst)
	}
	if len(in.InstanceIds) == 0 {
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range f.instances {
				if !yield(id) {
					return
				}
			}
		})
		for _, id := range ids {
			if inst := f.instances[id]; matches(inst, in.Filters) {
				res.Instances = append(res.Instances, *inst)
			}
		}
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{res}}, nil
}

func matches(inst *ec2types.Instance, filters []ec2types.Filter) bool {
	for _, flt := range filters {
		name := aws.ToString(flt.Name)
		switch {
		case name == "instance-state-name":
			if !slices.Contains(flt.Values, string(inst.State.Name)) {
				return false
			}
		case strings.HasPrefix(name, "tag:"):
			key := strings.TrimPrefix(name, "tag:")
			if !slices.ContainsFunc(inst.Tags, func(t ec2types.Tag) bool {
				return aws.ToString(t.Key) == key && slices.Contains(flt.Values, aws.ToString(t.Value))
			}) {
				return false
			}
		}
	}
	return true
}

func (f *fakeEC2) TerminateInstances(_ context.Context, in *ec2.TerminateInstancesInput, _ ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("TerminateInstances"); err != nil {
		return nil, err
	}
	out := &ec2.TerminateInstancesOutput{}
	for _, id := range in.InstanceIds {
		inst, ok := f.instances[id]
		if !ok {
			return nil, apiError(codeInstanceNotFound)
		}
		prev := *inst.State
		inst.State = &ec2types.InstanceState{Name: ec2types.InstanceStateNameTerminated}
		out.TerminatingInstances = append(out.TerminatingInstances, ec2types.InstanceStateChange{InstanceId: aws.String(id), PreviousState: &prev, CurrentState: inst.State})
	}
	return out, nil
}

// fakePricing serves fixed Price List documents.
type fakePricing struct {
	docs  []string
	err   error
	calls atomic.Int32
}

func (f *fakePricing) GetProducts(context.Context, *pricing.GetProductsInput, ...func(*pricing.Options)) (*pricing.GetProductsOutput, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return &pricing.GetProductsOutput{PriceList: f.docs}, nil
}

// fakeSQS hands out queued bodies once and records deletions.
type fakeSQS struct {
	mu       sync.Mutex
	queue    []sqstypes.Message
	deleted  []string
	received int
	// failDeletes fails that many DeleteMessage calls first.
	failDeletes int
}

func (f *fakeSQS) push(id, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, sqstypes.Message{MessageId: aws.String(id), ReceiptHandle: aws.String("rh-" + id), Body: aws.String(body)})
}

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	n := min(int(in.MaxNumberOfMessages), len(f.queue))
	msgs := f.queue[:n]
	f.queue = f.queue[n:]
	f.received++
	f.mu.Unlock()
	if n == 0 {
		// Long poll: wait until cancelled, like an empty queue.
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &sqs.ReceiveMessageOutput{Messages: msgs}, nil
}

func (f *fakeSQS) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failDeletes > 0 {
		f.failDeletes--
		return nil, errors.New("sqs unavailable")
	}
	f.deleted = append(f.deleted, aws.ToString(in.ReceiptHandle))
	return &sqs.DeleteMessageOutput{}, nil
}

func (f *fakeSQS) Deleted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deleted)
}
