# The ispcert operator: one static binary and a CA bundle on an empty base (docs/image.md).
#
#   docker build -t ispcert:0.1.0 .
#   podman build -t ispcert:0.1.0 .
#
# hack/image checks this file (Docker's own lint rules), builds the binary as the builder stage
# does, and assembles and checks the final stage without a Docker engine.

# The toolchain of rust-toolchain.toml (hack/image fails when the two differ); Debian bookworm,
# so glibc 2.36, the one the static binary is tested with here.
ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
ARG RUST_VERSION
# The image has this toolchain with the minimal profile; naming it here keeps rustup from fetching
# the rustfmt and clippy that rust-toolchain.toml lists, which a build does not need.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
WORKDIR /src
COPY . .
# The same script hack/image runs, so what was tested is what ships. The caches keep crates and
# build output between builds (BuildKit, Podman and Buildah all honour them); the binary is
# copied out of the cached target dir by the script itself.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    hack/build-static /out

# Nothing but the binary and the bundle: no shell, no package manager, no libc to patch. The
# kubelet provides /etc/hosts and /etc/resolv.conf; the in-cluster client reaches the API server
# by the IP in KUBERNETES_SERVICE_HOST.
FROM scratch
ARG VERSION=0.1.0
COPY --from=builder /out/ /
# A numeric user, so that runAsNonRoot can be verified without an /etc/passwd (65532 is the
# "nonroot" user of distroless images).
USER 65532:65532
ENTRYPOINT ["/ispcert", "controller"]
# revision and created change with every build: pass them with --label (docs/image.md).
LABEL org.opencontainers.image.title="ispcert" \
      org.opencontainers.image.description="Kubernetes operator that buys, installs and renews commercial TLS certificates through the ispmanager billing" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ispcert/ispcert" \
      org.opencontainers.image.url="https://github.com/ispcert/ispcert" \
      org.opencontainers.image.documentation="https://github.com/ispcert/ispcert/blob/main/docs/image.md"
