//! The fair claim: due deliveries, round the endpoints that have some.
//!
//! The rules (docs/scheduling.md has the why):
//!
//! - **The round.** `endpoint_queue` holds the endpoints with pending
//!   deliveries that have a due time; a trigger on `deliveries` adds them.
//!   A claim locks up to `limit` of those whose `due_at` has come, least
//!   recently served first (`turn_at`, plus the slack of their best class),
//!   `SKIP LOCKED`: two dispatchers claiming at once take different
//!   endpoints, and each endpoint's cap is checked under its row lock.
//! - **What an endpoint may take.** At most its in-flight cap (`cap` in
//!   force, else `max_in_flight`, else the dispatcher's default) minus what
//!   it has in flight (leased, lease running), and at most what its
//!   `max_per_second` allows now. In flight is `endpoint_in_flight`'s count
//!   (migrations/20261207000023_in_flight_in_one_place.sql), as for the
//!   hand-off and `endpoint_health`. An endpoint at its cap is taken again
//!   once a quarter of its cap is free: a saturated endpoint costs a claim
//!   per few deliveries, not one per delivery.
//! - **Which of its deliveries.** Oldest first by `next_attempt_at` plus the
//!   slack of their class (`delivery_class_slack`: fresh during-call 0,
//!   fresh after-call 100 ms, retries 1 s, operator requeues 2 s).
//! - **Round robin.** Every endpoint's first delivery goes before any
//!   endpoint's second, and so on: with room for `limit`, each of `limit`
//!   busy endpoints gets one seat, however many deliveries one has queued.
//!   Among equals (seats scarcer than endpoints), the least recently served
//!   and the better class first. Work-conserving: one busy endpoint alone
//!   takes every seat its cap allows.
//! - **Bookkeeping.** Each locked endpoint's `turn_at` moves to now (at its
//!   cap or not: it had its turn), `due_at` to its next pending delivery's
//!   due time (or its rate's next slot), or the row goes when nothing is
//!   pending; all in the claim's one statement.

use std::time::Duration;

use callhook_core::{DeliveryKind, EndpointState, Header, StoredSecret};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::Claimed;
use crate::StoreError;

/// How much one claim may take.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits {
    /// Deliveries at most (the dispatcher's free seats).
    pub limit: i64,
    /// How long the claim holds them.
    pub lease: Duration,
    /// An endpoint's in-flight cap when its scenario sets none.
    pub endpoint_cap: i32,
}

/// The claim's transaction, its settings sent with `BEGIN` (no round trip of
/// their own). A claim only stamps a lease. Should a crash lose it, the row is
/// still pending and due, and is claimed again: nothing acknowledged depends
/// on this commit being flushed, so it need not wait for the WAL flush. The
/// claim keeps `endpoint_queue` right itself: the trigger stays out. And its
/// plan is the generic one from the first claim on a connection: the plan
/// cache otherwise plans it five times a connection first (about 2 ms each),
/// to settle on the generic plan anyway (`burst --batch`: 46 plans and 77 ms
/// of planning, now 7 and 15 ms).
const CLAIM_BEGIN: &str = "begin; set local synchronous_commit = off; \
     set local callhook.claiming = on; set local plan_cache_mode = force_generic_plan";

/// Claims up to `limit` due deliveries, fairly (see the module docs). An
/// after-call delivery waiting for its call's during-call delivery
/// (`blocked_by`) and a parked one have no due time: never claimed here.
///
/// Stays whole: it is one statement (the round, the caps and the lease in one
/// CTE, docs/scheduling.md), and the Rust around it is its bind list.
pub async fn claim(pool: &PgPool, limits: ClaimLimits) -> Result<Vec<Claimed>, StoreError> {
    let token = Uuid::now_v7();
    let mut tx = pool.begin_with(CLAIM_BEGIN).await?;
    let rows = super::query_claimed!(
        r#"with classes as (
               -- delivery_class's values (core's PriorityClass), each for
               -- the unleased rows and the leased ones (`deliveries_queue_idx`
               -- keys them apart: a leased row is due when its lease ends)
               select c.class, l.leased
                 from unnest(array[0, 1, 2, 3]::int2[]) as c(class)
                 cross join unnest(array[false, true]) as l(leased)
           ), q as (
               select q.scenario_id, q.kind, q.turn_at, q.rate_at,
                      coalesce(e.cap, e.max_in_flight, $4) as cap, e.max_per_second
                 from endpoint_queue q
                 left join endpoints e on e.scenario_id = q.scenario_id and e.kind = q.kind
                where q.due_at <= now()
                order by q.turn_at + delivery_class_slack(q.head_class)
                limit $1
                  for update of q skip locked
           ), room as (
               -- Counted once per endpoint (a lateral, not an expression the
               -- next step would copy into each of its uses), by the one
               -- definition of in flight (inlined: the leased range of
               -- `deliveries_queue_idx`).
               select q.*, q.cap - f.in_flight as free
                 from q
                 cross join lateral endpoint_in_flight(q.scenario_id, q.kind) f
           ), budget as (
               -- An endpoint at its cap waits until a quarter of it is free
               -- again: claims then take a few at a time, not one each.
               select r.*,
                      case when r.free < greatest(1, r.cap / 4) then 0
                           else least(
                               $1,
                               r.free,
                               case when r.max_per_second is null then $1
                                    else floor(r.max_per_second::float8 * extract(epoch from
                                             now() + make_interval(secs => 1.0 / r.max_per_second::float8)
                                             - greatest(r.rate_at, now()))::float8)::bigint
                               end)
                      end::int4 as n
                 from room r
           ), cand as (
               select c.id, b.scenario_id, b.kind,
                      row_number() over (partition by b.scenario_id, b.kind order by c.rank_at) as rn,
                      b.turn_at + delivery_class_slack(c.class) as turn
                 from budget b
                 cross join lateral (
                     -- Each class's oldest due, ranked by due time plus the
                     -- class's slack.
                     select x.id, k.class, x.next_attempt_at + delivery_class_slack(k.class) as rank_at
                       from classes k
                       cross join lateral (
                           select d.id, d.next_attempt_at from deliveries d
                            where delivery_endpoint(d.scenario_id) = b.scenario_id and d.kind = b.kind
                              and d.state = 'pending' and (d.lease_token is not null) = k.leased
                              and delivery_class(d.kind, d.attempt_count, d.requeued) = k.class
                              and d.next_attempt_at <= now()
                            order by d.next_attempt_at limit b.n
                       ) x
                      order by rank_at
                      limit b.n
                 ) c
                where b.n > 0
           ), picked as (
               select id, rn, turn from cand order by rn, turn limit $1
           ), locked as (
               -- One by one by primary key, each with its place in the
               -- round (a lateral lock per picked id: no plan can walk an
               -- index of every pending row and join it, nor join the picks
               -- back to the leased rows by comparing every pair, which cost
               -- about 1 ms a claim of 128 rows). The state and the due
               -- time are checked again on the locked row, but `is true`
               -- keeps them from selecting an index: with statistics from a
               -- quiet hour, the planner read `deliveries_queue_idx` (every
               -- pending row of every endpoint) on every claim instead.
               select l.id, p.rn, p.turn
                 from picked p
                 cross join lateral (
                     select d.id from deliveries d
                      where d.id = p.id
                        and (d.state = 'pending') is true and (d.next_attempt_at <= now()) is true
                        for update of d skip locked
                 ) l
           ), claimed as (
               update deliveries d
                  set lease_token = $2,
                      next_attempt_at = now() + make_interval(secs => $3),
                      updated_at = now()
                 from locked
                where d.id = locked.id"#,
        r#", locked.rn, locked.turn
           ), served as (
               select delivery_endpoint(scenario_id) as scenario_id, kind, count(*) as n
                 from claimed group by 1, 2
           ), next as (
               select b.scenario_id, b.kind, s.n as served,
                      case when b.max_per_second is not null and s.n > 0
                           then greatest(b.rate_at, now()) + make_interval(secs => s.n / b.max_per_second::float8)
                           else b.rate_at end as rate_at,
                      least(m.due, case when s.n > 0 then now() + make_interval(secs => $3) end)
                        as due_at,
                      coalesce(m.head, 2::int2) as head_class
                 from budget b
                 left join served s on s.scenario_id = b.scenario_id and s.kind = b.kind
                 cross join lateral (
                     -- What stays pending (not just claimed): each class's
                     -- next due time; the earliest, and the best class.
                     select min(f.next_attempt_at) as due, min(k.class) as head
                       from classes k
                       cross join lateral (
                           select d.next_attempt_at from deliveries d
                            where delivery_endpoint(d.scenario_id) = b.scenario_id and d.kind = b.kind
                              and d.state = 'pending' and (d.lease_token is not null) = k.leased
                              and delivery_class(d.kind, d.attempt_count, d.requeued) = k.class
                              and d.next_attempt_at is not null
                              -- a hashed set: the walk passes every row just claimed
                              and d.id not in (select c.id from claimed c)
                            order by d.next_attempt_at limit 1
                       ) f
                 ) m
           ), kept as (
               update endpoint_queue q
                  set due_at = greatest(n.due_at, n.rate_at), head_class = n.head_class,
                      turn_at = now(), rate_at = n.rate_at
                 from next n
                where q.scenario_id = n.scenario_id and q.kind = n.kind and n.due_at is not null
           ), gone as (
               delete from endpoint_queue q
                using next n
                where q.scenario_id = n.scenario_id and q.kind = n.kind and n.due_at is null
           )"#,
        lease_token = "$2",
        endpoint_state = "e.state",
        probe = "false",
        r#"from claimed c
             left join scenarios s on s.id = c.scenario_id
             left join endpoints e on e.scenario_id = c.scenario_id and e.kind = c.kind
            order by c.rn, c.turn"#,
        limits.limit,
        token,
        limits.lease.as_secs_f64(),
        limits.endpoint_cap,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}
