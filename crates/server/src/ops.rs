//! Operations: health checks and Prometheus metrics.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::ConnectionTrait;

use crate::state::AppState;

/// Routes served on the public listener.
pub fn health_router() -> Router<AppState> {
    Router::new().route("/-/health/live/", get(live)).route("/-/health/ready/", get(ready))
}

/// Routes served on the metrics listener.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(render_metrics)).with_state(state)
}

async fn live() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn ready(State(state): State<AppState>) -> StatusCode {
    match state.db.execute_unprepared("SELECT 1").await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = crate::db::pool_stats(&state.db);
    metrics::gauge!("gatehouse_db_pool_connections", "state" => "open").set(f64::from(size));
    metrics::gauge!("gatehouse_db_pool_connections", "state" => "idle").set(idle as f64);
    // Failures first: a statement failing between the two reads must not make `ok` negative.
    let failed = state.statements.failed();
    metrics::counter!("gatehouse_db_statements_total", "outcome" => "ok").absolute(state.statements.run().saturating_sub(failed));
    metrics::counter!("gatehouse_db_statements_total", "outcome" => "failed").absolute(failed);
    let checks = state.auth_cache.stats();
    metrics::counter!("gatehouse_auth_cache_checks_total", "answer" => "memory").absolute(checks.hits);
    metrics::counter!("gatehouse_auth_cache_checks_total", "answer" => "database").absolute(checks.misses);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// The process-wide metrics recorder; installed once, shared by every server in the process.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; the handle then renders
            // nothing, which the metrics tests would catch.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
