//! Starts, ends and recordings of a thousand calls sent at once, in random
//! order, through two API processes, with one dispatcher process: every event
//! is stored, every call gets exactly one during-call webhook, no after-call
//! webhook reaches the receiver before its call's during-call webhook is
//! final, and a recording reported before the after-call webhook went is in
//! it (after-call webhooks wait up to 2 s for one).
//!
//! Seeded: a failure prints its seed; `INTERLEAVING_SEED=… make test
//! ARGS=interleaving` replays the same plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::helpers::*;
use crate::process::{database_url_of, ServerProcess};

const CALLS: usize = 1000;
const NUMBER: &str = "78005552233";

/// What the test does with one call (or a batch of starts).
#[derive(Debug, Clone)]
struct Plan {
    id: String,
    /// Which API process gets the start, which the end.
    start_to: usize,
    end_to: usize,
    /// The end goes out this long before the start (0 = together, in a
    /// random order).
    end_ahead_ms: u64,
    /// The end names caller and callee (so it can be stored before the start).
    end_has_caller: bool,
    repeat_start: bool,
    repeat_end: bool,
    /// A recording reported on its own: when, and to which API process.
    recording: Option<(RecordingAt, usize)>,
}

/// When a call's recording is reported, against its end.
#[derive(Debug, Clone, Copy)]
enum RecordingAt {
    /// Before the end (`404` until the start is in, then sent again).
    Before,
    /// Beside the end.
    Beside,
    /// Once the end is answered.
    After,
}

fn plan(rng: &mut StdRng, i: usize) -> Plan {
    Plan {
        id: format!("c{i}"),
        start_to: rng.random_range(0..2),
        end_to: rng.random_range(0..2),
        end_ahead_ms: if rng.random_bool(0.25) {
            rng.random_range(5..40)
        } else {
            0
        },
        end_has_caller: rng.random_bool(0.7),
        repeat_start: rng.random_bool(0.1),
        repeat_end: rng.random_bool(0.1),
        recording: rng.random_bool(0.4).then(|| {
            let at = match rng.random_range(0..3) {
                0 => RecordingAt::Before,
                1 => RecordingAt::Beside,
                _ => RecordingAt::After,
            };
            (at, rng.random_range(0..2))
        }),
    }
}

fn link(p: &Plan) -> String {
    format!("https://pbx.example/rec/{}.mp3", p.id)
}

fn start_body(p: &Plan) -> Value {
    json!({"id": p.id, "caller": "79990009911", "callee": NUMBER})
}

fn end_body(p: &Plan) -> Value {
    if p.end_has_caller {
        json!({"status": "NOANSWER", "duration": 0, "caller": "79990009911", "callee": NUMBER})
    } else {
        json!({"status": "NOANSWER", "duration": 0})
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    apis: Arc<Vec<String>>,
    /// What each call's recording report answered (`after_call`).
    recordings: Arc<Mutex<HashMap<String, String>>>,
}

impl Client {
    async fn post(&self, to: usize, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.apis[to]))
            .bearer_auth(INGEST)
            .json(body)
            .send()
            .await
            .expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn start(&self, p: &Plan) {
        let (status, body) = self.post(p.start_to, "/api/v1/calls", &start_body(p)).await;
        assert!(
            status == 202 || status == 200,
            "start {}: {status} {body}",
            p.id
        );
    }

    /// Sends starts in one batch request; each must be stored.
    async fn start_batch(&self, plans: &[Plan]) {
        let calls: Vec<Value> = plans.iter().map(start_body).collect();
        let (status, body) = self
            .post(
                plans[0].start_to,
                "/api/v1/calls/batch",
                &json!({"calls": calls}),
            )
            .await;
        assert_eq!(status, 200, "batch: {body}");
        for r in body["results"].as_array().unwrap() {
            assert!(r["status"] == 202 || r["status"] == 200, "batch item: {r}");
        }
    }

    /// Sends the end until it is stored: an end naming no caller is `404`
    /// until its start is in, and is sent again then.
    async fn end(&self, p: &Plan) {
        let path = format!("/api/v1/calls/{}/end", p.id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.post(p.end_to, &path, &end_body(p)).await;
            match status {
                200 | 202 => return,
                404 if !p.end_has_caller && tokio::time::Instant::now() < deadline => {
                    assert_eq!(body["error"]["code"], "call_not_found", "{body}");
                    // Not a wait: a client's retry pacing (the end is sent again until stored).
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => panic!("end {}: {status} {body}", p.id),
            }
        }
    }
}

impl Client {
    /// Sends the call's recording until it is stored (`404` until its
    /// start or end is in); a repeat answers 200 with nothing new.
    async fn recording(&self, p: &Plan, to: usize) {
        let path = format!("/api/v1/calls/{}/recording", p.id);
        let body = json!({"link": link(p)});
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, answer) = self.post(to, &path, &body).await;
            match status {
                202 => {
                    let outcome = answer["after_call"].as_str().unwrap_or_default().to_owned();
                    self.recordings
                        .lock()
                        .unwrap()
                        .insert(p.id.clone(), outcome);
                    return;
                }
                404 if tokio::time::Instant::now() < deadline => {
                    assert_eq!(answer["error"]["code"], "call_not_found", "{answer}");
                    // Not a wait: a client's retry pacing (sent again until stored).
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => panic!("recording {}: {status} {answer}", p.id),
            }
        }
    }
}

/// One call's events (its start alone or within `batch`), as the plan says.
async fn send(client: Client, plans: Vec<Plan>) {
    let first = plans[0].clone();
    let starts = {
        let client = client.clone();
        let plans = plans.clone();
        async move {
            // Not a wait: the plan's offset between the end and the start (pacing).
            tokio::time::sleep(Duration::from_millis(first.end_ahead_ms)).await;
            if plans.len() > 1 {
                client.start_batch(&plans).await;
            } else {
                client.start(&plans[0]).await;
            }
            if plans.iter().any(|p| p.repeat_start) {
                client.start(&plans[0]).await;
            }
        }
    };
    let ends = async {
        futures::future::join_all(plans.iter().map(|p| {
            let client = client.clone();
            async move {
                let end = async {
                    client.end(p).await;
                    if p.repeat_end {
                        client.end(p).await;
                    }
                };
                match p.recording {
                    None => end.await,
                    Some((RecordingAt::Before, to)) => {
                        client.recording(p, to).await;
                        end.await;
                    }
                    Some((RecordingAt::Beside, to)) => {
                        tokio::join!(end, client.recording(p, to));
                    }
                    Some((RecordingAt::After, to)) => {
                        end.await;
                        client.recording(p, to).await;
                    }
                }
            }
        }))
        .await;
    };
    tokio::join!(starts, ends);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn crossed_events_through_two_api_processes_keep_order_and_lose_nothing(pool: PgPool) {
    let seed: u64 = std::env::var("INTERLEAVING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("interleaving seed {seed} (replay: INTERLEAVING_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut rx = Receiver::ok().await;
    let db = database_url_of(&pool);
    let api = [("CALLHOOK_ROLE", "api")];
    let a = ServerProcess::start(&db, &api).await;
    let b = ServerProcess::start(&db, &api).await;
    let dispatcher = ServerProcess::start(&db, &[("CALLHOOK_ROLE", "dispatcher")]).await;
    let client = Client {
        // The server closes a keep-alive connection idle for its header
        // timeout (10 s, hyper's `header_read_timeout`); a pooled
        // connection reused at that moment fails with IncompleteMessage (it
        // did once, on a loaded machine). Idle connections are dropped well
        // before, as any client of the API should.
        http: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        apis: Arc::new(vec![a.url(""), b.url("")]),
        recordings: Arc::default(),
    };
    let created = client
        .http
        .post(a.url("/api/v1/scenarios"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Crossed", "numbers": [NUMBER],
                      "during_call_url": rx.url("/during"), "after_call_url": rx.url("/after"),
                      "recording_wait": "2s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    // Units of work: a call alone, or a batch of 2 to 20 starts (with their
    // ends sent one by one beside it).
    let mut units = Vec::new();
    let mut i = 0;
    while i < CALLS {
        let n = if rng.random_bool(0.05) {
            rng.random_range(2..=20).min(CALLS - i)
        } else {
            1
        };
        units.push((i..i + n).map(|j| plan(&mut rng, j)).collect::<Vec<_>>());
        i += n;
    }
    let batched = units.iter().filter(|u| u.len() > 1).count();
    let plans: HashMap<String, Plan> = units
        .iter()
        .flatten()
        .map(|p| (p.id.clone(), p.clone()))
        .collect();
    let room = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    for unit in units {
        let permit = room.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(client, unit).await;
            drop(permit);
        }));
    }
    for t in tasks {
        t.await
            .expect("every event is answered 2xx (or 404, then sent again)");
    }

    eventually(
        Duration::from_secs(180),
        "every webhook delivered",
        || async {
            let (total, delivered): (i64, i64) = sqlx::query_as(
                "select count(*), count(*) filter (where state = 'delivered') from deliveries",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (total == 2 * CALLS as i64 && delivered == total).then_some(())
        },
    )
    .await;

    let per_call: Vec<(String, i64)> = sqlx::query_as(
        "select c.id, count(d.id) from calls c
           left join deliveries d on d.call_id = c.id and d.kind = 'during_call'
          group by c.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_call.len(), CALLS, "every call stored");
    assert!(
        per_call.iter().all(|(_, n)| *n == 1),
        "exactly one during-call delivery per call"
    );

    // At the receiver: each webhook (by webhook-id), and for each call, its
    // during-call webhook's last arrival before its after-call webhook's first.
    let kinds: HashMap<String, (String, String)> =
        sqlx::query_as::<_, (uuid::Uuid, String, String)>(
            "select id, call_id, kind from deliveries",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, call, kind)| (id.to_string(), (call, kind)))
        .collect();
    let mut arrivals: HashMap<String, (Vec<std::time::Instant>, Vec<std::time::Instant>)> =
        HashMap::new();
    let got = rx.drain();
    let outcomes = client.recordings.lock().unwrap().clone();
    for r in &got {
        let (call, kind) = &kinds[r.header("webhook-id")];
        let entry = arrivals.entry(call.clone()).or_default();
        match kind.as_str() {
            "during_call" => entry.0.push(r.at),
            _ => {
                entry.1.push(r.at);
                // A recording reported before the after-call webhook went
                // is in it; one reported after is not.
                let sent = r.json()["link"].as_str().unwrap_or_default().to_owned();
                let recording = plans[call].recording.map(|_| link(&plans[call]));
                match outcomes.get(call).map(String::as_str) {
                    None => assert_eq!(sent, "", "call {call}: no recording"),
                    Some("kept_for_end" | "sent_with_it") => {
                        assert_eq!(Some(sent), recording, "call {call}: its recording");
                    }
                    Some("sent_without_it") => assert_eq!(sent, "", "call {call}: gone without"),
                    Some(other) => panic!("call {call}: recording answered {other}"),
                }
            }
        }
    }
    let links: Vec<(String, Option<String>)> = sqlx::query_as("select id, link from calls")
        .fetch_all(&pool)
        .await
        .unwrap();
    for (call, stored) in links {
        let expected = plans[&call].recording.map(|_| link(&plans[&call]));
        assert_eq!(stored, expected, "call {call}: its recording stored");
    }
    assert_eq!(arrivals.len(), CALLS, "every call's webhooks arrived");
    for (call, (during, after)) in &arrivals {
        assert!(
            !during.is_empty() && !after.is_empty(),
            "call {call}: both webhooks"
        );
        assert!(
            during.iter().max() < after.iter().min(),
            "call {call}: an after-call webhook arrived before its during-call one was final"
        );
    }
    eprintln!(
        "{CALLS} calls ({batched} batches, {} recordings), {} webhooks received, seed {seed}",
        outcomes.len(),
        got.len()
    );
    dispatcher.terminate().await;
    a.terminate().await;
    b.terminate().await;
}
