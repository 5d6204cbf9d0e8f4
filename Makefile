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

# The test control plane's commands and Flux's kustomize-controller (the
# benchmarks' peer), built once per pinned version into a folder of the
# machine's cache (shared by every clone, CI's included) and linked as
# .cache/tools.
TOOLS_HASH  := $(shell cat test/tools/go.mod test/tools/go.sum test/tools/etcd/main.go test/tools/stages.sh \
	test/flux/controller/go.mod test/flux/controller/go.sum test/flux/controller/build.sh | sha256sum | cut -c1-16)
TOOLS_DIR   := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/caravan/tools-$(TOOLS_HASH)

.PHONY: all build images images-docker run test test-go test-api-schema test-deps tools bench lint clean

all: build

# VERSION is what every binary's --version prints and every image's tag.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/caravan-gitops/caravan/pkg/version.Version=$(VERSION)
BINARIES  := caravan caravan-central caravan-agent
IMAGE_REPO ?= ghcr.io/caravan-gitops
# The first of docker and podman that answers; evaluated only by `make images-docker`.
CONTAINER_ENGINE ?= $(shell for e in docker podman; do if $$e info >/dev/null 2>&1; then echo $$e; break; fi; done)

## build: compile caravan, caravan-central and caravan-agent into bin/ (static: no cgo), stamped with VERSION
build:
	CGO_ENABLED=0 go build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

## images: build the three images without a container daemon (build/imagebuild: static binary, CA certificates,
## user 65532; linux/amd64 and linux/arm64) as OCI layouts in build/out/<binary>/; with IMAGE_REPO given
## (make images IMAGE_REPO=localhost:5000/caravan), also push $(IMAGE_REPO)/<binary>:$(VERSION), failing if that fails
images:
	go run ./build/imagebuild -version "$(VERSION)" -out build/out$(if $(filter-out file default,$(origin IMAGE_REPO)), -push "$(IMAGE_REPO)")

## images-docker: build $(IMAGE_REPO)/<binary>:$(VERSION) from build/<binary>.Dockerfile with docker or podman
images-docker:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
		echo "make images-docker: neither 'docker info' nor 'podman info' succeeds; 'make images' needs neither" >&2; \
		exit 1; \
	fi; \
	for b in $(BINARIES); do \
		echo "$(CONTAINER_ENGINE) build $(IMAGE_REPO)/$$b:$(VERSION)"; \
		$(CONTAINER_ENGINE) build -f build/$$b.Dockerfile --build-arg VERSION=$(VERSION) -t $(IMAGE_REPO)/$$b:$(VERSION) .; \
	done

## run: start the local demo fleet (registry, git server, moto, two clusters with agents); Ctrl-C stops it
run: build tools test-deps
	go run ./test/demo --dir $(ROOT)/.caravan --listen 127.0.0.1:8080 --manifests $(ROOT)/manifests

## test: install test dependencies, then run every test
test: test-deps tools test-go test-api-schema

test-deps:
	bash test/deps.sh "$(VENV)"

# test-go: the agent's, the registry's and the shared packages' tests under
# the race detector (the agent's e2e tests run the agent in-process, so its
# loop, watches and health wait are raced on real parts), the rest without,
# at the same time: the agent's package alone takes most of the run and
# leaves a core to spare. The rest's output follows; either failing fails.
test-go:
	mkdir -p $(CACHE)
	go test -count=1 -timeout 20m $$(go list ./... | grep -Ev '^github.com/caravan-gitops/caravan/(agent|central|pkg)(/|$$)') \
		> $(CACHE)/test-go-rest.log 2>&1 & rest=$$!; \
	raced=0; go test -race -count=1 -timeout 30m ./agent/... ./central/... ./pkg/... || raced=$$?; \
	others=0; wait $$rest || others=$$?; \
	cat $(CACHE)/test-go-rest.log; \
	test $$raced -eq 0 && test $$others -eq 0

## test-api-schema: schemathesis against the served OpenAPI spec of a running server, on SQLite and on PostgreSQL
test-api-schema: build
	CARAVAN_VENV="$(VENV)" bash test/schemathesis/with-server.sh "$(BIN)/caravan-central" sqlite
	CARAVAN_VENV="$(VENV)" bash test/schemathesis/with-server.sh "$(BIN)/caravan-central" postgres

## tools: build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and kustomize-controller with its CRDs (once per version)
tools: $(TOOLS_DIR)/.complete
	mkdir -p $(CACHE)
	ln -sfn $(TOOLS_DIR) $(CACHE)/tools

$(TOOLS_DIR)/.complete:
	mkdir -p $(TOOLS_DIR)
	cd test/tools && go build -trimpath -ldflags="-s -w" -o $(TOOLS_DIR)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/kwok/cmd/kwok ./etcd
	bash test/tools/stages.sh $(TOOLS_DIR)/kwok-stages.yaml
	bash test/flux/controller/build.sh $(TOOLS_DIR)
	touch $@

## bench: measure the registry, the agent's stacks (on moto), the agent and its drift correction beside Flux, node rolls of 50 and 200 nodes, caravan render --all over 1,000 clusters,
## 1,000 and 10,000 simulated agents on two registry replicas and PostgreSQL (a push, PostgreSQL restarted, a replica killed), and write BENCHMARKS.md
bench: tools test-deps
	go run ./test/bench/registry -out BENCHMARKS.md
	go run ./test/bench/stacks -out BENCHMARKS.md
	go run ./test/bench/agent -out BENCHMARKS.md
	go run ./test/bench/roll -out BENCHMARKS.md
	go run ./test/bench/roll -nodes 200 -out BENCHMARKS.md
	go run ./test/bench/render -out BENCHMARKS.md
	go run ./test/bench/fleet -out BENCHMARKS.md

## lint: gofmt, go vet and staticcheck
lint:
	unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "not formatted by gofmt:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	GOBIN=$(CACHE)/bin go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(CACHE)/bin/staticcheck ./...

clean:
	rm -rf $(BIN) .caravan
