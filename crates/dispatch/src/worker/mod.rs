//! The dispatcher: a few actors around one pool of worker seats
//! ([`crate::Seats`]).
//!
//! - [`claim`]: claims due deliveries in batches (as many as there are free
//!   workers), woken by [`listen`] (`LISTEN/NOTIFY`) with a poll as fallback;
//! - [`handoffs`]: takes the deliveries this process's ingest hands over;
//! - [`probes`]: takes each paused endpoint's probe when it is due;
//! - [`send`]: one task per delivery sends it and decides its fate;
//! - [`writer`]: records results in batches, so a burst costs a few
//!   transactions rather than one per webhook.

mod claim;
mod handoffs;
mod hosts;
mod listen;
mod probes;
mod send;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use callhook_core::{RetrySchedule, Sealer, SigningSecret};
use callhook_store::health::HealthSettings;
use callhook_store::queue::{self, Claimed, Completion};
use callhook_store::StoreError;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::handoff::{Handoff, HandoffInbox, Sending};
use crate::seats::{Seat, Seats};
use crate::sender::Sender;
use hosts::HostLimits;

pub use send::{attempt_record, decide};

/// Where operator events (`endpoint.paused`, …) go, and their key.
#[derive(Clone)]
pub struct OperatorWebhook {
    pub url: String,
    pub secret: SigningSecret,
}

impl std::fmt::Debug for OperatorWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorWebhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Webhooks in flight at once.
    pub concurrency: usize,
    /// Webhooks in flight at once to one host, so a slow receiver cannot
    /// take every worker.
    pub per_host: usize,
    /// Webhooks in flight at once to one endpoint, across processes, when
    /// its scenario sets no cap of its own (see `callhook_store::queue::claim`).
    pub endpoint_cap: i32,
    /// How long a claim holds a delivery; must exceed the request timeout
    /// plus `seat_wait`.
    pub lease: Duration,
    /// How long a delivery handed over by ingest may wait for a free worker,
    /// or a claimed one for its receiver host's turn, before it goes back to
    /// the queue.
    pub seat_wait: Duration,
    /// Longest sleep without a notification.
    pub poll_interval: Duration,
    pub schedule: RetrySchedule,
    /// At shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// Endpoint health: when endpoints fail, pause, get probed, drain.
    pub health: HealthSettings,
    /// Where operator events go (none: they are not queued).
    pub operator: Option<OperatorWebhook>,
    /// Opens the signing secrets as stored.
    pub sealer: Sealer,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        let concurrency = 64;
        Self {
            concurrency,
            per_host: 16,
            endpoint_cap: crate::seats::default_endpoint_cap(concurrency),
            lease: Duration::from_secs(60),
            seat_wait: Duration::from_secs(1),
            poll_interval: Duration::from_secs(1),
            schedule: RetrySchedule::default(),
            shutdown_grace: Duration::from_secs(20),
            health: HealthSettings::default(),
            operator: None,
            sealer: Sealer::plain(),
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
/// hands back the leases of whatever is left. Claimed deliveries, and those
/// this process's ingest hands over, come in through `door` (see
/// [`crate::Handoff`]; make it with [`crate::handoff`]).
///
/// Stays whole: the actors are started, then stopped in this order, and that
/// order is the shutdown guarantee (nothing claimed is left unrecorded).
pub async fn run(
    pool: PgPool,
    sender: Sender,
    config: DispatchConfig,
    door: (Handoff, HandoffInbox),
    shutdown: CancellationToken,
) {
    let (door, inbox) = door;
    let wake = Arc::new(Notify::new());
    let in_flight: InFlight = Arc::default();
    let (done_tx, done_rx) =
        mpsc::channel::<Done>(Seats::unrecorded_capacity(config.concurrency) + 16);

    let listener = tokio::spawn(listen::listen(pool.clone(), wake.clone(), shutdown.clone()));
    let writer = tokio::spawn(writer::write_completions(
        pool.clone(),
        done_rx,
        in_flight.clone(),
        wake.clone(),
        config.health,
    ));

    let crew = Crew {
        ctx: Arc::new(Ctx {
            sender,
            schedule: config.schedule.clone(),
            hosts: HostLimits::new(config.per_host, config.seat_wait),
            done: done_tx,
            operator: config.operator.clone(),
            sealer: config.sealer.clone(),
        }),
        tracker: TaskTracker::new(),
        in_flight: in_flight.clone(),
    };
    let seats = inbox.seats.clone();
    let probing = tokio::spawn(probes::take_probes(
        pool.clone(),
        config.clone(),
        crew.clone(),
        seats.clone(),
        shutdown.clone(),
    ));
    let receiving = tokio::spawn(handoffs::receive_handoffs(
        inbox,
        pool.clone(),
        config.seat_wait,
        crew.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    claim::claim_loop(&pool, &config, &door, &wake, &shutdown).await;
    let _ = probing.await;

    // No more hand-offs: ingest now queues for claims. Deliveries handed
    // off but not yet started are given back below with the rest.
    seats.close();
    if let Ok(inbox) = receiving.await {
        for h in inbox.close() {
            crew.track(&h.row);
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

/// A result on its way to the database, holding its place among the
/// unrecorded.
struct Done {
    completion: Completion,
    slot: OwnedSemaphorePermit,
}

/// What every worker shares.
struct Ctx {
    sender: Sender,
    schedule: RetrySchedule,
    hosts: HostLimits,
    done: mpsc::Sender<Done>,
    operator: Option<OperatorWebhook>,
    sealer: Sealer,
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

    /// Sends one leased delivery on its own task: its request slot goes
    /// back when the request is done, its place among the unrecorded when
    /// the writer has recorded the result. A row from the door brings its
    /// [`Sending`], held until the worker is done with it.
    fn spawn(&self, row: Claimed, seat: Seat, sending: Option<Sending>) {
        self.track(&row);
        let ctx = self.ctx.clone();
        self.tracker.spawn(async move {
            let (completion, slot) = send::process(&ctx, row, seat).await;
            drop(sending);
            // The writer only stops after every worker has finished.
            let _ = ctx.done.send(Done { completion, slot }).await;
        });
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
