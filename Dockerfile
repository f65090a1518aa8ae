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
USER qwen2api

# The server listens on SERVICE_PORT (default 3000) on LISTEN_ADDRESS (default 0.0.0.0).
EXPOSE 3000

# `qwen2api healthcheck` reads the same configuration and asks this server's /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/qwen2api", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/qwen2api"]
