# syntax=docker/dockerfile:1
# caravan-agent, the in-cluster agent that charts/caravan-agent runs.
# Built from the repository root, as `make images-docker` does (`make images` needs no daemon):
#   docker build -f build/caravan-agent.Dockerfile --build-arg VERSION="$(git describe --tags --always --dirty)" -t caravan-agent .

# Any Go image will do: go.mod pins the toolchain and GOTOOLCHAIN=auto fetches it.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
ENV GOTOOLCHAIN=auto CGO_ENABLED=0
WORKDIR /src
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -o /out/caravan-agent \
      -ldflags "-s -w -X github.com/caravan-gitops/caravan/pkg/version.Version=${VERSION}" \
      ./cmd/caravan-agent

# A static binary alone: no shell, no package manager, user 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/caravan-agent /usr/local/bin/caravan-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/caravan-agent"]
