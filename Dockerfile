# Kairos container image: a static binary on a distroless base, run as a non-root user.
#
#   docker build -t kairos:dev --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm -p 127.0.0.1:9464:9464 -p 127.0.0.1:4222:4222 -v kairos-data:/data kairos:dev
#
# The default command runs the embedded NATS server and the example rules, listening on all
# interfaces of the container (publish the ports on 127.0.0.1 as above). For production give
# it a configuration: `run --config /etc/kairos/kairos.yaml` (deploy/compose, deploy/k8s).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static (no cgo), reproducible (-trimpath), version stamped as `kairos version` prints it.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/kairos ./cmd/kairos \
    && mkdir -p /out/data

# distroless/static: no shell, no package manager, CA certificates and tzdata included (the
# contact policy needs IANA time zones), and the "nonroot" user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kairos /usr/local/bin/kairos
COPY --from=build --chown=65532:65532 /out/data /data
COPY examples/rules /etc/kairos/rules
USER 65532:65532
# The Badger state, and the embedded NATS store when no external NATS is configured.
VOLUME /data
WORKDIR /data
# 9464: /metrics, /healthz, /readyz, /v1/ (admin). 4222: the embedded NATS server.
EXPOSE 9464 4222
ENTRYPOINT ["/usr/local/bin/kairos"]
CMD ["run", "--data", "/data", "--rules", "/etc/kairos/rules", "--nats-listen", "0.0.0.0:4222", "--http", "0.0.0.0:9464"]
