//! Upkeep's SQL: the leader lock, the day partitions of `delivery_attempts`
//! (created ahead, dropped by retention), and what operators watch to keep
//! a Postgres queue healthy for months (xid age, dead tuples, vacuum, old
//! transactions).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::StoreError;

/// The advisory lock the upkeep leader holds for its session ("callhook
/// upkeep" as a number).
const LEADER_LOCK: i64 = 0x6361_6c6c_686f_6f6b;

/// Tries to become (or confirms being) the upkeep leader on this session:
/// at most one session of the database holds the lock; it is released when
/// the session ends, so a dead leader is replaced at the next try.
pub async fn try_lead(conn: &mut PgConnection) -> Result<bool, StoreError> {
    // Re-taking a held session lock stacks it; check first.
    let held = sqlx::query_scalar!(
        r#"select exists (select 1 from pg_locks
                           where locktype = 'advisory' and pid = pg_backend_pid() and granted
                             and ((classid::bigint << 32) | objid::bigint) = $1) as "held!""#,
        LEADER_LOCK
    )
    .fetch_one(&mut *conn)
    .await?;
    if held {
        return Ok(true);
    }
    Ok(
        sqlx::query_scalar!(r#"select pg_try_advisory_lock($1) as "got!""#, LEADER_LOCK)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// One queue table's vacuum health.
#[derive(Debug, Clone)]
pub struct TableHealth {
    pub table: String,
    pub dead_tuples: i64,
    pub live_tuples: i64,
    pub last_autovacuum: Option<DateTime<Utc>>,
}

/// What kills a Postgres queue over months, read at scrape time.
#[derive(Debug, Clone)]
pub struct QueueHealth {
    /// `age(datfrozenxid)` of this database: transactions until wraparound
    /// protection is ~2 billion minus this.
    pub xid_age: i64,
    /// The oldest open transaction's age in seconds (it holds back vacuum).
    pub oldest_transaction_seconds: f64,
    pub tables: Vec<TableHealth>,
}

pub async fn queue_health(e: impl PgExecutor<'_> + Copy) -> Result<QueueHealth, StoreError> {
    let db = sqlx::query!(
        r#"select age(datfrozenxid)::bigint as "xid_age!",
                  coalesce((select extract(epoch from now() - min(xact_start))
                              from pg_stat_activity
                             where datname = current_database() and xact_start is not null
                               and pid <> pg_backend_pid()), 0)::float8 as "oldest!"
             from pg_database where datname = current_database()"#
    )
    .fetch_one(e)
    .await?;
    let tables = sqlx::query_as!(
        TableHealth,
        r#"select relname as "table!", n_dead_tup as "dead_tuples!", n_live_tup as "live_tuples!",
                  greatest(last_autovacuum, last_vacuum) as last_autovacuum
             from pg_stat_user_tables
            where relname in ('deliveries', 'calls', 'endpoints')
               or relname like 'delivery\_attempts%'
            order by relname"#
    )
    .fetch_all(e)
    .await?;
    Ok(QueueHealth {
        xid_age: db.xid_age,
        oldest_transaction_seconds: db.oldest,
        tables,
    })
}

/// `delivery_attempts` is partitioned by UTC day: `delivery_attempts_YYYYMMDD`
/// holds the attempts started that day.
fn partition_name(day: NaiveDate) -> String {
    format!("delivery_attempts_{}", day.format("%Y%m%d"))
}

/// The day partitions of `delivery_attempts` (the default one aside), oldest
/// first.
pub async fn attempt_partitions(e: impl PgExecutor<'_>) -> Result<Vec<NaiveDate>, StoreError> {
    let names = sqlx::query_scalar!(
        r#"select c.relname as "name!"
             from pg_inherits i join pg_class c on c.oid = i.inhrelid
            where i.inhparent = 'delivery_attempts'::regclass
            order by c.relname"#
    )
    .fetch_all(e)
    .await?;
    Ok(names
        .iter()
        .filter_map(|n| {
            let day = n.strip_prefix("delivery_attempts_")?;
            NaiveDate::parse_from_str(day, "%Y%m%d").ok()
        })
        .collect())
}

/// Creates the day partitions from `from` for `days` days that do not exist
/// yet; returns the days created. A day whose rows already sit in the
/// default partition (upkeep was away that long) cannot be created: it is
/// skipped with a warning, and its rows stay where they are.
pub async fn create_attempt_partitions(
    pool: &PgPool,
    from: NaiveDate,
    days: u32,
) -> Result<Vec<NaiveDate>, StoreError> {
    let existing = attempt_partitions(pool).await?;
    let mut created = Vec::new();
    for day in from.iter_days().take(days as usize) {
        if existing.contains(&day) {
            continue;
        }
        let next = day.succ_opt().expect("a day after");
        // Names and bounds come from dates, never from input.
        let ddl = format!(
            "create table if not exists {} partition of delivery_attempts \
             for values from ('{} 00:00:00+00') to ('{} 00:00:00+00')",
            partition_name(day),
            day.format("%Y-%m-%d"),
            next.format("%Y-%m-%d"),
        );
        match sqlx::query(&ddl).execute(pool).await {
            Ok(_) => created.push(day),
            Err(e) => {
                tracing::warn!(error = %e, %day, "could not create the day's attempts partition; its rows stay in the default partition")
            }
        }
    }
    Ok(created)
}

/// Drops the day partitions of days before `cutoff` (retention: a whole day
/// of attempts at once, no row deletes). Waits at most 2 s for the lock on
/// `delivery_attempts`, so it never queues the dispatchers behind it; a
/// partition it could not drop is dropped at the next pass. Returns the
/// days dropped.
pub async fn drop_attempt_partitions_before(
    pool: &PgPool,
    cutoff: NaiveDate,
) -> Result<Vec<NaiveDate>, StoreError> {
    let mut dropped = Vec::new();
    for day in attempt_partitions(pool).await? {
        if day >= cutoff {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::query("set local lock_timeout = '2s'")
            .execute(&mut *tx)
            .await?;
        let ddl = format!("drop table if exists {}", partition_name(day));
        match sqlx::query(&ddl).execute(&mut *tx).await {
            Ok(_) => {
                tx.commit().await?;
                dropped.push(day);
            }
            Err(e) => {
                tracing::warn!(error = %e, %day, "could not drop an old attempts partition now; trying at the next pass");
            }
        }
    }
    Ok(dropped)
}
