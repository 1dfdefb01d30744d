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
use tracing::{debug, error, info};
use tracing_subscriber::EnvFilter;

use super::{ControllerArgs, LogFormat};
use crate::controller::{self, Metrics, Settings};

fn init_logging(args: &ControllerArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| format!("--log-level {:?}: {e}", args.log_level))?;
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(terminal);
    let json = match args.log_format {
        LogFormat::Auto => !terminal,
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let result = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    result.map_err(|e| e.to_string())
}

/// A client from `kubeconfig`, else the in-cluster config, else `~/.kube/config`.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
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
        concurrency: args.concurrency,
        renewal_floor: args.renewal_floor,
        subscription_warning: args.subscription_warning,
        reissue_timeout: args.reissue_timeout,
        reissue_attempts: args.reissue_attempts,
        namespace_cleanup_wait: args.namespace_cleanup_wait,
        ..Settings::default()
    }
}

/// Serves `/metrics`, `/healthz` (the process runs) and `/readyz` (the process is connected and
/// either runs the controllers or stands by for the Lease: a standby replica is healthy, and a
/// rollout must not wait for it to lead).
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
                            (StatusCode::SERVICE_UNAVAILABLE, "not started")
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
/// Lease, then the controllers; on the way out the Lease is released, so that another replica
/// takes over at once instead of after the lease duration.
async fn serve(args: ControllerArgs) -> Result<(), String> {
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    let settings = settings(&args);
    controller::check_crds(&client, &settings.namespaces).await.map_err(|e| e.to_string())?;
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    start_metrics(&args, &metrics, &ready)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received, stopping");
        let _ = stop_tx.send(true);
    });
    if !args.leader_elect {
        ready.store(true, Ordering::Relaxed);
        metrics.leader.set(1);
        return controller::run(client, settings, metrics, stop_rx).await.map_err(|e| e.to_string());
    }

    // With several replicas only the Lease holder reconciles; losing the Lease ends the process
    // so that a restarted pod re-joins the election cleanly, never with two leaders writing.
    ready.store(true, Ordering::Relaxed);
    let Some((lease, mut leading)) = wait_to_lead(&args, &client, stop_rx.clone()).await? else {
        return Ok(());
    };
    metrics.leader.set(1);
    let lost = async {
        while leading.changed().await.is_ok() {
            if !*leading.borrow() {
                break;
            }
        }
    };
    let result = tokio::select! {
        r = controller::run(client, settings, metrics.clone(), stop_rx) => r.map_err(|e| e.to_string()),
        _ = lost => Err("lost the leader Lease; exiting so that only one replica writes".into()),
    };
    metrics.leader.set(0);
    drop(leading);
    release(lease).await?;
    info!("released the leader Lease");
    result
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

/// The name of the leader-election Lease in the operator's namespace.
const LEASE_NAME: &str = "ispcert-leader";

/// The Lease's state (true while held) and the task that keeps it.
type Lease =
    (watch::Receiver<bool>, tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>);

/// Joins the election for the Lease `ispcert-leader` in the operator's namespace.
async fn join_election(args: &ControllerArgs, client: &kube::Client) -> Result<Lease, String> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("ispcert-{}", std::process::id()));
    let duration = args.lease_duration.as_secs();
    if duration < 3 {
        return Err("--lease-duration must be at least 3s".into());
    }
    // The holder renews `grace` before the Lease expires; a third of it leaves room for a slow
    // API server without handing the Lease over needlessly.
    let grace = (duration / 3).clamp(1, 5);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(&args.operator_namespace)
        .with_identity(identity)
        .with_grace(grace)
        .with_duration(duration)
        .build()
        .await
        .map_err(|e| format!("leader election in namespace {}: {e}", args.operator_namespace))?;
    Ok(manager.watch().await)
}

/// Waits until this process holds the Lease; `None` when a signal came first.
///
/// A standby of kube-lease-manager sleeps until the holder's Lease would expire, so a Lease given
/// up by a graceful stop would wait out the lease duration. The standby therefore also watches the
/// Lease, and when it is released joins the election anew, which takes the free Lease at once.
async fn wait_to_lead(
    args: &ControllerArgs,
    client: &kube::Client,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<(Lease, watch::Receiver<bool>)>, String> {
    info!("waiting to become the leader");
    loop {
        let lease = join_election(args, client).await?;
        let mut leading = lease.0.clone();
        let outcome = tokio::select! {
            biased;
            led = became_leader(&mut leading) => led.map(|()| true),
            () = released(client, &args.operator_namespace) => Ok(false),
            _ = stop.wait_for(|s| *s) => {
                drop(leading);
                release(lease).await?;
                return Ok(None);
            }
        };
        if outcome? {
            info!("leading");
            return Ok(Some((lease, leading)));
        }
        drop(leading);
        release(lease).await?;
    }
}

/// Resolves when the election says this process holds the Lease.
async fn became_leader(leading: &mut watch::Receiver<bool>) -> Result<(), String> {
    loop {
        if *leading.borrow_and_update() {
            return Ok(());
        }
        leading.changed().await.map_err(|_| "leader election stopped".to_string())?;
    }
}

/// Resolves when the leader Lease, seen held, is then seen without a holder (released by a
/// graceful stop). A Lease free from the start is the election's own business.
async fn released(client: &kube::Client, namespace: &str) {
    use futures::StreamExt;
    use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: kube::Api<LeaseObject> = kube::Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}"));
    let mut leases = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    let mut seen_held = false;
    while let Some(event) = leases.next().await {
        let Ok(lease) = event else { continue };
        let held = lease.spec.and_then(|s| s.holder_identity).is_some_and(|h| !h.is_empty());
        if seen_held && !held {
            return;
        }
        seen_held |= held;
    }
    // The watch ended (it never does on its own): never resolve, the election goes on.
    std::future::pending::<()>().await
}

/// Gives the Lease up: closing its channel makes the election task release it and end.
async fn release(lease: Lease) -> Result<(), String> {
    let (receiver, task) = lease;
    drop(receiver);
    match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => {
            debug!("left the leader election (the Lease is released if this replica held it)");
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(format!("releasing the leader Lease: {e}")),
        Ok(Err(e)) => Err(format!("the leader election task failed: {e}")),
        Err(_) => Err("releasing the leader Lease took longer than 5s".into()),
    }
}
