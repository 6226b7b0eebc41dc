//! Gauges computed at scrape time from the database.

use sqlx::PgPool;

/// Pending deliveries and the age of the oldest, from the partial index of
/// pending rows (its size follows the backlog, not the history).
pub async fn refresh(pool: &PgPool) {
    match callhook_store::queue::backlog(pool).await {
        Ok(b) => {
            metrics::gauge!("callhook_pending_deliveries").set(b.pending as f64);
            metrics::gauge!("callhook_oldest_pending_age_seconds").set(b.oldest_age_seconds);
        }
        Err(e) => tracing::warn!(error = %e, "could not read the backlog for /metrics"),
    }
}

/// Endpoints by state (`callhook_endpoints{state}`).
pub async fn endpoints(pool: &PgPool) {
    match callhook_store::health::count_by_state(pool).await {
        Ok(counts) => {
            for (state, n) in counts {
                metrics::gauge!("callhook_endpoints", "state" => state.as_str()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count endpoints for /metrics"),
    }
}
