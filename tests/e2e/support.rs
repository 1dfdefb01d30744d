//! What every end-to-end test needs: its own namespace on the shared real control plane, its own
//! billing simulator over real HTTP, and the operator running in-process on that namespace.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ispcert::controller::{self, Metrics, Settings};
use ispcert::crd::{CertificateStatus, ClusterIspIssuer, IspCertificate, IspIssuer};
use ispcert::pki::chain::{self, CertInfo};
use ispcert::pki::keys;
use ispcert_sim::{self as sim, AccountSpec, AdminClient, Money, RunningSim, SimConfig};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::watch;

use ispcert_tests::log_capture::LogCapture;

pub const EMAIL: &str = "team@example.com";
pub const PASSWORD: &str = "correct-horse-battery";
/// Long enough for a slow CI machine; every wait polls and returns as soon as it can.
pub const WAIT: Duration = Duration::from_secs(90);

/// One test's world.
pub struct Env {
    pub ns: String,
    pub client: kube::Client,
    pub sim: RunningSim,
    pub admin: AdminClient,
    operator: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    pub settings: Settings,
    /// The in-process operator's metrics (kept across its restarts, as counters of one process).
    pub metrics: Metrics,
}

impl Env {
    /// A namespace, a simulator with one well-funded account, and the operator.
    pub async fn new(prefix: &str) -> Env {
        Env::with_sim(prefix, Env::default_sim()).await
    }

    pub async fn with_sim(prefix: &str, config: SimConfig) -> Env {
        let mut env = Env::without_operator(prefix, config).await;
        env.start_operator().await;
        env
    }

    /// The namespace and the simulator; the test runs operators of its own.
    pub async fn without_operator(prefix: &str, config: SimConfig) -> Env {
        let cp = ispcert_tests::control_plane().await.expect("the shared control plane starts");
        Env::on(cp, prefix, config).await
    }

    /// The namespace and the simulator on a given control plane (one a test started for itself,
    /// because what it installs is cluster-wide); the test runs operators of its own.
    pub async fn on(cp: &ispcert_testbed::ControlPlane, prefix: &str, config: SimConfig) -> Env {
        capture_logs();
        let client = cp.client().await.expect("a client for the control plane");
        let ns = cp.create_namespace(prefix).await.expect("a namespace");
        let sim = sim::start(config, SocketAddr::from((sim_host(), 0))).await.expect("the simulator starts");
        let admin = sim.admin();
        let mut settings = Settings::fast();
        settings.namespaces = vec![ns.clone()];
        settings.operator_namespace = ns.clone();
        settings.cluster_issuer_selector = Some(format!("ispcert.dev/test={ns}"));
        Env { ns, client, sim, admin, operator: None, settings, metrics: Metrics::default() }
    }

    /// The default simulator: one well-funded account, certificates issued after a second.
    pub fn default_sim() -> SimConfig {
        SimConfig {
            accounts: vec![AccountSpec::new(EMAIL, PASSWORD, Money::from_units(1_000_000), "RUB")],
            issue_after: Duration::from_secs(1),
            ..SimConfig::default()
        }
    }

    pub async fn start_operator(&mut self) {
        assert!(self.operator.is_none(), "the operator runs already");
        let (tx, rx) = watch::channel(false);
        let client = self.client.clone();
        let (settings, metrics) = (self.settings.clone(), self.metrics.clone());
        let task = tokio::spawn(async move {
            controller::run(client, settings, metrics, rx).await.expect("the operator runs");
        });
        self.operator = Some((tx, task));
    }

    /// Stops the operator as a crash would, between two reconciles at the latest.
    pub async fn stop_operator(&mut self) {
        if let Some((tx, task)) = self.operator.take() {
            let _ = tx.send(true);
            task.abort();
            let _ = task.await;
        }
    }

    pub fn certificates(&self) -> Api<IspCertificate> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn issuers(&self) -> Api<IspIssuer> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn cluster_issuers(&self) -> Api<ClusterIspIssuer> {
        Api::all(self.client.clone())
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates or replaces the credentials Secret.
    pub async fn credentials(&self, name: &str, email: &str, password: &str) {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns},
            "stringData": {"email": email, "password": password}
        });
        self.secrets()
            .patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&secret))
            .await
            .expect("the credentials Secret is applied");
    }

    /// The issuer spec every test uses: the simulator, contacts and a subject.
    pub fn issuer_spec(&self, secret: &str) -> Value {
        json!({
            "url": self.sim.base_url(),
            "credentialsSecretRef": {"name": secret},
            "region": "Russian",
            "contacts": {"admin": {"firstName": "Anna", "lastName": "Ivanova", "title": "SRE",
                                   "email": "anna@example.com", "phone": "+7 495 1234567"}},
            "subject": {"country": "RU", "countryId": "182", "state": "Moscow", "locality": "Moscow",
                        "organization": "Example LLC"}
        })
    }

    /// Credentials plus a Ready `IspIssuer` named `billing`.
    pub async fn ready_issuer(&self) {
        self.credentials("billing-credentials", EMAIL, PASSWORD).await;
        self.apply_issuer("billing", self.issuer_spec("billing-credentials")).await.expect("the issuer is accepted");
        self.wait_issuer("billing", |s| is(&s.conditions, "Ready", "True")).await;
    }

    pub async fn apply_issuer(&self, name: &str, spec: Value) -> Result<IspIssuer, kube::Error> {
        let obj = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspIssuer",
                         "metadata": {"name": name, "namespace": self.ns}, "spec": spec});
        self.issuers().patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&obj)).await
    }

    pub async fn apply_certificate(&self, name: &str, spec: Value) -> Result<IspCertificate, kube::Error> {
        let obj = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
                         "metadata": {"name": name, "namespace": self.ns}, "spec": spec});
        self.certificates().patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&obj)).await
    }

    /// Creating (not applying) shows what a first `kubectl create` gets.
    pub async fn create_certificate(&self, name: &str, spec: Value) -> Result<IspCertificate, kube::Error> {
        let obj: IspCertificate = serde_json::from_value(json!({
            "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec}))
        .expect("a well-formed IspCertificate");
        self.certificates().create(&PostParams::default(), &obj).await
    }

    pub async fn delete_certificate(&self, name: &str) {
        self.certificates().delete(name, &DeleteParams::default()).await.expect("the delete is accepted");
    }

    /// Waits until the certificate is gone from the API server.
    pub async fn wait_gone(&self, name: &str) {
        let start = Instant::now();
        while self.certificates().get_opt(name).await.expect("the certificate is read").is_some() {
            assert!(start.elapsed() < WAIT, "certificate {name} was not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_issuer(&self, name: &str, ok: impl Fn(&ispcert::crd::IssuerStatus) -> bool) -> IspIssuer {
        let start = Instant::now();
        loop {
            if let Ok(i) = self.issuers().get(name).await
                && let Some(s) = &i.status
                && ok(s)
            {
                return i;
            }
            assert!(
                start.elapsed() < WAIT,
                "issuer {name} did not reach the expected state: {:#?}",
                self.issuers().get(name).await.ok().and_then(|i| i.status)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the certificate's status satisfies `ok`.
    pub async fn wait_cert(&self, name: &str, ok: impl Fn(&CertificateStatus) -> bool) -> IspCertificate {
        let start = Instant::now();
        loop {
            if let Ok(c) = self.certificates().get(name).await
                && let Some(s) = &c.status
                && ok(s)
            {
                return c;
            }
            if start.elapsed() > WAIT {
                let status = self.certificates().get(name).await.ok().and_then(|c| c.status);
                panic!("certificate {name} did not reach the expected state within {WAIT:?}: {status:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_ready(&self, name: &str) -> IspCertificate {
        self.wait_cert(name, |s| is(&s.conditions, "Ready", "True")).await
    }

    /// Waits for a condition of `type_` with this status and reason.
    pub async fn wait_reason(&self, name: &str, type_: &str, status: &str, reason: &str) -> IspCertificate {
        let (t, st, r) = (type_.to_string(), status.to_string(), reason.to_string());
        self.wait_cert(name, move |s| s.conditions.iter().any(|c| c.type_ == t && c.status == st && c.reason == r))
            .await
    }

    /// The Warning and Normal events about an object, oldest first.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let mut list: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .expect("events are listed")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        list
    }

    /// Waits for an event with this type and reason about `name`, and returns its note.
    pub async fn wait_event(&self, name: &str, type_: &str, reason: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self
                .events(name)
                .await
                .into_iter()
                .find(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
            {
                return e.note.unwrap_or_default();
            }
            assert!(start.elapsed() < WAIT, "no {type_} event {reason} about {name}: {:#?}", self.events(name).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn orders(&self) -> u64 {
        self.admin.stats().await.expect("simulator stats").account(EMAIL).orders
    }

    pub async fn stats(&self) -> ispcert_sim::AccountStats {
        self.admin.stats().await.expect("simulator stats").account(EMAIL).clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.operator.take() {
            let _ = tx.send(true);
            task.abort();
        }
    }
}

static LOG: OnceLock<LogCapture> = OnceLock::new();

/// Installs, once per test binary and before any operator runs, a subscriber that keeps every
/// line the operators, the simulators and the kube client log, as verbose as a user debugging
/// the operator would set it, so that tests can look for what must never be logged. kube stays
/// at debug: at trace its watch lines more than double the CPU time of this binary's tests, and
/// the replica tests' own processes then miss their deadlines.
fn capture_logs() {
    LOG.get_or_init(|| {
        let captured = LogCapture::default();
        tracing::subscriber::set_global_default(
            captured.subscriber("ispcert=trace,kube_client=debug,kube_runtime=debug,warn"),
        )
        .expect("no other subscriber in the e2e binary");
        captured
    });
}

/// What has been logged in this test binary so far.
pub fn captured_log() -> String {
    LOG.get().map(LogCapture::text).unwrap_or_default()
}

/// The operator's command line as a process (`ispcert ...`): this crate's copy of the operator's
/// `main`, so always the current code.
pub fn operator_binary() -> &'static str {
    env!("CARGO_BIN_EXE_ispcert-under-test")
}

/// Whether a condition of `type_` has `status`.
pub fn is(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], type_: &str, status: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == status)
}

fn data<'a>(secret: &'a Secret, key: &str) -> &'a [u8] {
    &secret.data.as_ref().and_then(|d| d.get(key)).unwrap_or_else(|| panic!("the Secret has {key}")).0
}

/// Checks a `kubernetes.io/tls` Secret as an ingress would use it: the key belongs to the leaf,
/// the leaf carries exactly `names` (plus a wildcard's base domain), the chain is in order and
/// verifies up to `ca.crt`. Returns the leaf.
pub fn verify_tls_secret(secret: &Secret, names: &[&str]) -> CertInfo {
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let crt = chain::certificates_in_pem(data(secret, "tls.crt"));
    assert_eq!(crt.len(), 2, "tls.crt holds the leaf and the intermediate, not the root");
    let ca = chain::certificates_in_pem(data(secret, "ca.crt"));
    assert_eq!(ca.len(), 1, "ca.crt holds the root");
    let ordered = chain::order(crt.iter().cloned().chain(ca.iter().cloned()).collect()).expect("the chain verifies");
    assert_eq!(ordered.leaf, crt[0], "the leaf comes first in tls.crt");
    assert_eq!(ordered.intermediates, vec![crt[1].clone()]);
    assert_eq!(ordered.root.as_ref(), Some(&ca[0]));
    let leaf = ordered.leaf_info();
    let key = SecretString::from(String::from_utf8(data(secret, "tls.key").to_vec()).expect("a PEM key"));
    assert_eq!(
        keys::public_key_bits(&key).expect("a readable key"),
        leaf.public_key_bits,
        "tls.key belongs to the certificate"
    );
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.extend(names.iter().filter_map(|n| n.strip_prefix("*.").map(str::to_string)));
    let mut have = leaf.names();
    want.sort();
    have.sort();
    assert_eq!(have, want, "the certificate carries exactly the spec's names");
    assert!(leaf.not_after > jiff::Timestamp::now(), "the certificate is valid");
    leaf
}

/// A certificate spec with the defaults most tests use.
pub fn cert_spec(product: &str, cn: &str, secret: &str) -> Value {
    json!({
        "issuerRef": {"name": "billing"},
        "product": product,
        "commonName": cn,
        "approverMailbox": "admin",
        "secretName": secret,
    })
}

/// Merges `extra` into `base` (top level).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// The annotation value on an object's Secret.
pub fn annotation<'a>(secret: &'a Secret, key: &str) -> &'a str {
    secret.annotations().get(key).map(String::as_str).unwrap_or("")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback address of its own for each test's simulator. Every simulator numbers its orders
/// from the same first id and serves the same login, so two on one URL are one billing account
/// to the operator (`status.account`): a later test whose simulator got a finished test's port
/// saw that test's certificates, still in the cluster, claim its orders, and bought again where
/// it should have stopped in doubt. Linux routes all of 127.0.0.0/8 to the loopback interface.
fn sim_host() -> std::net::Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::net::Ipv4Addr::new(127, 1, u8::try_from(n / 250 % 250).unwrap_or(0), u8::try_from(n % 250 + 1).unwrap_or(1))
}

/// The operator's real command line as a process on the test's namespace, with a metrics port
/// of its own and its log in the temp dir. Killed (SIGKILL) when dropped.
pub struct OperatorProcess {
    pub child: Child,
    pub port: u16,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OperatorProcess {
    /// Starts `ispcert controller` as replica `name` with test-speed intervals.
    pub fn start(env: &Env, kubeconfig: &std::path::Path, name: &str) -> OperatorProcess {
        OperatorProcess::start_with(env, kubeconfig, name, &[])
    }

    /// The same with `extra` arguments (later ones win over the test-speed defaults).
    pub fn start_with(env: &Env, kubeconfig: &std::path::Path, name: &str, extra: &[&str]) -> OperatorProcess {
        let port = free_port();
        let child = Command::new(operator_binary())
            .args(["controller", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--namespace", &env.ns, "--operator-namespace", &env.ns])
            .args(["--cluster-issuer-selector", &format!("ispcert.dev/test={}", env.ns)])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--lease-duration", "6s"])
            .args(["--poll-interval", "500ms", "--backoff-min", "200ms", "--backoff-max", "2s", "--log-format", "json"])
            .args(extra)
            .env("POD_NAME", name)
            .env("ISPCERT_LOG", "ispcert=debug,kube_lease_manager=debug,info")
            .stdout(Stdio::null())
            .stderr(log_file(env, name))
            .spawn()
            .expect("the ispcert binary starts");
        OperatorProcess { child, port }
    }
}

/// Where a replica's log goes: appended to, so that a restarted replica keeps what the killed one
/// said.
pub fn log_path(env: &Env, name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}-{name}.log", env.ns))
}

fn log_file(env: &Env, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(log_path(env, name)).expect("the log file opens")
}

/// A GET on the process's metrics address: whether it answered 2xx, and the body.
pub async fn get(port: u16, path: &str) -> Option<(bool, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
    let ok = response.status().is_success();
    Some((ok, response.text().await.ok()?))
}

/// The value of a metric without labels, 0 when the replica does not export it.
pub async fn metric(port: u16, name: &str) -> f64 {
    let Some((_, text)) = get(port, "/metrics").await else { return 0.0 };
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
