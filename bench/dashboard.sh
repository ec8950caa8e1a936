#!/usr/bin/env bash
# Benchmark the dashboard and /api/stats on PostgreSQL with a big table:
# fills notification_messages with ROWS rows (default 10 million: a year
# of a busy shop, 70% SMS, 20% email, 10% WhatsApp, 2% failed) and
# herald_stats with the matching per-minute rollup, starts a release
# `herald serve`, signs in, and times every page and query (the median,
# p95 and slowest of RUNS requests each, measured by curl).
# Usage: bench/dashboard.sh [ROWS] [RUNS]       (needs psql and curl)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-10000000}"
runs="${2:-20}"
admin=postgres://postgres@127.0.0.1:5432/test
db=herald_dash_bench
cargo build --release --quiet
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
export API_KEYS=bench-key-0123456789abcdef PORT=18182 LOG_LEVEL=warn SMS_PRICE_PER_SEGMENT=0.0079
key=$API_KEYS
url=http://127.0.0.1:$PORT

if [ "${REUSE:-}" != 1 ]; then
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  target/release/herald migrate >/dev/null
  echo "== filling notification_messages with $rows rows (a year, newest now)"
  start=$(date +%s)
  psql -q "$DATABASE_URL" <<SQL
ALTER TABLE notification_messages DISABLE TRIGGER USER;
INSERT INTO notification_messages
  (channel, recipient, subject, body, status, attempts, error, provider, provider_message_id,
   sent_at, created_at, updated_at, metadata, template, delivery_status)
SELECT ch,
       CASE WHEN ch = 'email' THEN 'customer' || (g % 1000003) || '@example.com'
            ELSE '+1415' || lpad((g % 1000003)::text, 7, '0') END,
       CASE WHEN ch = 'email' THEN 'Your receipt' END,
       'Thanks for your order #' || g || '. Your receipt total is \$' || (g % 500) || '.00',
       st,
       CASE WHEN st = 'failed' THEN 4 ELSE 1 END,
       CASE WHEN st = 'failed' THEN '{"code":"30003","message":"Unreachable destination handset","provider":"twilio","retryable":false,"attempt":1,"at":"2026-01-01T00:00:00.000Z"}' END,
       CASE WHEN ch = 'email' THEN 'sendgrid' ELSE 'twilio' END,
       CASE WHEN st = 'sent' THEN 'SM' || md5(g::text) END,
       CASE WHEN st = 'sent' THEN at END,
       at, at,
       '{"order_id":"A-' || g || '","store":"' || (g % 12) || '"}',
       CASE WHEN g % 3 = 0 THEN 'receipt' END,
       CASE WHEN st = 'sent' AND ch <> 'email' THEN 'delivered' END
  FROM (SELECT g,
               CASE WHEN g % 10 < 7 THEN 'sms' WHEN g % 10 < 9 THEN 'email' ELSE 'whatsapp' END AS ch,
               CASE WHEN g % 50 = 7 THEN 'failed' WHEN g % 997 = 0 THEN 'cancelled' ELSE 'sent' END AS st,
               now() - interval '365 days' * (1 - g::float8 / $rows) AS at
          FROM generate_series(1, $rows) AS g) AS s;
ALTER TABLE notification_messages ENABLE TRIGGER USER;
-- Attempts for the newest 100,000 (the detail page reads them by message).
INSERT INTO notification_attempts (message_id, attempt, started_at, finished_at, provider, outcome, provider_message_id, worker)
SELECT id, 1, created_at, created_at + interval '180 ms', provider,
       CASE WHEN status = 'failed' THEN 'permanent' ELSE 'sent' END, provider_message_id, 'bench'
  FROM notification_messages WHERE id > $rows - 100000;
-- 1,000 scheduled reminders (pending, due next week).
INSERT INTO notification_messages (channel, recipient, body, send_at)
SELECT 'sms', '+1415' || lpad(g::text, 7, '0'), 'Reminder: your appointment', now() + interval '7 days'
  FROM generate_series(1, 1000) AS g;
-- The rollup, as the processor keeps it: one row per minute, channel, provider, event, code.
INSERT INTO herald_stats (bucket, channel, provider, event, code, count, segments, latency_ms, lat)
SELECT date_trunc('minute', created_at), channel, provider,
       CASE WHEN status = 'failed' THEN 'permanent' ELSE 'sent' END,
       CASE WHEN status = 'failed' THEN '30003' ELSE '' END,
       count(*), CASE WHEN channel = 'email' THEN 0 ELSE count(*) END, count(*) * 180,
       ARRAY[0,0,0,0,0,count(*),0,0,0,0,0,0,0]::bigint[]
  FROM notification_messages WHERE status IN ('sent', 'failed')
 GROUP BY 1, 2, 3, 4, 5;
INSERT INTO herald_stats (bucket, channel, provider, event, code, count)
SELECT date_trunc('minute', created_at), channel, provider, 'delivery:delivered', '', count(*)
  FROM notification_messages WHERE delivery_status = 'delivered'
 GROUP BY 1, 2, 3;
-- And per hour (every histogram here has one non-zero bucket, the 6th).
INSERT INTO herald_stats_hourly (bucket, channel, provider, event, code, count, segments, latency_ms, lat)
SELECT date_trunc('hour', bucket), channel, provider, event, code,
       sum(count), sum(segments), sum(latency_ms), ARRAY[0,0,0,0,0,sum(lat[6]),0,0,0,0,0,0,0]::bigint[]
  FROM herald_stats GROUP BY 1, 2, 3, 4, 5;
VACUUM ANALYZE;
SQL
  echo "   filled in $(( $(date +%s) - start )) s"
fi
psql -Atq "$DATABASE_URL" -c "SELECT 'notification_messages: ' || count(*) FROM notification_messages" \
  -c "SELECT 'herald_stats: ' || count(*) || ' rows' FROM herald_stats" \
  -c "SELECT 'herald_stats_hourly: ' || count(*) || ' rows' FROM herald_stats_hourly" \
  -c "SELECT 'database size: ' || pg_size_pretty(pg_database_size(current_database()))"

ENABLE_MESSAGE_PROCESSOR=false target/release/herald serve & pid=$!
jar=$(mktemp)
trap 'kill $pid 2>/dev/null; rm -f "$jar"' EXIT
for _ in $(seq 100); do curl -sf $url/healthz >/dev/null && break; sleep 0.1; done
# Sign in as a browser does: the form's token and cookie, then the key.
csrf=$(curl -s -c "$jar" $url/dashboard/login | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n1)
curl -s -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&secret=$key&next=/dashboard" $url/dashboard/login
failed_id=$(psql -Atq "$DATABASE_URL" -c "SELECT max(id) FROM notification_messages WHERE status = 'failed'")
recent_recipient=$(psql -Atq "$DATABASE_URL" -c "SELECT recipient FROM notification_messages WHERE id = $rows - 10")
old_recipient=$(psql -Atq "$DATABASE_URL" -c "SELECT recipient FROM notification_messages WHERE id = 20")

# time NAME PATH [auth]: RUNS requests; prints median, p95, max (ms).
time_it() {
  local name="$1" path="$2" auth="${3:-cookie}" times code
  local args=(-s -o /dev/null -w '%{http_code} %{time_total}\n')
  if [ "$auth" = bearer ]; then args+=(-H "Authorization: Bearer $key"); else args+=(-b "$jar"); fi
  code=$(curl "${args[@]}" "$url$path" | cut -d' ' -f1)
  [ "$code" = 200 ] || { echo "$name: HTTP $code for $path" >&2; exit 1; }
  times=$(for _ in $(seq "$runs"); do curl "${args[@]}" "$url$path" | cut -d' ' -f2; done | sort -n)
  echo "$times" | awk -v name="$name" '{ t[NR] = $1 * 1000 } END {
    printf "%-52s median %7.1f ms   p95 %7.1f ms   max %7.1f ms\n", name, t[int((NR+1)/2)], t[int(NR*0.95+0.5)], t[NR] }'
}

echo "== $runs requests each, one at a time ($rows rows)"
time_it "overview, last 1 h" "/dashboard?range=1h"
time_it "overview, last 24 h" "/dashboard?range=24h"
time_it "overview, last 7 d" "/dashboard?range=7d"
time_it "overview, last 30 d" "/dashboard?range=30d"
time_it "messages, newest 50" "/dashboard/messages"
time_it "messages, failed" "/dashboard/messages?status=failed"
time_it "messages, whatsapp" "/dashboard/messages?channel=whatsapp"
time_it "messages, a date range (a day, 6 months ago)" "/dashboard/messages?from=$(date -u -d '-182 days' +%F)&to=$(date -u -d '-181 days' +%F)"
time_it "messages, template=receipt" "/dashboard/messages?template=receipt"
time_it "messages, error code 30003" "/dashboard/messages?code=30003"
time_it "messages, recipient (a recent customer)" "/dashboard/messages?recipient=$recent_recipient"
time_it "messages, recipient (messaged a year ago)" "/dashboard/messages?recipient=$old_recipient"
time_it "messages, metadata order_id (recent)" "/dashboard/messages?meta_key=order_id&meta_value=A-$((rows - 30))"
time_it "message detail (a failed one)" "/dashboard/messages/$failed_id"
time_it "bulk retry confirmation (failed, 24 h)" "/dashboard/messages/retry?status=failed&from=$(date -u -d '-1 day' +%F)"
time_it "/api/stats, 24 h, per minute, by channel+event" "/api/stats?bucket=minute&group_by=channel,event" bearer
time_it "/api/stats, 30 d, per hour, by channel+event" "/api/stats?from=$(date -u -d '-30 days' +%FT%TZ)&bucket=hour&group_by=channel,event" bearer
time_it "/api/stats, 92 d, per day, by provider+code" "/api/stats?from=$(date -u -d '-92 days' +%FT%TZ)&bucket=day&group_by=provider,code" bearer
time_it "/api/messages?status=failed&limit=50" "/api/messages?status=failed&limit=50" bearer
time_it "/metrics (queue gauges from a snapshot)" "/metrics" bearer
time_it "/readyz" "/readyz" bearer
