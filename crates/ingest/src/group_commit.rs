//! Group commit for single start events.
//!
//! Each start sent to `POST /api/v1/calls` would otherwise be its own
//! transaction: one commit, one WAL flush, per call. [`StartQueue`] lets
//! concurrent requests share a transaction instead. A request hands its
//! start to the queue and waits; a few committer tasks each take whatever
//! starts are waiting, store them with the store's `calls::start_batch` (one
//! commit) and answer every request. So a request is acknowledged only after its own
//! commit, exactly as before: durability is unchanged, only the number of
//! flushes drops.
//!
//! Under light load a committer is free when a start arrives and takes it
//! alone, so nothing waits for a batch to fill. Under load the committers
//! are busy, starts queue up, and the next free committer takes them all
//! when the group before it has run its statements and is committing: one
//! large group runs statements at a time, and its commit overlaps the next
//! group's statements. Small groups (light traffic) run side by side.

use std::sync::{Arc, Mutex};

use callhook_store::calls::{IngestError, Ingested, StartCall};
use callhook_store::StoreError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::Outlet;

/// Most starts one transaction takes.
const MAX_GROUP: usize = 128;

/// A group of at least this many starts keeps the turn to run statements
/// until it commits (the next group is cut then, whole); a smaller one passes
/// it at once, so light traffic (a quiet scenario's starts, one to a group)
/// never waits for another group's statements.
const PIPELINED_GROUP: usize = 4;

type Reply = oneshot::Sender<Result<Ingested, IngestError>>;

/// Stores single start events, many to a transaction (see the module docs),
/// and sees their deliveries sent: handed to this process's dispatcher, or
/// announced to every dispatcher with a `NOTIFY`.
#[derive(Clone, Debug)]
pub struct StartQueue {
    jobs: mpsc::UnboundedSender<(StartCall, Reply)>,
}

impl StartQueue {
    /// Starts the queue's task, with at most `committers` transactions open
    /// at once (each holds one pooled connection while it runs).
    pub(crate) fn spawn(outlet: Arc<Outlet>, committers: usize) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(outlet, rx, committers.max(1)));
        Self { jobs }
    }

    /// Stores one start, as a batch of one would be, and answers
    /// once it is committed. The number of waiting starts is bounded by the
    /// callers (the API sheds load past its in-flight limit).
    pub async fn start(&self, input: StartCall) -> Result<Ingested, IngestError> {
        let (reply, answer) = oneshot::channel();
        let call_id = input.id.clone();
        if let Err(mpsc::error::SendError((input, _))) = self.jobs.send((input, reply)) {
            // The queue's task is gone (the runtime is shutting down).
            return Err(gone(&input));
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(call_id = %call_id, "the committer stopped before answering");
                Err(IngestError::Interrupted)
            }
        }
    }
}

fn gone(input: &StartCall) -> IngestError {
    tracing::warn!(call_id = %input.id, "start queue stopped; nothing stored");
    IngestError::ShuttingDown
}

async fn run(
    outlet: Arc<Outlet>,
    mut rx: mpsc::UnboundedReceiver<(StartCall, Reply)>,
    committers: usize,
) {
    let free = Arc::new(Semaphore::new(committers));
    // The turn to run statements: one group at a time once groups are large
    // (`PIPELINED_GROUP`). The next group is cut when the running one commits,
    // so its statements overlap that commit's WAL flush, and it takes every
    // start that came meanwhile (two groups running statements at once would
    // be half the size, and in a flood of one endpoint the second would only
    // wait for the first's hand-off lock).
    let statements = Arc::new(Semaphore::new(1));
    loop {
        let Ok(committer) = free.clone().acquire_owned().await else {
            return;
        };
        let Ok(turn) = statements.clone().acquire_owned().await else {
            return;
        };
        let mut group = Vec::new();
        if rx.recv_many(&mut group, MAX_GROUP).await == 0 {
            return; // every sender is gone
        }
        let turn = (group.len() >= PIPELINED_GROUP).then_some(turn);
        let outlet = outlet.clone();
        tokio::spawn(async move {
            commit_group(&outlet, group, turn).await;
            drop(committer);
        });
    }
}

/// Stores a group in one transaction and answers each start. Should the
/// transaction fail as a whole, each start is retried on its own, so one
/// start's trouble never becomes its neighbours' error; but with the
/// database unreachable every start is answered at once (a `503`, within
/// the pool's acquire timeout), not one pool timeout after another.
async fn commit_group(
    outlet: &Outlet,
    group: Vec<(StartCall, Reply)>,
    turn: Option<OwnedSemaphorePermit>,
) {
    let (inputs, replies): (Vec<StartCall>, Vec<Reply>) = group.into_iter().unzip();
    let turn = Mutex::new(turn);
    let pass_turn = || drop(turn.lock().expect("never poisoned").take());
    let stored = outlet.start_batch_then(&inputs, &pass_turn).await;
    pass_turn(); // had it failed before its commit
    match stored {
        Ok(results) => {
            metrics::histogram!("callhook_ingest_group_size").record(inputs.len() as f64);
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) if inputs.len() == 1 => {
            let _ = replies.into_iter().next().map(|r| r.send(Err(e.into())));
        }
        Err(StoreError::Unavailable(e)) => {
            tracing::warn!(error = %e, size = inputs.len(), "database unavailable: the group's starts are answered 503");
            let why = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(IngestError::DatabaseUnavailable(why.clone())));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, size = inputs.len(), "group commit failed; storing its starts one by one");
            for (input, reply) in inputs.iter().zip(replies) {
                let result = match outlet.start_batch(std::slice::from_ref(input)).await {
                    Ok(mut one) => one.pop().expect("one result per start"),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
        }
    }
}
