//! Adaptive in-flight caps: a receiver that answers `429`, `503`, times out
//! or keeps its host busy longer than a delivery may wait for it
//! (`Observed::Busy`) gets fewer webhooks at once, and more again as it
//! recovers.
//!
//! Additive increase, multiplicative decrease, per endpoint and across
//! processes (`endpoints.cap`): a batch of results with a slow-down signal
//! for an endpoint halves its cap (at most once a second, so one burst of
//! timeouts counts once); a batch with only successes raises a lowered cap
//! by one (at most every 250 ms) until it is back at its maximum (`cap` null
//! again). A healthy endpoint at its maximum costs nothing here.

use std::collections::BTreeMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::health::Seen;
use crate::StoreError;

/// Applies this batch's signals to its endpoints' caps: one statement, none
/// when nothing can change (no signal to slow down, and no endpoint of the
/// batch below its maximum: `any_capped`, read by the completion).
pub(super) async fn adjust_caps(
    tx: &mut PgConnection,
    seen: &[Seen<'_>],
    any_capped: bool,
    default_cap: i32,
) -> Result<(), StoreError> {
    // Per endpoint: did anything ask to slow down?
    let mut slow: BTreeMap<(Uuid, &'static str), bool> = BTreeMap::new();
    for s in seen {
        *slow.entry((s.scenario_id, s.kind.as_str())).or_default() |= s.seen.asks_to_slow_down();
    }
    if slow.is_empty() || !(any_capped || slow.values().any(|&s| s)) {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(slow.len());
    let mut kinds = Vec::with_capacity(slow.len());
    let mut slows = Vec::with_capacity(slow.len());
    for ((id, kind), s) in slow {
        ids.push(id);
        kinds.push(kind);
        slows.push(s);
    }
    sqlx::query!(
        r#"update endpoints e
              set cap = case when t.slow
                             then greatest(1, coalesce(e.cap, e.max_in_flight, $4) / 2)
                             when e.cap + 1 >= coalesce(e.max_in_flight, $4) then null
                             else e.cap + 1 end,
                  cap_changed_at = now()
             from unnest($1::uuid[], $2::text[], $3::bool[]) as t(scenario_id, kind, slow)
            where e.scenario_id = t.scenario_id and e.kind = t.kind
              and case when t.slow
                       then coalesce(e.cap, e.max_in_flight, $4) > 1
                            and (e.cap is null or e.cap_changed_at < now() - interval '1 second')
                       else e.cap is not null and e.cap_changed_at < now() - interval '250 milliseconds'
                  end"#,
        &ids,
        &kinds as &[&str],
        &slows,
        default_cap,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
