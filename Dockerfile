# syntax=docker/dockerfile:1
# Stowage controller image: a static Go binary on a distroless base that has
# no shell or package manager, running as the distroless "nonroot" user.
#
#   docker build --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) -t stowage .

ARG GO_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS TARGETARCH VERSION=dev COMMIT=unknown
WORKDIR /src
# Dependencies first, so source edits reuse the module cache layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
COPY pricing/ pricing/
COPY providers/ providers/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/stowage ./cmd/stowage

FROM ${BASE_IMAGE}
COPY --from=build /out/stowage /stowage
# 65532 is distroless's nonroot user; the chart's securityContext matches it.
USER 65532:65532
ENTRYPOINT ["/stowage"]
CMD ["controller"]
