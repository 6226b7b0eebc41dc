//! Wiring: database, dispatcher, HTTP server, graceful shutdown.

use std::time::Duration;

use anyhow::Context as _;
use axum::extract::Request;
use backon::{ExponentialBuilder, Retryable};
use callhook_api::{ApiSettings, AppState, IngestSettings, Tokens};
use callhook_dispatch::{DispatchConfig, Sender, SenderConfig};
use callhook_ingest::{Ingest, IngestConfig};
use callhook_store::health::HealthSettings;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::{DbConfig, ServeConfig};

/// Connects to Postgres, retrying with backoff for `db_wait`, then failing
/// with what to check.
pub async fn connect_db(db: &DbConfig) -> anyhow::Result<PgPool> {
    let url = db
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set: set it to the Postgres URL")?;
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    let pool_options = PgPoolOptions::new()
        .max_connections(db.db_max_connections)
        .acquire_timeout(db.db_acquire_timeout);
    let deadline = tokio::time::Instant::now() + db.db_wait;
    let connect = || pool_options.clone().connect_with(options.clone());
    connect
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .without_max_times(),
        )
        // A TLS failure (a certificate that does not verify, a server without
        // TLS under sslmode=require) is a configuration error: no retry.
        .when(|e| {
            callhook_store::error::is_unavailable(e)
                && !is_tls_failure(e)
                && tokio::time::Instant::now() < deadline
        })
        .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "database not reachable yet"))
        .await
        .map_err(|e| {
            let hint = if is_tls_failure(&e) {
                "could not set up TLS with the database: check sslmode and sslrootcert in DATABASE_URL \
                 (the server's certificate must verify against sslrootcert, and with verify-full \
                 name the host in the URL)"
                    .to_owned()
            } else {
                format!(
                    "could not connect to the database within {:?}: check that Postgres is running and DATABASE_URL is right",
                    db.db_wait
                )
            };
            anyhow::Error::new(e).context(hint)
        })
}

/// A TLS set-up failure: TLS required but unavailable, or a certificate
/// that does not verify (rustls reports it through the socket's IO error).
fn is_tls_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

/// Runs callhook on `listener` until `shutdown` is cancelled: the APIs and/or
/// the dispatcher, as `config.role` says. Migrations are the caller's job.
///
/// Stays whole: the start-up order, top to bottom (pool, dispatcher, ingest,
/// API, serve, then the shutdown in reverse), reads as one sequence.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    pool: PgPool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    // Before any task records a metric (a metric recorded earlier is lost).
    callhook_api::install_metrics();
    let operator = config.operator_webhook().map_err(anyhow::Error::msg)?;
    let sealer = config.keys.sealer().map_err(anyhow::Error::msg)?;
    if !sealer.seals() {
        tracing::warn!("CALLHOOK_SECRET_KEY is not set: signing secrets are stored in plain text; anyone who reads the scenarios table can forge webhooks");
    }
    let endpoint_cap = config.endpoint_cap();
    let health = HealthSettings {
        policy: config.health_policy(),
        operator_events: operator.is_some(),
        drain_per_second: config.drain_rate,
        endpoint_cap,
    };
    let sender = Sender::new(&SenderConfig {
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        allow_private: config.allow_private_destinations,
        egress_proxy: config.egress_proxy.clone().filter(|p| !p.trim().is_empty()),
    })
    .context(
        "building the HTTP client (is CALLHOOK_EGRESS_PROXY a valid http:// or https:// URL?)",
    )?;

    // With the API and the dispatcher in one process, ingest hands new
    // deliveries straight to the dispatcher (through the door its claims
    // use too).
    let mut handoff = None;
    let dispatcher = config.role.dispatches().then(|| {
        let door = callhook_dispatch::handoff(config.concurrency, config.lease, endpoint_cap);
        if config.role.serves_api() {
            handoff = Some(door.0.clone());
        }
        let dispatch = DispatchConfig {
            concurrency: config.concurrency,
            per_host: config.per_host_concurrency,
            endpoint_cap,
            lease: config.lease,
            seat_wait: config.seat_wait(),
            poll_interval: config.poll_interval,
            schedule: config.retry_schedule.clone(),
            shutdown_grace: config.shutdown_grace,
            health,
            operator,
            sealer: sealer.clone(),
        };
        tokio::spawn(callhook_dispatch::run(
            pool.clone(),
            sender.clone(),
            dispatch,
            door,
            shutdown.clone(),
        ))
    });

    // Every process competes to be the one that runs upkeep.
    let upkeep = tokio::spawn(crate::upkeep::run(
        pool.clone(),
        config.retention_days,
        shutdown.clone(),
    ));

    let calls = Ingest::new(
        pool.clone(),
        handoff,
        IngestConfig {
            start_grace: config.start_grace,
            during_call_grace: config.during_call_grace,
            max_payload_bytes: config.max_payload_bytes,
        },
    );
    let state = AppState::new(
        pool,
        sender,
        Tokens {
            admin: config.named_admin_tokens().map_err(anyhow::Error::msg)?,
            ingest: config.named_ingest_tokens().map_err(anyhow::Error::msg)?,
        },
        calls,
    )
    .with_ingest(IngestSettings {
        reservation_hold: config.reservation_hold,
    })
    .with_sealer(sealer)
    .with_settings(ApiSettings {
        request_timeout: config.http_request_timeout,
        max_inflight_requests: config.max_inflight_requests,
        secret_rotation_overlap: config.secret_rotation_overlap,
        console_session_max: config.console_session_max,
        max_payload_bytes: config.max_payload_bytes,
        gauge_interval: config
            .gauge_interval
            .max(std::time::Duration::from_millis(10)),
        console: config.console,
        health,
    })
    .with_trusted_proxies(config.trusted_proxies.clone());
    let app = if config.role.serves_api() {
        callhook_api::router(state)
    } else {
        callhook_api::service_router(state)
    };
    tracing::info!(addr = %listener.local_addr()?, role = ?config.role, "callhook listening");
    serve(
        listener,
        app,
        config.http_header_timeout,
        config.http_request_timeout,
        shutdown.clone(),
    )
    .await;
    if let Some(d) = dispatcher {
        d.await.context("dispatcher panicked")?;
    }
    upkeep.await.context("upkeep task panicked")?;
    Ok(())
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests
/// finish (each is bounded by the request timeout).
///
/// `axum::serve` has no header-read timeout, so a client that dribbles its
/// headers would hold a connection forever; hyper's HTTP/1 builder has one.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    request_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(app.clone().map_request(move |req: Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                // The client's address, for the guessing throttle.
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            }));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Open requests finish within the request timeout; idle keep-alive
    // connections are closed at once.
    if tokio::time::timeout(
        request_timeout + Duration::from_secs(1),
        graceful.shutdown(),
    )
    .await
    .is_err()
    {
        tracing::warn!("some connections were still open at shutdown; closing them");
    }
}
