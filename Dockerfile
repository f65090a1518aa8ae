# qwen2api: multi-stage build. Conventional, but not built or run in this project's CI
# (its build machines have no Docker engine).

# ---- build -----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies first, against a dummy crate, so that this layer is cached until Cargo.toml or
# Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real source. Touch it so that cargo rebuilds the crate over the dummy one.
# `--build-arg QWEN2API_GIT_COMMIT=$(git rev-parse --short=12 HEAD)` names the commit in
# qwen2api_build_info (there is no .git here).
ARG QWEN2API_GIT_COMMIT=
COPY build.rs ./
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/qwen2api /usr/local/bin/qwen2api

# ---- run -------------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 qwen2api \
    && useradd --system --uid 10001 --gid qwen2api --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin qwen2api \
    && mkdir -p /app/data \
    && chown -R qwen2api:qwen2api /app

COPY --from=builder /usr/local/bin/qwen2api /usr/local/bin/qwen2api

WORKDIR /app
# uid/gid 10001: a bind-mounted .env must be readable by it (e.g. `chgrp 10001 .env && chmod
# 640 .env`), or run the container as the file's owner (see docker-compose.yml).
USER qwen2api

# The server listens on SERVICE_PORT (default 3000) on LISTEN_ADDRESS (default 0.0.0.0).
EXPOSE 3000

# Liveness: `qwen2api healthcheck` reads the same configuration and asks this server's /health;
# it fails (exit 1, the reason on stderr, shown by `docker inspect`) only when the server does
# not answer. Zero usable accounts keeps it healthy on purpose (a restart would not bring them
# back; the reason is still printed): readiness is `qwen2api healthcheck --ready`
# (GET /health/ready, 503 with the reason), for what must wait until requests can be served.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/qwen2api", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/qwen2api"]
