# Caravan. `make run` starts the local demo, `make test` installs what the
# tests need and runs them all.

export GOTOOLCHAIN := auto
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

ROOT      := $(CURDIR)
BIN       := $(ROOT)/bin
CACHE     := $(ROOT)/.cache
VENV      := $(CACHE)/venv
STATICCHECK_VERSION := v0.8.2

# The test control plane's commands, built once per pinned version.
TOOLS_STAMP := $(CACHE)/bin/.tools-$(shell cat test/tools/go.mod test/tools/go.sum test/tools/etcd/main.go | sha256sum | cut -c1-16)

.PHONY: all build run test test-go test-api-schema test-deps tools bench lint clean

all: build

## build: compile caravan, caravan-central (and later caravan-agent) into bin/
build:
	go build -o $(BIN)/ ./cmd/...

## run: start the local demo registry with a seeded fleet; Ctrl-C stops it
run: build
	$(BIN)/caravan-central demo --dir $(ROOT)/.caravan --listen 127.0.0.1:8080

## test: install test dependencies, then run every test
test: test-deps test-go test-api-schema

test-deps:
	bash test/deps.sh "$(VENV)"

test-go:
	go test -count=1 -timeout 20m ./...

## test-api-schema: schemathesis against the served OpenAPI spec of a running server
test-api-schema: build
	CARAVAN_VENV="$(VENV)" bash test/schemathesis/with-server.sh "$(BIN)/caravan-central"

## tools: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok into .cache/bin
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): test/tools/go.mod test/tools/go.sum
	cd test/tools && go build -trimpath -ldflags="-s -w" -o $(CACHE)/bin/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/kwok/cmd/kwok ./etcd
	rm -f $(CACHE)/bin/.tools-*
	touch $@

## bench: measure the registry and write BENCHMARKS.md
bench:
	go run ./test/bench/registry -out BENCHMARKS.md

## lint: go vet and staticcheck
lint:
	go vet ./...
	GOBIN=$(CACHE)/bin go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(CACHE)/bin/staticcheck ./...

clean:
	rm -rf $(BIN) .caravan
