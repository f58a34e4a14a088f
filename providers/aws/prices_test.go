package aws

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePriceListDocument(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		wantType  string
		wantPrice float64
		wantErr   bool
	}{
		{name: "real-shaped p5 document", doc: mustRead(t, "testdata/pricelist-p5.48xlarge.json"), wantType: "p5.48xlarge", wantPrice: 55.04},
		{name: "not an instance", doc: `{"product":{"attributes":{"usagetype":"DataTransfer"}},"terms":{}}`},
		{name: "zero price dimension skipped", doc: `{"product":{"attributes":{"instanceType":"m5.large"}},"terms":{"OnDemand":{"t":{"priceDimensions":{"d":{"pricePerUnit":{"USD":"0.0000000000"}}}}}}}`, wantType: "m5.large"},
		{name: "bad number", doc: `{"product":{"attributes":{"instanceType":"m5.large"}},"terms":{"OnDemand":{"t":{"priceDimensions":{"d":{"pricePerUnit":{"USD":"ten"}}}}}}}`, wantErr: true},
		{name: "not JSON", doc: `<html>`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, price, err := parsePriceListDocument([]byte(tt.doc))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if name != tt.wantType || price != tt.wantPrice {
				t.Errorf("got %q %v, want %q %v", name, price, tt.wantType, tt.wantPrice)
			}
		})
	}
}

func TestFetchOnDemandPricesReportsDocument(t *testing.T) {
	api := &fakePricing{docs: []string{mustRead(t, "testdata/pricelist-p5.48xlarge.json"), `{"product":`}}
	_, err := fetchOnDemandPrices(t.Context(), api, "us-east-1")
	if err == nil || !strings.Contains(err.Error(), "PriceList[1]") {
		t.Fatalf("err = %v, want one naming PriceList[1]", err)
	}
	_, err = fetchOnDemandPrices(t.Context(), &fakePricing{}, "us-east-1")
	if !errors.Is(err, ErrNoPrices) {
		t.Fatalf("empty answer: err = %v, want ErrNoPrices", err)
	}
}
