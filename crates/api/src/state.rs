use std::sync::{Arc, OnceLock};
use std::time::Duration;

use callhook_dispatch::Sender;
use callhook_store::queue::Notifier;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::SecretString;
use sqlx::PgPool;

/// The bearer tokens of the two APIs. Wrapped so they never reach a log.
#[derive(Clone)]
pub struct Tokens {
    pub admin: SecretString,
    pub ingest: SecretString,
}

/// Settings of the ingest API.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// How long a visit's number stays reserved after its last heartbeat.
    pub reservation_hold: Duration,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            reservation_hold: Duration::from_secs(150),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The dispatcher's sender, for test-sends.
    pub sender: Sender,
    pub tokens: Arc<Tokens>,
    pub metrics: PrometheusHandle,
    /// Wakes dispatchers after an ingest queued deliveries.
    pub notifier: Notifier,
    pub ingest: Arc<IngestSettings>,
}

impl AppState {
    pub fn new(pool: PgPool, sender: Sender, tokens: Tokens) -> Self {
        Self {
            notifier: Notifier::spawn(pool.clone()),
            pool,
            sender,
            tokens: Arc::new(tokens),
            metrics: metrics_handle(),
            ingest: Arc::new(IngestSettings::default()),
        }
    }

    /// The same state with these ingest settings.
    pub fn with_ingest(mut self, ingest: IngestSettings) -> Self {
        self.ingest = Arc::new(ingest);
        self
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then our
            // handle renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
