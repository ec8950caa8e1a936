#!/usr/bin/env bash
# Benchmark POST /api/messages (single) and /api/messages/batch with wrk
# against a release build of `herald serve` on PostgreSQL (or SQLite).
# Usage: bench/api.sh [postgres|sqlite]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-postgres}"
cargo build --release --quiet
export HERALD_KEY=bench-key-0123456789abcdef API_KEYS=bench-key-0123456789abcdef PORT=18181 LOG_LEVEL=warn
# Measure the API alone: no processor competing for the two cores.
export ENABLE_MESSAGE_PROCESSOR=false
dir=$(mktemp -d)
if [ "$backend" = postgres ]; then
  psql -q postgres://postgres@127.0.0.1:5432/test -c "DROP DATABASE IF EXISTS herald_api_bench WITH (FORCE)" -c "CREATE DATABASE herald_api_bench"
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_api_bench DATABASE_MAX_CONNECTIONS=16
else
  export DATABASE_URL="sqlite://$dir/bench.db"
fi
target/release/herald serve & pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf localhost:$PORT/healthz >/dev/null && break; sleep 0.1; done
echo "== single: POST /api/messages ($backend)"
wrk -t2 -c64 -d15s -s bench/post_message.lua http://127.0.0.1:$PORT/api/messages
echo "== batch: POST /api/messages/batch, 1,000 messages per request ($backend)"
wrk -t2 -c8 -d15s -s bench/post_batch.lua http://127.0.0.1:$PORT/api/messages/batch
curl -s localhost:$PORT/metrics | grep '^herald_messages'
