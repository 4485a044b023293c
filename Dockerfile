# Wardgate release image: the four release binaries (gateway, ota-server,
# device-sim, tuf-repo) on a small Debian runtime, running as an unprivileged
# user. Configuration and data are volumes; no key, token or certificate is
# in the image. Build: `docker build -t wardgate .`; run a gateway:
#   docker run -v /etc/wardgate:/etc/wardgate:ro -v wardgate-data:/var/lib/wardgate \
#     -p 10.20.0.1:8883:8883 wardgate
# (the host side of -p is the gateway's device-network address). The same
# image runs the OTA server: `--entrypoint ota-server wardgate serve --config ...`.
# See docs/deployment.md.

ARG RUST_VERSION=1.85

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The workspace as CI builds it (Cargo.lock pinned, --locked).
COPY Cargo.toml Cargo.lock ./
COPY protocol protocol
COPY tls tls
COPY tuf-repo tuf-repo
COPY ota-server ota-server
COPY gateway gateway
COPY device-sim device-sim
COPY tests tests
RUN cargo build --release --locked --bins -p gateway -p ota-server -p device-sim -p tuf-repo

FROM debian:bookworm-slim AS runtime
# ca-certificates for public upstream brokers; curl for the HEALTHCHECK.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 wardgate \
    && useradd --system --uid 10001 --gid wardgate --home-dir /var/lib/wardgate \
       --no-create-home --shell /usr/sbin/nologin wardgate \
    && install -d -o wardgate -g wardgate -m 0700 /var/lib/wardgate /var/lib/wardgate-ota \
    && install -d -m 0755 /etc/wardgate /etc/wardgate-ota
COPY --from=build /src/target/release/gateway /src/target/release/ota-server /src/target/release/device-sim /src/target/release/tuf-repo /usr/local/bin/

# In a container the port mapping decides which host address the edge is on,
# so the edge listens on the container's only interface. The admin API stays
# on loopback inside the container (docker exec, or set WARDGATE_ADMIN__BIND
# to a management-side mapping).
ENV WARDGATE_EDGE__LISTEN=0.0.0.0:8883 \
    WARDGATE_EDGE__ALLOW_WILDCARD_BIND=true

USER 10001:10001
VOLUME ["/etc/wardgate", "/var/lib/wardgate"]
EXPOSE 8883
# Liveness of the admin API on loopback inside the container: no credential
# is sent, and the ward CA is the operator's, so the certificate is not
# checked here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--insecure", "https://127.0.0.1:8443/healthz"]
ENTRYPOINT ["gateway"]
CMD ["run", "--config", "/etc/wardgate/gateway.toml"]
