//! A real Kubernetes control plane (etcd + kube-apiserver) for tests and demos.
//!
//! Why our own harness rather than the `envtest` crate: that one wraps controller-runtime's Go
//! envtest through cgo (Go, gcc and libclang at every cold build) and downloads binaries, which these
//! machines cannot. Starting two processes with certificates made by rcgen has fewer moving parts.
//!
//! Why one control plane per test binary ([`shared`]) rather than one per test: a start takes
//! seconds (see `docs/testbed.md`), and isolation between tests comes cheaply from namespaces
//! ([`ControlPlane::create_namespace`]). Tests that need a control plane of their own (failure
//! paths, cluster-scoped state) call [`ControlPlane::start`].
//!
//! What it lacks: there is no controller-manager (no garbage collection of owned objects,
//! namespaces stay Terminating, no Pods from Deployments) and no kubelet. Tests must never rely on
//! owner-reference garbage collection; they can check the owner references themselves.

mod binaries;
mod cleanup;
mod crds;
mod detached;
mod error;
mod fsutil;
mod kubeconfig;
mod launch;
mod pki;
mod process;
mod ready;
mod shared;
mod workdir;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::Kubeconfig;

pub use binaries::{BIN_DIR_ENV, bin_dir, run_build_script};
pub use detached::{DetachedState, STATE_FILE, stop_detached_control_plane};
pub use error::TestbedError;
pub use shared::shared;

use launch::Launcher;
use process::Proc;
use workdir::WorkDir;

/// Layout of a work dir. `ispcert-testbed down` removes exactly these entries.
pub(crate) const WORK_DIR_ENTRIES: [&str; 5] = [KUBECONFIG_FILE, "pki", "etcd", "apiserver-certs", "logs"];
const KUBECONFIG_FILE: &str = "kubeconfig";

/// Label put on every namespace made by [`ControlPlane::create_namespace`].
pub const NAMESPACE_LABEL: &str = "testbed.ispcert.dev/created-by";

/// How to start a control plane. `Options::default()` is what tests want.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding `etcd` and `kube-apiserver`. Default: `$ISPCERT_K8S_BIN_DIR`, else the
    /// directory `bin_script` prints.
    pub bin_dir: Option<PathBuf>,
    /// A script that prints the bin dir on its last line, building the binaries when needed
    /// (`hack/k8s-binaries`); run when neither `bin_dir` nor `$ISPCERT_K8S_BIN_DIR` is set.
    pub bin_script: Option<PathBuf>,
    /// Where certificates, etcd data, logs and the kubeconfig go. Default: a fresh temp dir,
    /// removed on drop and at exit. A given dir is created if needed and kept (logs stay for
    /// post-mortems); it must not already hold a control plane's files.
    pub work_dir: Option<PathBuf>,
    /// Directories whose CRDs are installed (and awaited) before `start` returns.
    pub crd_dirs: Vec<PathBuf>,
    /// Leave the processes running when this process exits or the [`ControlPlane`] is dropped
    /// (new session, no parent-death signal). Used by `ispcert-testbed up`.
    pub detach: bool,
    /// Upper bound for the start once the binaries are found: processes ready and CRDs served.
    /// (Building missing binaries is bounded separately: it can take a quarter of an hour.)
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bin_dir: None,
            bin_script: None,
            work_dir: None,
            crd_dirs: Vec::new(),
            detach: false,
            // A warm start takes seconds; the margin is for a machine busy compiling.
            start_timeout: Duration::from_secs(90),
        }
    }
}

/// A running etcd and kube-apiserver on loopback ports, with an admin kubeconfig.
///
/// Dropping it kills both processes and removes a temp work dir, unless it was started detached.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the API server goes before its etcd, the files after both.
    apiserver: Proc,
    etcd: Proc,
    kubeconfig: Kubeconfig,
    kubeconfig_path: PathBuf,
    server_url: String,
    etcd_url: String,
    work: WorkDir,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, waits until they are ready (etcd `/health`, API server
    /// `/healthz` and the `default` namespace), writes the kubeconfig and installs the CRDs of
    /// `opts.crd_dirs`. On failure nothing is left running.
    pub async fn start(opts: Options) -> Result<ControlPlane, TestbedError> {
        // Bad manifests are reported before anything is started.
        let mut crds = Vec::new();
        for dir in &opts.crd_dirs {
            crds.extend(crds::read_dir(dir)?);
        }
        // Not under the start timeout: a cold build takes minutes and has its own bound.
        let binaries = binaries::resolve(opts.bin_dir.as_deref(), opts.bin_script.as_deref()).await?;
        let started = Instant::now();
        let deadline = started + opts.start_timeout;
        let mut work = WorkDir::prepare(opts.work_dir.as_deref(), opts.detach)?;
        let pki = pki::generate(&work.path.join("pki"))?;
        tracing::debug!(elapsed = ?started.elapsed(), "certificates made");
        fsutil::create_dir(&work.path.join("logs"))?;

        let launcher =
            Launcher { binaries: &binaries, work: &work.path, pki: &pki, detach: opts.detach, started, deadline };
        let (mut etcd, mut apiserver, ports) = launcher.launch().await?;

        let server_url = ports.server_url();
        let kubeconfig_path = work.path.join(KUBECONFIG_FILE);
        let kubeconfig = kubeconfig::write(&kubeconfig_path, &kubeconfig::render(&server_url, &pki))?;
        let client = kubeconfig::client(&kubeconfig, &kubeconfig_path).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        ready::wait_for(&mut apiserver, "the default namespace", started, deadline, || async {
            matches!(namespaces.get_opt("default").await, Ok(Some(_)))
        })
        .await?;
        tracing::debug!(elapsed = ?started.elapsed(), "default namespace exists");

        let remaining = deadline.saturating_duration_since(Instant::now());
        crds::install(&client, &crds, remaining, &apiserver.log).await?;

        if opts.detach {
            etcd.disarm();
            apiserver.disarm();
            work.keep();
        }
        tracing::info!(elapsed = ?started.elapsed(), server = %server_url, work_dir = %work.path.display(), "control plane ready");
        Ok(ControlPlane { apiserver, etcd, kubeconfig, kubeconfig_path, server_url, etcd_url: ports.etcd_url(), work })
    }

    /// A new admin client (`system:masters`). Make one per test: clients are tied to the tokio
    /// runtime they are first used on.
    pub async fn client(&self) -> Result<Client, TestbedError> {
        kubeconfig::client(&self.kubeconfig, &self.kubeconfig_path).await
    }

    /// The admin kubeconfig file, for kubectl, helm or a process under test.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// etcd's client URL, `http://127.0.0.1:<port>`.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The work dir (certificates, etcd data, `logs/etcd.log`, `logs/kube-apiserver.log`).
    pub fn work_dir(&self) -> &Path {
        &self.work.path
    }

    /// Installs the CRDs of `dir` and waits until they are Established and served; returns their
    /// names. Installing the same CRDs again is harmless.
    pub async fn install_crds(&self, dir: &Path) -> Result<Vec<String>, TestbedError> {
        let client = self.client().await?;
        let crds = crds::read_dir(dir)?;
        crds::install(&client, &crds, Duration::from_secs(60), &self.apiserver.log).await
    }

    /// Creates a namespace named `<prefix>-<random suffix>` (the API server picks the suffix, so
    /// names are unique even across processes sharing one control plane) and returns its name.
    /// Namespaces are not deleted: without a controller-manager they would stay Terminating.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, TestbedError> {
        let client = self.client().await?;
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                labels: Some([(NAMESPACE_LABEL.to_string(), "ispcert-testbed".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(client)
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| TestbedError::kube(format!("creating a namespace with prefix {prefix:?}"), e))?;
        Ok(created.metadata.name.unwrap_or_default())
    }

    /// Stops both processes now, also when started detached, and removes a temp work dir.
    pub fn stop(mut self) {
        self.apiserver.arm();
        self.etcd.arm();
        self.work.remove_on_drop = self.work.temp;
        drop(self);
    }

    pub(crate) fn pids(&self) -> (u32, u32) {
        (self.etcd.pid(), self.apiserver.pid())
    }
}
