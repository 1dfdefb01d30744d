//! Starting etcd and kube-apiserver on free loopback ports and waiting until they are healthy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::TestbedError;
use super::binaries::Binaries;
use super::error::log_tail;
use super::pki::Pki;
use super::process::{self, Proc};
use super::ready;

/// How often to pick fresh ports when one turns out to be taken between picking and binding.
const PORT_ATTEMPTS: u32 = 3;

/// How an attempt failed: a taken port is worth another attempt, anything else is not.
enum Attempt {
    PortInUse(&'static str, PathBuf),
    Failed(TestbedError),
}

impl From<TestbedError> for Attempt {
    fn from(e: TestbedError) -> Self {
        Attempt::Failed(e)
    }
}

/// Everything an attempt at starting the two processes needs.
pub(crate) struct Launcher<'a> {
    pub binaries: &'a Binaries,
    pub work: &'a Path,
    pub pki: &'a Pki,
    pub detach: bool,
    pub started: Instant,
    pub deadline: Instant,
}

impl Launcher<'_> {
    /// Starts etcd and then kube-apiserver and waits until both are healthy, picking fresh ports
    /// when one turns out to be taken.
    pub async fn launch(&self) -> Result<(Proc, Proc, Ports), TestbedError> {
        let https = ready::https_client(&self.pki.serving_ca_pem)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = Ports::pick()?;
            match self.attempt(&ports, &https).await {
                Ok((etcd, apiserver)) => return Ok((etcd, apiserver, ports)),
                Err(Attempt::PortInUse(component, _)) if attempt < PORT_ATTEMPTS => {
                    tracing::warn!(component, ports = %ports, "a port was taken; retrying with other ports");
                }
                Err(Attempt::PortInUse(component, log)) => {
                    return Err(TestbedError::PortInUse {
                        component,
                        ports: ports.to_string(),
                        attempts: attempt,
                        log_tail: log_tail(&log),
                        log,
                    });
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }

    /// One attempt at starting both processes on `ports`. Dropping a returned error's processes kills
    /// them, so a failed attempt leaves nothing running.
    async fn attempt(&self, ports: &Ports, https: &reqwest::Client) -> Result<(Proc, Proc), Attempt> {
        let Launcher { binaries, work, pki, detach, started, deadline } = *self;
        let data_dir = work.join("etcd");
        // A previous attempt's data remembers other peer URLs.
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir)
                .map_err(|e| TestbedError::io(format!("removing {}", data_dir.display()), e))?;
        }
        let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
        let etcd_url = ports.etcd_url();
        let etcd_args = vec![
            "--name=testbed".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=testbed={peer}"),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            // Throw-away data: fsync only costs time.
            "--unsafe-no-fsync=true".to_string(),
        ];
        let mut etcd = process::spawn("etcd", &binaries.etcd, &etcd_args, &work.join("logs/etcd.log"), detach)?;
        let http = ready::http_client()?;
        let etcd_ready =
            ready::wait_for(&mut etcd, "etcd /health", started, deadline, || ready::etcd_healthy(&http, &etcd_url))
                .await;
        if let Err(e) = etcd_ready {
            return Err(port_or_failure(&etcd, e));
        }
        tracing::debug!(elapsed = ?started.elapsed(), "etcd ready");

        let server_url = ports.server_url();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            // Needed where the host has no default route; harmless elsewhere.
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={}", ports.apiserver),
            format!("--cert-dir={}", work.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.client_ca.display()),
            "--authorization-mode=RBAC".to_string(),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--allow-privileged=true".to_string(),
            // No controller-manager makes service-account tokens, so admission would reject pods.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            format!("--service-account-issuer={server_url}/"),
            format!("--service-account-key-file={}", pki.sa_public.display()),
            format!("--service-account-signing-key-file={}", pki.sa_private.display()),
        ];
        let mut apiserver = process::spawn(
            "kube-apiserver",
            &binaries.apiserver,
            &apiserver_args,
            &work.join("logs/kube-apiserver.log"),
            detach,
        )?;
        let apiserver_ready = ready::wait_for(&mut apiserver, "kube-apiserver /healthz", started, deadline, || {
            ready::apiserver_healthy(https, &server_url)
        })
        .await;
        if let Err(e) = apiserver_ready {
            return Err(port_or_failure(&apiserver, e));
        }
        tracing::debug!(elapsed = ?started.elapsed(), "kube-apiserver healthy");
        Ok((etcd, apiserver))
    }
}

fn port_or_failure(proc: &Proc, error: TestbedError) -> Attempt {
    if matches!(error, TestbedError::ComponentExited { .. }) && proc.log_says_port_in_use() {
        Attempt::PortInUse(proc.component, proc.log.clone())
    } else {
        Attempt::Failed(error)
    }
}

/// Free loopback ports, found by binding port 0. Another process can take one before our child
/// binds it; [`Launcher::launch`] then retries with fresh ports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
}

impl Ports {
    fn pick() -> Result<Ports, TestbedError> {
        // All three listeners are held at once so that the ports differ.
        let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| TestbedError::io("finding a free loopback port", e));
        let (a, b, c) = (bind()?, bind()?, bind()?);
        let port = |l: &TcpListener| {
            l.local_addr().map(|a| a.port()).map_err(|e| TestbedError::io("finding a free loopback port", e))
        };
        Ok(Ports { etcd_client: port(&a)?, etcd_peer: port(&b)?, apiserver: port(&c)? })
    }

    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client)
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver)
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd client {}, etcd peer {}, kube-apiserver {}", self.etcd_client, self.etcd_peer, self.apiserver)
    }
}
