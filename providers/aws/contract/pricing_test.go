package contract

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/pricing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
)

// priceListServer speaks the Price List API's JSON 1.1 protocol: moto does
// not serve it. It answers GetProducts in two pages and records requests.
type priceListServer struct {
	mu       sync.Mutex
	requests []map[string]any
	fail     bool
}

func (s *priceListServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != "AWSPriceListService.GetProducts" {
		http.Error(w, `{"__type":"UnknownOperationException"}`, http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	fail := s.fail
	s.mu.Unlock()
	if fail {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"__type":"InternalErrorException","message":"try later"}`))
		return
	}
	p5, err := os.ReadFile("../testdata/pricelist-p5.48xlarge.json")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// A higher price than the static catalog's proves the live one is used.
	doc := strings.Replace(string(p5), `"USD": "55.0400000000"`, `"USD": "60.5000000000"`, 1)
	resp := map[string]any{"FormatVersion": "aws_v1"}
	if req["NextToken"] == nil {
		resp["PriceList"] = []string{doc}
		resp["NextToken"] = "page-2"
	} else {
		resp["PriceList"] = []string{`{"product":{"attributes":{"instanceType":"g5.xlarge"}},"terms":{"OnDemand":{"x":{"priceDimensions":{"y":{"unit":"Hrs","pricePerUnit":{"USD":"1.2000000000"}}}}}}}`}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(resp)
}

func pricingClient(endpoint string) *pricing.Client {
	return pricing.NewFromConfig(aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint:     aws.String(endpoint),
		RetryMaxAttempts: 1,
	})
}

func TestOnDemandPricesFromPricingAPI(t *testing.T) {
	ctx, cluster := begin(t)
	srv := &priceListServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	p, err := awsprovider.New(awsprovider.Options{ClusterName: cluster, Region: "us-east-1", EC2: moto.EC2(), Pricing: pricingClient(ts.URL)})
	if err != nil {
		t.Fatal(err)
	}
	its, err := p.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"p5.48xlarge": 60.5, "g5.xlarge": 1.2}
	for _, it := range its {
		w, ok := want[it.Name]
		if !ok {
			continue
		}
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && o.PricePerHour != w {
				t.Errorf("%s on-demand in %s = %v, want the API's %v", it.Name, o.Zone, o.PricePerHour, w)
			}
		}
		delete(want, it.Name)
	}
	if len(want) != 0 {
		t.Errorf("types missing: %v", want)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.requests) != 2 {
		t.Fatalf("GetProducts calls = %d, want 2 pages", len(srv.requests))
	}
	req := srv.requests[0]
	if req["ServiceCode"] != "AmazonEC2" {
		t.Errorf("ServiceCode = %v", req["ServiceCode"])
	}
	filters := map[string]string{}
	for _, f := range req["Filters"].([]any) {
		m := f.(map[string]any)
		if m["Type"] != "TERM_MATCH" {
			t.Errorf("filter %v is not TERM_MATCH", m)
		}
		filters[m["Field"].(string)] = m["Value"].(string)
	}
	wantFilters := map[string]string{"regionCode": "us-east-1", "operatingSystem": "Linux", "preInstalledSw": "NA",
		"capacitystatus": "Used", "marketoption": "OnDemand", "tenancy": "Shared"}
	for k, v := range wantFilters {
		if filters[k] != v {
			t.Errorf("filter %s = %q, want %q", k, filters[k], v)
		}
	}
}

func TestPricingAPIErrorFallsBackToStatic(t *testing.T) {
	ctx, cluster := begin(t)
	ts := httptest.NewServer(&priceListServer{fail: true})
	defer ts.Close()
	p, err := awsprovider.New(awsprovider.Options{ClusterName: cluster, Region: "us-east-1", EC2: moto.EC2(), Pricing: pricingClient(ts.URL)})
	if err != nil {
		t.Fatal(err)
	}
	its, err := p.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range its {
		if it.Name != "p5.48xlarge" {
			continue
		}
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && o.PricePerHour != 55.04 {
				t.Errorf("p5 on-demand = %v, want the static 55.04", o.PricePerHour)
			}
		}
		return
	}
	t.Fatal("p5.48xlarge missing")
}
