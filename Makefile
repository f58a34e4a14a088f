# Stowage. `make demo` runs the whole system on a local control plane with the
# fake cloud; `make test` runs every test. Both build what they need first.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
BIN := $(CURDIR)/bin
CONTROLPLANE_BIN := $(BIN)/controlplane
CONTROLLER_GEN_VERSION := v0.23.0
GOLANGCI_LINT_VERSION := v2.15.0
HELM_VERSION := v3.22.0
GOVULNCHECK_VERSION := v1.10.0
# FUZZTIME is how long `make fuzz` runs each fuzz target.
FUZZTIME ?= 20s
GO_TEST_FLAGS ?=
export STOWAGE_CONTROLPLANE_BIN := $(CONTROLPLANE_BIN)
export KUBEBUILDER_ASSETS := $(CONTROLPLANE_BIN)

.PHONY: all build demo test test-unit controlplane kueue tools generate verify lint vet fmt bench bench-e2e bench-disruption helm clean

all: build

build: ## build the stowage binary into bin/
	@echo "==> building bin/stowage"
	go build -o $(BIN)/stowage ./cmd/stowage

controlplane: ## build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (cached in bin/)
	@bash hack/build-controlplane.sh

kueue: ## build Kueue's manager for the end-to-end test of its ProvisioningRequest admission check (cached in bin/kueue)
	@bash hack/build-kueue.sh

tools: $(BIN)/controller-gen $(BIN)/helm

$(BIN)/controller-gen:
	@echo "==> installing controller-gen $(CONTROLLER_GEN_VERSION)"
	GOBIN=$(BIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

$(BIN)/golangci-lint:
	@echo "==> installing golangci-lint $(GOLANGCI_LINT_VERSION) (about 2 min the first time)"
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

$(BIN)/helm:
	@echo "==> installing helm $(HELM_VERSION) (about 2.5 min the first time)"
	GOBIN=$(BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

generate: $(BIN)/controller-gen ## regenerate deepcopy and CRDs, and copy CRDs into the chart
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/... paths=./providers/...
	$(BIN)/controller-gen crd paths=./pkg/apis/... output:crd:artifacts:config=pkg/apis/crds
	@if [ -d providers/aws/apis ]; then $(BIN)/controller-gen crd paths=./providers/aws/apis/... output:crd:artifacts:config=pkg/apis/crds; fi
	@if [ -d providers/azure/apis ]; then $(BIN)/controller-gen crd paths=./providers/azure/apis/... output:crd:artifacts:config=pkg/apis/crds; fi
	@if [ -d providers/gcp/apis ]; then $(BIN)/controller-gen crd paths=./providers/gcp/apis/... output:crd:artifacts:config=pkg/apis/crds; fi
	go run ./hack/crd-bounds pkg/apis/crds/*.yaml
	@bash hack/upstream-crds.sh
	@mkdir -p charts/stowage/crds && cp pkg/apis/crds/*.yaml charts/stowage/crds/
	go run ./hack/gen-docs -crd pkg/apis/crds/stowage.dev_nodepools.yaml -intro hack/gen-docs/nodepool-intro.md -o docs/nodepool.md

verify: generate ## fail when generated files are stale
	@git diff --exit-code -- pkg/apis providers charts/stowage/crds docs/nodepool.md || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	@echo "==> go vet"
	go vet ./...
	@echo "==> gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

lint: $(BIN)/golangci-lint
	$(BIN)/golangci-lint run ./...

test: controlplane kueue tools vet ## run every test (unit, envtest, end-to-end) with the race detector
	@echo "==> go test -race ./... (end-to-end suites start a local control plane)"
	PATH=$(BIN):$$PATH go test -race -timeout 40m $(GO_TEST_FLAGS) ./...
	@echo "==> go test ./test/scenarios/ without -race: the large scenarios it skips under the race detector"
	go test -count=1 $(GO_TEST_FLAGS) ./test/scenarios/

test-unit: ## only the pure-Go packages, no control plane
	go test -race ./pkg/scheduling/... ./pkg/solver/... ./pkg/cloudprovider/... ./pricing/...

bench: ## solver benchmarks on the scenarios, then a summary table (time, cost, lower bound, gap, naive, vs FFD and vs the legacy solver, peak heap)
	STOWAGE_BENCH_100K=1 go test -run '^$$' -bench . -benchmem -timeout 60m ./pkg/solver/... ./test/scenarios/... | go run ./test/scenarios/benchsummary

bench-e2e: controlplane ## local control plane: 1,000 pending pods (both pool layouts), Karpenter's consolidation and drift cases, pass time at 1,000 nodes
	go test -count=1 -run '^$$' -bench 'BenchmarkSchedulePass' -benchtime 5x ./pkg/controllers/provisioning/
	STOWAGE_BENCH_E2E=1 go test -count=1 -run '^TestBenchE2E(Disruption)?$$' -v -timeout 120m ./test/e2e/

bench-disruption: ## a day of the seeds' portfolio: static vs Stowage cost
	go test -run '^$$' -bench BenchmarkDay -benchtime 1x -v ./test/portfolio/

demo: controlplane build ## local control plane + fake cloud + example workloads
	@echo "==> building bin/stowage-demo"
	go build -o $(BIN)/stowage-demo ./test/demo
	@echo "==> running the demo (Ctrl-C stops it and cleans up)"
	$(BIN)/stowage-demo

clean:
	rm -rf $(BIN)/stowage

# Each fuzz target as package:Name. FuzzSimulate* check every plan with
# big-integer arithmetic of their own (pkg/simulate/fuzz_test.go).
FUZZ_TARGETS := pkg/simulate:FuzzSimulate pkg/simulate:FuzzSimulateShapes pkg/validation:FuzzNodePool \
	pkg/manifest:FuzzLoad pkg/scheduling:FuzzRequirementsAlgebra

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 20s) each
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh $(FUZZ_TARGETS)

.PHONY: vulncheck
vulncheck: $(BIN)/govulncheck ## known vulnerabilities in the code's dependencies (needs the Go vulnerability database)
	$(BIN)/govulncheck ./...

$(BIN)/govulncheck:
	@echo "==> installing govulncheck $(GOVULNCHECK_VERSION)"
	GOBIN=$(BIN) go install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

.PHONY: chaos
chaos: controlplane ## the long chaos run (controller SIGKILLed every 1-5 s, cloud faults, waves of pods); prints kills, faults, time to converge, leaks
	STOWAGE_CHAOS=long STOWAGE_CHAOS_OUT=$(BIN)/chaos-report.md PATH=$(BIN):$$PATH go test -count=1 -run '^TestChaos$$' -v -timeout 40m ./test/chaos/
	@cat $(BIN)/chaos-report.md

.PHONY: helm-test
helm-test: $(BIN)/helm controlplane ## lint, render and install the Helm chart (test/helm)
	go test -race $(GO_TEST_FLAGS) ./test/helm/...
