//! A scenario's recent calls, for the dry run of delivery rules.

use callhook_core::{Call, Visit};
use sqlx::types::Json;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::row::CallRow;
use crate::StoreError;

/// A stored call and whether it was its caller's first to the scenario (no
/// earlier call from the caller reached it: `first_call`).
pub struct RecentCall {
    pub call: Call,
    pub first_call: bool,
}

/// The scenario's last `limit` calls, newest first: one statement (the
/// `first_call` look-up is one probe of `calls_scenario_caller_idx` a call).
pub async fn recent(
    e: impl PgExecutor<'_>,
    scenario_id: Uuid,
    limit: i64,
) -> Result<Vec<RecentCall>, StoreError> {
    let rows = sqlx::query!(
        r#"select id, scenario_id, caller, callee, started_at, started_at_estimated,
                  to_jsonb(c) as "visit!: Json<Visit>",
                  start_hash, end_hash, status, duration, file_id, link, ended_at,
                  -- as ingest saw it: an earlier call started before this one, or at the
                  -- same moment and was stored before it
                  not exists (select 1 from calls e
                               where e.scenario_id = c.scenario_id and e.caller = c.caller
                                 and e.started_at <= c.started_at and e.id <> c.id
                                 and (e.started_at < c.started_at or e.created_at < c.created_at))
                    as "first_call!"
             from calls c
            where scenario_id = $1
            order by started_at desc
            limit $2"#,
        scenario_id,
        limit,
    )
    .fetch_all(e)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RecentCall {
            first_call: r.first_call,
            call: CallRow {
                id: r.id,
                scenario_id: r.scenario_id,
                caller: r.caller,
                callee: r.callee,
                started_at: r.started_at,
                started_at_estimated: r.started_at_estimated,
                visit: r.visit,
                start_hash: r.start_hash,
                end_hash: r.end_hash,
                status: r.status,
                duration: r.duration,
                file_id: r.file_id,
                link: r.link,
                ended_at: r.ended_at,
            }
            .call(),
        })
        .collect())
}
