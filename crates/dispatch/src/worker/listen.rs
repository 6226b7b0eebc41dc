//! `LISTEN` for new deliveries, to wake the claim loop.

use std::sync::Arc;
use std::time::Duration;

use callhook_store::{queue, StoreError};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::db_backoff;

/// Listens for new-delivery notifications and wakes the claim loop. The
/// connection is re-established with backoff; every (re)connect also wakes
/// the loop, since notifications sent while disconnected are lost.
pub(super) async fn listen(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = db_backoff();
    loop {
        let attempt = async {
            let mut listener = queue::subscribe(&pool).await?;
            wake.notify_one();
            loop {
                // `try_recv` returns `None` when the connection dropped.
                match listener.try_recv().await.map_err(StoreError::from)? {
                    Some(_) => wake.notify_one(),
                    None => return Ok::<(), StoreError>(()),
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            () = shutdown.cancelled() => return,
        };
        let pause = match result {
            Ok(()) => {
                backoff = db_backoff();
                Duration::from_millis(100)
            }
            Err(e) => {
                tracing::debug!(error = %e, "notification listener failed");
                backoff.next().unwrap_or(Duration::from_secs(5))
            }
        };
        tracing::warn!(retry_in = ?pause, "notification listener disconnected; polling meanwhile");
        wake.notify_one();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
