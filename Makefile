# Kairos. The two commands a newcomer needs: make demo, make test.
GO       ?= go
BIN      ?= bin/kairos
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...
FUZZTIME ?= 30s

.PHONY: all build demo test test-short vet fmt bench fuzz clean promtool check-metrics check-deploy

all: vet test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kairos

## demo: run Kairos on its embedded defaults with the example rules and synthetic traffic (Ctrl-C stops)
demo:
	$(GO) run ./cmd/kairos demo

## test: vet, then every test (unit, integration with a real nats-server and Badger, end-to-end on the built binary, kill -9)
test: vet
	$(GO) test -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: the Go micro-benchmarks of the hot path (the end-to-end load test is `kairos bench`, docs/bench.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./rules ./state ./engine ./connectors ./bench

## fuzz: run every fuzz target of the repository for FUZZTIME each
fuzz:
	@set -e; for f in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go')); do \
		pkg=./$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "$$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## promtool: install promtool (Debian's prometheus package); the metrics and alert tests use it when present.
## The package also installs a prometheus service: `systemctl disable --now prometheus` if you do not want it.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; }
	@promtool --version | head -1

## check-metrics: lint a live /metrics scrape, the dashboard's queries and the alert rules with promtool, and run the alerts' unit tests
check-metrics: promtool
	$(GO) test -count=1 -run 'TestMetricsScrapePassesPromtool|TestDocumentedMetricsAreExported|TestDashboard|TestAlert' -v ./engine
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml
	promtool check config deploy/prometheus/prometheus.yml

## check-deploy: validate the deployment files (Kubernetes, compose, Dockerfile, systemd, NATS)
check-deploy:
	$(GO) test -count=1 -run 'TestKubernetesManifests|TestKubernetesClusterOverlay|TestComposeStack|TestComposeClusterStack|TestDockerfile|TestSystemdUnitIsHardened|TestNATSConfigsLoad' -v ./engine

clean:
	rm -rf bin
