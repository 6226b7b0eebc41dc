//! The bench's own SQL: the backlog preload into the server's tables, and the
//! Postgres commit-rate probe on scratch tables in a schema of its own.
//!
//! This is the one place outside `crates/store` with SQL, on purpose: it is a
//! measuring tool, not the service, and the probe's tables exist only while it
//! runs, so these are runtime-checked `sqlx::query` calls, not the macros.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) async fn connect(url: &str, max: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .context("connecting to --database-url (the server's database)")
}

/// Inserts `rows` calls, each with one `pending` during-call delivery due in a
/// day, in two set-based statements, then `ANALYZE`s both tables (as
/// autovacuum would soon after such a load), so the server plans against the
/// table's real size. Call ids start with `prefix`.
pub(crate) async fn preload(
    pool: &PgPool,
    scenario_id: Uuid,
    callee: &str,
    prefix: &str,
    rows: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    insert_backlog(&mut tx, scenario_id, callee, prefix, rows, false).await?;
    tx.commit().await.context("committing the preload")?;
    analyze(pool).await
}

/// `rows` calls to `callee` of the scenario, each with one pending
/// during-call delivery: due in a day, or `parked` (no due time). Call ids
/// start with `prefix`. Two set-based statements.
async fn insert_backlog(
    tx: &mut sqlx::PgConnection,
    scenario_id: Uuid,
    callee: &str,
    prefix: &str,
    rows: i64,
    parked: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into calls (id, scenario_id, caller, callee, started_at, start_hash)
         select $1 || g, $2, '79990000000', $3, now(), 'bench'
           from generate_series(1, $4::bigint) g",
    )
    .bind(prefix)
    .bind(scenario_id)
    .bind(callee)
    .bind(rows)
    .execute(&mut *tx)
    .await
    .context("preloading calls")?;
    // About the size of a real during-call payload, so the table is as large
    // on disk as a real backlog of this many rows.
    sqlx::query(
        "insert into deliveries (id, call_id, scenario_id, kind, payload, state, next_attempt_at, parked)
         select gen_random_uuid(), $1 || g, $2, 'during_call',
                '{\"id\":\"' || $1 || g || '\",\"pad\":\"' || repeat('x', 600) || '\"}',
                'pending', case when $4 then null else now() + interval '1 day' end, $4
           from generate_series(1, $3::bigint) g",
    )
    .bind(prefix)
    .bind(scenario_id)
    .bind(rows)
    .bind(parked)
    .execute(&mut *tx)
    .await
    .context("preloading deliveries")?;
    Ok(())
}

/// Statistics as autovacuum would soon have them after such a load, so
/// the server plans against the tables' real size.
async fn analyze(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("analyze calls").execute(pool).await?;
    sqlx::query("analyze deliveries").execute(pool).await?;
    Ok(())
}

/// Inserts `rows` calls of a new scenario whose endpoints are paused (its
/// receiver is dead), each with a during-call delivery parked behind it, as
/// a receiver down for days leaves them; returns the scenario's id.
pub(crate) async fn preload_parked(
    pool: &PgPool,
    run: &str,
    prefix: &str,
    rows: i64,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into scenarios (id, name, during_call_url, after_call_url, signing_secret)
         values ($1, $2, 'http://127.0.0.1:9/dead', 'http://127.0.0.1:9/dead',
                 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')",
    )
    .bind(id)
    .bind(format!("bench-{run}-dead"))
    .execute(&mut *tx)
    .await
    .context("creating the dead scenario")?;
    sqlx::query(
        "insert into endpoints (scenario_id, kind, state, failing_since, next_probe_at)
         values ($1, 'during_call', 'paused', now(), now() + interval '1 day'),
                ($1, 'after_call', 'paused', now(), now() + interval '1 day')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .context("pausing the dead scenario's endpoints")?;
    insert_backlog(&mut tx, id, "70000000000", prefix, rows, true).await?;
    tx.commit().await.context("committing the preload")?;
    analyze(pool).await?;
    Ok(id)
}

/// `rows` calls of the scenario, each with one `failed` during-call
/// delivery (an attempt made, the schedule spent): what a bulk recover
/// puts back. One transaction.
pub(crate) async fn preload_failed(
    pool: &PgPool,
    scenario_id: Uuid,
    callee: &str,
    prefix: &str,
    rows: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    insert_backlog(&mut tx, scenario_id, callee, prefix, rows, false).await?;
    sqlx::query(
        "update deliveries set state = 'failed', next_attempt_at = null, attempt_count = 1,
                               last_status = 500, updated_at = now()
          where scenario_id = $1 and call_id like $2 || '%'",
    )
    .bind(scenario_id)
    .bind(prefix)
    .execute(&mut *tx)
    .await
    .context("failing the preloaded deliveries")?;
    tx.commit().await.context("committing the preload")?;
    analyze(pool).await
}

/// Deletes a scenario the bench made.
pub(crate) async fn delete_scenario(pool: &PgPool, id: Uuid) -> anyhow::Result<()> {
    sqlx::query("delete from scenarios where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .context("deleting the dead scenario")?;
    Ok(())
}

/// The claim statement's timings from `pg_stat_statements`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claims {
    pub calls: i64,
    pub mean_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
}

impl Claims {
    /// `pg_stat_statements` keeps no percentiles: mean + 2.33 standard
    /// deviations is the 99th percentile of a normal distribution, an
    /// estimate (the real tail is longer).
    pub(crate) fn p99_estimate_ms(&self) -> f64 {
        self.mean_ms + 2.33 * self.stddev_ms
    }
}

/// Reads the claim statement's statistics, when `pg_stat_statements` is
/// loaded (`shared_preload_libraries`) and created in the database.
pub(crate) struct ClaimStats {
    available: bool,
}

impl ClaimStats {
    pub(crate) async fn new(pool: &PgPool) -> Self {
        let available =
            sqlx::query("select 1 from pg_extension where extname = 'pg_stat_statements'")
                .fetch_optional(pool)
                .await
                .ok()
                .flatten()
                .is_some();
        if !available {
            eprintln!(
                "pg_stat_statements is not installed in the database: no claim statement timings"
            );
        }
        Self { available }
    }

    pub(crate) async fn reset(&self, pool: &PgPool) {
        if self.available {
            let _ = sqlx::query("select pg_stat_statements_reset()")
                .execute(pool)
                .await;
        }
    }

    pub(crate) async fn read(&self, pool: &PgPool) -> Option<Claims> {
        if !self.available {
            return None;
        }
        let row: (i64, f64, f64, f64) = sqlx::query_as(
            "select calls, mean_exec_time, max_exec_time, stddev_exec_time
               from pg_stat_statements
              where query like '%for update of d skip locked%' and query like '%lease_token%'
              order by calls desc limit 1",
        )
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()?;
        Some(Claims {
            calls: row.0,
            mean_ms: row.1,
            max_ms: row.2,
            stddev_ms: row.3,
        })
    }
}

/// The WAL position in bytes (`pg_current_wal_lsn()`): two readings give
/// the WAL written between them, by every session.
pub(crate) async fn wal_position(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(pool)
        .await
        .context("reading the WAL position")
}

/// Removes what [`preload`] inserted (deliveries first: no cascade to check).
pub(crate) async fn delete_preload(pool: &PgPool, prefix: &str) -> anyhow::Result<u64> {
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let mut tx = pool.begin().await?;
    sqlx::query("delete from deliveries where call_id like $1")
        .bind(&pattern)
        .execute(&mut *tx)
        .await
        .context("deleting preloaded deliveries")?;
    let calls = sqlx::query("delete from calls where id like $1")
        .bind(&pattern)
        .execute(&mut *tx)
        .await
        .context("deleting preloaded calls")?;
    tx.commit().await?;
    Ok(calls.rows_affected())
}

/// State, attempts and last error of a call's delivery, for a hint when the
/// first webhook does not arrive (`last_error` = `blocked_destination` says
/// loopback receivers are not allowed).
pub(crate) async fn delivery_outcome(url: &str, call_id: &str) -> anyhow::Result<Option<String>> {
    let pool = connect(url, 1).await?;
    let row: Option<(String, i32, Option<String>)> = sqlx::query_as(
        "select state, attempt_count, last_error from deliveries where call_id = $1",
    )
    .bind(call_id)
    .fetch_optional(&pool)
    .await
    .context("reading the delivery")?;
    pool.close().await;
    Ok(row.map(|(state, attempts, error)| {
        format!(
            "state {state}, {attempts} attempt(s), last error {}",
            error.as_deref().unwrap_or("none")
        )
    }))
}

mod probe;
pub(crate) use probe::{commit_rates, CommitRates};
