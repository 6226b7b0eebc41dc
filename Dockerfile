# syntax=docker/dockerfile:1
# callhook: multi-stage build. Queries compile against the committed .sqlx/ data, so
# the build needs no database (run `make sqlx-prepare` after changing a query).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true
# The caches keep the registry and build artifacts between builds (BuildKit); the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/callhook /usr/local/bin/callhook

FROM debian:bookworm-slim
# ca-certificates: HTTPS webhooks and TLS to Postgres; tzdata: scenario timezones;
# curl: the container healthcheck (docker-compose.yml).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates tzdata curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 callhook \
    && useradd --system --uid 10001 --gid callhook --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin callhook
COPY --from=builder /usr/local/bin/callhook /usr/local/bin/callhook
USER 10001:10001
ENV CALLHOOK_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["callhook"]
CMD ["serve"]
