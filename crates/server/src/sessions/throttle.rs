//! Sign-in throttling shared by every server process through the database.
//!
//! Each bucket (an account, a client address) gets some free failures, then a delay that
//! doubles with every further failure up to `3600 / max_failures_per_hour` seconds. The delay
//! bounds guessing to the hourly maximum without ever locking a real user out for long.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::entities::throttle;
use crate::credentials::limits::Limits;
use crate::error::{Error, Result};
use crate::tenants::TenantId;

const WINDOW: TimeDelta = TimeDelta::hours(1);

/// Refuses an attempt while any bucket's delay has not passed; returns the buckets that have a
/// counter, so that a success only clears what exists.
pub async fn check(db: &impl ConnectionTrait, tenant: TenantId, buckets: &[(&str, Limits)], now: DateTime<Utc>) -> Result<Vec<String>> {
    let rows = throttle::Entity::find()
        .filter(throttle::Column::TenantId.eq(tenant.0))
        .filter(throttle::Column::Bucket.is_in(buckets.iter().map(|(bucket, _)| *bucket)))
        .all(db)
        .await?;
    let mut wait_ms = 0u64;
    for row in &rows {
        let Some((_, limits)) = buckets.iter().find(|(bucket, _)| *bucket == row.bucket) else { continue };
        if now - row.window_started > WINDOW {
            continue;
        }
        let allowed_at = row.last_failure + limits.delay_after(u32::try_from(row.failures).unwrap_or(0));
        if now < allowed_at {
            wait_ms = std::cmp::max(wait_ms, u64::try_from((allowed_at - now).num_milliseconds()).unwrap_or(0));
        }
    }
    if wait_ms > 0 {
        return Err(Error::RateLimited { retry_after_secs: std::cmp::max(wait_ms.div_ceil(1000), 1) });
    }
    Ok(rows.into_iter().map(|row| row.bucket).collect())
}

/// Counts a failure, atomically, starting a new window when the old one is over.
pub async fn record_failure(db: &impl ConnectionTrait, tenant: TenantId, bucket: &str, now: DateTime<Utc>) -> Result<()> {
    let window_over = Expr::col(throttle::Column::WindowStarted).lt(now - WINDOW);
    let updated = throttle::Entity::update_many()
        .col_expr(
            throttle::Column::Failures,
            Expr::case(window_over.clone(), 1).finally(Expr::col(throttle::Column::Failures).add(1)).into(),
        )
        .col_expr(
            throttle::Column::WindowStarted,
            Expr::case(window_over, Expr::val(now)).finally(Expr::col(throttle::Column::WindowStarted)).into(),
        )
        .col_expr(throttle::Column::LastFailure, Expr::val(now))
        .filter(throttle::Column::TenantId.eq(tenant.0))
        .filter(throttle::Column::Bucket.eq(bucket))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        let row = throttle::ActiveModel {
            tenant_id: Set(tenant.0),
            bucket: Set(bucket.to_owned()),
            failures: Set(1),
            window_started: Set(now),
            last_failure: Set(now),
        };
        // A concurrent first failure from another process: count this one on top.
        throttle::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([throttle::Column::TenantId, throttle::Column::Bucket])
                    .value(throttle::Column::Failures, Expr::col((throttle::Entity, throttle::Column::Failures)).add(1))
                    .value(throttle::Column::LastFailure, Expr::val(now))
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Forgets a bucket's failures (after a successful sign-in of that account).
pub async fn clear(db: &impl ConnectionTrait, tenant: TenantId, bucket: &str) -> Result<()> {
    throttle::Entity::delete_by_id((tenant.0, bucket.to_owned())).exec(db).await?;
    Ok(())
}
