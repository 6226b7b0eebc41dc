use std::process::ExitCode;

use anyhow::Context as _;
use callhook::config::{Cli, Command};
use callhook::telemetry::init_tracing;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(c) => c.db.log_format,
        Command::Migrate(c) => c.log_format,
        Command::RotateSecretKey(c) => c.db.log_format,
    };
    init_tracing(format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line an operator can act on.
            eprintln!("callhook: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(db) => {
            let pool = callhook::connect_db(&db).await?;
            callhook_store::migrate(&pool)
                .await
                .context("applying migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::RotateSecretKey(c) => {
            let sealer = c.keys.sealer().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                sealer.seals(),
                "set CALLHOOK_SECRET_KEY to the new key (and CALLHOOK_SECRET_KEY_PREVIOUS to the old one)"
            );
            let pool = callhook::connect_db(&c.db).await?;
            let n = callhook::keys::reseal_all(&pool, &sealer).await?;
            tracing::info!(resealed = n, "signing secrets sealed with the current key");
            println!("re-sealed the signing secrets of {n} scenarios");
            Ok(())
        }
        Command::Serve(config) => {
            config.validate().map_err(anyhow::Error::msg)?;
            let pool = callhook::connect_db(&config.db).await?;
            if !config.no_migrate {
                callhook_store::migrate(&pool)
                    .await
                    .context("applying migrations")?;
            }
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| {
                    format!(
                        "binding {}: is another process listening there?",
                        config.listen
                    )
                })?;
            let shutdown = CancellationToken::new();
            tokio::spawn(signal_shutdown(shutdown.clone()));
            callhook::run(*config, listener, pool, shutdown).await
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight work");
    token.cancel();
}
