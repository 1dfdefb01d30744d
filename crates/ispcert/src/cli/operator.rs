//! `ispcert controller`: logging, the Kubernetes client, the metrics and health endpoint, leader
//! election, and the controllers until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use super::{ControllerArgs, LogFormat};
use crate::controller::{self, Metrics, Settings};

fn init_logging(args: &ControllerArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| format!("--log-level {:?}: {e}", args.log_level))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| e.to_string())
}

async fn kube_client(args: &ControllerArgs) -> Result<kube::Client, String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| format!("no in-cluster config and no kubeconfig: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

fn settings(args: &ControllerArgs) -> Settings {
    Settings {
        namespaces: args.namespaces.iter().filter(|n| !n.is_empty()).cloned().collect(),
        operator_namespace: args.operator_namespace.clone(),
        cluster_issuer_selector: args.cluster_issuer_selector.clone(),
        poll_interval: args.poll_interval,
        backoff_min: args.backoff_min,
        backoff_max: args.backoff_max,
        billing_timeout: args.billing_timeout,
        order_grace: args.order_grace,
        wrong_credentials_retry: args.wrong_credentials_retry,
        ..Settings::default()
    }
}

/// Serves `/metrics`, `/healthz` (the process runs) and `/readyz` (the controllers run).
async fn serve_metrics(addr: SocketAddr, metrics: Metrics, ready: Arc<AtomicBool>) -> Result<(), String> {
    let app =
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = metrics.clone();
                    async move {
                        ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = ready.clone();
                    async move {
                        if ready.load(Ordering::Relaxed) {
                            (StatusCode::OK, "ok")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not leading or not started")
                        }
                    }
                }),
            );
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("metrics address {addr}: {e}"))?;
    info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(args: ControllerArgs) -> ExitCode {
    if let Err(e) = init_logging(&args) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The operator until a signal stops it: the client, the CRD check, the metrics endpoint, the
/// Lease, then the controllers.
async fn serve(args: ControllerArgs) -> Result<(), String> {
    let client = kube_client(&args).await?;
    controller::check_crds(&client).await.map_err(|e| e.to_string())?;
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    start_metrics(&args, &metrics, &ready)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received, stopping");
        let _ = stop_tx.send(true);
    });

    // With several replicas only the Lease holder reconciles; losing the Lease ends the process
    // so that a restarted pod re-joins the election cleanly, never with two leaders writing.
    let leadership = match args.leader_elect {
        true => match lead(&args, &client, stop_rx.clone()).await? {
            Some(leadership) => Some(leadership),
            None => return Ok(()),
        },
        false => None,
    };
    ready.store(true, Ordering::Relaxed);
    let run = controller::run(client, settings(&args), metrics, stop_rx);
    let Some((mut leading, _lease_task)) = leadership else { return run.await.map_err(|e| e.to_string()) };
    tokio::select! {
        r = run => r.map_err(|e| e.to_string()),
        _ = async { while leading.changed().await.is_ok() { if !*leading.borrow() { break; } } } => {
            Err("lost the leader Lease; exiting so that only one replica writes".into())
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` in the background unless `--metrics-addr off`.
fn start_metrics(args: &ControllerArgs, metrics: &Metrics, ready: &Arc<AtomicBool>) -> Result<(), String> {
    if args.metrics_addr == "off" {
        return Ok(());
    }
    let addr: SocketAddr =
        args.metrics_addr.parse().map_err(|e| format!("--metrics-addr {:?}: {e}", args.metrics_addr))?;
    let (m, r) = (metrics.clone(), ready.clone());
    tokio::spawn(async move {
        if let Err(e) = serve_metrics(addr, m, r).await {
            error!("{e}");
        }
    });
    Ok(())
}

/// The Lease's state (false once lost) and the task that keeps it.
type Leadership =
    (watch::Receiver<bool>, tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>);

/// Waits until this process holds the Lease; `None` when a signal came first.
async fn lead(
    args: &ControllerArgs,
    client: &kube::Client,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<Leadership>, String> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("ispcert-{}", std::process::id()));
    let duration = args.lease_duration.as_secs();
    if duration < 3 {
        return Err("--lease-duration must be at least 3s".into());
    }
    // The holder renews `grace` before the Lease expires; a third of it leaves room for a slow
    // API server without handing the Lease over needlessly.
    let grace = (duration / 3).clamp(1, 5);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "ispcert-leader")
        .with_namespace(&args.operator_namespace)
        .with_identity(identity)
        .with_grace(grace)
        .with_duration(duration)
        .build()
        .await
        .map_err(|e| format!("leader election in namespace {}: {e}", args.operator_namespace))?;
    let (mut leading, task) = manager.watch().await;
    info!("waiting to become the leader");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return Err("leader election stopped".into()); },
            _ = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
    info!("leading");
    Ok(Some((leading, task)))
}
