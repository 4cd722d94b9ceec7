# The titanic service as a small, non-root, read-only-friendly image.
#
#   docker build -t titanic:dev .          (or podman build, buildah bud; BuildKit or not)
#   docker run --rm -p 8080:8080 --read-only --tmpfs /tmp -v titanic-data:/var/lib/titanic \
#     -e TITANIC__AUTH__JWT_SECRET="$(openssl rand -hex 48)" titanic:dev
#
# Stage 1 compiles the dependencies alone (a layer reused until Cargo.toml, Cargo.lock or
# .cargo/config.toml change), then the crate. Stage 2 is distroless: glibc, libgcc, CA
# certificates, no shell and no package manager. The binary needs nothing else: SQLite is
# compiled in (libsqlite3-sys, bundled), and config/default.toml and config/production.toml
# are compiled in (include_str!, hence config/ in the build context). Builder and runtime are
# the same Debian release, so the glibc the binary was linked against is the one it runs with.
#
# The base images are build arguments: the official images by default, or any image with the
# same contents (a mirror, a digest, or the stand-ins scripts/container-smoke.sh makes from
# debootstrap for air-gapped builds; docs/deployment.md, Building the image):
#   docker build --build-arg BUILDER_IMAGE=registry.example/rust:1.95-slim-bookworm@sha256:... \
#     --build-arg RUNTIME_IMAGE=registry.example/distroless/cc-debian12:nonroot@sha256:... .
# No `# syntax=` line and no BuildKit-only instruction (RUN --mount): Docker's classic builder,
# BuildKit's built-in frontend and buildah/podman all build this file, and none fetches a
# frontend image first. The dependency layer is the build cache. Once the base images are
# present, the only network access is cargo downloading the crates in Cargo.lock, and none at
# all when the builder image already holds them (CARGO_NET_OFFLINE=true in its environment).
#
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: the runtime image has no shell or HTTP client to run one, and the orchestrators this image is for ignore it (Kubernetes uses the /health/live and /health/ready probes in kubernetes/base/deployment.yaml).
# checkov:skip=CKV_DOCKER_7: the base images are the build arguments below, whose defaults carry version tags (rust:1.95-slim-bookworm, cc-debian12:nonroot); checkov reads FROM ${...} as an image without a tag.

ARG BUILDER_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /build
# No sqlx query macros are used (only sqlx::migrate!, which reads migrations/ at compile time),
# so the build never needs a database; SQLX_OFFLINE makes any future query! macro use a
# committed .sqlx/ instead of trying to connect.
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    SQLX_OFFLINE=true

# Dependencies: the manifests, the build script and placeholder targets. Cargo refuses a
# manifest whose [[bench]] file is missing, hence an empty file for each bench it names.
# .cargo/config.toml holds settings every build shares (the bundled SQLite's compile flags).
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo/config.toml ./.cargo/config.toml
RUN mkdir -p src benches migrations \
    && echo 'fn main() {}' > src/main.rs \
    && : > src/lib.rs \
    && sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p;}' Cargo.toml > /tmp/benches \
    && while read -r bench; do echo 'fn main() {}' > "benches/$bench.rs"; done < /tmp/benches \
    && cargo build --release --locked --bin titanic \
    && rm -rf src benches target/release/titanic target/release/deps/titanic-* \
       target/release/deps/libtitanic-* target/release/.fingerprint/titanic-*

# The commit every model this image trains records as `git_commit` (the build context has no
# .git): pass `--build-arg TITANIC_GIT_COMMIT=$(git rev-parse HEAD)`; empty records none.
ARG TITANIC_GIT_COMMIT=

# The crate itself. touch: COPY keeps the sources' timestamps, which can be older than the
# placeholder build's outputs.
COPY migrations ./migrations
COPY config ./config
COPY benches ./benches
COPY src ./src
RUN touch build.rs src/main.rs src/lib.rs \
    && cargo build --release --locked --bin titanic \
    && install -D -m 0755 target/release/titanic /out/bin/titanic \
    && install -d -m 0755 /out/app/data/titanic \
    && install -d -m 0700 /out/state

# The bundled data set, ingested by `titanic serve` into an empty store.
COPY data/titanic/train.csv data/titanic/test.csv data/titanic/PROVENANCE.md /out/app/data/titanic/

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="titanic" \
      org.opencontainers.image.description="Titanic survival prediction service: feature store, model registry, online and batch prediction" \
      org.opencontainers.image.licenses="MIT"

# Code and bundled data belong to root and are read-only to the service; only the state
# directory (the SQLite database, WAL and, outside production, a generated JWT secret) belongs
# to the service's user, 65532 ("nonroot" in distroless).
COPY --from=builder /out/bin/titanic /usr/local/bin/titanic
COPY --from=builder /out/app /app
COPY --from=builder --chown=65532:65532 /out/state /var/lib/titanic

# Relative paths in the configuration (data.train_csv = data/titanic/train.csv) resolve here.
WORKDIR /app
# The production profile: listens on 0.0.0.0, JSON logs, and refuses to start without a JWT
# secret (TITANIC__AUTH__JWT_SECRET or TITANIC__AUTH__SECRET_FILE). Everything else is set
# with TITANIC__SECTION__KEY variables; see README.md and config/default.toml.
ENV TITANIC_ENV=production \
    TITANIC__DATABASE__URL=sqlite:///var/lib/titanic/titanic.db \
    TITANIC__DATA__DIR=/var/lib/titanic

USER 65532:65532
EXPOSE 8080
# The only directory the service writes, besides temporary files in /tmp (give it a tmpfs when
# the root filesystem is read-only).
VOLUME ["/var/lib/titanic"]
ENTRYPOINT ["/usr/local/bin/titanic"]
CMD ["serve"]
