use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ConfigArgs;
use crate::config::ServerConfig;
use crate::database::{DynStore, SqlStore};
use crate::server::{self, AppState};
use crate::worker::WorkerPool;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// How long running jobs get to clean up after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(600);

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let store: DynStore = Arc::new(SqlStore::connect(config.database_url.expose()).await?);
    let job_queued = Arc::new(Notify::new());
    let state = AppState::new(&config, store.clone(), job_queued.clone())?;

    let shutdown = CancellationToken::new();
    let provisioner: Arc<dyn crate::provision::Provisioner> =
        Arc::new(crate::provision::ssh::SshProvisioner::default());
    let deps = Arc::new(crate::jobs::JobDeps::from_config(
        config.clone(),
        store.clone(),
        provisioner,
    )?);
    let handler = Arc::new(crate::jobs::Dispatcher::new(deps.clone()));
    let mut workers = WorkerPool::new(store.clone(), handler, config.workers.clone(), job_queued)
        .spawn(shutdown.clone());

    crate::jobs::spawn_periodic(deps, state.job_queued.clone(), shutdown.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        workers = config.workers.concurrency,
        "bakery is listening on http://{addr} (webhooks at /webhooks/github)"
    );

    let app = server::router(state);
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!(
                "shutting down: no new deliveries; running jobs clean up and go back to the queue"
            );
            stop.cancel();
        })
        .await
        .context("the HTTP server stopped")?;

    shutdown.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("workers did not stop within {SHUTDOWN_GRACE:?}; their leases will expire and another worker resumes the jobs");
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
