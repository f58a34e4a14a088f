package aws

import (
	"context"
	"errors"
	"github.com/go-logr/logr"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

const eventTime = "2026-11-27T10:00:00Z"

func event(source, detailType, detail string) string {
	return `{"version":"0","id":"7bf73129-1428-4cd3-a780-95db273d1602","detail-type":"` + detailType + `","source":"` + source +
		`","account":"123456789012","time":"` + eventTime + `","region":"us-east-1","resources":["arn:aws:ec2:us-east-1a:instance/i-1234567890abcdef0"],"detail":` + detail + `}`
}

func TestParseMessage(t *testing.T) {
	at, _ := time.Parse(time.RFC3339, eventTime)
	tests := []struct {
		name    string
		body    string
		want    []Notice
		wantErr bool
	}{
		{"spot warning", event("aws.ec2", detailSpotInterruption, `{"instance-id":"i-1","instance-action":"terminate"}`),
			[]Notice{{InstanceID: "i-1", Kind: cloudprovider.InterruptionSpotReclaim, Deadline: at.Add(2 * time.Minute), Message: detailSpotInterruption}}, false},
		{"rebalance", event("aws.ec2", detailRebalance, `{"instance-id":"i-2"}`),
			[]Notice{{InstanceID: "i-2", Kind: cloudprovider.InterruptionRebalanceHint, Message: detailRebalance}}, false},
		{"stopping", event("aws.ec2", detailStateChange, `{"instance-id":"i-3","state":"stopping"}`),
			[]Notice{{InstanceID: "i-3", Kind: cloudprovider.InterruptionInstanceStopped, Deadline: at, Message: detailStateChange + ": stopping"}}, false},
		{"terminated", event("aws.ec2", detailStateChange, `{"instance-id":"i-3","state":"terminated"}`),
			[]Notice{{InstanceID: "i-3", Kind: cloudprovider.InterruptionInstanceStopped, Deadline: at, Message: detailStateChange + ": terminated"}}, false},
		{"running is no interruption", event("aws.ec2", detailStateChange, `{"instance-id":"i-3","state":"running"}`), nil, false},
		// An interruptible reservation's reclaim terminates the instance 2
		// minutes after the warning, at detail.instance-termination-time: a
		// deadline, not a hint that waits up to 10 minutes to drain.
		{"reservation warning", event("aws.ec2", detailReservationInterruption,
			`{"instance-id":"i-6","instance-action":"terminate","instance-termination-time":"2026-11-27T10:02:30Z"}`),
			[]Notice{{InstanceID: "i-6", Kind: cloudprovider.InterruptionReservationReclaim, Deadline: at.Add(150 * time.Second), Message: detailReservationInterruption}}, false},
		{"reservation warning, instance from resources", event("aws.ec2", detailReservationInterruption, `{"capacity-reservation-id":"cr-1"}`),
			[]Notice{{InstanceID: "i-1234567890abcdef0", Kind: cloudprovider.InterruptionReservationReclaim, Deadline: at.Add(2 * time.Minute), Message: detailReservationInterruption}}, false},
		{"health scheduled change", event("aws.health", detailHealth,
			`{"service":"EC2","eventTypeCategory":"scheduledChange","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","startTime":"Sat, 05 Dec 2026 10:00:00 GMT","affectedEntities":[{"entityValue":"i-4"},{"entityValue":"i-5"}]}`),
			[]Notice{
				{InstanceID: "i-4", Kind: cloudprovider.InterruptionScheduledMaintenance, Deadline: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC), Message: detailHealth + ": AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"},
				{InstanceID: "i-5", Kind: cloudprovider.InterruptionScheduledMaintenance, Deadline: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC), Message: detailHealth + ": AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"},
			}, false},
		{"health issue is ignored", event("aws.health", detailHealth, `{"service":"EC2","eventTypeCategory":"issue","affectedEntities":[{"entityValue":"i-4"}]}`), nil, false},
		{"health for another service", event("aws.health", detailHealth, `{"service":"RDS","eventTypeCategory":"scheduledChange"}`), nil, false},
		{"foreign source", event("aws.s3", "Object Created", `{}`), nil, false},
		{"unknown ec2 detail type", event("aws.ec2", "EC2 AMI State Change", `{}`), nil, false},
		{"not JSON", "hello", nil, true},
		{"no source", `{"detail":{}}`, nil, true},
		{"spot warning without instance", `{"source":"aws.ec2","detail-type":"` + detailSpotInterruption + `","time":"` + eventTime + `","detail":{}}`, nil, true},
		{"detail of the wrong shape", event("aws.ec2", detailRebalance, `"oops"`), nil, true},
		{"health without instances", event("aws.health", detailHealth, `{"service":"EC2","eventTypeCategory":"scheduledChange","affectedEntities":[]}`), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMessage([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrMalformedMessage) {
				t.Errorf("error %v does not wrap ErrMalformedMessage", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("notices (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInterruptionSourceDeliversAndAcks(t *testing.T) {
	ec2 := newFakeEC2()
	ours := func(id, zone, cluster string) {
		ec2.instances[id] = &ec2types.Instance{InstanceId: aws.String(id), Placement: &ec2types.Placement{AvailabilityZone: aws.String(zone)},
			State: &ec2types.InstanceState{Name: "running"}, Tags: []ec2types.Tag{{Key: aws.String(TagCluster), Value: aws.String(cluster)}}}
	}
	ours("i-1", zoneA, "test")
	ours("i-4", zoneA, "test")
	ours("i-5", zoneB, "test")
	ours("i-9", zoneB, "other")
	q := &fakeSQS{}
	q.push("bad", "not json")
	q.push("foreign", event("aws.ec2", detailRebalance, `{"instance-id":"i-9"}`))
	q.push("gone", event("aws.ec2", detailRebalance, `{"instance-id":"i-gone"}`))
	q.push("spot", event("aws.ec2", detailSpotInterruption, `{"instance-id":"i-1"}`))
	q.push("health", event("aws.health", detailHealth, `{"service":"EC2","eventTypeCategory":"scheduledChange","affectedEntities":[{"entityValue":"i-4"},{"entityValue":"i-5"}]}`))

	src, err := NewInterruptionSource(InterruptionOptions{QueueURL: "q", SQS: q, EC2: ec2, ClusterName: "test",
		Clock: clocktesting.NewFakeClock(time.Unix(0, 0)), WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := src.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var events []cloudprovider.InterruptionEvent
	for range 3 {
		e := <-ch
		got = append(got, e.ProviderID+" "+string(e.Kind))
		events = append(events, e)
	}
	want := []string{
		"aws:///us-east-1a/i-1 SpotReclaim",
		"aws:///us-east-1a/i-4 ScheduledMaintenance",
		"aws:///us-east-1b/i-5 ScheduledMaintenance",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	// Malformed, foreign and vanished-instance messages are deleted unacked.
	if diff := cmp.Diff([]string{"rh-bad", "rh-foreign", "rh-gone"}, q.Deleted()); diff != "" {
		t.Fatalf("deleted before acks (-want +got):\n%s", diff)
	}
	for _, e := range events[:2] {
		if err := e.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(q.Deleted()); n != 4 {
		t.Fatalf("after acking spot and one of two health events: %d deletions, want 4 (health waits for its second event)", n)
	}
	if err := events[2].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := events[2].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"rh-bad", "rh-foreign", "rh-gone", "rh-spot", "rh-health"}, q.Deleted()); diff != "" {
		t.Errorf("deletions (-want +got):\n%s", diff)
	}
	cancel()
	for range ch {
	}
}

func TestInterruptionSourceLeavesMessageWhenLookupFails(t *testing.T) {
	ec2 := newFakeEC2()
	ec2.errs["DescribeInstances"] = errors.New("throttled")
	q := &fakeSQS{}
	q.push("spot", event("aws.ec2", detailSpotInterruption, `{"instance-id":"i-1"}`))
	src, err := NewInterruptionSource(InterruptionOptions{QueueURL: "q", SQS: q, EC2: ec2, ClusterName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	src.handle(context.Background(), logr.Discard(), q.queue[0], nil)
	if n := len(q.Deleted()); n != 0 {
		t.Errorf("deleted %d messages; a transient failure must leave the message for redelivery", n)
	}
}

// One message may name several instances; it is deleted once each of its
// events is acknowledged. The controller may acknowledge one event twice (a
// retried event whose claim was already marked): that must not stand in for
// another instance's acknowledgement, or the message goes while that
// instance's notice is not yet recorded and is never delivered again.
func TestRepeatedAckOfOneEventDoesNotDeleteTheMessage(t *testing.T) {
	ec2 := newFakeEC2()
	for _, id := range []string{"i-4", "i-5"} {
		ec2.instances[id] = &ec2types.Instance{InstanceId: aws.String(id), Placement: &ec2types.Placement{AvailabilityZone: aws.String(zoneA)},
			Tags: []ec2types.Tag{{Key: aws.String(TagCluster), Value: aws.String("test")}}}
	}
	q := &fakeSQS{}
	q.push("health", event("aws.health", detailHealth, `{"service":"EC2","eventTypeCategory":"scheduledChange","affectedEntities":[{"entityValue":"i-4"},{"entityValue":"i-5"}]}`))
	src, err := NewInterruptionSource(InterruptionOptions{QueueURL: "q", SQS: q, EC2: ec2, ClusterName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ch := make(chan cloudprovider.InterruptionEvent, 2)
	src.handle(ctx, logr.Discard(), q.queue[0], ch)
	first, second := <-ch, <-ch
	for range 2 {
		if err := first.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := q.Deleted(); len(d) != 0 {
		t.Fatalf("deleted %v after acknowledging only %s (twice); the message waits for %s", d, first.ProviderID, second.ProviderID)
	}
	// A delete that failed is tried again when an event is acknowledged again.
	q.failDeletes = 1
	if err := second.Ack(ctx); err == nil {
		t.Fatal("acknowledgement whose delete failed returned no error")
	}
	if err := second.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"rh-health"}, q.Deleted()); diff != "" {
		t.Errorf("deletions once both are acknowledged (-want +got):\n%s", diff)
	}
}
