// Package gcetest is a small stateful fake of the Google Cloud APIs the GCP
// provider calls: Compute Engine (machine and accelerator types, instances
// with zonal long-running operations, reservations, resource policies,
// subnetworks, images, instance templates, zone operations), GKE's
// clusters.get and the Cloud Billing Catalog's SKUs. It serves them over
// HTTP on loopback so tests run the real cloud.google.com/go REST clients
// against it, pointed there with option.WithEndpoint exactly as a user points
// them at a private endpoint.
//
// Faults are injected per call: stockouts per zone and machine type, quota
// errors, and inserts that succeed but whose response is lost. Every call is
// recorded with the IAM permission a real project would check, so a test can
// compare the permissions the code needs with the ones the docs list.
package gcetest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/utils/clock"
)

// Error codes Compute Engine puts in a failed operation.
const (
	CodeStockout      = "ZONE_RESOURCE_POOL_EXHAUSTED"
	CodeQuotaExceeded = "QUOTA_EXCEEDED"
)

// Options configure a Server.
type Options struct {
	Project string // default "stowage-test"
	Region  string // default "us-central1"
	// Zones of the region; default a, b, c and f.
	Zones []string
	// Cluster is the GKE cluster clusters.get returns; default "gke-test".
	Cluster string
	// Clock stamps operations and instances; defaults to the real clock.
	Clock clock.PassiveClock
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	URL     string
	Project string
	Region  string
	Zones   []string
	Cluster string

	srv   *httptest.Server
	clock clock.PassiveClock

	mu            sync.Mutex
	seq           int
	machineTypes  map[string][]*computepb.MachineType // zone -> types
	accelerators  map[string][]*computepb.AcceleratorType
	instances     map[string]*computepb.Instance // zone/name
	operations    map[string]*computepb.Operation
	requestIDs    map[string]string // requestId -> operation name
	reservations  map[string]*computepb.Reservation
	policies      map[string]*computepb.ResourcePolicy // region/name
	subnetworks   map[string]*computepb.Subnetwork     // region/name
	images        map[string]map[string]*computepb.Image
	templates     map[string]*computepb.InstanceTemplate
	cluster       map[string]any
	skus          []json.RawMessage
	stockouts     map[[2]string]bool // zone, machine type ("" = every type)
	quota         map[string]bool    // machine type ("" = every type)
	loseResponses int
	failNext      map[string]*apiError // permission -> the next call's answer
	calls         map[string]int       // permission -> count
	inserts       []*computepb.Instance
	preempted     []string
	afterInsert   func(name string)
}

// Start serves a fake with the project's defaults and no resources; call
// Seed for a realistic region.
func Start(o Options) *Server {
	if o.Project == "" {
		o.Project = "stowage-test"
	}
	if o.Region == "" {
		o.Region = "us-central1"
	}
	if len(o.Zones) == 0 {
		for _, z := range []string{"a", "b", "c", "f"} {
			o.Zones = append(o.Zones, o.Region+"-"+z)
		}
	}
	if o.Cluster == "" {
		o.Cluster = "gke-test"
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	s := &Server{
		Project: o.Project, Region: o.Region, Zones: o.Zones, Cluster: o.Cluster, clock: o.Clock,
		machineTypes: map[string][]*computepb.MachineType{}, accelerators: map[string][]*computepb.AcceleratorType{},
		instances: map[string]*computepb.Instance{}, operations: map[string]*computepb.Operation{},
		requestIDs: map[string]string{}, reservations: map[string]*computepb.Reservation{},
		policies: map[string]*computepb.ResourcePolicy{}, subnetworks: map[string]*computepb.Subnetwork{},
		images: map[string]map[string]*computepb.Image{}, templates: map[string]*computepb.InstanceTemplate{},
		stockouts: map[[2]string]bool{}, quota: map[string]bool{}, failNext: map[string]*apiError{}, calls: map[string]int{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// ComputeURL is the compute resource URL prefix for this project.
func (s *Server) ComputeURL() string {
	return "https://www.googleapis.com/compute/v1/projects/" + s.Project
}

// --- fault injection and inspection ---

// Stockout makes inserts of machineType ("" for any) in zone fail with
// ZONE_RESOURCE_POOL_EXHAUSTED until cleared with on=false.
func (s *Server) Stockout(zone, machineType string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.stockouts[[2]string{zone, machineType}] = true
	} else {
		delete(s.stockouts, [2]string{zone, machineType})
	}
}

// QuotaExceeded makes inserts of machineType ("" for any) fail with
// QUOTA_EXCEEDED until cleared with on=false.
func (s *Server) QuotaExceeded(machineType string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.quota[machineType] = true
	} else {
		delete(s.quota, machineType)
	}
}

// LoseInsertResponses makes the next n inserts create their instance and
// then answer 503, as when the response is lost on the way back.
func (s *Server) LoseInsertResponses(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseResponses = n
}

// AfterInsert runs hook (outside the server's lock) after an insert has
// created its instance and before it answers, so a test can crash the
// caller mid-launch.
func (s *Server) AfterInsert(hook func(name string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.afterInsert = hook
}

// FailNext makes the next call needing permission answer with status.
func (s *Server) FailNext(permission string, status int) {
	s.FailNextWith(permission, status, "failure")
}

// FailNextWith makes the next call needing permission answer with status
// and reason (e.g. 403 quotaExceeded, a read-rate quota).
func (s *Server) FailNextWith(permission string, status int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[permission] = &apiError{status, reason, "injected " + reason + " for " + permission}
}

// Permissions are the IAM permissions the calls so far needed, sorted.
func (s *Server) Permissions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.calls))
}

// Calls is how many calls needed permission.
func (s *Server) Calls(permission string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[permission]
}

// Instances returns copies of the live instances, sorted by name.
func (s *Server) Instances() []*computepb.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*computepb.Instance, 0, len(s.instances))
	for _, k := range slices.Sorted(maps.Keys(s.instances)) {
		out = append(out, proto.Clone(s.instances[k]).(*computepb.Instance))
	}
	return out
}

// Inserted is every instance an insert created, in order, including ones
// deleted since: a double buy shows here.
func (s *Server) Inserted() []*computepb.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*computepb.Instance, len(s.inserts))
	for i, in := range s.inserts {
		out[i] = proto.Clone(in).(*computepb.Instance)
	}
	return out
}

// ResourcePolicies returns copies of the resource policies.
func (s *Server) ResourcePolicies() []*computepb.ResourcePolicy {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*computepb.ResourcePolicy
	for _, k := range slices.Sorted(maps.Keys(s.policies)) {
		out = append(out, proto.Clone(s.policies[k]).(*computepb.ResourcePolicy))
	}
	return out
}

// Preempt reclaims a spot instance as Compute Engine does: the instance
// stops and (with instanceTerminationAction DELETE) is deleted, and a
// compute.instances.preempted zone operation records it.
func (s *Server) Preempt(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, inst := s.findLocked(name)
	if inst == nil {
		return fmt.Errorf("no instance %s", name)
	}
	zone := zoneOf(key)
	op := s.newOpLocked(zone, "", "compute.instances.preempted", inst.GetSelfLink())
	op.Status = computepb.Operation_DONE.Enum()
	op.User = proto.String("system")
	delete(s.instances, key)
	s.preempted = append(s.preempted, name)
	return nil
}

// Stop stops an instance as a guest shutdown or `gcloud compute instances
// stop` does: it stays, TERMINATED, and its boot disk is still billed.
func (s *Server) Stop(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, inst := s.findLocked(name)
	if inst == nil {
		return fmt.Errorf("no instance %s", name)
	}
	inst.Status = proto.String("TERMINATED")
	return nil
}

// SetUpcomingMaintenance announces host maintenance for an instance.
func (s *Server) SetUpcomingMaintenance(name string, start time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, inst := s.findLocked(name)
	if inst == nil {
		return fmt.Errorf("no instance %s", name)
	}
	if inst.ResourceStatus == nil {
		inst.ResourceStatus = &computepb.ResourceStatus{}
	}
	inst.ResourceStatus.UpcomingMaintenance = &computepb.UpcomingMaintenance{
		Type:            proto.String("SCHEDULED"),
		CanReschedule:   proto.Bool(false),
		WindowStartTime: proto.String(start.UTC().Format(time.RFC3339)),
		WindowEndTime:   proto.String(start.Add(time.Hour).UTC().Format(time.RFC3339)),
	}
	return nil
}

func (s *Server) findLocked(name string) (string, *computepb.Instance) {
	for k, inst := range s.instances {
		if inst.GetName() == name {
			return k, inst
		}
	}
	return "", nil
}

func zoneOf(key string) string { z, _, _ := strings.Cut(key, "/"); return z }

// --- HTTP ---

type apiError struct {
	status  int
	reason  string
	message string
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	var (
		resp any
		err  *apiError
	)
	switch {
	case strings.HasPrefix(path, "/compute/v1/projects/"):
		var created string
		resp, created, err = s.compute(r, strings.Split(strings.TrimPrefix(path, "/compute/v1/projects/"), "/"))
		s.mu.Lock()
		hook := s.afterInsert
		s.mu.Unlock()
		if created != "" && hook != nil {
			hook(created)
		}
	case strings.HasPrefix(path, "/v1/projects/") && strings.Contains(path, "/clusters/"):
		resp, err = s.container(r, path)
	case strings.HasPrefix(path, "/v1/services/") && strings.HasSuffix(path, "/skus"):
		resp, err = s.billing(r)
	default:
		err = &apiError{http.StatusNotFound, "notFound", "no such API: " + r.Method + " " + path}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch m := resp.(type) {
	case proto.Message:
		b, mErr := protojson.Marshal(m)
		if mErr != nil {
			writeError(w, &apiError{500, "internal", mErr.Error()})
			return
		}
		_, _ = w.Write(b)
	case json.RawMessage:
		_, _ = w.Write(m)
	default:
		_ = json.NewEncoder(w).Encode(m)
	}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": e.status, "message": e.message,
		"errors": []map[string]string{{"reason": e.reason, "message": e.message, "domain": "global"}},
	}})
}

func notFound(what string) *apiError {
	return &apiError{http.StatusNotFound, "notFound", fmt.Sprintf("The resource '%s' was not found", what)}
}

// record counts a call and returns an injected failure, if any.
func (s *Server) record(perms ...string) *apiError {
	for _, p := range perms {
		s.calls[p]++
	}
	if e, ok := s.failNext[perms[0]]; ok {
		delete(s.failNext, perms[0])
		return e
	}
	return nil
}

func (s *Server) compute(r *http.Request, parts []string) (any, string, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := len(s.inserts)
	resp, err := s.computeLocked(r, parts)
	created := ""
	if len(s.inserts) > before {
		created = s.inserts[len(s.inserts)-1].GetName()
	}
	return resp, created, err
}

func (s *Server) computeLocked(r *http.Request, parts []string) (any, *apiError) {
	project := parts[0]
	rest := parts[1:]
	route := r.Method + " " + strings.Join(shape(rest), "/")
	switch route {
	case "GET aggregated/machineTypes":
		return s.aggregatedMachineTypes(r)
	case "GET aggregated/acceleratorTypes":
		return s.aggregatedAcceleratorTypes(r)
	case "GET aggregated/instances":
		return s.aggregatedInstances(r)
	case "GET aggregated/reservations":
		return s.aggregatedReservations(r)
	case "POST zones/*/instances":
		return s.insertInstance(r, rest[1])
	case "GET zones/*/instances/*":
		if e := s.record("compute.instances.get"); e != nil {
			return nil, e
		}
		inst, ok := s.instances[rest[1]+"/"+rest[3]]
		if !ok {
			return nil, notFound("projects/" + project + "/zones/" + rest[1] + "/instances/" + rest[3])
		}
		return inst, nil
	case "GET zones/*/instances":
		if e := s.record("compute.instances.list"); e != nil {
			return nil, e
		}
		list := &computepb.InstanceList{}
		for _, k := range slices.Sorted(maps.Keys(s.instances)) {
			if zoneOf(k) == rest[1] && matches(r.URL.Query().Get("filter"), s.instances[k]) {
				list.Items = append(list.Items, s.instances[k])
			}
		}
		return list, nil
	case "DELETE zones/*/instances/*":
		return s.deleteInstance(rest[1], rest[3])
	case "GET zones/*/operations/*":
		if e := s.record("compute.zoneOperations.get"); e != nil {
			return nil, e
		}
		op, ok := s.operations[rest[3]]
		if !ok {
			return nil, notFound("operation " + rest[3])
		}
		return op, nil
	case "GET zones/*/operations":
		if e := s.record("compute.zoneOperations.list"); e != nil {
			return nil, e
		}
		list := &computepb.OperationList{}
		for _, k := range slices.Sorted(maps.Keys(s.operations)) {
			op := s.operations[k]
			if strings.HasSuffix(op.GetZone(), "/"+rest[1]) && matches(r.URL.Query().Get("filter"), op) {
				list.Items = append(list.Items, op)
			}
		}
		return list, nil
	case "GET regions/*/operations/*":
		if e := s.record("compute.regionOperations.get"); e != nil {
			return nil, e
		}
		op, ok := s.operations[rest[3]]
		if !ok {
			return nil, notFound("operation " + rest[3])
		}
		return op, nil
	case "GET regions/*/subnetworks/*":
		if e := s.record("compute.subnetworks.get"); e != nil {
			return nil, e
		}
		sn, ok := s.subnetworks[rest[1]+"/"+rest[3]]
		if !ok || project != s.Project {
			return nil, notFound("projects/" + project + "/regions/" + rest[1] + "/subnetworks/" + rest[3])
		}
		return sn, nil
	case "POST regions/*/resourcePolicies":
		return s.insertPolicy(r, rest[1])
	case "GET regions/*/resourcePolicies/*":
		if e := s.record("compute.resourcePolicies.get"); e != nil {
			return nil, e
		}
		p, ok := s.policies[rest[1]+"/"+rest[3]]
		if !ok {
			return nil, notFound("resourcePolicies/" + rest[3])
		}
		return p, nil
	case "GET regions/*/resourcePolicies":
		if e := s.record("compute.resourcePolicies.list"); e != nil {
			return nil, e
		}
		list := &computepb.ResourcePolicyList{}
		for _, k := range slices.Sorted(maps.Keys(s.policies)) {
			if strings.HasPrefix(k, rest[1]+"/") && matches(r.URL.Query().Get("filter"), s.policies[k]) {
				list.Items = append(list.Items, s.policies[k])
			}
		}
		return list, nil
	case "DELETE regions/*/resourcePolicies/*":
		return s.deletePolicy(rest[1], rest[3])
	case "GET global/images/*":
		if e := s.record("compute.images.get"); e != nil {
			return nil, e
		}
		img, ok := s.images[project][rest[2]]
		if !ok {
			return nil, notFound("projects/" + project + "/global/images/" + rest[2])
		}
		return img, nil
	case "GET global/images":
		if e := s.record("compute.images.list"); e != nil {
			return nil, e
		}
		list := &computepb.ImageList{}
		for _, k := range slices.Sorted(maps.Keys(s.images[project])) {
			if matches(r.URL.Query().Get("filter"), s.images[project][k]) {
				list.Items = append(list.Items, s.images[project][k])
			}
		}
		return list, nil
	case "GET global/instanceTemplates":
		if e := s.record("compute.instanceTemplates.list"); e != nil {
			return nil, e
		}
		list := &computepb.InstanceTemplateList{}
		for _, k := range slices.Sorted(maps.Keys(s.templates)) {
			if matches(r.URL.Query().Get("filter"), s.templates[k]) {
				list.Items = append(list.Items, s.templates[k])
			}
		}
		return list, nil
	case "GET global/instanceTemplates/*":
		if e := s.record("compute.instanceTemplates.get"); e != nil {
			return nil, e
		}
		t, ok := s.templates[rest[2]]
		if !ok {
			return nil, notFound("instanceTemplates/" + rest[2])
		}
		return t, nil
	}
	return nil, &apiError{http.StatusNotFound, "notFound", "fake compute does not serve " + route}
}

// shape replaces the name segments of a path with *: zones/Z/instances/N
// becomes zones/*/instances/*, global/images/N global/images/*.
func shape(parts []string) []string {
	out := slices.Clone(parts)
	switch {
	case len(out) == 0 || out[0] == "aggregated":
	case out[0] == "global":
		for i := 2; i < len(out); i++ {
			out[i] = "*"
		}
	default:
		for i := 1; i < len(out); i += 2 {
			out[i] = "*"
		}
	}
	return out
}

func (s *Server) aggregatedMachineTypes(r *http.Request) (any, *apiError) {
	if e := s.record("compute.machineTypes.list"); e != nil {
		return nil, e
	}
	out := &computepb.MachineTypeAggregatedList{Items: map[string]*computepb.MachineTypesScopedList{}}
	for zone, mts := range s.machineTypes {
		var items []*computepb.MachineType
		for _, mt := range mts {
			if matches(r.URL.Query().Get("filter"), mt) {
				items = append(items, mt)
			}
		}
		out.Items["zones/"+zone] = &computepb.MachineTypesScopedList{MachineTypes: items}
	}
	return out, nil
}

func (s *Server) aggregatedAcceleratorTypes(r *http.Request) (any, *apiError) {
	if e := s.record("compute.acceleratorTypes.list"); e != nil {
		return nil, e
	}
	out := &computepb.AcceleratorTypeAggregatedList{Items: map[string]*computepb.AcceleratorTypesScopedList{}}
	for zone, ats := range s.accelerators {
		var items []*computepb.AcceleratorType
		for _, at := range ats {
			if matches(r.URL.Query().Get("filter"), at) {
				items = append(items, at)
			}
		}
		out.Items["zones/"+zone] = &computepb.AcceleratorTypesScopedList{AcceleratorTypes: items}
	}
	return out, nil
}

func (s *Server) aggregatedInstances(r *http.Request) (any, *apiError) {
	if e := s.record("compute.instances.list"); e != nil {
		return nil, e
	}
	out := &computepb.InstanceAggregatedList{Items: map[string]*computepb.InstancesScopedList{}}
	for _, k := range slices.Sorted(maps.Keys(s.instances)) {
		inst := s.instances[k]
		if !matches(r.URL.Query().Get("filter"), inst) {
			continue
		}
		scope := "zones/" + zoneOf(k)
		if out.Items[scope] == nil {
			out.Items[scope] = &computepb.InstancesScopedList{}
		}
		out.Items[scope].Instances = append(out.Items[scope].Instances, inst)
	}
	return out, nil
}

func (s *Server) aggregatedReservations(r *http.Request) (any, *apiError) {
	if e := s.record("compute.reservations.list"); e != nil {
		return nil, e
	}
	out := &computepb.ReservationAggregatedList{Items: map[string]*computepb.ReservationsScopedList{}}
	for _, k := range slices.Sorted(maps.Keys(s.reservations)) {
		res := s.reservations[k]
		if !matches(r.URL.Query().Get("filter"), res) {
			continue
		}
		scope := "zones/" + lastSegment(res.GetZone())
		if out.Items[scope] == nil {
			out.Items[scope] = &computepb.ReservationsScopedList{}
		}
		out.Items[scope].Reservations = append(out.Items[scope].Reservations, res)
	}
	return out, nil
}

func lastSegment(url string) string { return url[strings.LastIndex(url, "/")+1:] }

func (s *Server) newOpLocked(zone, region, opType, target string) *computepb.Operation {
	s.seq++
	name := fmt.Sprintf("operation-%d-%d", s.clock.Now().UnixNano(), s.seq)
	now := s.clock.Now().UTC().Format(time.RFC3339Nano)
	op := &computepb.Operation{
		Name: proto.String(name), Id: proto.Uint64(uint64(s.seq)), OperationType: proto.String(opType),
		TargetLink: proto.String(target), Status: computepb.Operation_DONE.Enum(), InsertTime: proto.String(now),
		StartTime: proto.String(now), EndTime: proto.String(now), Progress: proto.Int32(100),
		Kind: proto.String("compute#operation"),
	}
	if zone != "" {
		op.Zone = proto.String(s.ComputeURL() + "/zones/" + zone)
		op.SelfLink = proto.String(s.ComputeURL() + "/zones/" + zone + "/operations/" + name)
	} else {
		op.Region = proto.String(s.ComputeURL() + "/regions/" + region)
		op.SelfLink = proto.String(s.ComputeURL() + "/regions/" + region + "/operations/" + name)
	}
	s.operations[name] = op
	return op
}

func failOp(op *computepb.Operation, status int32, code, msg string) {
	op.Error = &computepb.Error{Errors: []*computepb.Errors{{Code: proto.String(code), Message: proto.String(msg)}}}
	op.HttpErrorStatusCode = proto.Int32(status)
	op.HttpErrorMessage = proto.String(http.StatusText(int(status)))
}

func (s *Server) insertInstance(r *http.Request, zone string) (any, *apiError) {
	body, _ := io.ReadAll(r.Body)
	in := &computepb.Instance{}
	if err := protojson.Unmarshal(body, in); err != nil {
		return nil, &apiError{400, "invalid", "bad instance: " + err.Error()}
	}
	perms := []string{"compute.instances.create", "compute.disks.create", "compute.subnetworks.use"}
	if in.Metadata != nil {
		perms = append(perms, "compute.instances.setMetadata")
	}
	if len(in.GetLabels()) > 0 {
		perms = append(perms, "compute.instances.setLabels")
	}
	if len(in.GetTags().GetItems()) > 0 {
		perms = append(perms, "compute.instances.setTags")
	}
	if len(in.ServiceAccounts) > 0 {
		perms = append(perms, "compute.instances.setServiceAccount", "iam.serviceAccounts.actAs")
	}
	if len(in.ResourcePolicies) > 0 {
		perms = append(perms, "compute.resourcePolicies.use")
	}
	for _, d := range in.Disks {
		if d.GetInitializeParams().GetSourceImage() != "" {
			perms = append(perms, "compute.images.useReadOnly")
		}
		if len(d.GetInitializeParams().GetLabels()) > 0 {
			perms = append(perms, "compute.disks.setLabels")
		}
	}
	for _, ni := range in.NetworkInterfaces {
		if len(ni.AccessConfigs) > 0 {
			perms = append(perms, "compute.subnetworks.useExternalIp")
		}
	}
	if e := s.record(perms...); e != nil {
		return nil, e
	}
	if id := r.URL.Query().Get("requestId"); id != "" {
		if name, ok := s.requestIDs[id]; ok {
			return s.operations[name], nil // the same request again: the same operation
		}
	}
	mt := lastSegment(in.GetMachineType())
	op := s.newOpLocked(zone, "", "insert", s.ComputeURL()+"/zones/"+zone+"/instances/"+in.GetName())
	if id := r.URL.Query().Get("requestId"); id != "" {
		s.requestIDs[id] = op.GetName()
	}
	key := zone + "/" + in.GetName()
	switch {
	case !validName.MatchString(in.GetName()):
		return nil, &apiError{400, "invalid", fmt.Sprintf("Invalid value for field 'resource.name': '%s'", in.GetName())}
	case s.instances[key] != nil:
		return nil, &apiError{409, "alreadyExists", fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' already exists", s.Project, zone, in.GetName())}
	case !s.hasMachineTypeLocked(zone, mt):
		failOp(op, 400, "INVALID_FIELD_VALUE", fmt.Sprintf("Invalid value for field 'resource.machineType': '%s'. Machine type does not exist in zone %s.", mt, zone))
		return op, nil
	case s.stockouts[[2]string{zone, mt}] || s.stockouts[[2]string{zone, ""}]:
		failOp(op, 503, CodeStockout, fmt.Sprintf("The zone 'projects/%s/zones/%s' does not have enough resources available to fulfill the request. Try a different zone, or try again later.", s.Project, zone))
		return op, nil
	case s.quota[mt] || s.quota[""]:
		failOp(op, 403, CodeQuotaExceeded, fmt.Sprintf("Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 8.0 globally (%s).", mt))
		return op, nil
	}
	if msg := s.consumeReservationLocked(zone, in); msg != "" {
		failOp(op, 400, "RESERVATION_NOT_FOUND_OR_FULL", msg)
		return op, nil
	}
	for _, rp := range in.ResourcePolicies {
		if _, ok := s.policies[s.Region+"/"+lastSegment(rp)]; !ok {
			failOp(op, 400, "RESOURCE_NOT_FOUND", "resource policy "+rp+" not found")
			return op, nil
		}
	}
	s.seq++
	in.Id = proto.Uint64(uint64(1000000 + s.seq))
	in.Zone = proto.String(s.ComputeURL() + "/zones/" + zone)
	in.SelfLink = proto.String(s.ComputeURL() + "/zones/" + zone + "/instances/" + in.GetName())
	in.Status = proto.String("RUNNING")
	in.CreationTimestamp = proto.String(s.clock.Now().UTC().Format(time.RFC3339Nano))
	for i, ni := range in.NetworkInterfaces {
		ni.NetworkIP = proto.String(fmt.Sprintf("10.128.%d.%d", s.seq/250, s.seq%250+2))
		ni.Name = proto.String("nic" + strconv.Itoa(i))
	}
	if !strings.HasPrefix(in.GetMachineType(), "https://") {
		in.MachineType = proto.String(s.ComputeURL() + "/zones/" + zone + "/machineTypes/" + mt)
	}
	s.instances[key] = in
	s.inserts = append(s.inserts, proto.Clone(in).(*computepb.Instance))
	if s.loseResponses > 0 {
		s.loseResponses--
		return nil, &apiError{503, "backendError", "injected: the instance was created but the response was lost"}
	}
	return op, nil
}

var validName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (s *Server) hasMachineTypeLocked(zone, name string) bool {
	for _, mt := range s.machineTypes[zone] {
		if mt.GetName() == name {
			return true
		}
	}
	return false
}

// consumeReservationLocked applies a specific reservation affinity: the named
// reservation must be in the zone, match the machine type and have room.
func (s *Server) consumeReservationLocked(zone string, in *computepb.Instance) string {
	ra := in.GetReservationAffinity()
	if ra.GetConsumeReservationType() != "SPECIFIC_RESERVATION" {
		return ""
	}
	for _, v := range ra.GetValues() {
		res := s.reservations[zone+"/"+lastSegment(v)]
		if res == nil {
			continue
		}
		sr := res.GetSpecificReservation()
		if sr.GetInstanceProperties().GetMachineType() != lastSegment(in.GetMachineType()) || sr.GetInUseCount() >= sr.GetCount() {
			return fmt.Sprintf("Specified reservation '%s' does not have available resources for the request.", v)
		}
		sr.InUseCount = proto.Int64(sr.GetInUseCount() + 1)
		return ""
	}
	return fmt.Sprintf("Specified reservations %v do not exist in zone %s.", ra.GetValues(), zone)
}

func (s *Server) deleteInstance(zone, name string) (any, *apiError) {
	if e := s.record("compute.instances.delete"); e != nil {
		return nil, e
	}
	key := zone + "/" + name
	inst, ok := s.instances[key]
	if !ok {
		return nil, notFound("projects/" + s.Project + "/zones/" + zone + "/instances/" + name)
	}
	if ra := inst.GetReservationAffinity(); ra.GetConsumeReservationType() == "SPECIFIC_RESERVATION" {
		for _, v := range ra.GetValues() {
			if res := s.reservations[zone+"/"+lastSegment(v)]; res != nil {
				sr := res.GetSpecificReservation()
				sr.InUseCount = proto.Int64(max(0, sr.GetInUseCount()-1))
			}
		}
	}
	delete(s.instances, key)
	return s.newOpLocked(zone, "", "delete", inst.GetSelfLink()), nil
}

func (s *Server) insertPolicy(r *http.Request, region string) (any, *apiError) {
	if e := s.record("compute.resourcePolicies.create"); e != nil {
		return nil, e
	}
	body, _ := io.ReadAll(r.Body)
	p := &computepb.ResourcePolicy{}
	if err := protojson.Unmarshal(body, p); err != nil {
		return nil, &apiError{400, "invalid", err.Error()}
	}
	key := region + "/" + p.GetName()
	if _, ok := s.policies[key]; ok {
		return nil, &apiError{409, "alreadyExists", "The resource 'resourcePolicies/" + p.GetName() + "' already exists"}
	}
	p.Region = proto.String(s.ComputeURL() + "/regions/" + region)
	p.SelfLink = proto.String(s.ComputeURL() + "/regions/" + region + "/resourcePolicies/" + p.GetName())
	p.Status = proto.String("READY")
	p.CreationTimestamp = proto.String(s.clock.Now().UTC().Format(time.RFC3339Nano))
	s.policies[key] = p
	return s.newOpLocked("", region, "insert", p.GetSelfLink()), nil
}

func (s *Server) deletePolicy(region, name string) (any, *apiError) {
	if e := s.record("compute.resourcePolicies.delete"); e != nil {
		return nil, e
	}
	key := region + "/" + name
	p, ok := s.policies[key]
	if !ok {
		return nil, notFound("resourcePolicies/" + name)
	}
	for _, inst := range s.instances {
		if slices.ContainsFunc(inst.ResourcePolicies, func(u string) bool { return lastSegment(u) == name }) {
			return nil, &apiError{400, "resourceInUseByAnotherResource",
				fmt.Sprintf("The resource_policy resource '%s' is already being used by '%s'", p.GetSelfLink(), inst.GetSelfLink())}
		}
	}
	delete(s.policies, key)
	return s.newOpLocked("", region, "delete", p.GetSelfLink()), nil
}

func (s *Server) container(r *http.Request, path string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodGet {
		return nil, &apiError{405, "badRequest", "fake container serves clusters.get only"}
	}
	if e := s.record("container.clusters.get"); e != nil {
		return nil, e
	}
	want := fmt.Sprintf("/v1/projects/%s/locations/%s/clusters/%s", s.Project, s.Region, s.Cluster)
	if path != want || s.cluster == nil {
		return nil, notFound(strings.TrimPrefix(path, "/v1/"))
	}
	return s.cluster, nil
}

func (s *Server) billing(r *http.Request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.record("billing.skus.list"); e != nil {
		return nil, e
	}
	// Two pages, so callers must follow nextPageToken.
	half := len(s.skus) / 2
	page, next := s.skus[:half], "page-2"
	if r.URL.Query().Get("pageToken") == "page-2" {
		page, next = s.skus[half:], ""
	}
	raw, _ := json.Marshal(map[string]any{"skus": page, "nextPageToken": next})
	return json.RawMessage(raw), nil
}

// --- filters ---

var filterTerm = regexp.MustCompile(`^\(?\s*([A-Za-z_.\-]+)\s*(=|!=|eq|ne)\s*"?([^"]*?)"?\s*\)?$`)

// matches evaluates the subset of Compute Engine list filters the provider
// uses: terms "field = value", "field eq regex" (and != / ne), joined by
// AND, on top-level fields and labels.KEY.
func matches(filter string, m proto.Message) bool {
	filter = strings.TrimSpace(filter)
	if filter == "" {
		return true
	}
	b, _ := protojson.Marshal(m)
	var obj map[string]any
	_ = json.Unmarshal(b, &obj)
	for _, term := range strings.Split(filter, " AND ") {
		g := filterTerm.FindStringSubmatch(strings.TrimSpace(term))
		if g == nil {
			return false
		}
		var v any = obj
		for _, p := range strings.Split(g[1], ".") {
			mm, _ := v.(map[string]any)
			v = mm[p]
		}
		got := fmt.Sprint(v)
		if v == nil {
			got = ""
		}
		var ok bool
		switch g[2] {
		case "=", "!=":
			ok = got == g[3]
		default:
			re, err := regexp.Compile("^(?:" + g[3] + ")$")
			ok = err == nil && re.MatchString(got)
		}
		if (g[2] == "!=" || g[2] == "ne") == ok {
			return false
		}
	}
	return true
}
