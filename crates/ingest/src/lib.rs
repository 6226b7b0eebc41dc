//! The ingest layer: between the API's routes and the store, it turns call
//! events into committed rows and then sets their deliveries on their way.
//!
//! A start goes through the group commit ([`group_commit`]): concurrent
//! requests share one transaction, each answered after its commit. A batch
//! and an end are a transaction each. Once a transaction has committed, its
//! new deliveries go to this process's dispatcher through the hand-off (when
//! the process has one), and the rest wake every dispatcher with a `NOTIFY`
//! ([`Notifier`]), coalesced. The store runs the SQL and says what it left to
//! do; this crate does it, and counts it.
//!
//! Data walks one way: route → [`Ingest`] → one transaction in the store →
//! hand-off or queue → dispatcher.

pub mod group_commit;
mod notifier;

use std::sync::Arc;
use std::time::Duration;

use callhook_dispatch::Handoff;
use callhook_store::calls::{self, EndCall, IngestError, Ingested, NewWork, StartCall};
use callhook_store::StoreError;
use sqlx::PgPool;

pub use notifier::Notifier;

/// Transactions storing single start events at once: two keep one WAL flush
/// overlapping the next group's statements; more only make the groups
/// smaller. `callhook-bench burst`, alternated: 4 committers 4,381–4,623
/// deliveries/s at 0.226–0.234 ms of Postgres CPU each, 2 committers
/// 4,776–5,304/s at 0.164–0.182 ms (`docs/performance.md`). Once groups
/// are large, only one of them runs statements at a time: the next group is
/// cut when the running one commits (`group_commit`).
const START_COMMITTERS: usize = 2;

/// How often a transaction that lost a deadlock (or a serialization
/// conflict) is run again before its error is answered.
const TRANSIENT_TRIES: usize = 3;

/// How ingest behaves.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// How long an end that arrives before its start holds its after-call
    /// webhook for the start (`CALLHOOK_START_GRACE`).
    pub start_grace: Duration,
    /// How long after its call's end a during-call webhook not delivered
    /// yet may still go (`CALLHOOK_DURING_CALL_GRACE`).
    pub during_call_grace: Duration,
    /// The most a webhook body may weigh (`CALLHOOK_MAX_PAYLOAD_BYTES`): a
    /// heavier one's delivery is stored cancelled (`payload_too_large`).
    pub max_payload_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            start_grace: Duration::from_secs(10),
            during_call_grace: Duration::from_secs(30),
            max_payload_bytes: callhook_core::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// Stores call events and sees their deliveries sent. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ingest {
    outlet: Arc<Outlet>,
    starts: group_commit::StartQueue,
    config: Arc<IngestConfig>,
}

impl Ingest {
    /// Ingest for this process: with a `handoff`, new deliveries go straight
    /// to its dispatcher. Spawns the group commit's and the notifier's tasks.
    pub fn new(pool: PgPool, handoff: Option<Handoff>, config: IngestConfig) -> Self {
        let outlet = Arc::new(Outlet {
            notifier: Notifier::spawn(pool.clone()),
            pool,
            handoff,
            rules: calls::StartRules {
                max_payload: config.max_payload_bytes,
                during_call_grace: config.during_call_grace,
            },
        });
        Self {
            starts: group_commit::StartQueue::spawn(outlet.clone(), START_COMMITTERS),
            outlet,
            config: Arc::new(config),
        }
    }

    /// One start event, sharing its transaction with concurrent ones.
    pub async fn start(&self, input: StartCall) -> Result<Ingested, IngestError> {
        self.starts.start(input).await
    }

    /// Many start events in one transaction, a result each, in order.
    pub async fn start_batch(
        &self,
        inputs: &[StartCall],
    ) -> Result<Vec<Result<Ingested, IngestError>>, StoreError> {
        self.outlet.start_batch(inputs).await
    }

    /// An end event.
    pub async fn end(&self, call_id: &str, input: &EndCall) -> Result<Ingested, IngestError> {
        let graces = calls::Graces {
            start: self.config.start_grace,
            during_call: self.config.during_call_grace,
        };
        let max = self.config.max_payload_bytes;
        let (ingested, work) =
            transient_retry(|| calls::end(&self.outlet.pool, call_id, input, graces, max)).await?;
        self.outlet.set_off(work).await;
        Ok(ingested)
    }

    /// Stores a recording reported apart from the end, and puts it into the
    /// call's after-call webhook if that has not gone yet
    /// (`store::calls::recording`).
    pub async fn recording(
        &self,
        call_id: &str,
        input: &calls::Recording,
    ) -> Result<calls::RecordingStored, IngestError> {
        let max = self.config.max_payload_bytes;
        let (stored, work) =
            transient_retry(|| calls::recording(&self.outlet.pool, call_id, input, max)).await?;
        self.outlet.set_off(work).await;
        Ok(stored)
    }
}

/// Where committed work goes: this process's dispatcher, or every
/// dispatcher through the database.
#[derive(Debug)]
pub(crate) struct Outlet {
    pool: PgPool,
    notifier: Notifier,
    handoff: Option<Handoff>,
    /// `IngestConfig::max_payload_bytes` and `during_call_grace`.
    rules: calls::StartRules,
}

impl Outlet {
    /// Stores starts in one transaction, then sets their deliveries off.
    pub(crate) async fn start_batch(
        &self,
        inputs: &[StartCall],
    ) -> Result<Vec<Result<Ingested, IngestError>>, StoreError> {
        self.start_batch_then(inputs, &|| {}).await
    }

    /// [`Self::start_batch`], calling `committing` when the transaction's
    /// statements are done and it commits (again, should it be run again).
    pub(crate) async fn start_batch_then(
        &self,
        inputs: &[StartCall],
        committing: &(dyn Fn() + Sync),
    ) -> Result<Vec<Result<Ingested, IngestError>>, StoreError> {
        let plan = self.handoff.as_ref().map(Handoff::plan);
        let rules = self.rules;
        let batch = transient_retry(|| {
            calls::start_batch_then(&self.pool, inputs, plan, rules, committing)
        })
        .await?;
        self.set_off(batch.work).await;
        Ok(batch.results)
    }

    /// What a committed transaction left to do: hand leased deliveries to
    /// this process's dispatcher, wake the others for queued ones, count.
    async fn set_off(&self, work: NewWork) {
        for scenario_id in work.unattributed {
            metrics::counter!("callhook_calls_unattributed_total", "scenario_id" => scenario_id.to_string())
                .increment(1);
        }
        if work.queued > 0 {
            self.notifier.wake();
        }
        if let Some(h) = &self.handoff {
            h.deliver(&self.pool, work.leased).await;
        }
    }
}

/// Runs a transaction again when it lost a deadlock or a serialization
/// conflict (it was rolled back whole), up to [`TRANSIENT_TRIES`] times.
async fn transient_retry<T, E, F, Fut>(mut run: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Transient,
{
    let mut tries = 1;
    loop {
        match run().await {
            Err(e) if e.is_transient() && tries < TRANSIENT_TRIES => {
                tracing::debug!("ingest transaction rolled back (deadlock); running it again");
                tries += 1;
            }
            other => return other,
        }
    }
}

trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

impl Transient for IngestError {
    fn is_transient(&self) -> bool {
        matches!(self, IngestError::Store(e) if e.is_transient())
    }
}
