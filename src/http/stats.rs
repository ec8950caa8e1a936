//! `GET /api/stats`: the statistics behind the dashboard, as JSON.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::domain::parse_instant;
use crate::store::{Bucket, StatGroups, StatRow, LATENCY_BOUNDS_MS};

/// The longest range one request may cover.
pub(super) const MAX_RANGE_DAYS: i64 = 93;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// Start (RFC 3339, inclusive); default 24 hours before `to`
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339, exclusive); default now
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Group by time: minute, hour or day (default: no time grouping)
    #[param(schema_with = bucket_schema)]
    pub bucket: Option<String>,
    /// Comma-separated: channel, provider, event, code
    pub group_by: Option<String>,
}

fn bucket_schema() -> utoipa::openapi::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["minute", "hour", "day"]))
        .build()
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Stats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Upper bounds (ms) of `latency_histogram`'s buckets; its last bucket is slower.
    pub latency_bounds_ms: Vec<u64>,
    /// Events: provider call outcomes (`sent`, `permanent`, `retryable`,
    /// `rate_limited`, `unknown`, `reconciled`, `unauthorized`), `failed`
    /// (a message ended failed), `delivery:<status>` (receipts),
    /// `webhook_rejected`.
    pub rows: Vec<StatRow>,
}

/// Parsed `/api/stats` parameters (also used by the dashboard).
pub(super) struct StatsRequest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Option<Bucket>,
    pub groups: StatGroups,
}

impl StatsRequest {
    pub(super) fn parse(q: &StatsQuery, now: DateTime<Utc>) -> Result<StatsRequest, ApiError> {
        let bad =
            |field: &'static str, m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m).field(field);
        let time = |field: &'static str, v: Option<&str>| {
            v.map(|s| parse_instant(field, s).map_err(|e| bad(field, e.message)))
                .transpose()
        };
        let to = time("to", q.to.as_deref())?.unwrap_or(now);
        let from = time("from", q.from.as_deref())?.unwrap_or(to - chrono::Duration::hours(24));
        if from >= to {
            return Err(bad("from", "from must be before to".into()));
        }
        if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
            return Err(bad(
                "from",
                format!("the range may cover at most {MAX_RANGE_DAYS} days"),
            ));
        }
        let bucket = match q.bucket.as_deref() {
            None => None,
            Some(b) => {
                Some(Bucket::parse(b).ok_or_else(|| bad("bucket", "bucket must be minute, hour or day".into()))?)
            }
        };
        if bucket == Some(Bucket::Minute) && to - from > chrono::Duration::days(2) {
            return Err(bad(
                "bucket",
                "minute buckets cover at most 2 days; use hour or day".into(),
            ));
        }
        let mut groups = StatGroups::default();
        for g in q
            .group_by
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            match g {
                "channel" => groups.channel = true,
                "provider" => groups.provider = true,
                "event" => groups.event = true,
                "code" => groups.code = true,
                other => {
                    return Err(bad(
                        "group_by",
                        format!("cannot group by {other:?}: use channel, provider, event, code"),
                    ))
                }
            }
        }
        Ok(StatsRequest {
            from,
            to,
            bucket,
            groups,
        })
    }
}

/// Counts of sends, failures and receipts over a time range, from the
/// statistics kept as outcomes are recorded (never a table scan).
#[utoipa::path(get, path = "/api/stats", tag = "messages", params(StatsQuery),
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn stats(
    State(state): State<AppState>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Stats>, ApiError> {
    let Query(q) = query?;
    let r = StatsRequest::parse(&q, state.clock.now())?;
    let rows = state.store.stats(r.from, r.to, r.bucket, r.groups).await?;
    Ok(Json(Stats {
        from: r.from,
        to: r.to,
        latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
        rows,
    }))
}
