# syntax=docker/dockerfile:1
#
# rcontainer in a container image (Debian 12 builder and runtime).
#
#   docker build -t rcontainer .
#   docker build -t rcontainer:python --build-arg FEATURES=python .   (Python WSGI apps)
#   docker run --rm -p 8080:8080 -p 9191:9191 rcontainer
#
# The image serves conf/container.ini (copied to /etc/rcontainer/app.ini): HTTP on 8080, the
# stats (uwsgitop JSON, Prometheus /metrics) on 9191. Mount another INI over it, or pass
# options (`docker run rcontainer --ini /etc/rcontainer/app.ini --processes 4`). The
# Kubernetes example is in packaging/k8s/; docs/operations.md is the operator's guide.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
# Empty: the default (pure Rust) build. "python": embed CPython (libpython3.11) for WSGI apps.
ARG FEATURES=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The rust image has gcc and libc6-dev (for ring); the python feature also needs the
# headers and libpython3.11 of Debian's python3 (pyo3 finds them through PYO3_PYTHON).
RUN if [ "${FEATURES}" = "python" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PYO3_PYTHON=/usr/bin/python3
WORKDIR /src
# Cargo.toml declares the tests, benches and examples: cargo reads their files even to build
# the binary alone.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
# --locked: the versions of Cargo.lock, never a newer one. The binary is copied out of the
# cache-mounted target directory, which does not outlive this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rcontainer ${FEATURES:+--features "${FEATURES}"} \
    && install -D -m 0755 target/release/rcontainer /out/rcontainer

FROM ${RUNTIME_IMAGE}
ARG FEATURES=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# ca-certificates: the HTTPS client (fetch, rcontainer::client) trusts the system CA store.
# The python build links libpython3.11; an app image adds its virtualenv (with gevent) on top
# and points `home` at it (docs/operations.md, "Containers").
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && if [ "${FEATURES}" = "python" ]; then \
        apt-get install -y --no-install-recommends libpython3.11; \
    fi \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 rcontainer \
    && useradd --system --uid 10001 --gid rcontainer --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin rcontainer
COPY --from=builder /out/rcontainer /usr/local/bin/rcontainer
COPY conf/container.ini /etc/rcontainer/app.ini
USER 10001:10001
WORKDIR /tmp
# 8080: HTTP (http-socket), 9191: stats with stats-http (uwsgitop JSON at /, /metrics).
EXPOSE 8080 9191
# TERM is rcontainer's graceful stop: workers finish their requests (worker-reload-mercy,
# 30 s in container.ini), then the master exits 0. `docker stop -t 40` gives it that time.
STOPSIGNAL SIGTERM
# No curl in the image: bash's /dev/tcp sends one HTTP/1.0 request to the app port and
# wants a 2xx, 3xx or 4xx status line (an app answering / with 404 is still up). A pod uses
# its httpGet probes instead (packaging/k8s/deployment.yaml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == 'HTTP/1.'[01]' '[234]* ]]"]
ENTRYPOINT ["rcontainer"]
CMD ["--ini", "/etc/rcontainer/app.ini"]
