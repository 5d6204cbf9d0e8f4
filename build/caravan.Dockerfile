# syntax=docker/dockerfile:1
# caravan, the command line, for CI jobs that register clusters or promote channels.
# Built from the repository root, as `make images-docker` does (`make images` needs no daemon):
#   docker build -f build/caravan.Dockerfile --build-arg VERSION="$(git describe --tags --always --dirty)" -t caravan .

# Any Go image will do: go.mod pins the toolchain and GOTOOLCHAIN=auto fetches it.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
ENV GOTOOLCHAIN=auto CGO_ENABLED=0
WORKDIR /src
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -o /out/caravan \
      -ldflags "-s -w -X github.com/caravan-gitops/caravan/pkg/version.Version=${VERSION}" \
      ./cmd/caravan

# A static binary alone: no shell, no package manager, user 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/caravan /usr/local/bin/caravan
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/caravan"]
