# syntax=docker/dockerfile:1
# caravan-central, the registry. Its SQLite driver (modernc.org/sqlite) is pure Go, so the
# static base serves SQLite as well as PostgreSQL.
# Built from the repository root, as `make images-docker` does (`make images` needs no daemon):
#   docker build -f build/caravan-central.Dockerfile --build-arg VERSION="$(git describe --tags --always --dirty)" -t caravan-central .

# Any Go image will do: go.mod pins the toolchain and GOTOOLCHAIN=auto fetches it.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
ENV GOTOOLCHAIN=auto CGO_ENABLED=0
WORKDIR /src
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -o /out/caravan-central \
      -ldflags "-s -w -X github.com/caravan-gitops/caravan/pkg/version.Version=${VERSION}" \
      ./cmd/caravan-central
# The runtime image has no shell to make the database folder, so it is made
# here and copied with its owner: a new volume mounted on it is then writable
# by the runtime user.
RUN mkdir -p /out/data

# A static binary alone: no shell, no package manager, user 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/caravan-central /usr/local/bin/caravan-central
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/caravan-central"]
# Plain HTTP on every address, for a cluster where an ingress terminates TLS.
# Give arguments for PostgreSQL (--database postgres://...) or TLS (--tls-cert, --tls-key).
CMD ["serve", "--listen", "0.0.0.0:8080", "--insecure-http", "--database", "sqlite:///data/caravan.db"]
