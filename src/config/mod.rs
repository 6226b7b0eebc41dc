//! One typed configuration, from flags and environment variables, validated
//! before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use callhook_core::RetrySchedule;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(name = "callhook", version, about = "Call-tracking webhook dispatcher")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the APIs and/or dispatch webhooks (applies pending migrations first).
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations and exit.
    Migrate(DbConfig),
    /// Re-seal every scenario's signing secrets under CALLHOOK_SECRET_KEY
    /// (after a key rotation, with the old key as CALLHOOK_SECRET_KEY_PREVIOUS;
    /// or to seal secrets stored before a key was set), and exit.
    RotateSecretKey(RotateKeyConfig),
}

/// The key signing secrets are sealed with at rest.
#[derive(Debug, Clone, Args)]
pub struct SecretKeyConfig {
    /// 32 random bytes, base64 (`openssl rand -base64 32`): signing secrets
    /// are stored sealed with it. Unset: they are stored as they are.
    #[arg(long, env = "CALLHOOK_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// The key before the last key rotation: still opens what it sealed
    /// until `callhook rotate-secret-key` has re-sealed every secret.
    #[arg(long, env = "CALLHOOK_SECRET_KEY_PREVIOUS", hide_env_values = true)]
    pub secret_key_previous: Option<SecretString>,
}

impl SecretKeyConfig {
    /// The sealer of these keys, checked.
    pub fn sealer(&self) -> Result<callhook_core::Sealer, String> {
        use secrecy::ExposeSecret as _;
        let key = |v: &Option<SecretString>, name: &str| {
            v.as_ref()
                .filter(|k| !k.expose_secret().trim().is_empty())
                .map(|k| {
                    callhook_core::SealingKey::parse(k.expose_secret())
                        .map_err(|e| format!("{name} {e}"))
                })
                .transpose()
        };
        let current = key(&self.secret_key, "CALLHOOK_SECRET_KEY")?;
        let previous = key(&self.secret_key_previous, "CALLHOOK_SECRET_KEY_PREVIOUS")?;
        if current.is_none() && previous.is_some() {
            return Err("CALLHOOK_SECRET_KEY_PREVIOUS is set without CALLHOOK_SECRET_KEY".into());
        }
        Ok(callhook_core::Sealer::new(current, previous))
    }
}

/// `callhook rotate-secret-key`.
#[derive(Debug, Clone, Args)]
pub struct RotateKeyConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub keys: SecretKeyConfig,
}

/// Which parts of callhook this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Admin and ingest APIs (plus health and metrics), no dispatching.
    Api,
    /// Dispatching only (health and metrics are still served).
    Dispatcher,
    /// Both.
    All,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }

    pub fn dispatches(self) -> bool {
        matches!(self, Role::Dispatcher | Role::All)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct DbConfig {
    /// Postgres connection URL, e.g. postgres://postgres@127.0.0.1:5432/callhook.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// How long to keep retrying an unreachable database at start-up.
    #[arg(long, env = "CALLHOOK_DB_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub db_wait: Duration,
    /// The size of this process's Postgres pool (upkeep's leader holds one
    /// connection more, outside it).
    #[arg(long, env = "CALLHOOK_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
    /// Longest a request waits for a database connection: with the
    /// database away, a start is answered `503` with `Retry-After` within it.
    #[arg(long, env = "CALLHOOK_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,
    /// Log format: text or json.
    #[arg(long, env = "CALLHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub keys: SecretKeyConfig,
    /// Address the HTTP server listens on.
    #[arg(long, env = "CALLHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Bearer token of the admin API (required when serving the API).
    #[arg(long, env = "CALLHOOK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// Bearer token of the ingest API (required when serving the API).
    #[arg(long, env = "CALLHOOK_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<SecretString>,
    /// More admin tokens, `name:token,name:token` (rotate one without
    /// downtime; the name is what the audit log records). With
    /// CALLHOOK_ADMIN_TOKEN too, that one is named `admin`.
    #[arg(long, env = "CALLHOOK_ADMIN_TOKENS", hide_env_values = true)]
    pub admin_tokens: Option<SecretString>,
    /// More ingest tokens, `name:token,…` (CALLHOOK_INGEST_TOKEN is `ingest`).
    #[arg(long, env = "CALLHOOK_INGEST_TOKENS", hide_env_values = true)]
    pub ingest_tokens: Option<SecretString>,
    /// Delays before each retry, comma-separated; the first attempt is immediate.
    #[arg(long, env = "CALLHOOK_RETRY_SCHEDULE", default_value = RetrySchedule::DEFAULT)]
    pub retry_schedule: RetrySchedule,
    /// Whole-request timeout of a webhook (connect to last byte).
    #[arg(long, env = "CALLHOOK_REQUEST_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Connect timeout of a webhook.
    #[arg(long, env = "CALLHOOK_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Webhooks in flight at once in this process.
    #[arg(long, env = "CALLHOOK_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Webhooks in flight at once to one receiver host.
    #[arg(long, env = "CALLHOOK_PER_HOST_CONCURRENCY", default_value_t = 16)]
    pub per_host_concurrency: usize,
    /// Webhooks claimed and not yet recorded for one endpoint (a scenario's
    /// during-call or after-call URL), across every dispatcher process; an
    /// endpoint may set its own (`PUT .../endpoints/{kind}/limits`). Unset:
    /// four times `CALLHOOK_CONCURRENCY` (the places among the unrecorded;
    /// see [`ServeConfig::endpoint_cap`]).
    #[arg(long, env = "CALLHOOK_ENDPOINT_MAX_IN_FLIGHT", value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub endpoint_max_in_flight: Option<i32>,
    /// Allow webhooks to loopback, private and other internal addresses.
    #[arg(long, env = "CALLHOOK_ALLOW_PRIVATE_DESTINATIONS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_destinations: bool,
    /// How long a claimed delivery is held before another process may take it
    /// over; must exceed the request timeout.
    #[arg(long, env = "CALLHOOK_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// How long a delivery may wait for a worker (handed off by ingest) or
    /// for its receiver host's turn before it goes back to the queue. Not a
    /// setting: derived from the lease (`ServeConfig::seat_wait`); a test
    /// holds it longer to make a wait certain.
    #[arg(skip)]
    pub seat_wait: Option<Duration>,
    /// Longest a dispatcher sleeps without a notification.
    #[arg(long, env = "CALLHOOK_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// At shutdown, how long in-flight webhooks may take to finish.
    #[arg(long, env = "CALLHOOK_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How long a visit's tracking number stays reserved after its last
    /// heartbeat (`POST /api/v1/visits`).
    #[arg(long, env = "CALLHOOK_RESERVATION_HOLD", default_value = "150s", value_parser = humantime::parse_duration)]
    pub reservation_hold: Duration,
    /// How long a call's end that arrives before its start holds the
    /// after-call webhook, so a start crossing it on the wire goes first;
    /// `0s` sends it at once.
    #[arg(long, env = "CALLHOOK_START_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub start_grace: Duration,
    /// How long after its call's end a during-call webhook not delivered
    /// yet may still go; then it is cancelled (`call_ended`) and its
    /// after-call webhook goes. A scenario's `during_call_grace` overrides it.
    #[arg(long, env = "CALLHOOK_DURING_CALL_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub during_call_grace: Duration,
    /// The most a webhook body may weigh, in bytes. A scenario whose custom
    /// fields alone would pass it is refused (422); a call whose values make
    /// a webhook pass it has that delivery stored cancelled (`payload_too_large`).
    #[arg(long, env = "CALLHOOK_MAX_PAYLOAD_BYTES", default_value_t = callhook_core::DEFAULT_MAX_PAYLOAD_BYTES,
          value_parser = clap::value_parser!(usize))]
    pub max_payload_bytes: usize,
    /// Longest a client may take to send a request's headers; the
    /// connection is closed after it (slow-header clients).
    #[arg(long, env = "CALLHOOK_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Longest one API request may take, reading a dribbled body included;
    /// answered `408` after it.
    #[arg(long, env = "CALLHOOK_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http_request_timeout: Duration,
    /// Ingest requests handled at once; beyond it a request is answered
    /// `503 overloaded` with `Retry-After` at once rather than queued.
    #[arg(long, env = "CALLHOOK_MAX_INFLIGHT_REQUESTS", default_value_t = 512)]
    pub max_inflight_requests: usize,
    /// How long webhooks keep carrying the old secret's signature too after
    /// a secret rotation.
    #[arg(long, env = "CALLHOOK_SECRET_ROTATION_OVERLAP", default_value = "24h", value_parser = humantime::parse_duration)]
    pub secret_rotation_overlap: Duration,
    /// Serve the operator's console under /console (API role only).
    #[arg(long, env = "CALLHOOK_CONSOLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub console: bool,
    /// A console session's absolute lifetime: it ends this long after its
    /// sign-in, however active (each request renews only the 30-minute idle expiry).
    #[arg(long, env = "CALLHOOK_CONSOLE_SESSION_MAX", default_value = "12h", value_parser = humantime::parse_duration)]
    pub console_session_max: Duration,
    /// Proxies (IP addresses, comma-separated) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed: the client address that failed
    /// sign-ins and wrong tokens are counted by, and whether the console's
    /// cookie is `Secure`. From anyone else these headers are ignored.
    #[arg(long, env = "CALLHOOK_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often the gauges read from the database (backlog, endpoints,
    /// queue health) are refreshed; a scrape renders the last reading.
    #[arg(long, env = "CALLHOOK_GAUGE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub gauge_interval: Duration,
    /// Send every webhook through this HTTP(S) proxy (an egress proxy).
    /// Proxy environment variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) are
    /// never used; destinations are still checked before the proxy sees them.
    #[arg(long, env = "CALLHOOK_EGRESS_PROXY")]
    pub egress_proxy: Option<String>,
    /// Consecutive failed attempts after which an endpoint is `failing`.
    #[arg(long, env = "CALLHOOK_FAILING_AFTER", default_value_t = 5)]
    pub failing_after: u32,
    /// No success for this long (since its failures began) pauses an
    /// endpoint: its deliveries wait, and one goes as a probe now and then.
    #[arg(long, env = "CALLHOOK_PAUSE_AFTER", default_value = "1h", value_parser = humantime::parse_duration)]
    pub pause_after: Duration,
    /// How often a paused endpoint gets a probe.
    #[arg(long, env = "CALLHOOK_PROBE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// No success for this long disables an endpoint (nothing is sent until
    /// an operator enables it; its deliveries wait).
    #[arg(long, env = "CALLHOOK_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration)]
    pub disable_after: Duration,
    /// Deliveries per second a recovered or enabled endpoint's waiting
    /// deliveries are released at, so a receiver coming back is not flooded.
    #[arg(long, env = "CALLHOOK_DRAIN_RATE", default_value_t = 50)]
    pub drain_rate: u32,
    /// Where operator events (`endpoint.failing`, `.paused`, `.disabled`,
    /// `.recovered`) are POSTed; unset: none are sent.
    #[arg(long, env = "CALLHOOK_OPERATOR_WEBHOOK_URL")]
    pub operator_webhook_url: Option<String>,
    /// The `whsec_…` secret operator events are signed with (Standard Webhooks).
    #[arg(long, env = "CALLHOOK_OPERATOR_WEBHOOK_SECRET", hide_env_values = true)]
    pub operator_webhook_secret: Option<SecretString>,
    /// What this process runs: api, dispatcher or all.
    #[arg(long, env = "CALLHOOK_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Days of history kept: older attempts, delivered and cancelled
    /// deliveries and calls without deliveries are deleted (0 = keep all).
    #[arg(long, env = "CALLHOOK_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// Do not apply pending migrations at start.
    #[arg(long, env = "CALLHOOK_NO_MIGRATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_migrate: bool,
}

mod derived;
#[cfg(test)]
mod readme_table;
