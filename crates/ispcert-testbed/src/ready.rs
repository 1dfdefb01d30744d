//! Readiness waits. Each one has a deadline, checks whether the process it waits for has died
//! (so a crash is reported at once, with its log, rather than as a timeout), and bounds every
//! single probe so that one hung request cannot outlast the deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use super::TestbedError;
use super::error::log_tail;
use super::process::Proc;

const POLL_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls `probe` until it returns true, `proc` exits, or `deadline` passes.
pub(crate) async fn wait_for<F, Fut>(
    proc: &mut Proc,
    what: &str,
    started: Instant,
    deadline: Instant,
    mut probe: F,
) -> Result<(), TestbedError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if let Some(status) = proc.exit_status() {
            return Err(proc.exited_error(status));
        }
        let budget = deadline.saturating_duration_since(Instant::now()).min(PROBE_TIMEOUT);
        if tokio::time::timeout(budget, probe()).await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            // It may have died during the last probe; that is the better message.
            if let Some(status) = proc.exit_status() {
                return Err(proc.exited_error(status));
            }
            return Err(TestbedError::Timeout {
                what: what.to_string(),
                after: started.elapsed(),
                log: proc.log.clone(),
                log_tail: log_tail(&proc.log),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// etcd answers `GET /health` with 200 once it has a leader.
pub(crate) async fn etcd_healthy(http: &reqwest::Client, client_url: &str) -> bool {
    match http.get(format!("{client_url}/health")).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// kube-apiserver answers an anonymous `GET /healthz` with `ok` once its post-start hooks ran.
pub(crate) async fn apiserver_healthy(https: &reqwest::Client, server_url: &str) -> bool {
    match https.get(format!("{server_url}/healthz")).send().await {
        Ok(response) if response.status().is_success() => {
            response.text().await.map(|body| body.trim() == "ok").unwrap_or(false)
        }
        _ => false,
    }
}

/// An HTTPS client that trusts only the test bed's serving CA.
pub(crate) fn https_client(serving_ca_pem: &str) -> Result<reqwest::Client, TestbedError> {
    let invalid = |e: reqwest::Error| TestbedError::io("building the readiness HTTP client", std::io::Error::other(e));
    let ca = reqwest::Certificate::from_pem(serving_ca_pem.as_bytes()).map_err(invalid)?;
    // no_proxy: an http(s)_proxy in the environment must not intercept loopback probes.
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).timeout(PROBE_TIMEOUT).build().map_err(invalid)
}

/// A plain HTTP client for etcd's loopback client port.
pub(crate) fn http_client() -> Result<reqwest::Client, TestbedError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| TestbedError::io("building the readiness HTTP client", std::io::Error::other(e)))
}
