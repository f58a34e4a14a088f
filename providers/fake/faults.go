package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// InjectInsufficientCapacity makes launches in these pools fail with an
// InsufficientCapacityError until ClearInsufficientCapacity.
func (c *Cloud) InjectInsufficientCapacity(ids ...cloudprovider.OfferingID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.failing[id] = true
	}
}

// LimitCapacity lets only n more machines launch in the pool; later launches
// there fail with an InsufficientCapacityError, as when a zone runs dry
// midway through a gang. ClearInsufficientCapacity lifts the limit.
func (c *Cloud) LimitCapacity(id cloudprovider.OfferingID, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limits[id] = max(n, 0)
}

// ClearInsufficientCapacity ends every injected capacity error and limit. Pools that
// already failed a launch stay in the unavailable-offerings cache until
// their TTL passes, as with a real cloud.
func (c *Cloud) ClearInsufficientCapacity() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.failing)
	clear(c.limits)
}

// SetPrice changes an offering's hourly price for InstanceTypes and later
// launches; running instances keep the price they were launched at.
func (c *Cloud) SetPrice(id cloudprovider.OfferingID, pricePerHour float64) error {
	if pricePerHour < 0 {
		return fmt.Errorf("fake cloud: price %v for %s is negative", pricePerHour, id)
	}
	if !c.sells(id) {
		return fmt.Errorf("fake cloud: set price: %s is neither in catalog %s/%s nor a reservation", id, c.catalog.Cloud, c.catalog.Region)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prices[id] = pricePerHour
	return nil
}

// Interrupt announces that the machine with providerID is going away: the
// event is delivered on the channel from Interruptions. deadline is when it
// goes; zero for a hint. The fake does not take the machine itself.
func (c *Cloud) Interrupt(providerID string, kind cloudprovider.InterruptionKind, deadline time.Time) error {
	if _, err := parseProviderID(providerID); err != nil {
		return fmt.Errorf("fake cloud: interrupt: %w", err)
	}
	ev := cloudprovider.InterruptionEvent{
		ProviderID: providerID, Kind: kind, Deadline: deadline,
		Message: fmt.Sprintf("fake cloud: %s for %s", kind, providerID),
	}
	select {
	case c.events <- ev:
		return nil
	default:
		return fmt.Errorf("fake cloud: interrupt %s: %d events are waiting for a consumer", providerID, cap(c.events))
	}
}

// Interruptions delivers interruption events until ctx is done, then closes
// the channel. Events raised before the call wait for it. Use one consumer:
// concurrent callers share the events between them.
func (c *Cloud) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	out := make(chan cloudprovider.InterruptionEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-c.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					// Keep it for the next consumer rather than lose it.
					select {
					case c.events <- ev:
					default:
					}
					return
				}
			}
		}
	}()
	return out, nil
}

// sells reports whether the offering is in the catalog or is a reservation.
func (c *Cloud) sells(id cloudprovider.OfferingID) bool {
	if id.CapacityType == v1.CapacityTypeReserved {
		for _, r := range c.reservations {
			if r.InstanceType == id.InstanceType && r.Zone == id.Zone {
				return true
			}
		}
		return false
	}
	it, ok := c.types[id.InstanceType]
	if !ok {
		return false
	}
	for _, o := range it.Offerings {
		if o.ID(it.Name) == id {
			return true
		}
	}
	return false
}

// SetImage changes the image new machines boot, as a node class pointing at
// a new image would. Running machines keep theirs and report ImageDrift.
func (c *Cloud) SetImage(id string) error {
	if id == "" {
		return fmt.Errorf("fake cloud: set image: the image ID is empty")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.image = id
	return nil
}

func (c *Cloud) currentImage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.image
}

// DriftImage is the DriftReason of a machine running an image other than the current one.
const DriftImage cloudprovider.DriftReason = "ImageDrift"

// IsDrifted implements cloudprovider.DriftChecker: a launched machine that
// booted an image other than the current one has drifted.
func (c *Cloud) IsDrifted(_ context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	if claim.Status.ImageID == "" || claim.Status.ImageID == c.currentImage() {
		return "", nil
	}
	return DriftImage, nil
}

// Faults make launches fail the way a real cloud's do, at random, so a
// controller running in its own process (the chaos test, a demo) meets them
// too. The zero value injects nothing.
type Faults struct {
	// CapacityErrorRate is the chance that trying one offering of a launch
	// fails with insufficient capacity.
	CapacityErrorRate float64
	// LostLaunchRate is the chance that a launch succeeds but its response
	// is lost: the machine exists and boots, Create returns an error.
	LostLaunchRate float64
	// Seed seeds the random choices; 0 seeds from the clock.
	Seed int64
}

func (f Faults) validate() error {
	for name, r := range map[string]float64{"CapacityErrorRate": f.CapacityErrorRate, "LostLaunchRate": f.LostLaunchRate} {
		if r < 0 || r > 1 || math.IsNaN(r) {
			return fmt.Errorf("fake cloud: Options.Faults.%s %v is not a probability from 0 to 1", name, r)
		}
	}
	return nil
}

// ErrLaunchResponseLost is what Create returns when Faults.LostLaunchRate
// loses a response: the machine was launched anyway.
var ErrLaunchResponseLost = errors.New("fake cloud: the launch response was lost (the machine may exist)")

// roll reports whether an event of probability p happens.
func (c *Cloud) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rand.Float64() < p
}

// Cross-process control. A test or demo in another process than the
// controller drives the fake cloud through the cluster, as the fake keeps
// its state there anyway:
//   - interruptions: RequestInterruption annotates an instance's record; the
//     leader's fake cloud delivers the event (again after
//     RedeliverAfter until acknowledged, as a queue would) and, at the
//     deadline, takes the machine away: its Node and record are deleted.
//   - prices: SetPrices writes the PricesConfigMap; the fake applies it.
const (
	// AnnotationInterruption on an instance record asks for an
	// interruption of that kind (a cloudprovider.InterruptionKind).
	AnnotationInterruption = "fake.stowage.dev/interruption"
	// AnnotationInterruptionDeadline is when the machine goes, RFC 3339; absent for a hint.
	AnnotationInterruptionDeadline = "fake.stowage.dev/interruption-deadline"
	// AnnotationInterruptionAcked is set once the controller acknowledged the event.
	AnnotationInterruptionAcked = "fake.stowage.dev/interruption-acked"
	// PricesConfigMap in Namespace holds price overrides, one per line of
	// its "prices" key: `instanceType zone capacityType pricePerHour`.
	PricesConfigMap = "prices"
	// DefaultControlInterval is how often the cluster is read for them.
	DefaultControlInterval = time.Second
	// RedeliverAfter is how long an unacknowledged interruption waits before it is sent again.
	RedeliverAfter = 30 * time.Second
)

// RequestInterruption asks the fake cloud running in another process to
// interrupt the instance with id (the last part of its providerID).
func RequestInterruption(ctx context.Context, c client.Client, id string, kind cloudprovider.InterruptionKind, deadline time.Time) error {
	ann := map[string]any{AnnotationInterruption: string(kind)}
	if !deadline.IsZero() {
		ann[AnnotationInterruptionDeadline] = deadline.UTC().Format(time.RFC3339)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: id}}
	if err := c.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("fake cloud: requesting %s of %s: %w", kind, id, err)
	}
	return nil
}

// PriceOverride is one line of the PricesConfigMap.
type PriceOverride struct {
	ID           cloudprovider.OfferingID
	PricePerHour float64
}

// SetPrices replaces the PricesConfigMap, which the fake cloud running in
// another process applies within DefaultControlInterval.
func SetPrices(ctx context.Context, c client.Client, prices []PriceOverride) error {
	var b strings.Builder
	for _, p := range prices {
		fmt.Fprintf(&b, "%s %s %s %s\n", p.ID.InstanceType, p.ID.Zone, p.ID.CapacityType, v1.FormatPrice(p.PricePerHour))
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: PricesConfigMap}}
	_, err := controllerutil.CreateOrUpdate(ctx, c, cm, func() error {
		cm.Data = map[string]string{"prices": b.String()}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fake cloud: writing %s/%s: %w", Namespace, PricesConfigMap, err)
	}
	return nil
}

// control applies what other processes asked for through the cluster, until ctx ends.
func (c *Cloud) control(ctx context.Context) {
	logger := log.FromContext(ctx).WithName("fake-cloud")
	delivered := map[string]time.Time{}
	for {
		if err := c.applyPrices(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "applying price overrides")
		}
		if err := c.applyInterruptions(ctx, delivered); err != nil && ctx.Err() == nil {
			logger.Error(err, "applying interruptions")
		}
		timer := c.clock.NewTimer(c.controlInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-c.stopping:
			timer.Stop()
			return
		case <-timer.C():
		}
	}
}

func (c *Cloud) applyPrices(ctx context.Context) error {
	cm := &corev1.ConfigMap{}
	if err := c.reader.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: PricesConfigMap}, cm); err != nil {
		return client.IgnoreNotFound(err)
	}
	for i, line := range strings.Split(cm.Data["prices"], "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		var price float64
		var err error
		if len(f) == 4 {
			price, err = strconv.ParseFloat(f[3], 64)
		}
		if len(f) != 4 || err != nil {
			return fmt.Errorf("%s/%s data.prices line %d: want `instanceType zone capacityType price`, got %q", Namespace, PricesConfigMap, i+1, line)
		}
		id := cloudprovider.OfferingID{InstanceType: f[0], Zone: f[1], CapacityType: f[2]}
		if c.currentPrice(id) == price {
			continue
		}
		if err := c.SetPrice(id, price); err != nil {
			return err
		}
		log.FromContext(ctx).Info("fake cloud price changed", "offering", id.String(), "pricePerHour", price)
	}
	return nil
}

func (c *Cloud) currentPrice(id cloudprovider.OfferingID) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.prices[id]; ok {
		return p
	}
	return -1
}

// applyInterruptions delivers requested interruptions and takes machines
// whose deadline has passed.
func (c *Cloud) applyInterruptions(ctx context.Context, delivered map[string]time.Time) error {
	list := &corev1.ConfigMapList{}
	if err := c.reader.List(ctx, list, client.InNamespace(Namespace), client.MatchingLabels{LabelCluster: c.cluster}); err != nil {
		return fmt.Errorf("listing instance records: %w", err)
	}
	now := c.clock.Now()
	for i := range list.Items {
		cm := &list.Items[i]
		kind := cm.Annotations[AnnotationInterruption]
		if kind == "" {
			continue
		}
		inst, err := decodeInstance(cm)
		if err != nil {
			return err
		}
		var deadline time.Time
		if s := cm.Annotations[AnnotationInterruptionDeadline]; s != "" {
			if deadline, err = time.Parse(time.RFC3339, s); err != nil {
				return fmt.Errorf("instance record %s: %s: %w", cm.Name, AnnotationInterruptionDeadline, err)
			}
		}
		if !deadline.IsZero() && !now.Before(deadline) {
			// The cloud takes the machine whatever the controller did.
			if err := c.deleteInstance(ctx, inst.ID); err != nil && !cloudprovider.IsNotFound(err) {
				return fmt.Errorf("reclaiming %s: %w", inst.ID, err)
			}
			log.FromContext(ctx).Info("fake cloud reclaimed an interrupted machine", "instance", inst.ID, "kind", kind, "nodeclaim", inst.NodeClaim)
			delete(delivered, inst.ID)
			continue
		}
		if cm.Annotations[AnnotationInterruptionAcked] != "" {
			continue
		}
		if at, ok := delivered[inst.ID]; ok && now.Sub(at) < RedeliverAfter {
			continue
		}
		id := inst.ID
		ev := cloudprovider.InterruptionEvent{
			ProviderID: inst.ProviderID, Kind: cloudprovider.InterruptionKind(kind), Deadline: deadline,
			Message: fmt.Sprintf("fake cloud: %s for %s", kind, inst.ProviderID),
			Ack:     func(ctx context.Context) error { return c.ackInterruption(ctx, id) },
		}
		select {
		case c.events <- ev:
			delivered[inst.ID] = now
		default:
			return fmt.Errorf("interruption of %s: %d events are waiting for a consumer", inst.ID, cap(c.events))
		}
	}
	return nil
}

func (c *Cloud) ackInterruption(ctx context.Context, id string) error {
	patch := []byte(`{"metadata":{"annotations":{"` + AnnotationInterruptionAcked + `":"true"}}}`)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: id}}
	if err := c.client.Patch(ctx, cm, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("fake cloud: acknowledging the interruption of %s: %w", id, err)
	}
	return nil
}
