package azuretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	networkfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7/fake"
)

// RetailPricesPageSize is how many items a Retail Prices page holds.
const RetailPricesPageSize = 100

// Transport routes requests to the compute and network fake servers and to
// the Retail Prices fake. It implements azcore's policy.Transporter.
type Transport struct {
	cloud   *Cloud
	compute *computefake.ServerFactoryTransport
	network *networkfake.ServerFactoryTransport
	pagers  atomic.Int64 // numbers each list call; see separatePager
}

// Do implements policy.Transporter. The fake servers see a context that is
// never cancelled (the SDK's fake dispatchers can panic when a request is
// cancelled while its handler returns), and a client that gives up gets its
// context's error while the server carries on, as Azure does.
func (t *Transport) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	detached := req.WithContext(context.WithoutCancel(ctx))
	go func() {
		resp, err := t.route(detached)
		ch <- result{resp, err}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		return r.resp, r.err
	}
}

func (t *Transport) route(req *http.Request) (*http.Response, error) {
	if resp := t.cloud.injectedFailure(req); resp != nil {
		return resp, nil
	}
	path := req.URL.Path
	switch {
	case strings.HasPrefix(path, "/api/retail/prices"):
		rec := httptest.NewRecorder()
		t.cloud.servePrices(rec, req)
		resp := rec.Result()
		resp.Request = req
		return resp, nil
	case strings.Contains(strings.ToLower(path), "/providers/microsoft.network/"):
		return t.network.Do(t.separatePager(req))
	default:
		return t.compute.Do(t.separatePager(req))
	}
}

// injectedFailure is the answer FailNext queued for req's SDK API, or nil.
// Next pages are not failed: a pager's first page is its call.
func (c *Cloud) injectedFailure(req *http.Request) *http.Response {
	api, _ := req.Context().Value(runtime.CtxAPINameKey{}).(string)
	if strings.Contains(req.URL.Path, nextPageMarker) {
		return nil
	}
	c.mu.Lock()
	f, ok := c.failNext[api]
	delete(c.failNext, api)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	body := fmt.Sprintf(`{"error":{"code":%q,"message":"injected %s for %s"}}`, f.code, f.code, api)
	return &http.Response{StatusCode: f.status, Status: fmt.Sprintf("%d %s", f.status, http.StatusText(f.status)),
		Header: http.Header{"Content-Type": {"application/json"}, "X-Ms-Error-Code": {f.code}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}
}

// separatePager gives the first page of every list call a path of its own.
// The SDK's fake servers keep a pager per URL path, so two clients listing
// one collection at once (the garbage collector and a provider List) would
// share a pager: each would get the other's pages, and the race detector
// flags the shared cursor. The fake's path patterns are not anchored, so a
// prefix leaves the parameters intact, and the next links carry it.
func (t *Transport) separatePager(req *http.Request) *http.Request {
	api, _ := req.Context().Value(runtime.CtxAPINameKey{}).(string)
	if !strings.HasSuffix(api, "Pager") || strings.Contains(req.URL.Path, nextPageMarker) {
		return req
	}
	prefix := fmt.Sprintf("/list-%d", t.pagers.Add(1))
	out := req.Clone(req.Context())
	out.URL.Path = prefix + out.URL.Path
	if out.URL.RawPath != "" {
		out.URL.RawPath = prefix + out.URL.RawPath
	}
	return out
}

// nextPageMarker is how the SDK's fakes mark a next-page link.
const nextPageMarker = "/fake_page_"

// httpRoutes map read-only ARM requests arriving over HTTP to the SDK API
// they come from: the fake servers dispatch on that name, which in-process
// requests carry in their context and HTTP requests do not. Writes (and so
// long-running operations) are served in-process only.
var httpRoutes = []struct {
	re  *regexp.Regexp
	api string
}{
	{regexp.MustCompile(`(?i)/providers/Microsoft\.Compute/skus$`), "ResourceSKUsClient.NewListPager"},
	{regexp.MustCompile(`(?i)/communityGalleries/[^/]+/images/[^/]+/versions$`), "CommunityGalleryImageVersionsClient.NewListPager"},
	{regexp.MustCompile(`(?i)/communityGalleries/[^/]+/images/[^/]+/versions/[^/]+$`), "CommunityGalleryImageVersionsClient.Get"},
	{regexp.MustCompile(`(?i)/virtualNetworks/[^/]+/subnets/[^/]+$`), "SubnetsClient.Get"},
	{regexp.MustCompile(`(?i)/capacityReservationGroups/[^/]+$`), "CapacityReservationGroupsClient.Get"},
	{regexp.MustCompile(`(?i)/capacityReservationGroups/[^/]+/capacityReservations$`), "CapacityReservationsClient.NewListByCapacityReservationGroupPager"},
	{regexp.MustCompile(`(?i)/proximityPlacementGroups$`), "ProximityPlacementGroupsClient.NewListByResourceGroupPager"},
	{regexp.MustCompile(`(?i)/proximityPlacementGroups/[^/]+$`), "ProximityPlacementGroupsClient.Get"},
	{regexp.MustCompile(`(?i)/virtualMachines$`), "VirtualMachinesClient.NewListPager"},
	{regexp.MustCompile(`(?i)/virtualMachines/[^/]+$`), "VirtualMachinesClient.Get"},
}

// Handler serves the Cloud over HTTP, for clients pointed at an endpoint
// (`stowage catalog --endpoint`, a controller binary started with
// --azure-endpoint): Retail Prices and every read-only call the provider and
// its controllers make. Writes answer 501.
func (c *Cloud) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", r.Host
		if !strings.HasPrefix(r.URL.Path, "/api/retail/prices") {
			path := strings.Split(r.URL.Path, nextPageMarker)[0]
			api := ""
			for _, route := range httpRoutes {
				if route.re.MatchString(path) {
					api = route.api
				}
			}
			if api == "" || r.Method != http.MethodGet {
				http.Error(w, `{"error":{"code":"NotImplemented","message":"azuretest serves only reads and Retail Prices over HTTP"}}`, http.StatusNotImplemented)
				return
			}
			out = out.WithContext(context.WithValue(out.Context(), runtime.CtxAPINameKey{}, api))
		}
		resp, err := c.transport.Do(out)
		if err != nil {
			status := http.StatusInternalServerError
			code := "InternalServerError"
			var re *azcore.ResponseError
			if errors.As(err, &re) {
				status, code = re.StatusCode, re.ErrorCode
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, err.Error())
			return
		}
		defer func() { _ = resp.Body.Close() }()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

// retailItem is one Retail Prices API item, as the API spells it.
type retailItem struct {
	CurrencyCode       string  `json:"currencyCode"`
	RetailPrice        float64 `json:"retailPrice"`
	UnitPrice          float64 `json:"unitPrice"`
	ArmRegionName      string  `json:"armRegionName"`
	Location           string  `json:"location"`
	EffectiveStartDate string  `json:"effectiveStartDate"`
	MeterName          string  `json:"meterName"`
	ProductName        string  `json:"productName"`
	SkuName            string  `json:"skuName"`
	ServiceName        string  `json:"serviceName"`
	ServiceFamily      string  `json:"serviceFamily"`
	UnitOfMeasure      string  `json:"unitOfMeasure"`
	Type               string  `json:"type"`
	ArmSkuName         string  `json:"armSkuName"`
}

// servePrices answers like the Retail Prices API: for each size a Linux
// on-demand meter, a Linux " Spot" meter, a Windows meter (dearer) and a
// " Low Priority" meter (cheaper than spot), so a client that does not drop
// the last two prices wrongly. It insists on the filter a client must send.
func (c *Cloud) servePrices(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.count("RetailPrices.Get")
	down := c.pricesDown
	prices := make(map[string][2]float64, len(c.prices))
	for k, v := range c.prices {
		prices[k] = v
	}
	loc := c.opts.Location
	c.mu.Unlock()
	if down {
		http.Error(w, `{"Error":"Service Unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	filter := q.Get("$filter")
	for _, want := range []string{"serviceName eq 'Virtual Machines'", "armRegionName eq '" + loc + "'", "priceType eq 'Consumption'"} {
		if !strings.Contains(filter, want) {
			http.Error(w, fmt.Sprintf(`{"Error":"$filter must contain %s"}`, want), http.StatusBadRequest)
			return
		}
	}
	sizes := make([]string, 0, len(prices))
	for s := range prices {
		sizes = append(sizes, s)
	}
	sort.Strings(sizes)
	var items []retailItem
	for _, size := range sizes {
		p := prices[size]
		short := strings.ReplaceAll(strings.TrimPrefix(size, "Standard_"), "_", " ")
		product := "Virtual Machines " + short + " Series"
		base := retailItem{CurrencyCode: "USD", ArmRegionName: loc, Location: "US East", EffectiveStartDate: "2025-05-01T00:00:00Z",
			ServiceName: "Virtual Machines", ServiceFamily: "Compute", UnitOfMeasure: "1 Hour", Type: "Consumption", ArmSkuName: size}
		add := func(price float64, sku, productName string) {
			it := base
			it.RetailPrice, it.UnitPrice, it.SkuName, it.MeterName, it.ProductName = price, price, sku, sku, productName
			items = append(items, it)
		}
		if p[0] > 0 {
			add(p[0], short, product)
			add(p[0]*1.6, short, product+" Windows")
		}
		if p[1] > 0 {
			add(p[1], short+" Spot", product)
			add(p[1]*0.5, short+" Low Priority", product)
		}
	}
	skip, _ := strconv.Atoi(q.Get("$skip"))
	end := min(skip+RetailPricesPageSize, len(items))
	page := struct {
		BillingCurrency string       `json:"BillingCurrency"`
		Items           []retailItem `json:"Items"`
		NextPageLink    *string      `json:"NextPageLink"`
		Count           int          `json:"Count"`
	}{BillingCurrency: "USD", Items: items[min(skip, len(items)):end], Count: end - min(skip, len(items))}
	if end < len(items) {
		host := r.Host
		if host == "" {
			host = r.URL.Host
		}
		next := url.URL{Scheme: schemeOf(r), Host: host, Path: r.URL.Path}
		nq := r.URL.Query()
		nq.Set("$skip", strconv.Itoa(end))
		next.RawQuery = nq.Encode()
		s := next.String()
		page.NextPageLink = &s
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

func schemeOf(r *http.Request) string {
	if r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
