//! Gauges read from the database on a timer, so a scrape never scans a
//! table: it renders what the last refresh read.

use std::sync::Weak;
use std::time::Duration;

use sqlx::PgPool;

/// Refreshes every gauge now and then every `interval`, until `alive` is
/// gone (the app stopped).
pub(crate) fn spawn_refresher(pool: PgPool, interval: Duration, alive: Weak<()>) {
    tokio::spawn(async move {
        loop {
            if alive.upgrade().is_none() || pool.is_closed() {
                return;
            }
            refresh_all(&pool).await;
            tokio::time::sleep(interval).await;
        }
    });
}

async fn refresh_all(pool: &PgPool) {
    refresh(pool).await;
    endpoints(pool).await;
    queue_health(pool).await;
}

/// Pending deliveries and the age of the oldest, from the partial index of
/// pending rows (its size follows the backlog, not the history).
async fn refresh(pool: &PgPool) {
    match callhook_store::queue::backlog(pool).await {
        Ok(b) => {
            metrics::gauge!("callhook_pending_deliveries").set(b.pending as f64);
            metrics::gauge!("callhook_oldest_pending_age_seconds").set(b.oldest_age_seconds);
        }
        Err(e) => tracing::warn!(error = %e, "could not read the backlog for /metrics"),
    }
    // By priority class only: the label's values are four, however many
    // scenarios there are.
    match callhook_store::queue::oldest_due_by_class(pool).await {
        Ok(ages) => {
            for class in callhook_core::PriorityClass::ALL {
                let age = ages
                    .iter()
                    .find(|(c, _)| *c == class)
                    .map_or(0.0, |(_, a)| *a);
                metrics::gauge!("callhook_oldest_due_age_seconds", "class" => class.as_str())
                    .set(age);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the due ages for /metrics"),
    }
}

/// Endpoints by state (`callhook_endpoints{state}`).
async fn endpoints(pool: &PgPool) {
    match callhook_store::health::count_by_state(pool).await {
        Ok(counts) => {
            for (state, n) in counts {
                metrics::gauge!("callhook_endpoints", "state" => state.as_str()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count endpoints for /metrics"),
    }
}

/// What kills a Postgres queue over months: transaction-id age, the oldest
/// open transaction, dead tuples and the last vacuum of the queue tables.
async fn queue_health(pool: &PgPool) {
    match callhook_store::upkeep::queue_health(pool).await {
        Ok(h) => {
            metrics::gauge!("callhook_db_xid_age").set(h.xid_age as f64);
            metrics::gauge!("callhook_db_oldest_transaction_seconds")
                .set(h.oldest_transaction_seconds);
            let now = chrono::Utc::now();
            for t in h.tables {
                let table = t.table.clone();
                metrics::gauge!("callhook_table_dead_tuples", "table" => table.clone())
                    .set(t.dead_tuples as f64);
                metrics::gauge!("callhook_table_live_tuples", "table" => table.clone())
                    .set(t.live_tuples as f64);
                if let Some(at) = t.last_autovacuum {
                    metrics::gauge!("callhook_table_since_vacuum_seconds", "table" => table)
                        .set((now - at).num_milliseconds() as f64 / 1000.0);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read queue health for /metrics"),
    }
}
