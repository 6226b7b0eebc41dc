//! Probes: while an endpoint is paused, one of its waiting deliveries is
//! sent every probe interval; its success makes the endpoint healthy again
//! (and its waiting deliveries drain).
//!
//! Every dispatcher looks once a second (or each probe interval, if
//! shorter); taking a probe moves the endpoint's next probe time in the same
//! statement, so only one process sends each. The same look cancels held
//! during-call deliveries whose call ended its grace ago (`call_ended`),
//! which claims never see.

use std::time::Duration;

use callhook_store::health;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{log_store_error, Crew, DispatchConfig};
use crate::seats::Seats;

pub(super) async fn take_probes(
    pool: PgPool,
    config: DispatchConfig,
    crew: Crew,
    seats: Seats,
    shutdown: CancellationToken,
) {
    let interval = config.health.policy.probe_interval;
    let tick = Duration::from_secs(1)
        .min(interval / 2)
        .max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = shutdown.cancelled() => return,
        }
        match callhook_store::queue::expire_held(&pool).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("callhook_deliveries_total", "kind" => "during_call", "outcome" => "cancelled")
                    .increment(n);
                tracing::info!(
                    deliveries = n,
                    "held during-call webhooks expired: their calls ended"
                );
            }
            Err(e) => log_store_error(&e, "expiring held during-call webhooks", tick),
        }
        let probes = match health::take_probes(&pool, config.lease, interval).await {
            Ok(p) => p,
            Err(e) => {
                log_store_error(&e, "taking probes", tick);
                continue;
            }
        };
        for row in probes {
            let seat = tokio::select! {
                s = seats.take() => match s {
                    Some(s) => s,
                    None => return, // the dispatcher stopped
                },
                () = shutdown.cancelled() => {
                    // Given back with the rest at shutdown.
                    crew.track(&row);
                    return;
                }
            };
            tracing::info!(delivery_id = %row.id, scenario_id = ?row.scenario_id, kind = %row.kind, "probing a paused endpoint");
            crew.spawn(row, seat, None);
        }
    }
}
