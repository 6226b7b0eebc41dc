//! The Postgres commit-rate probe: the two transactions every delivery
//! costs, on scratch tables in a schema of its own, from many connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgPool;
use uuid::Uuid;

use super::connect;

/// Commits per second of the two transactions each delivery costs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitRates {
    /// Insert one call + one delivery + `pg_notify`, one transaction.
    pub ingest_per_s: f64,
    /// Update one delivery + insert its attempt row, one statement.
    pub complete_per_s: f64,
}

impl CommitRates {
    /// Deliveries per second if Postgres did nothing else: each needs one of each.
    pub(crate) fn per_delivery(&self) -> f64 {
        if self.ingest_per_s > 0.0 && self.complete_per_s > 0.0 {
            1.0 / (1.0 / self.ingest_per_s + 1.0 / self.complete_per_s)
        } else {
            0.0
        }
    }
}

/// Runs each transaction from `conns` connections for `secs` against copies of
/// `calls`, `deliveries` and `delivery_attempts` (indexes, defaults and checks
/// included) in a scratch schema, dropped afterwards.
pub(crate) async fn commit_rates(
    url: &str,
    conns: usize,
    secs: Duration,
    run: &str,
) -> anyhow::Result<CommitRates> {
    let pool = connect(url, conns as u32 + 1).await?;
    let schema = format!("callhook_bench_{run}");
    let setup = format!(
        "create schema {s};
         create table {s}.calls (like public.calls including all);
         create table {s}.deliveries (like public.deliveries including all,
             foreign key (call_id) references {s}.calls (id) on delete cascade);
         create table {s}.delivery_attempts (like public.delivery_attempts including all,
             foreign key (delivery_id) references {s}.deliveries (id) on delete cascade);",
        s = schema
    );
    sqlx::raw_sql(&setup)
        .execute(&pool)
        .await
        .context("creating the probe's scratch tables")?;
    let result = probe(&pool, &schema, conns, secs).await;
    let drop = sqlx::raw_sql(&format!("drop schema {schema} cascade"))
        .execute(&pool)
        .await;
    pool.close().await;
    let rates = result?;
    drop.with_context(|| format!("dropping the probe's schema {schema}"))?;
    Ok(rates)
}

///
/// One commit-rate probe. Stays whole: its set-up, load and tear-down in order.
async fn probe(
    pool: &PgPool,
    schema: &str,
    conns: usize,
    secs: Duration,
) -> anyhow::Result<CommitRates> {
    let insert_call = format!(
        "insert into {schema}.calls (id, caller, callee, started_at, start_hash)
         values ($1, '79990000000', '78005552233', now(), 'probe')"
    );
    let insert_delivery = format!(
        "insert into {schema}.deliveries (id, call_id, kind, payload, next_attempt_at)
         values ($1, $2, 'during_call', $3, now())"
    );
    let complete = format!(
        "with d as (
             update {schema}.deliveries
                set state = 'delivered', attempt_count = attempt_count + 1, next_attempt_at = null,
                    last_status = 200, delivered_at = now(), updated_at = now()
              where id = $1
          returning id, attempt_count)
         insert into {schema}.delivery_attempts
                (delivery_id, attempt, url, started_at, duration_ms, response_status, response_body)
         select id, attempt_count, 'http://127.0.0.1/hook', now(), 1, 200, 'ok' from d"
    );
    let payload = format!("{{\"id\":\"probe\",\"pad\":\"{}\"}}", "x".repeat(600));

    // Ingest-like: every worker keeps the delivery ids it made, for the second probe.
    let (ids, ingest_took) = for_a_while(conns, secs, {
        let pool = pool.clone();
        move |w, i| {
            let pool = pool.clone();
            let (insert_call, insert_delivery, payload) = (
                insert_call.clone(),
                insert_delivery.clone(),
                payload.clone(),
            );
            async move {
                let call_id = format!("p{w}-{i}");
                let id = Uuid::now_v7();
                let mut tx = pool.begin().await?;
                sqlx::query(&insert_call)
                    .bind(&call_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&insert_delivery)
                    .bind(id)
                    .bind(&call_id)
                    .bind(&payload)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("select pg_notify('callhook_bench_probe', '')")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(id)
            }
        }
    })
    .await
    .context("ingest-like commit probe")?;
    anyhow::ensure!(!ids.is_empty(), "the ingest-like probe committed nothing");
    let ingest_per_s = ids.len() as f64 / ingest_took.as_secs_f64();

    // Completion-like: cycles over the ingested deliveries (a repeat adds attempt n+1).
    let ids = Arc::new(ids);
    let (completed, complete_took) = for_a_while(conns, secs, {
        let pool = pool.clone();
        move |w, i| {
            let pool = pool.clone();
            let (ids, complete) = (ids.clone(), complete.clone());
            async move {
                let id = ids[(w + i * conns) % ids.len()];
                sqlx::query(&complete).bind(id).execute(&pool).await?;
                Ok(id)
            }
        }
    })
    .await
    .context("completion-like commit probe")?;

    Ok(CommitRates {
        ingest_per_s,
        complete_per_s: completed.len() as f64 / complete_took.as_secs_f64(),
    })
}

/// Runs `op(worker, iteration)` in a loop on `conns` tasks until `secs` pass;
/// the results of every completed call, and the time it took.
async fn for_a_while<F, Fut>(
    conns: usize,
    secs: Duration,
    op: F,
) -> anyhow::Result<(Vec<Uuid>, Duration)>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Uuid>> + Send + 'static,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + secs;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..conns {
        let op = op.clone();
        workers.spawn(async move {
            let mut done = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                done.push(op(w, i).await?);
                i += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.context("probe worker panicked")??);
    }
    Ok((all, started.elapsed()))
}
