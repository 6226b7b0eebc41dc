//! Upkeep's SQL: the leader lock, and what operators watch to keep a
//! Postgres queue healthy for months (xid age, dead tuples, vacuum, old
//! transactions).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

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
