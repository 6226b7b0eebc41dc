//! The dispatcher loop.
//!
//! One task claims due deliveries in batches (as many as there are free
//! workers), woken by `LISTEN/NOTIFY` with a poll as fallback; one task per
//! claimed delivery sends it; one writer task records results in batches, so
//! a burst costs a few transactions rather than one per webhook.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use callhook_core::{CancelReason, RetrySchedule, SigningSecret};
use callhook_store::queue::{self, AttemptRecord, Claimed, Completion, Outcome};
use callhook_store::StoreError;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::handoff::{Handed, HandoffInbox};
use crate::sender::{AttemptResult, Sender, Webhook};

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Webhooks in flight at once.
    pub concurrency: usize,
    /// Webhooks in flight at once to one host, so a slow receiver cannot
    /// take every worker.
    pub per_host: usize,
    /// How long a claim holds a delivery; must exceed the request timeout
    /// plus `handoff_wait`.
    pub lease: Duration,
    /// How long a delivery handed over by ingest may wait for a free worker
    /// before it goes back to the queue.
    pub handoff_wait: Duration,
    /// Longest sleep without a notification.
    pub poll_interval: Duration,
    pub schedule: RetrySchedule,
    /// At shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            per_host: 16,
            lease: Duration::from_secs(60),
            handoff_wait: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            schedule: RetrySchedule::default(),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Deliveries claimed by this process and not yet recorded: (id → lease token).
type InFlight = Arc<Mutex<HashMap<Uuid, Uuid>>>;

/// Forgets deliveries that are recorded or handed back: a shutdown has
/// nothing to give back for them.
fn untrack<'a>(in_flight: &InFlight, ids: impl IntoIterator<Item = &'a Uuid>) {
    let mut map = in_flight.lock().expect("in-flight lock");
    for id in ids {
        map.remove(id);
    }
}

/// Runs the dispatcher until `shutdown` is cancelled; then stops claiming,
/// lets in-flight requests finish within the grace period, records them and
/// hands back the leases of whatever is left. With an `inbox`, it also sends
/// the deliveries this process's ingest hands it (see [`crate::Handoff`]).
pub async fn run(
    pool: PgPool,
    sender: Sender,
    config: DispatchConfig,
    inbox: Option<HandoffInbox>,
    shutdown: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let in_flight: InFlight = Arc::default();
    let (done_tx, done_rx) = mpsc::channel::<Done>(config.concurrency + 16);

    let listener = tokio::spawn(listen(pool.clone(), wake.clone(), shutdown.clone()));
    let writer = tokio::spawn(write_completions(
        pool.clone(),
        done_rx,
        in_flight.clone(),
        wake.clone(),
    ));

    let crew = Crew {
        ctx: Arc::new(Ctx {
            sender,
            schedule: config.schedule.clone(),
            hosts: HostLimits::new(config.per_host),
            done: done_tx,
        }),
        tracker: TaskTracker::new(),
        in_flight: in_flight.clone(),
    };
    let slots = match &inbox {
        Some(inbox) => inbox.slots.clone(),
        None => Arc::new(Semaphore::new(config.concurrency)),
    };
    let receiving = inbox.map(|inbox| {
        tokio::spawn(receive_handoffs(
            inbox,
            pool.clone(),
            config.handoff_wait,
            crew.clone(),
            wake.clone(),
            shutdown.clone(),
        ))
    });
    claim_loop(&pool, &config, &crew, &slots, &wake, &shutdown).await;

    // No more hand-offs: ingest now queues for claims. Deliveries handed
    // off but not yet started are given back below with the rest.
    slots.close();
    if let Some(task) = receiving {
        if let Ok(mut inbox) = task.await {
            while let Ok(h) = inbox.rx.try_recv() {
                crew.track(&h.row);
            }
        }
    }

    crew.tracker.close();
    if tokio::time::timeout(config.shutdown_grace, crew.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.shutdown_grace, "in-flight webhooks did not finish within the grace period");
    }
    drop(crew); // holds the last sender of `done`: the writer drains and ends
    let _ = writer.await;
    listener.abort();
    // Its connection goes back to the pool before we return.
    let _ = listener.await;

    let left: Vec<(Uuid, Uuid)> = in_flight.lock().expect("in-flight lock").drain().collect();
    if !left.is_empty() {
        let (ids, tokens): (Vec<_>, Vec<_>) = left.into_iter().unzip();
        match queue::release(&pool, &ids, &tokens).await {
            Ok(n) => tracing::info!(released = n, "handed back unfinished deliveries"),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand back leases; they expire by themselves")
            }
        }
    }
    tracing::info!("dispatcher stopped");
}

/// A result on its way to the database, holding its worker's slot.
struct Done {
    completion: Completion,
    slot: OwnedSemaphorePermit,
}

struct Ctx {
    sender: Sender,
    schedule: RetrySchedule,
    hosts: HostLimits,
    done: mpsc::Sender<Done>,
}

/// Sends what ingest hands over until shutdown, each once a worker slot is
/// free. A delivery that has waited `wait` since it was handed over goes back
/// to the queue for claims, with every other that waited as long (one
/// statement): a wait never eats into the lease the request needs, however
/// many wait. Returns the inbox, so what is left in it can be given back.
async fn receive_handoffs(
    mut inbox: HandoffInbox,
    pool: PgPool,
    wait: Duration,
    crew: Crew,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> HandoffInbox {
    let mut next: Option<Handed> = None;
    loop {
        let handed = match next.take() {
            Some(h) => h,
            None => tokio::select! {
                r = inbox.rx.recv() => match r {
                    Some(h) => h,
                    None => return inbox,
                },
                () = shutdown.cancelled() => return inbox,
            },
        };
        // Tracked from now on, so a shutdown hands it back.
        crew.track(&handed.row);
        let deadline = handed.at + wait;
        let slot = tokio::select! {
            s = tokio::time::timeout_at(deadline, inbox.slots.clone().acquire_owned()) => s,
            () = shutdown.cancelled() => return inbox,
        };
        inbox.taken();
        if let Ok(Ok(slot)) = slot {
            metrics::counter!("callhook_deliveries_handed_off_total").increment(1);
            crew.spawn(handed.row, slot);
            continue;
        }
        // Every worker has been busy (slow receivers): let claims take it,
        // and whatever else has waited as long.
        let mut back = vec![handed.row];
        while let Ok(more) = inbox.rx.try_recv() {
            if more.at + wait > tokio::time::Instant::now() {
                next = Some(more);
                break;
            }
            inbox.taken();
            back.push(more.row);
        }
        metrics::counter!("callhook_handoffs_returned_total").increment(back.len() as u64);
        let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) =
            back.iter().map(|r| (r.id, r.lease_token)).unzip();
        untrack(&crew.in_flight, &ids);
        if let Err(e) = queue::release(&pool, &ids, &tokens).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; they are sent when their lease runs out");
        }
        wake.notify_one();
    }
}

/// What starting a worker takes; shared by the claim loop and the hand-off.
#[derive(Clone)]
struct Crew {
    ctx: Arc<Ctx>,
    tracker: TaskTracker,
    in_flight: InFlight,
}

impl Crew {
    /// Remembers a leased delivery, to hand it back should we stop first.
    fn track(&self, row: &Claimed) {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .insert(row.id, row.lease_token);
    }

    /// Sends one leased delivery on its own task, holding its worker slot
    /// until the result is recorded.
    fn spawn(&self, row: Claimed, slot: OwnedSemaphorePermit) {
        self.track(&row);
        let ctx = self.ctx.clone();
        self.tracker.spawn(async move {
            let completion = process(&ctx, row).await;
            // The writer only stops after every worker has finished.
            // The worker's slot is freed once the result is recorded, so
            // at most `concurrency` deliveries are ever being sent and not
            // yet recorded: what a crash can make us send twice.
            let _ = ctx.done.send(Done { completion, slot }).await;
        });
    }
}

async fn claim_loop(
    pool: &PgPool,
    config: &DispatchConfig,
    crew: &Crew,
    slots: &Arc<Semaphore>,
    wake: &Notify,
    shutdown: &CancellationToken,
) {
    let mut backoff = db_backoff();
    loop {
        // Wait for at least one free worker.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            () = shutdown.cancelled() => return,
        };
        // Take every free slot now: ingest's hand-off takes slots too.
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let free = permits.len();
        let claimed = tokio::select! {
            r = queue::claim(pool, free as i64, config.lease) => r,
            () = shutdown.cancelled() => return,
        };
        let claimed = match claimed {
            Ok(rows) => {
                backoff = db_backoff();
                rows
            }
            Err(e) => {
                let pause = backoff.next().unwrap_or(Duration::from_secs(5));
                log_store_error(&e, "claiming deliveries", pause);
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let full = claimed.len() == free;
        // A claim returns at most `free` rows; unused slots go back.
        for (row, permit) in claimed.into_iter().zip(permits) {
            crew.spawn(row, permit);
        }
        if full {
            continue;
        }
        // Nothing more is due: sleep until woken, the next due time, or the poll.
        let sleep = match queue::next_due_in(pool).await {
            Ok(Some(d)) => d.min(config.poll_interval),
            _ => config.poll_interval,
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Sends one claimed delivery and decides its fate.
async fn process(ctx: &Ctx, row: Claimed) -> Completion {
    let completion = |outcome, attempt| Completion {
        id: row.id,
        lease_token: row.lease_token,
        outcome,
        attempt,
    };
    let Some(url) = row.url.as_deref() else {
        let reason = if row.signing_secret.is_none() {
            CancelReason::ScenarioDeleted
        } else {
            CancelReason::UrlRemoved
        };
        metrics::counter!("callhook_deliveries_total", "kind" => row.kind.as_str(), "outcome" => "cancelled").increment(1);
        return completion(Outcome::Cancelled(reason), None);
    };
    let Some(_host_slot) = ctx.hosts.acquire(url).await else {
        // The host has had its share of workers busy for a while (a slow or
        // hanging receiver): hand the delivery back and serve other hosts.
        return completion(Outcome::Deferred(Duration::from_millis(500)), None);
    };
    // The current secret, and during a rotation's overlap the previous one:
    // receivers still holding the old key keep verifying.
    let secrets: Vec<SigningSecret> = [&row.signing_secret, &row.previous_signing_secret]
        .into_iter()
        .filter_map(|s| SigningSecret::parse(s.as_deref()?).ok())
        .collect();
    let id = row.id.to_string();
    let result = ctx
        .sender
        .send(Webhook {
            url,
            id: &id,
            payload: row.payload.as_bytes(),
            secrets: &secrets,
        })
        .await;
    let attempt_no = row.attempt_count as u32 + 1;
    let outcome = decide(&ctx.schedule, &result, attempt_no);
    record_metrics(&row, &result, &outcome);
    tracing::debug!(
        delivery_id = %row.id, call_id = %row.call_id, kind = %row.kind, attempt = attempt_no,
        status = ?result.status, error = ?result.error_text(), ?outcome, "attempt"
    );
    completion(outcome, Some(attempt_record(url, &result)))
}

/// Delivered on 2xx; otherwise the next retry from the schedule, or failed.
pub fn decide(schedule: &RetrySchedule, result: &AttemptResult, attempt_no: u32) -> Outcome {
    if result.is_success() {
        return Outcome::Delivered;
    }
    match schedule.next_delay(attempt_no, rand::random::<f64>(), result.retry_after) {
        Some(delay) => Outcome::Retry(delay),
        None => Outcome::Failed,
    }
}

/// The attempt row for a result.
pub fn attempt_record(url: &str, result: &AttemptResult) -> AttemptRecord {
    AttemptRecord {
        url: url.to_owned(),
        started_at: result.started_at,
        duration_ms: i32::try_from(result.duration.as_millis()).unwrap_or(i32::MAX),
        response_status: result.status.map(i32::from),
        response_body: result.body.clone(),
        error: result.error_text().map(str::to_owned),
    }
}

fn record_metrics(row: &Claimed, result: &AttemptResult, outcome: &Outcome) {
    let error = match (result.error, result.status) {
        (Some(e), _) => e.as_str(),
        (None, Some(s)) if (200..300).contains(&s) => "none",
        (None, _) => "http_status",
    };
    metrics::counter!("callhook_attempts_total", "error" => error).increment(1);
    metrics::histogram!("callhook_receiver_response_seconds").record(result.duration.as_secs_f64());
    let final_outcome = match outcome {
        Outcome::Delivered => {
            let age = (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("callhook_ingest_to_delivery_seconds").record(age.as_secs_f64());
            Some("delivered")
        }
        Outcome::Failed => Some("failed"),
        _ => None,
    };
    if let Some(o) = final_outcome {
        metrics::counter!("callhook_deliveries_total", "kind" => row.kind.as_str(), "outcome" => o)
            .increment(1);
    }
}

/// Records results in batches: whatever has arrived since the last write
/// goes in one statement. A write that fails is retried with backoff; past
/// the lease the deliveries would be sent again anyway, so it gives up then.
async fn write_completions(
    pool: PgPool,
    mut rx: mpsc::Receiver<Done>,
    in_flight: InFlight,
    wake: Arc<Notify>,
) {
    const MAX_BATCH: usize = 512;
    let mut received = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        let (batch, slots): (Vec<Completion>, Vec<_>) =
            received.drain(..).map(|d| (d.completion, d.slot)).unzip();
        let mut backoff = db_backoff();
        let mut tries = 0;
        // Whether claims should look again (an after-call delivery was
        // unblocked, or we cannot tell).
        let mut unblocked = true;
        loop {
            match queue::complete(&pool, &batch).await {
                Ok(queue::Completed {
                    updated,
                    unblocked: n,
                }) => {
                    unblocked = n > 0;
                    if (updated as usize) < batch.len() {
                        tracing::warn!(
                            lost = batch.len() - updated as usize,
                            "some deliveries' leases had expired and were taken over; their results were not recorded"
                        );
                    }
                    break;
                }
                Err(e) => {
                    tries += 1;
                    let pause = backoff.next().unwrap_or(Duration::from_secs(5));
                    if tries > 12 {
                        tracing::error!(error = %e, count = batch.len(), "giving up recording results; these deliveries will be sent again when their leases expire");
                        break;
                    }
                    log_store_error(&e, "recording results", pause);
                    tokio::time::sleep(pause).await;
                }
            }
        }
        untrack(&in_flight, batch.iter().map(|c| &c.id));
        drop(slots); // frees the workers' slots
        if unblocked {
            wake.notify_one();
        }
    }
}

/// Listens for new-delivery notifications and wakes the claim loop. The
/// connection is re-established with backoff; every (re)connect also wakes
/// the loop, since notifications sent while disconnected are lost.
async fn listen(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = db_backoff();
    loop {
        let attempt = async {
            let mut listener = queue::subscribe(&pool).await?;
            wake.notify_one();
            loop {
                // `try_recv` returns `None` when the connection dropped.
                match listener.try_recv().await.map_err(StoreError::from)? {
                    Some(_) => wake.notify_one(),
                    None => return Ok::<(), StoreError>(()),
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            () = shutdown.cancelled() => return,
        };
        let pause = match result {
            Ok(()) => {
                backoff = db_backoff();
                Duration::from_millis(100)
            }
            Err(e) => {
                tracing::debug!(error = %e, "notification listener failed");
                backoff.next().unwrap_or(Duration::from_secs(5))
            }
        };
        tracing::warn!(retry_in = ?pause, "notification listener disconnected; polling meanwhile");
        wake.notify_one();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

fn db_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

fn log_store_error(e: &StoreError, doing: &str, retry_in: Duration) {
    match e {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, ?retry_in, "database unavailable while {doing}; retrying")
        }
        _ => tracing::error!(error = %e, ?retry_in, "database error while {doing}; retrying"),
    }
}

/// Per-host in-flight limits.
struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::default(),
        }
    }

    /// A slot for `url`'s host, waiting briefly for one: a fast receiver frees
    /// slots within milliseconds, a hanging one does not.
    async fn acquire(&self, url: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let host = reqwest::Url::parse(url)
            .ok()
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        let sem = {
            let mut hosts = self.hosts.lock().expect("host limits lock");
            if hosts.len() > 10_000 {
                // Forget idle hosts so the map cannot grow without bound.
                hosts.retain(|_, s| s.available_permits() < self.per_host);
            }
            hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        tokio::time::timeout(Duration::from_millis(100), sem.acquire_owned())
            .await
            .ok()?
            .ok()
    }
}
