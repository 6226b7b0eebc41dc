//! Number pools: reserving a scenario's tracking numbers for website visits,
//! and attributing a call to the visit whose reservation covered it.
//!
//! A number is free once its latest reservation has ended
//! (`scenario_numbers.released_at` is in the past). Free numbers are handed
//! out least recently released first, each claimed with a row lock
//! (`FOR UPDATE SKIP LOCKED`), so concurrent visits never get the same free
//! number and never wait on one another. Reservations are history
//! (`number_reservations`): a call is attributed by the call's time.

use std::time::Duration;

use callhook_core::{FieldError, PhoneNumber, Visit};
use chrono::{DateTime, Utc};
use sqlx::postgres::types::PgInterval;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::calls::IngestError;
use crate::StoreError;

/// A number reserved for a visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub number: String,
    /// The reservation covers calls up to this moment (unless renewed).
    pub reserved_until: DateTime<Utc>,
    /// The pool was exhausted: another visit holds this number too.
    pub shared: bool,
    /// The visit already held the number (a heartbeat) and its reservation was extended.
    pub renewed: bool,
}

/// Reserves a number of the scenario's pool for the visit (`visit.visit_id`
/// must be set), or extends the visit's live reservation (a heartbeat keeps
/// the number). The reservation lasts `hold` from now.
///
/// Stays whole: one transaction (the pool locked, a live reservation renewed
/// or a number picked, the reservation recorded), statement after statement.
pub async fn reserve(
    pool: &PgPool,
    scenario_id: Uuid,
    visit: &Visit,
    hold: Duration,
) -> Result<Reservation, IngestError> {
    let visit_id = visit
        .visit_id
        .as_deref()
        .ok_or_else(|| FieldError::new("visit_id", "required", "visit_id is required"))?;
    let hold = PgInterval::try_from(hold)
        .map_err(|_| FieldError::new("hold", "invalid", "hold time out of range"))?;
    let fields = serde_json::to_value(visit).expect("a visit serialises");

    let mut tx = pool.begin().await?;
    let exists = sqlx::query_scalar!(
        "select 1 as \"one!\" from scenarios where id = $1",
        scenario_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if exists.is_none() {
        return Err(FieldError::new(
            "scenario_id",
            "unknown_scenario",
            format!("scenario {scenario_id} does not exist"),
        )
        .into());
    }
    // One visit's requests (a page's first heartbeats may race) are serialised
    // so it never holds two numbers; different visits never wait on this.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended($1, 0))",
        format!("callhook:visit:{scenario_id}:{visit_id}")
    )
    .execute(&mut *tx)
    .await?;

    if let Some(r) = renew(&mut tx, scenario_id, visit_id, &fields, &hold).await? {
        tx.commit().await?;
        return Ok(r);
    }

    let free = sqlx::query_scalar!(
        "select number from scenario_numbers
          where scenario_id = $1 and not is_static and released_at <= now()
          order by released_at, number
          limit 1
          for update skip locked",
        scenario_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (number, shared) = match free {
        Some(n) => (n, false),
        None => {
            // Exhausted: share the number whose reservation is oldest (ends
            // soonest: its visit's last heartbeat is the longest ago).
            let oldest = sqlx::query_scalar!(
                "select number from scenario_numbers
                  where scenario_id = $1 and not is_static
                  order by released_at, number
                  limit 1
                  for update",
                scenario_id
            )
            .fetch_optional(&mut *tx)
            .await?;
            match oldest {
                Some(n) => (n, true),
                None => {
                    return Err(FieldError::new(
                        "scenario_id",
                        "empty_pool",
                        format!("scenario {scenario_id} has no pool numbers to reserve (only static numbers or none); add numbers to it"),
                    )
                    .into())
                }
            }
        }
    };
    let reserved_until = sqlx::query_scalar!(
        "insert into number_reservations
                (id, number, scenario_id, visit_id, visit, reserved_from, reserved_until, shared)
         values ($1, $2, $3, $4, jsonb_strip_nulls($5), date_trunc('second', now()), now() + $6, $7)
         returning reserved_until",
        Uuid::now_v7(),
        number,
        scenario_id,
        visit_id,
        fields,
        hold,
        shared
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "update scenario_numbers set released_at = greatest(released_at, $2) where number = $1",
        number,
        reserved_until
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reservation {
        number,
        reserved_until,
        shared,
        renewed: false,
    })
}

/// Extends the visit's live reservation, if it has one on a number still in
/// the pool; fields given now are merged over the stored ones.
async fn renew(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    visit_id: &str,
    fields: &serde_json::Value,
    hold: &PgInterval,
) -> Result<Option<Reservation>, StoreError> {
    let Some(live) = sqlx::query!(
        "select id, number, shared from number_reservations
          where scenario_id = $1 and visit_id = $2 and reserved_until > now()
          order by reserved_from desc
          limit 1
          for update",
        scenario_id,
        visit_id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let still_pooled = sqlx::query_scalar!(
        "update scenario_numbers set released_at = greatest(released_at, now() + $3)
          where number = $1 and scenario_id = $2 and not is_static
          returning released_at",
        live.number,
        scenario_id,
        hold.clone()
    )
    .fetch_optional(&mut *tx)
    .await?;
    if still_pooled.is_none() {
        // The number left the pool (removed, or made static): end this
        // reservation; the visit gets another number.
        sqlx::query!(
            "update number_reservations set reserved_until = greatest(reserved_from, now()), updated_at = now()
              where id = $1",
            live.id
        )
        .execute(&mut *tx)
        .await?;
        return Ok(None);
    }
    let reserved_until = sqlx::query_scalar!(
        "update number_reservations
            set reserved_until = now() + $2, visit = visit || jsonb_strip_nulls($3), updated_at = now()
          where id = $1
          returning reserved_until",
        live.id,
        hold.clone(),
        fields
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(Reservation {
        number: live.number,
        reserved_until,
        shared: live.shared,
        renewed: true,
    }))
}

/// The visit fields a call to `number` at `at` belongs to: a static number's
/// fixed marker and source levels, or the fields of the visit whose
/// reservation covered the number then (the latest started, where several
/// did). `None`: nobody held the number then.
pub async fn attribute(
    conn: &mut PgConnection,
    scenario_id: Uuid,
    number: &PhoneNumber,
    at: DateTime<Utc>,
) -> Result<Option<Visit>, StoreError> {
    let mut found = attribute_many(conn, &[(scenario_id, number, at)]).await?;
    Ok(found.pop().flatten())
}

/// The visit fields calls are stored and sent with, each call given as
/// (scenario, number, time, its event's visit fields), in one query. An
/// event that names its visit (`visit_id`) is taken as is; otherwise the call
/// is attributed from the number's reservation (or static fields) at the
/// call's time, the event's own fields winning. Returns, per call, `true`
/// when nothing covered the number then.
pub(crate) async fn attribute_visits(
    conn: &mut PgConnection,
    calls: &mut [(Uuid, &PhoneNumber, DateTime<Utc>, &mut Visit)],
) -> Result<Vec<bool>, StoreError> {
    let mut unattributed = vec![false; calls.len()];
    let asked: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].3.visit_id.is_none())
        .collect();
    if asked.is_empty() {
        return Ok(unattributed);
    }
    let lookups: Vec<(Uuid, &PhoneNumber, DateTime<Utc>)> = asked
        .iter()
        .map(|&i| (calls[i].0, calls[i].1, calls[i].2))
        .collect();
    let found = attribute_many(conn, &lookups).await?;
    for (i, found) in asked.into_iter().zip(found) {
        match found {
            Some(visit) => {
                let given = std::mem::take(&mut *calls[i].3);
                *calls[i].3 = given.or(visit);
            }
            None => unattributed[i] = true,
        }
    }
    Ok(unattributed)
}

/// [`attribute`] for many calls (scenario, number, time) in one query: one
/// answer per call, in order.
pub async fn attribute_many(
    conn: &mut PgConnection,
    calls: &[(Uuid, &PhoneNumber, DateTime<Utc>)],
) -> Result<Vec<Option<Visit>>, StoreError> {
    let ords: Vec<i32> = (0..calls.len())
        .map(|i| i32::try_from(i).expect("a batch holds at most 1000 calls"))
        .collect();
    let scenarios: Vec<Uuid> = calls.iter().map(|c| c.0).collect();
    let numbers: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
    let times: Vec<DateTime<Utc>> = calls.iter().map(|c| c.2).collect();
    // The number's static fields and the covering reservation together.
    let rows = sqlx::query!(
        r#"select t.ord as "ord!", coalesce(n.is_static, false) as "is_static!",
                  n.marker, n.source_level_1, n.source_level_2,
                  (select r.visit from number_reservations r
                    where r.number = t.number and r.reserved_from <= t.at and r.reserved_until >= t.at
                      and r.scenario_id = t.scenario_id
                    order by r.reserved_from desc, r.created_at desc
                    limit 1) as "visit: Json<Visit>"
             from unnest($1::int4[], $2::uuid[], $3::text[], $4::timestamptz[])
                  as t(ord, scenario_id, number, at)
             left join scenario_numbers n on n.number = t.number and n.scenario_id = t.scenario_id
            order by t.ord"#,
        &ords,
        &scenarios,
        &numbers as _,
        &times,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            if row.is_static {
                return Some(Visit {
                    marker: row.marker,
                    source_level_1: row.source_level_1,
                    source_level_2: row.source_level_2,
                    ..Visit::default()
                });
            }
            row.visit.map(|j| j.0)
        })
        .collect())
}

/// One number of a pool, as operators see it.
#[derive(Debug, Clone)]
pub struct PoolNumber {
    pub number: String,
    pub is_static: bool,
    pub marker: Option<String>,
    pub source_level_1: Option<String>,
    pub source_level_2: Option<String>,
    /// The live reservation (the latest started), if any.
    pub visit_id: Option<String>,
    pub reserved_until: Option<DateTime<Utc>>,
    pub shared: Option<bool>,
    /// When the latest reservation ended; `None` when never reserved.
    pub released_at: Option<DateTime<Utc>>,
}

/// A scenario's pool right now.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    /// Numbers that can be reserved (static ones excluded).
    pub size: i64,
    pub static_numbers: i64,
    pub reserved_now: i64,
    /// Reservations made shared since midnight in the scenario's zone.
    pub shared_today: i64,
    pub numbers: Vec<PoolNumber>,
}

/// The pool of a scenario with each number's state; `NotFound` for an
/// unknown scenario.
pub async fn status(pool: &PgPool, scenario_id: Uuid) -> Result<PoolStatus, StoreError> {
    let mut tx = pool.begin().await?;
    let timezone = sqlx::query_scalar!("select timezone from scenarios where id = $1", scenario_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let numbers = sqlx::query_as!(
        PoolNumber,
        r#"select n.number, n.is_static, n.marker, n.source_level_1, n.source_level_2,
                  r.visit_id as "visit_id?", r.reserved_until as "reserved_until?", r.shared as "shared?",
                  case when n.released_at = '-infinity' or n.released_at > now() then null
                       else n.released_at end as released_at
             from scenario_numbers n
             left join lateral (
                   select visit_id, reserved_until, shared from number_reservations
                    where number = n.number and scenario_id = n.scenario_id
                      and reserved_from <= now() and reserved_until > now()
                    order by reserved_from desc, created_at desc limit 1) r on not n.is_static
            where n.scenario_id = $1
            order by n.number"#,
        scenario_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let shared_today = sqlx::query_scalar!(
        r#"select count(*) as "n!" from number_reservations
            where scenario_id = $1 and shared
              and reserved_from >= date_trunc('day', now() at time zone $2) at time zone $2"#,
        scenario_id,
        timezone
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let static_numbers = numbers.iter().filter(|n| n.is_static).count() as i64;
    Ok(PoolStatus {
        size: numbers.len() as i64 - static_numbers,
        static_numbers,
        reserved_now: numbers.iter().filter(|n| n.visit_id.is_some()).count() as i64,
        shared_today,
        numbers,
    })
}
