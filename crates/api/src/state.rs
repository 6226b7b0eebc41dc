use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::auth::NamedToken;
use crate::throttle::Throttle;
use callhook_core::{Sealer, StoredSecret};
use callhook_dispatch::Sender;
use callhook_ingest::Ingest;
use callhook_store::health::HealthSettings;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

/// The bearer tokens of the two APIs, each with the name the audit log
/// records. Wrapped so they never reach a log.
#[derive(Clone)]
pub struct Tokens {
    pub admin: Vec<NamedToken>,
    pub ingest: Vec<NamedToken>,
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
    /// Stores call events and sets their deliveries on their way.
    pub calls: Ingest,
    pub ingest: Arc<IngestSettings>,
    pub settings: ApiSettings,
    /// Held by every clone: background tasks of the API (the gauges'
    /// refresher) end once the last one is dropped.
    pub(crate) alive: Arc<()>,
    /// Seals new signing secrets, opens stored ones (`CALLHOOK_SECRET_KEY`).
    pub sealer: Sealer,
    /// Counts wrong tokens and sign-ins per client address.
    pub(crate) throttle: Arc<Throttle>,
}

/// The API's own limits and policies (set from the binary's config).
#[derive(Debug, Clone, Copy)]
pub struct ApiSettings {
    /// Longest one request may take, reading its body included (`408` after).
    pub request_timeout: Duration,
    /// Ingest requests handled at once; more are shed with `503 overloaded`.
    pub max_inflight_requests: usize,
    /// How long the old signing secret keeps signing after a rotation.
    pub secret_rotation_overlap: Duration,
    /// How often the gauges read from the database are refreshed (a scrape
    /// only renders what was read last).
    pub gauge_interval: Duration,
    /// Endpoint health (an operator's pause and enable, a URL change).
    pub health: HealthSettings,
    /// Serve the operator's console under `/console`.
    pub console: bool,
    /// A console session's absolute lifetime: signed in longer ago than
    /// this, it ends however busy it is.
    pub console_session_max: Duration,
    /// The most a webhook body may weigh (`CALLHOOK_MAX_PAYLOAD_BYTES`): a
    /// scenario whose custom fields alone would pass it is refused.
    pub max_payload_bytes: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_inflight_requests: 512,
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
            gauge_interval: Duration::from_secs(15),
            health: HealthSettings::default(),
            console: true,
            console_session_max: Duration::from_secs(12 * 3600),
            max_payload_bytes: callhook_core::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

impl AppState {
    /// The state of a process, whose call events go through `calls`.
    pub fn new(pool: PgPool, sender: Sender, tokens: Tokens, calls: Ingest) -> Self {
        Self {
            calls,
            alive: Arc::new(()),
            sealer: Sealer::plain(),
            pool,
            sender,
            tokens: Arc::new(tokens),
            metrics: metrics_handle(),
            ingest: Arc::new(IngestSettings::default()),
            settings: ApiSettings::default(),
            throttle: Arc::new(Throttle::new(Vec::new())),
        }
    }

    /// The same state trusting `X-Forwarded-For` and `X-Forwarded-Proto`
    /// from these proxies (`CALLHOOK_TRUSTED_PROXIES`) only.
    pub fn with_trusted_proxies(mut self, proxies: Vec<std::net::IpAddr>) -> Self {
        self.throttle = Arc::new(Throttle::new(proxies));
        self
    }

    /// The same state with these ingest settings.
    pub fn with_ingest(mut self, ingest: IngestSettings) -> Self {
        self.ingest = Arc::new(ingest);
        self
    }

    /// The same state sealing secrets with this sealer.
    pub fn with_sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = sealer;
        self
    }

    /// The `whsec_…` text of a scenario's stored secret (for the admin
    /// API's answers); an error names the scenario.
    pub fn reveal(
        &self,
        scenario_id: uuid::Uuid,
        stored: &StoredSecret,
    ) -> Result<String, crate::ApiError> {
        self.sealer.reveal(stored, scenario_id).map_err(|e| {
            callhook_store::StoreError::Corrupt(format!(
                "scenario {scenario_id}'s stored signing secret cannot be read ({e}): check CALLHOOK_SECRET_KEY, or rotate the secret"
            ))
            .into()
        })
    }

    /// The same state with other limits.
    pub fn with_settings(mut self, settings: ApiSettings) -> Self {
        self.settings = settings;
        self
    }
}

/// Installs the process-wide Prometheus recorder now (it is otherwise
/// installed with the first [`AppState`]). A process calls this before it
/// starts its tasks: a metric recorded before the recorder exists is lost
/// (the upkeep leader's gauge, set once when it wins the lock, stayed 0).
pub fn install_metrics() {
    metrics_handle();
}

/// The process-wide Prometheus recorder, installed on first use.
pub(crate) fn metrics_handle() -> PrometheusHandle {
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
