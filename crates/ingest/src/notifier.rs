//! Wakes dispatchers (through `NOTIFY`) after deliveries were queued.

use sqlx::PgPool;
use tokio::sync::mpsc;

/// Wakes dispatchers (through `NOTIFY`) after deliveries were queued.
///
/// The `NOTIFY` is sent after the ingest transaction committed, from one
/// task, and signals that arrive while one is in flight fold into the next:
/// a `NOTIFY` inside the ingest transaction would make Postgres serialise
/// those commits on its notification queue lock, which caps ingest at one
/// WAL flush at a time.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// Room for one pending signal: more fold into it.
    signal: mpsc::Sender<()>,
}

impl Notifier {
    /// Starts the notifying task. It ends, releasing its hold on the pool,
    /// once every `Notifier` is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        let (signal, mut waiting) = mpsc::channel(1);
        tokio::spawn(async move {
            while waiting.recv().await.is_some() {
                if let Err(e) = callhook_store::queue::notify(&pool).await {
                    // Dispatchers poll as a fallback; nothing is lost.
                    tracing::debug!(error = %e, "could not notify dispatchers");
                }
            }
        });
        Self { signal }
    }

    /// Asks for a `NOTIFY` soon; cheap, never blocks.
    pub fn wake(&self) {
        // Full: a signal is pending already and covers this one.
        let _ = self.signal.try_send(());
    }
}
