# Kairos. The two commands a newcomer needs: make demo, make test.
GO       ?= go
BIN      ?= bin/kairos
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...
FUZZTIME ?= 30s

.PHONY: all build demo test test-short vet fmt bench fuzz clean

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

## bench: the Go micro-benchmarks of the hot path
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./rules ./state ./engine ./connectors

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./engine
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeOutRecord$$' -fuzztime $(FUZZTIME) ./engine
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCustomer$$' -fuzztime $(FUZZTIME) ./state

clean:
	rm -rf bin
