//! Number pool bench: reservations per second and attribution lookups per
//! second on a 10,000-number pool with 1,000,000 reservations of history.
//!
//! `cargo bench --bench pool` (Postgres from `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a scratch database is made
//! and dropped). `POOL_BENCH_CONCURRENCY` (default 16) sets the parallel
//! clients. The fixture SQL lives here; what is measured goes through the
//! store's own functions (`pool::reserve`, `pool::attribute`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use callhook_core::{PhoneNumber, Visit};
use callhook_store::{pool, scenarios};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

const POOL_SIZE: usize = 10_000;
const HISTORY: i64 = 1_000_000;
const RESERVATIONS: usize = 5_000;
const LOOKUPS: usize = 20_000;
const HOLD: Duration = Duration::from_secs(150);

fn number(i: usize) -> String {
    format!("7900{i:07}")
}

/// xorshift: reproducible picks without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes --bench; `cargo test`/nextest (--all-targets) run or
    // list this target without it: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let concurrency: usize = std::env::var("POOL_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let db = format!("callhook_bench_pool_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("drop database if exists {db} with (force)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("create database {db}"))
        .execute(&mut admin)
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin_url.clone());
    let result = run(&format!("{base}/{db}"), concurrency).await;
    sqlx::query(&format!("drop database if exists {db} with (force)"))
        .execute(&mut admin)
        .await?;
    result
}

async fn run(url: &str, concurrency: usize) -> Result<(), Box<dyn std::error::Error>> {
    let db = PgPoolOptions::new()
        .max_connections(concurrency as u32 + 2)
        .connect(url)
        .await?;
    callhook_store::migrate(&db).await?;

    let t = Instant::now();
    let numbers: Vec<PhoneNumber> = (0..POOL_SIZE)
        .map(|i| PhoneNumber::parse(&number(i), "n").unwrap())
        .collect();
    let id = uuid::Uuid::now_v7();
    let scenario = scenarios::create(
        &db,
        id,
        &scenarios::ScenarioSettings::named("bench", numbers),
        &callhook_core::Sealer::plain().seal(&callhook_core::SigningSecret::generate(), id),
    )
    .await?
    .id;
    // 100 past reservations of 150 s per number, one a day over 100 days,
    // all ended; each number released when its last one ended.
    let base: DateTime<Utc> =
        sqlx::query_scalar("select date_trunc('second', now()) - interval '101 days'")
            .fetch_one(&db)
            .await?;
    sqlx::query(
        "insert into number_reservations
                (id, number, scenario_id, visit_id, visit, reserved_from, reserved_until, created_at, updated_at)
         select gen_random_uuid(), '7900' || lpad((g % 10000)::text, 7, '0'), $1, 'h' || g,
                jsonb_build_object('visit_id', 'h' || g, 'utm_source', 'bench'),
                f, f + interval '150 seconds', f, f
           from generate_series(0, $2 - 1) as g,
                lateral (select $3 + (g / 10000) * interval '1 day' + (g % 10000) * interval '5 seconds' as f) x",
    )
    .bind(scenario)
    .bind(HISTORY)
    .bind(base)
    .execute(&db)
    .await?;
    sqlx::query(
        "update scenario_numbers n set released_at = r.last
           from (select number, max(reserved_until) as last from number_reservations group by number) r
          where r.number = n.number",
    )
    .execute(&db)
    .await?;
    sqlx::query("analyze").execute(&db).await?;
    println!(
        "setup: {POOL_SIZE} numbers, {HISTORY} history rows in {:.1?}",
        t.elapsed()
    );

    // Reservations: new visits, then the same visits again (heartbeats).
    for (label, prefix) in [
        ("reservations (new visits)", "v"),
        ("heartbeats (same visits)", "v"),
    ] {
        let rate = parallel(concurrency, RESERVATIONS, {
            let db = db.clone();
            move |i| {
                let db = db.clone();
                async move {
                    let visit = Visit {
                        visit_id: Some(format!("{prefix}{i}")),
                        utm_source: Some("bench".into()),
                        ..Visit::default()
                    };
                    let r = pool::reserve(&db, scenario, &visit, HOLD).await.unwrap();
                    assert!(
                        !r.shared,
                        "a 10,000-number pool is not exhausted by 5,000 visits"
                    );
                }
            }
        })
        .await;
        println!(
            "{label}: {RESERVATIONS} in {:.2?} = {:.0}/s",
            rate.0, rate.1
        );
    }

    // Attribution lookups at random moments of the history: inside a
    // reservation (a hit) and between two (a miss: the longest scan).
    for (label, offset) in [
        ("attribution lookups (covered)", 60i64),
        ("attribution lookups (not covered)", 3600),
    ] {
        let rng = Arc::new(std::sync::Mutex::new(Rng(0x9e37_79b9_7f4a_7c15)));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rate = parallel(concurrency, LOOKUPS, {
            let db = db.clone();
            let hits = hits.clone();
            move |_| {
                let db = db.clone();
                let hits = hits.clone();
                let (n, day) = {
                    let mut r = rng.lock().unwrap();
                    (r.next(POOL_SIZE as u64) as i64, r.next(100) as i64)
                };
                async move {
                    let from =
                        base + chrono::Duration::days(day) + chrono::Duration::seconds(n * 5);
                    let at = from + chrono::Duration::seconds(offset);
                    let callee = PhoneNumber::parse(&number(n as usize), "n").unwrap();
                    let mut conn = db.acquire().await.unwrap();
                    if pool::attribute(&mut conn, scenario, &callee, at)
                        .await
                        .unwrap()
                        .is_some()
                    {
                        hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
        println!(
            "{label}: {LOOKUPS} in {:.2?} = {:.0}/s ({} attributed)",
            rate.0,
            rate.1,
            hits.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    db.close().await;
    Ok(())
}

/// Runs `job(0..total)` on `concurrency` tasks; the elapsed time and rate.
async fn parallel<F, Fut>(concurrency: usize, total: usize, job: F) -> (Duration, f64)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let job = job.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    job(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("bench task");
    }
    let elapsed = t.elapsed();
    (elapsed, total as f64 / elapsed.as_secs_f64())
}
