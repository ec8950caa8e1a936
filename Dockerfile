# Herald in a container: a multi-stage build, a small non-root runtime.
#
#   docker build -t herald .
#   docker run -d --name herald -p 8080:8080 -v herald-data:/data \
#     -e API_KEYS=$(openssl rand -hex 32) -e SMS_PROVIDER=twilio … herald
#
# The SQLite queue lives in the /data volume unless DATABASE_URL points at
# PostgreSQL or MySQL/MariaDB. Listening on 0.0.0.0 requires API_KEYS (Herald
# refuses to start without them). `docker run … herald process --watch`
# runs a worker without the API.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin herald \
 && strip target/release/herald

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin herald \
 && install -d -o herald -g herald -m 750 /data
COPY --from=build /src/target/release/herald /usr/local/bin/herald
ENV DATABASE_URL=sqlite:///data/herald.db \
    HOST=0.0.0.0 \
    PORT=8080 \
    LOG_FORMAT=json
USER herald
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["herald", "healthcheck"]
CMD ["herald", "serve"]
