package pricing_test

import (
	"fmt"

	"github.com/stowage-k8s/stowage/pricing"
)

func ExampleLoad() {
	cat, err := pricing.Load("aws/us-east-1")
	if err != nil {
		panic(err)
	}
	it, _ := pricing.Lookup(cat, "p5.48xlarge")
	fmt.Printf("%s: %d x %s, %d MiB each, MIG 1g.10gb x%d\n", it.Name, it.GPU.Count, it.GPU.Name, it.GPU.MemoryMiB, it.GPU.MIGProfiles["1g.10gb"])
	for _, o := range it.Offerings[:2] {
		fmt.Printf("%s %s $%.2f/h\n", o.Zone, o.CapacityType, o.PricePerHour)
	}
	// Output:
	// p5.48xlarge: 8 x h100, 81920 MiB each, MIG 1g.10gb x7
	// us-east-1a on-demand $55.04/h
	// us-east-1a spot $19.49/h
}
