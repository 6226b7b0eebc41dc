//! How fast is `GET /api/v1/deliveries` on a big table?
//!
//! Seeds a scratch database (`callhook_bench_deliveries`, dropped and made
//! again) with 500,000 calls and 1,000,000 deliveries spread over 30 days
//! (20 scenarios; 90 % delivered, 5 % failed, 3 % cancelled, 2 % pending) with
//! set-based `insert … select generate_series`, starts callhook's API on a
//! loopback port, and times filtered list pages through HTTP: p50/p99/max
//! over 200 requests per filter.
//!
//! `cargo bench --bench deliveries_list` (the Postgres server comes from
//! `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`;
//! `BENCH_ROWS` changes the row count, `BENCH_REQUESTS` the requests per filter).
//! Without `--bench` (test runners listing targets) it does nothing.

use std::time::{Duration, Instant};

use callhook::{Role, ServeConfig};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "bench-admin-token-token";

const DB: &str = "callhook_bench_deliveries";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A compact after-call payload of the page's size (about 700 bytes).
const PAYLOAD: &str = r#"{"id":"313","caller":"79990009911","callee":"78005552233","visit_id":"123456","marker":"vk_new","order_id":123456789,"date":"2019-02-19 00:00:00","google_client_id":"111111111.1111111111","custom_fields":[],"landing_page":"test.com/new","domain":"test.com","city":"Москва","country":"Россия","ip":"100.100.1.1","first_visit":"1001","referrer":"vk.com","utm_source":null,"utm_medium":null,"utm_campaign":null,"utm_term":null,"utm_content":null,"roistat_param_1":null,"roistat_param_2":null,"roistat_param_3":null,"roistat_param_4":null,"roistat_param_5":null,"metrika_client_id":null,"source_level_1":"vk","source_level_2":"new","status":"ANSWER","file_id":null,"duration":20,"link":""}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` and nextest
    // run this binary too (nextest with `--list`): list no tests, seed nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let server = env_or(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let rows: i64 = env_or("BENCH_ROWS", "1000000").parse()?;
    let requests: usize = env_or("BENCH_REQUESTS", "200").parse()?;
    let calls = rows / 2;

    let mut admin = PgConnection::connect(&server).await?;
    admin
        .execute(format!("drop database if exists {DB} with (force)").as_str())
        .await?;
    admin
        .execute(format!("create database {DB}").as_str())
        .await?;
    let mut url = url::Url::parse(&server)?;
    url.set_path(&format!("/{DB}"));
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(url.as_str())
        .await?;
    callhook_store::migrate(&pool).await?;

    let clock = Instant::now();
    seed(&pool, calls).await?;
    println!(
        "seeded {calls} calls and {} deliveries in {:.1} s",
        calls * 2,
        clock.elapsed().as_secs_f64()
    );

    // The API alone (no dispatcher), as a `--role api` process serves it.
    let mut config = ServeConfig::for_tests(ADMIN_TOKEN, "bench-ingest-token-token");
    config.role = Role::Api;
    config.db.database_url = Some(secrecy::SecretString::from(url.as_str().to_owned()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let app = tokio::spawn(callhook::run(
        config,
        listener,
        pool.clone(),
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();

    let scenario: String = sqlx::query_scalar("select id::text from scenarios order by id limit 1")
        .fetch_one(&pool)
        .await?;
    let now = chrono::Utc::now();
    let ago = |d: chrono::Duration| (now - d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let middle: String =
        sqlx::query_scalar("select id::text from deliveries order by id limit 1 offset $1")
            .bind(rows / 2)
            .fetch_one(&pool)
            .await?;
    let middle_cursor = {
        use base64::Engine as _;
        let id: uuid::Uuid = middle.parse()?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
    };

    let cases: Vec<(&str, String)> = vec![
        ("no filter", String::new()),
        ("scenario_id", format!("scenario_id={scenario}")),
        ("call_id", format!("call_id=c{}", calls / 3)),
        ("state=failed", "state=failed".into()),
        ("state=pending", "state=pending".into()),
        // Delivered rows are in no state index: the primary key, newest first.
        ("state=delivered", "state=delivered".into()),
        ("kind=after_call", "kind=after_call".into()),
        (
            "since=1h ago",
            format!("since={}", ago(chrono::Duration::hours(1))),
        ),
        (
            "until=20d ago",
            format!("until={}", ago(chrono::Duration::days(20))),
        ),
        (
            "since+until (1 day, 10 days ago)",
            format!(
                "since={}&until={}",
                ago(chrono::Duration::days(11)),
                ago(chrono::Duration::days(10))
            ),
        ),
        (
            "scenario_id+state=failed",
            format!("scenario_id={scenario}&state=failed"),
        ),
        (
            "scenario_id+state=delivered",
            format!("scenario_id={scenario}&state=delivered"),
        ),
        (
            "scenario_id+state=failed+since=1d",
            format!(
                "scenario_id={scenario}&state=failed&since={}",
                ago(chrono::Duration::days(1))
            ),
        ),
        (
            "state=cancelled+kind=during_call",
            "state=cancelled&kind=during_call".into(),
        ),
        (
            "deep page (after = middle)",
            format!("after={middle_cursor}"),
        ),
        ("state=failed, limit=500", "state=failed&limit=500".into()),
    ];

    println!(
        "\n{:<38} {:>6} {:>9} {:>9} {:>9}",
        "filter (limit 50 unless said)", "items", "p50 ms", "p99 ms", "max ms"
    );
    for (name, query) in &cases {
        let target = format!("http://{addr}/api/v1/deliveries?{query}");
        let mut times = Vec::with_capacity(requests);
        let mut items = 0;
        for i in 0..requests + 5 {
            let t = Instant::now();
            let resp = http.get(&target).bearer_auth(ADMIN_TOKEN).send().await?;
            anyhow::ensure!(resp.status().is_success(), "{name}: {}", resp.status());
            let body: serde_json::Value = resp.json().await?;
            let took = t.elapsed();
            items = body["items"].as_array().map_or(0, Vec::len);
            if i >= 5 {
                times.push(took); // the first few warm the caches
            }
        }
        times.sort();
        let pct = |p: f64| ms(times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)]);
        println!(
            "{name:<38} {items:>6} {:>9.2} {:>9.2} {:>9.2}",
            pct(0.50),
            pct(0.99),
            ms(*times.last().unwrap())
        );
    }

    shutdown.cancel();
    app.await??;
    pool.close().await;
    admin
        .execute(format!("drop database if exists {DB} with (force)").as_str())
        .await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Set-based seeding: one statement per table. Delivery ids are UUIDv7 of
/// their `created_at`, as ingest makes them.
async fn seed(pool: &sqlx::PgPool, calls: i64) -> anyhow::Result<()> {
    let mut c = pool.acquire().await?;
    c.execute(
        "create function pg_temp.v7(t timestamptz, salt text) returns uuid language sql as $$
             select (lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0')
                     || '7' || substr(md5(salt), 1, 3) || '8' || substr(md5(salt), 4, 15))::uuid
         $$",
    )
    .await?;
    sqlx::query(
        "insert into scenarios (id, name, during_call_url, after_call_url, signing_secret)
         select pg_temp.v7(now() - interval '31 days', 's' || i), 'Scenario ' || i,
                'https://crm.example.com/during', 'https://crm.example.com/after',
                'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
           from generate_series(1, 20) i",
    )
    .execute(&mut *c)
    .await?;
    // Calls every (30 days / calls) seconds up to now.
    sqlx::query(
        "insert into calls (id, scenario_id, caller, callee, started_at, created_at, status, duration)
         select 'c' || i, s.ids[1 + i % 20], '79990009911', '78005552233', t, t, 'ANSWER', 20
           from (select array_agg(id order by id) ids from scenarios) s,
                lateral (select i, now() - ($1 - i) * (interval '30 days' / $1) as t
                           from generate_series(1, $1::int) i) g",
    )
    .bind(calls)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "insert into deliveries (id, call_id, scenario_id, kind, payload, state, attempt_count,
                                 next_attempt_at, last_status, last_error, created_at, delivered_at)
         select pg_temp.v7(t, k || c.id), c.id, c.scenario_id, k, $1, st,
                case st when 'delivered' then 1 when 'pending' then 2 else 8 end,
                case when st = 'pending' then now() + interval '1 year' end,
                case st when 'delivered' then 200 when 'failed' then 500 end,
                case st when 'cancelled' then 'url_removed' end,
                t, case when st = 'delivered' then t + interval '1 second' end
           from calls c,
                lateral (values ('during_call', c.created_at),
                                ('after_call', c.created_at + interval '1 minute')) as v(k, t),
                lateral (select case
                           when h < 90 then 'delivered' when h < 95 then 'failed'
                           when h < 98 then 'cancelled' else 'pending' end as st
                           from (select abs(hashtext(k || c.id)) % 100 as h) x) s",
    )
    .bind(PAYLOAD)
    .execute(&mut *c)
    .await?;
    c.execute("vacuum analyze scenarios, calls, deliveries")
        .await?;
    Ok(())
}
