package contract

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
)

func eventBody(source, detailType, detail string) string {
	return `{"version":"0","id":"e1","detail-type":"` + detailType + `","source":"` + source +
		`","account":"123456789012","time":"2026-11-27T10:00:00Z","region":"us-east-1","resources":[],"detail":` + detail + `}`
}

func queueDepth(ctx context.Context, t *testing.T, q *sqs.Client, url string) int {
	t.Helper()
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, k := range []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible} {
		n, _ := strconv.Atoi(out.Attributes[string(k)])
		total += n
	}
	return total
}

func TestInterruptionMessagesFromSQS(t *testing.T) {
	ctx, cluster := begin(t)
	api := moto.EC2()
	q := moto.SQS()
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("stowage-" + cluster)})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(queue.QueueUrl)
	base, err := api.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(base.Images) == 0 {
		t.Fatalf("no moto image: %v", err)
	}
	run, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: base.Images[0].ImageId, MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		Placement: &ec2types.Placement{AvailabilityZone: aws.String("us-east-1a")},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
			Tags: []ec2types.Tag{{Key: aws.String(awsprovider.TagCluster), Value: aws.String(cluster)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := aws.ToString(run.Instances[0].InstanceId), aws.ToString(run.Instances[1].InstanceId)
	foreign, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: base.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	// Messages that yield no event go first: the source handles a batch in
	// order, so once the last event arrives every drop has happened.
	bodies := []string{
		"{not json",
		eventBody("aws.ec2", "EC2 Instance Rebalance Recommendation", `{"instance-id":"`+aws.ToString(foreign.Instances[0].InstanceId)+`"}`),
		eventBody("aws.ec2", "EC2 Instance Rebalance Recommendation", `{"instance-id":"i-0123456789abcdef0"}`),

		eventBody("aws.s3", "Object Created", `{}`),
		eventBody("aws.ec2", "EC2 Spot Instance Interruption Warning", `{"instance-id":"`+a+`","instance-action":"terminate"}`),
		eventBody("aws.ec2", "EC2 Instance Rebalance Recommendation", `{"instance-id":"`+a+`"}`),
		eventBody("aws.ec2", "EC2 Instance State-change Notification", `{"instance-id":"`+b+`","state":"stopping"}`),
		eventBody("aws.ec2", "EC2 Instance State-change Notification", `{"instance-id":"`+b+`","state":"running"}`),
		eventBody("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning", `{"instance-id":"`+b+`"}`),
		eventBody("aws.health", "AWS Health Event", `{"service":"EC2","eventTypeCategory":"scheduledChange","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","affectedEntities":[{"entityValue":"`+a+`"}]}`),
	}
	for _, body := range bodies {
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := awsprovider.NewInterruptionSource(awsprovider.InterruptionOptions{QueueURL: url, SQS: q, EC2: api, ClusterName: cluster, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := src.Interruptions(runCtx)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := "aws:///us-east-1a/"+a, "aws:///us-east-1a/"+b
	want := map[string]bool{
		pa + " " + string(cloudprovider.InterruptionSpotReclaim):          true,
		pa + " " + string(cloudprovider.InterruptionRebalanceHint):        true,
		pb + " " + string(cloudprovider.InterruptionInstanceStopped):      true,
		pb + " " + string(cloudprovider.InterruptionReservationReclaim):   true,
		pa + " " + string(cloudprovider.InterruptionScheduledMaintenance): true,
	}
	got := map[string]bool{}
	for len(got) < len(want) {
		e := <-events
		got[e.ProviderID+" "+string(e.Kind)] = true
		if e.Kind == cloudprovider.InterruptionSpotReclaim && !e.Deadline.Equal(time.Date(2026, 11, 27, 10, 2, 0, 0, time.UTC)) {
			t.Errorf("spot deadline = %v, want event time + 2m", e.Deadline)
		}
		if err := e.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	cancel()
	for range events {
	}
	// Acked events and every malformed, foreign or irrelevant message are gone.
	if n := queueDepth(ctx, t, q, url); n != 0 {
		t.Errorf("%d messages left in the queue, want 0", n)
	}
}
