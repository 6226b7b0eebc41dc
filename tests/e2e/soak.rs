//! Soak: the real binary on its own Postgres cluster against receivers that
//! misbehave on purpose, SIGKILLed and restarted on a timer, with Postgres
//! restarted once. Ends with one table; asserts nothing acknowledged is lost
//! and duplicates stay within what was in flight at the crashes.
//!
//! `SOAK_SECONDS` (default 60) is how long calls keep coming; `scripts/soak`
//! runs it for 300 s and prints the table. Everything is on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;
use crate::process::*;

/// Receivers; the last one is down for a while in the middle of the run.
const RECEIVERS: usize = 5;
const CONCURRENCY: usize = 16;
const SCHEDULE: &str = "200ms,500ms,1s,2s,5s,10s,20s";

/// What the receivers saw: webhook (call id, kind) → every 2xx answered,
/// with its webhook-id and when.
#[derive(Default)]
struct Seen {
    accepted: HashMap<(String, String), Vec<(String, Instant)>>,
    requests: usize,
    by_behaviour: HashMap<&'static str, usize>,
}

type Shared = Arc<Mutex<Seen>>;

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Ok,
    Error500,
    Slow,
    Reset,
    TooMany,
    Redirect,
}

impl Behaviour {
    /// 10 % 500, 5 % slower than the timeout, 5 % reset mid-response,
    /// 2 % 429 with Retry-After, 3 % 3xx; the rest 200.
    fn pick(roll: u64) -> Self {
        match roll % 100 {
            0..10 => Self::Error500,
            10..15 => Self::Slow,
            15..20 => Self::Reset,
            20..22 => Self::TooMany,
            22..25 => Self::Redirect,
            _ => Self::Ok,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ok => "200",
            Self::Error500 => "500",
            Self::Slow => "slow",
            Self::Reset => "reset",
            Self::TooMany => "429",
            Self::Redirect => "302",
        }
    }
}

/// xorshift: enough randomness for picking behaviours, no dependency.
fn roll(state: &Mutex<u64>) -> u64 {
    let mut s = state.lock().unwrap();
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// One misbehaving receiver on raw TCP (so it can break a response off
/// half-way). `down` makes it stop listening (connections refused) until
/// cleared.
async fn misbehaving_receiver(seen: Shared, down: Arc<AtomicBool>, seed: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rng = Arc::new(Mutex::new(seed | 1));
    tokio::spawn(async move {
        let mut listener = Some(listener);
        loop {
            if down.load(Ordering::Relaxed) {
                listener = None; // refuse connections
                                 // Not a wait: the receiver's down-time loop, polling its own switch.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let l = match &listener {
                Some(l) => l,
                None => match TcpListener::bind(addr).await {
                    Ok(l) => listener.insert(l),
                    Err(_) => {
                        // Not a wait: pacing while the port cannot be bound again yet.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let accepted = tokio::time::timeout(Duration::from_millis(100), l.accept()).await;
            let Ok(Ok((stream, _))) = accepted else {
                continue;
            };
            let seen = seen.clone();
            let rng = rng.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(30), serve_one(stream, seen, rng))
                    .await;
            });
        }
    });
    addr
}

/// Reads one request, answers it as the dice say, and closes.
async fn serve_one(mut s: TcpStream, seen: Shared, rng: Arc<Mutex<u64>>) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::trim))
            .map(str::to_owned)
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
    let webhook_id = header("webhook-id").unwrap_or_default();
    let call = body["id"].as_str().unwrap_or_default().to_owned();
    // The after-call payload is the one with `status`.
    let kind = if body.get("status").is_some() {
        "after_call"
    } else {
        "during_call"
    };
    let behaviour = Behaviour::pick(roll(&rng));
    {
        let mut seen = seen.lock().unwrap();
        seen.requests += 1;
        *seen.by_behaviour.entry(behaviour.name()).or_default() += 1;
    }
    let answer = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\nok")
    };
    match behaviour {
        Behaviour::Ok => {
            if s.write_all(answer("200 OK", "").as_bytes()).await.is_ok() {
                seen.lock()
                    .unwrap()
                    .accepted
                    .entry((call, kind.to_owned()))
                    .or_default()
                    .push((webhook_id, Instant::now()));
            }
        }
        Behaviour::Error500 => {
            let _ = s
                .write_all(answer("500 Internal Server Error", "").as_bytes())
                .await;
        }
        Behaviour::TooMany => {
            let _ = s
                .write_all(answer("429 Too Many Requests", "retry-after: 1\r\n").as_bytes())
                .await;
        }
        Behaviour::Redirect => {
            let _ = s
                .write_all(
                    answer("302 Found", "location: http://127.0.0.1:9/elsewhere\r\n").as_bytes(),
                )
                .await;
        }
        Behaviour::Slow => {
            // Longer than the dispatcher's 2 s request timeout.
            // Not a wait: the receiver's own behaviour (slower than the timeout).
            tokio::time::sleep(Duration::from_secs(4)).await;
            let _ = s.write_all(answer("200 OK", "").as_bytes()).await;
        }
        Behaviour::Reset => {
            // Half a status line, then a TCP reset.
            let _ = s.write_all(b"HTTP/1.1 20").await;
            let _ = s.set_zero_linger();
            drop(s);
        }
    }
}

/// Posts `body` until a 2xx acknowledges it (503s, refused connections and
/// timeouts are retried, as a telephony client would) or `deadline` passes.
async fn post_until_acknowledged(
    http: &reqwest::Client,
    base: &Mutex<String>,
    path: &str,
    body: &serde_json::Value,
    deadline: Duration,
) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        let url = format!("{}{path}", base.lock().unwrap());
        match http.post(url).bearer_auth(INGEST).json(body).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status() == 503 || r.status() == 408 => {}
            Ok(r) => panic!("{path}: unexpected {}", r.status()),
            Err(_) => {}
        }
        // Not a wait: a telephony client's retry pacing.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Deliveries claimed and not recorded: with the process dead (or about to
/// stop), exactly what a crash can send twice.
async fn claimed_unrecorded(pool: &sqlx::PgPool) -> i64 {
    eventually(Duration::from_secs(30), "the in-flight count", || async {
        sqlx::query_scalar(
            "select count(*) from deliveries where state = 'pending' and lease_token is not null",
        )
        .fetch_one(pool)
        .await
        .ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_loses_nothing_under_kills_restarts_and_misbehaving_receivers() {
    init_logs();
    let secs: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let rate: u64 = std::env::var("SOAK_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let run_for = Duration::from_secs(secs);
    // Every 60 s in a long run; a shortened run still gets two kills.
    let kill_every = Duration::from_secs((secs / 3).clamp(5, 60));
    let down_from = Duration::from_secs(secs / 10);
    let down_for = Duration::from_secs((secs / 4).min(60));
    let pg_restart_at = kill_every / 2 + kill_every * ((secs / kill_every.as_secs()) / 2) as u32;

    let cluster = TempCluster::start();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&cluster.url())
        .await
        .unwrap();
    let seen: Shared = Arc::default();
    let down = Arc::new(AtomicBool::new(false));
    let mut hooks = Vec::new();
    for i in 0..RECEIVERS {
        let flag = if i == RECEIVERS - 1 {
            down.clone()
        } else {
            Arc::new(AtomicBool::new(false))
        };
        let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1) ^ std::process::id() as u64;
        hooks.push(misbehaving_receiver(seen.clone(), flag, seed).await);
    }

    let concurrency = CONCURRENCY.to_string();
    let env: Vec<(&str, &str)> = vec![
        ("CALLHOOK_CONCURRENCY", &concurrency),
        ("CALLHOOK_RETRY_SCHEDULE", SCHEDULE),
        ("CALLHOOK_DB_WAIT", "60s"),
        // Well past the 2 s request timeout, so a busy machine recording
        // results late does not look like a crash.
        ("CALLHOOK_LEASE", "10s"),
        ("RUST_LOG", "warn"),
    ];
    // The servers' warnings and errors, for when something goes wrong.
    let log = std::env::temp_dir().join(format!("callhook-soak-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let start = || async {
        for _ in 0..3 {
            if let Some(s) = ServerProcess::try_start_logging(&cluster.url(), &env, &log).await {
                return s;
            }
        }
        panic!(
            "callhook did not start three times running; see {}",
            log.display()
        );
    };
    let mut server = Some(start().await);
    let base = Arc::new(Mutex::new(server.as_ref().unwrap().url("")));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for (i, hook) in hooks.iter().enumerate() {
        let r = http
            .post(format!("{}/api/v1/scenarios", base.lock().unwrap()))
            .bearer_auth(ADMIN)
            .json(
                &json!({"name": format!("soak {i}"), "numbers": [format!("7800555{i:04}")],
                          "during_call_url": format!("http://{hook}/during"),
                          "after_call_url": format!("http://{hook}/after")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    // The telephony side: `rate` calls a second, each started and ended.
    let started = Instant::now();
    let acked: Arc<Mutex<Vec<(String, &'static str)>>> = Arc::default();
    let unacked = Arc::new(AtomicUsize::new(0));
    let load = {
        let http = http.clone();
        let base = base.clone();
        let acked = acked.clone();
        let unacked = unacked.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate.max(1)));
            let mut n = 0usize;
            while started.elapsed() < run_for {
                tick.tick().await;
                let (http, base, acked, unacked) =
                    (http.clone(), base.clone(), acked.clone(), unacked.clone());
                let id = format!("s{n}");
                let callee = format!("7800555{:04}", n % RECEIVERS);
                n += 1;
                tasks.spawn(async move {
                    let start = json!({"id": id, "caller": "79990009911", "callee": callee});
                    let limit = Duration::from_secs(90);
                    if !post_until_acknowledged(&http, &base, "/api/v1/calls", &start, limit).await
                    {
                        unacked.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    acked.lock().unwrap().push((id.clone(), "during_call"));
                    // Not a wait: the load's pacing between a call's start and its end.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let end = json!({"status": "ANSWER", "duration": 7});
                    let path = format!("/api/v1/calls/{id}/end");
                    if post_until_acknowledged(&http, &base, &path, &end, limit).await {
                        acked.lock().unwrap().push((id, "after_call"));
                    } else {
                        unacked.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    // Faults, on a timeline.
    let mut kills: Vec<(Instant, i64)> = Vec::new();
    let mut pg_restart: Option<(Instant, i64)> = None;
    let mut next_kill = kill_every;
    let mut down_done = false;
    while started.elapsed() < run_for {
        let now = started.elapsed();
        if !down_done && now >= down_from && !down.load(Ordering::Relaxed) {
            down.store(true, Ordering::Relaxed);
        }
        if down.load(Ordering::Relaxed) && now >= down_from + down_for {
            down.store(false, Ordering::Relaxed);
            down_done = true;
        }
        if now >= next_kill {
            next_kill += kill_every;
            server.take().unwrap().kill().await;
            // The process is gone: its unrecorded claims are exactly what
            // may be sent twice.
            kills.push((Instant::now(), claimed_unrecorded(&pool).await));
            let s = start().await;
            *base.lock().unwrap() = s.url("");
            server = Some(s);
        }
        if pg_restart.is_none() && now >= pg_restart_at {
            let in_flight = claimed_unrecorded(&pool).await;
            cluster.stop();
            let at = Instant::now();
            // Not a wait: how long Postgres stays down (the fault itself).
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.start_again();
            pg_restart = Some((at, in_flight));
        }
        // Not a wait: the fault timeline's tick.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    down.store(false, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load generator finishes")
        .unwrap();

    // Drain: every delivery final (the schedule spans under 40 s).
    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let left: Option<i64> =
                sqlx::query_scalar("select count(*) from deliveries where state = 'pending'")
                    .fetch_one(&pool)
                    .await
                    .ok();
            if left == Some(0) {
                return;
            }
            // Not a wait: the poll interval of a drain check that reads Postgres.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "deliveries still pending 120 s after the load stopped"
    );

    // The ledger.
    let acked = acked.lock().unwrap().clone();
    let states: HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "select call_id, kind, state from deliveries",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(c, k, s)| ((c, k), s))
    .collect();
    let mut first_time: Vec<f64> = sqlx::query_scalar(
        "select extract(epoch from delivered_at - created_at)::float8 from deliveries
          where state = 'delivered' and attempt_count = 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let seen = seen.lock().unwrap();
    let mut delivered = 0;
    let mut failed = 0;
    let mut lost = Vec::new();
    for (call, kind) in &acked {
        let key = (call.clone(), (*kind).to_owned());
        if seen.accepted.contains_key(&key) {
            delivered += 1;
        } else if states.get(&key).map(String::as_str) == Some("failed") {
            failed += 1;
        } else {
            lost.push((
                key,
                states.get(&(call.clone(), (*kind).to_owned())).cloned(),
            ));
        }
    }
    // Duplicates: a webhook answered 2xx more than once; the cause is the
    // crash (kill or Postgres restart) between its first and second success.
    let mut dup_by_cause: HashMap<&str, usize> = HashMap::new();
    let mut dup_examples = Vec::new();
    for (key, hits) in &seen.accepted {
        if hits.len() < 2 {
            continue;
        }
        assert!(
            hits.iter().all(|(id, _)| id == &hits[0].0),
            "{key:?}: duplicates carry different webhook-ids: {hits:?}"
        );
        for pair in hits.windows(2) {
            let (a, b) = (pair[0].1, pair[1].1);
            let cause = if kills
                .iter()
                .any(|(k, _)| *k >= a && *k <= b + Duration::from_millis(50))
            {
                "kill"
            } else if pg_restart.is_some_and(|(p, _)| {
                // Results of sends made up to the outage's end (and the
                // writer's backoff after it) may go unrecorded.
                a <= p + Duration::from_secs(15) && b >= p
            }) {
                "postgres restart"
            } else {
                "other"
            };
            *dup_by_cause.entry(cause).or_default() += 1;
            if dup_examples.len() < 10 {
                let at = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
                dup_examples.push(format!(
                    "{key:?} {cause}: 2xx at {:.1}s and {:.1}s",
                    at(a),
                    at(b)
                ));
            }
        }
    }
    let duplicates: usize = dup_by_cause.values().sum();
    let in_flight_at_kills: i64 = kills.iter().map(|(_, n)| n).sum();
    let in_flight_at_restart = pg_restart.map_or(0, |(_, n)| n);

    first_time.sort_by(f64::total_cmp);
    let db_delivered = states.values().filter(|s| *s == "delivered").count();

    let rows = [
        ("run (s)", secs.to_string()),
        ("dispatcher SIGKILLs", kills.len().to_string()),
        (
            "postgres restarts",
            usize::from(pg_restart.is_some()).to_string(),
        ),
        ("receiver requests", seen.requests.to_string()),
        ("receiver behaviours", format!("{:?}", seen.by_behaviour)),
        (
            "calls acknowledged",
            acked
                .iter()
                .filter(|(_, k)| *k == "during_call")
                .count()
                .to_string(),
        ),
        (
            "events never acknowledged",
            unacked.load(Ordering::Relaxed).to_string(),
        ),
        ("webhooks expected", acked.len().to_string()),
        ("delivered (2xx at a receiver)", delivered.to_string()),
        ("delivered (rows)", db_delivered.to_string()),
        ("failed (retries exhausted)", failed.to_string()),
        ("lost", lost.len().to_string()),
        ("duplicates", format!("{duplicates} {dup_by_cause:?}")),
        (
            "in flight at kills",
            format!(
                "{in_flight_at_kills} {:?}",
                kills.iter().map(|k| k.1).collect::<Vec<_>>()
            ),
        ),
        (
            "in flight at postgres restart",
            in_flight_at_restart.to_string(),
        ),
        ("first-time successes", first_time.len().to_string()),
        (
            "p50 first-time latency (s)",
            format!("{:.3}", percentile(&first_time, 0.50)),
        ),
        (
            "p99 first-time latency (s)",
            format!("{:.3}", percentile(&first_time, 0.99)),
        ),
    ];
    let mut table = String::from("\n| soak | value |\n|---|---|\n");
    for (k, v) in rows {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{table}");
    let offsets = |v: &[Instant]| {
        v.iter()
            .map(|t| format!("{:.1}s", t.saturating_duration_since(started).as_secs_f64()))
            .collect::<Vec<_>>()
    };
    println!(
        "kills at {:?}; postgres restart at {:?}",
        offsets(&kills.iter().map(|k| k.0).collect::<Vec<_>>()),
        offsets(&pg_restart.iter().map(|p| p.0).collect::<Vec<_>>())
    );
    println!("server log: {}", log.display());
    if !dup_examples.is_empty() {
        println!("duplicate examples: {dup_examples:?}");
    }

    assert!(
        lost.is_empty(),
        "lost webhooks: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        acked.len() > secs as usize,
        "the load got through ({} events)",
        acked.len()
    );
    assert!(
        duplicates as i64 <= in_flight_at_kills + in_flight_at_restart,
        "duplicates ({duplicates}) exceed the deliveries in flight at the crashes ({in_flight_at_kills} + {in_flight_at_restart})"
    );
    drop(server);
}
