package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// EventBridge sources and detail types the interruption source understands.
const (
	sourceEC2    = "aws.ec2"
	sourceHealth = "aws.health"

	detailSpotInterruption        = "EC2 Spot Instance Interruption Warning"
	detailRebalance               = "EC2 Instance Rebalance Recommendation"
	detailStateChange             = "EC2 Instance State-change Notification"
	detailReservationInterruption = "EC2 Capacity Reservation Instance Interruption Warning"
	detailHealth                  = "AWS Health Event"

	// spotNotice is how long EC2 gives a spot instance after the warning;
	// an interruptible capacity reservation's instances get as long.
	spotNotice = 2 * time.Minute
)

// Defaults for InterruptionOptions left zero.
const (
	DefaultWaitTime       = 20 * time.Second
	DefaultMaxMessages    = 10
	DefaultReceiveBackoff = 5 * time.Second
)

// InterruptionOptions configure an InterruptionSource.
type InterruptionOptions struct {
	QueueURL string
	SQS      SQSAPI
	// EC2 resolves an instance's zone (for its providerID) and cluster tag.
	EC2         EC2API
	ClusterName string
	Clock       clock.Clock
	// WaitTime is the long-poll duration; tests shorten it.
	WaitTime    time.Duration
	MaxMessages int32
	// Backoff is the pause after a failed ReceiveMessage.
	Backoff time.Duration
}

// InterruptionSource reads EventBridge notices from SQS and delivers them as
// provider-neutral interruption events.
type InterruptionSource struct {
	opts InterruptionOptions
}

var _ cloudprovider.InterruptionSource = (*InterruptionSource)(nil)

// NewInterruptionSource validates opts and fills defaults.
func NewInterruptionSource(opts InterruptionOptions) (*InterruptionSource, error) {
	if opts.QueueURL == "" || opts.SQS == nil || opts.EC2 == nil {
		return nil, fmt.Errorf("%w: interruption source needs a queue URL, an SQS client and an EC2 client", ErrInvalidOptions)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.WaitTime <= 0 {
		opts.WaitTime = DefaultWaitTime
	}
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = DefaultMaxMessages
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultReceiveBackoff
	}
	return &InterruptionSource{opts: opts}, nil
}

// Interruptions implements cloudprovider.InterruptionSource. The channel is
// closed when ctx is done.
func (s *InterruptionSource) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	ch := make(chan cloudprovider.InterruptionEvent)
	go func() {
		defer close(ch)
		logger := log.FromContext(ctx).WithName(Name).WithName("interruption")
		for ctx.Err() == nil {
			if err := s.poll(ctx, logger, ch); err != nil && ctx.Err() == nil {
				logger.Error(err, "receiving interruption messages", "queue", s.opts.QueueURL, "retryIn", s.opts.Backoff)
				select {
				case <-ctx.Done():
				case <-s.opts.Clock.After(s.opts.Backoff):
				}
			}
		}
	}()
	return ch, nil
}

func (s *InterruptionSource) poll(ctx context.Context, logger logr.Logger, ch chan<- cloudprovider.InterruptionEvent) error {
	out, err := s.opts.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(s.opts.QueueURL),
		MaxNumberOfMessages: s.opts.MaxMessages,
		WaitTimeSeconds:     int32(s.opts.WaitTime / time.Second),
	})
	if err != nil {
		return err
	}
	for _, m := range out.Messages {
		s.handle(ctx, logger, m, ch)
	}
	return nil
}

// handle turns one message into events. Messages that can never become an
// event (malformed, foreign, for instances that no longer exist) are deleted
// so they do not come back; a failed lookup leaves the message for redelivery.
func (s *InterruptionSource) handle(ctx context.Context, logger logr.Logger, m sqstypes.Message, ch chan<- cloudprovider.InterruptionEvent) {
	logger = logger.WithValues("messageID", aws.ToString(m.MessageId))
	drop := func(reason string, err error) {
		if err != nil {
			logger.Info("dropping interruption message", "reason", reason, "error", err.Error())
		} else {
			// Routine (running-state changes, other clusters): debug only.
			logger.V(1).Info("dropping interruption message", "reason", reason)
		}
		if err := s.deleteMessage(ctx, m); err != nil {
			logger.Error(err, "deleting dropped message")
		}
	}
	notices, err := ParseMessage([]byte(aws.ToString(m.Body)))
	if err != nil {
		drop("malformed", err)
		return
	}
	if len(notices) == 0 {
		drop("not an interruption", nil)
		return
	}
	var events []cloudprovider.InterruptionEvent
	for _, n := range notices {
		pid, ours, err := s.resolve(ctx, n.InstanceID)
		if err != nil {
			logger.Error(err, "resolving instance; leaving the message for redelivery", "instance", n.InstanceID)
			return
		}
		if !ours {
			logger.V(1).Info("notice for an instance this cluster does not own", "instance", n.InstanceID)
			continue
		}
		events = append(events, cloudprovider.InterruptionEvent{ProviderID: pid, Kind: n.Kind, Deadline: n.Deadline, Message: n.Message})
	}
	if len(events) == 0 {
		drop("no instance of this cluster", nil)
		return
	}
	// One message may name several instances: delete it once each has been
	// acknowledged. An event acknowledged again counts once (the controller
	// repeats an acknowledgement when it handles an event again), and
	// retries a delete that failed.
	var mu sync.Mutex
	acked := make([]bool, len(events))
	pending, deleted := len(events), false
	for i := range events {
		events[i].Ack = func(ctx context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if !acked[i] {
				acked[i] = true
				pending--
			}
			if pending > 0 || deleted {
				return nil
			}
			if err := s.deleteMessage(ctx, m); err != nil {
				return err
			}
			deleted = true
			return nil
		}
	}
	for _, e := range events {
		select {
		case ch <- e:
		case <-ctx.Done():
			return
		}
	}
}

func (s *InterruptionSource) deleteMessage(ctx context.Context, m sqstypes.Message) error {
	_, err := s.opts.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.opts.QueueURL), ReceiptHandle: m.ReceiptHandle})
	if err != nil {
		return fmt.Errorf("deleting message %s: %w", aws.ToString(m.MessageId), err)
	}
	return nil
}

// resolve returns the providerID of a live or recently gone instance and
// whether it carries this cluster's tag.
func (s *InterruptionSource) resolve(ctx context.Context, instanceID string) (string, bool, error) {
	out, err := s.opts.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		if errorCode(err) == codeInstanceNotFound {
			return "", false, nil
		}
		return "", false, fmt.Errorf("describing instance %s: %w", instanceID, err)
	}
	for _, r := range out.Reservations {
		for _, inst := range r.Instances {
			if aws.ToString(inst.InstanceId) != instanceID || inst.Placement == nil {
				continue
			}
			ours := false
			for _, t := range inst.Tags {
				if aws.ToString(t.Key) == TagCluster && aws.ToString(t.Value) == s.opts.ClusterName {
					ours = true
				}
			}
			return providerID(aws.ToString(inst.Placement.AvailabilityZone), instanceID), ours, nil
		}
	}
	return "", false, nil
}

// Notice is one parsed interruption for one instance.
type Notice struct {
	InstanceID string
	Kind       cloudprovider.InterruptionKind
	Deadline   time.Time
	Message    string
}

// ErrMalformedMessage is wrapped by ParseMessage for bodies that are not
// EventBridge events of a known shape.
var ErrMalformedMessage = errors.New("malformed interruption message")

type envelope struct {
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Time       time.Time       `json:"time"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

type ec2Detail struct {
	InstanceID string `json:"instance-id"`
	State      string `json:"state"`
	Action     string `json:"instance-action"`
	// TerminationTime is when a reservation's reclaim ends the instance.
	TerminationTime string `json:"instance-termination-time"`
}

type healthDetail struct {
	Service           string `json:"service"`
	EventTypeCategory string `json:"eventTypeCategory"`
	EventTypeCode     string `json:"eventTypeCode"`
	StartTime         string `json:"startTime"`
	AffectedEntities  []struct {
		EntityValue string `json:"entityValue"`
	} `json:"affectedEntities"`
}

// ParseMessage reads an EventBridge event from an SQS body. Events of other
// kinds yield no notices and no error; bodies that are not events, or known
// events missing their instance, are ErrMalformedMessage.
func ParseMessage(body []byte) ([]Notice, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedMessage, err)
	}
	if env.Source == "" || env.DetailType == "" {
		return nil, fmt.Errorf("%w: missing source or detail-type", ErrMalformedMessage)
	}
	switch env.Source {
	case sourceEC2:
		return parseEC2(env)
	case sourceHealth:
		return parseHealth(env)
	}
	return nil, nil
}

func parseEC2(env envelope) ([]Notice, error) {
	var kind cloudprovider.InterruptionKind
	var deadline time.Time
	switch env.DetailType {
	case detailSpotInterruption:
		kind, deadline = cloudprovider.InterruptionSpotReclaim, env.Time.Add(spotNotice)
	case detailRebalance:
		kind = cloudprovider.InterruptionRebalanceHint
	case detailStateChange:
		kind = cloudprovider.InterruptionInstanceStopped
	case detailReservationInterruption:
		// Sent 2 minutes before the instance is terminated, with the time
		// in detail.instance-termination-time (read below): no hint.
		kind, deadline = cloudprovider.InterruptionReservationReclaim, env.Time.Add(spotNotice)
	default:
		return nil, nil
	}
	var d ec2Detail
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return nil, fmt.Errorf("%w: %s detail: %v", ErrMalformedMessage, env.DetailType, err)
	}
	if env.DetailType == detailReservationInterruption && d.TerminationTime != "" {
		if t, err := time.Parse(time.RFC3339, d.TerminationTime); err == nil {
			deadline = t
		}
	}
	if env.DetailType == detailStateChange {
		switch d.State {
		case "stopping", "stopped", "shutting-down", "terminated":
			deadline = env.Time
		default:
			return nil, nil // pending and running are not interruptions
		}
	}
	id := d.InstanceID
	if id == "" {
		id = instanceFromResources(env.Resources)
	}
	if id == "" {
		return nil, fmt.Errorf("%w: %s without detail.instance-id", ErrMalformedMessage, env.DetailType)
	}
	msg := env.DetailType
	if d.State != "" {
		msg += ": " + d.State
	}
	return []Notice{{InstanceID: id, Kind: kind, Deadline: deadline, Message: msg}}, nil
}

func parseHealth(env envelope) ([]Notice, error) {
	if env.DetailType != detailHealth {
		return nil, nil
	}
	var d healthDetail
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return nil, fmt.Errorf("%w: %s detail: %v", ErrMalformedMessage, env.DetailType, err)
	}
	if d.Service != "EC2" || d.EventTypeCategory != "scheduledChange" {
		return nil, nil
	}
	var deadline time.Time
	if d.StartTime != "" {
		t, err := parseHealthTime(d.StartTime)
		if err != nil {
			return nil, fmt.Errorf("%w: %s detail.startTime %q: %v", ErrMalformedMessage, env.DetailType, d.StartTime, err)
		}
		deadline = t
	}
	var out []Notice
	for _, e := range d.AffectedEntities {
		if strings.HasPrefix(e.EntityValue, "i-") {
			out = append(out, Notice{InstanceID: e.EntityValue, Kind: cloudprovider.InterruptionScheduledMaintenance,
				Deadline: deadline, Message: env.DetailType + ": " + d.EventTypeCode})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s names no instance in detail.affectedEntities", ErrMalformedMessage, env.DetailType)
	}
	return out, nil
}

// parseHealthTime accepts RFC 3339 and the RFC 1123 form AWS Health uses.
func parseHealthTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC1123, s)
}

func instanceFromResources(resources []string) string {
	for _, r := range resources {
		if _, id, ok := strings.Cut(r, ":instance/"); ok && strings.HasPrefix(id, "i-") {
			return id
		}
	}
	return ""
}
