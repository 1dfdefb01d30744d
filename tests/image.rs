//! The container image's filesystem on its own: the static `ispcert` in an empty root that holds
//! nothing but the binary and the CA bundle, as the image does (`hack/image` builds the image from
//! the Dockerfile, unpacks it and names its root in `ISPCERT_IMAGE_ROOTFS`). Each test runs the
//! binary inside a copy of that root, as user 65532, with what the kubelet adds to a container:
//! `/etc/resolv.conf`, `/etc/hosts`, the service account files and `KUBERNETES_SERVICE_*`.
//!
//! What it proves: the binary starts with no loader or shared library; names resolve without any
//! NSS module, by DNS through the root's `/etc/resolv.conf` and through its `/etc/hosts`; HTTPS
//! trusts the bundle inside the root and nothing else (the same call fails with the image's bundle
//! alone and without a bundle); and `/ispcert controller`, configured only as in a pod, reaches a
//! real kube-apiserver by IP and makes a certificate Ready through the billing over HTTPS.
//!
//! The billing is the simulator behind a small TLS front whose certificate comes from a test CA;
//! the DNS is a small server on port 53 of a loopback address. Both need root, and so does
//! chroot, so these tests are ignored by `cargo test`: `hack/image` runs them with `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::process::Command;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use ispcert_sim::{AccountSpec, Money, RunningSim, SimConfig};

const EMAIL: &str = "image@example.com";
const PASSWORD: &str = "image-test-password";
/// Known only to the test DNS server: a lookup of it can only succeed through DNS.
const BILLING_HOST: &str = "billing.ispcert.test";
/// The user the Dockerfile names.
const USER: &str = "65532:65532";
/// The image's files, and nothing else: what `hack/image` also checks in the layers.
const IMAGE_FILES: [&str; 2] = ["ispcert", "etc/ssl/certs/ca-certificates.crt"];
const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
const WAIT: Duration = Duration::from_secs(90);

/// The unpacked image, checked to be just the binary and the bundle.
fn image_rootfs() -> PathBuf {
    // /proc/self belongs to the effective user.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    assert_eq!(euid, 0, "these tests chroot and bind port 53: run them as root (hack/image does)");
    let dir = std::env::var_os("ISPCERT_IMAGE_ROOTFS")
        .map(PathBuf::from)
        .expect("ISPCERT_IMAGE_ROOTFS names the unpacked image's root (hack/image sets it)");
    let mut files = Vec::new();
    list_files(&dir, &dir, &mut files);
    files.sort();
    let mut want: Vec<String> = IMAGE_FILES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(files, want, "the image's root holds exactly the binary and the CA bundle");
    dir
}

fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(base, &path, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

/// A copy of the image's root to add the kubelet's files to; readable by user 65532.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn from_image() -> Root {
        let image = image_rootfs();
        let dir = tempfile::tempdir().unwrap();
        for file in IMAGE_FILES {
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            // fs::copy keeps the mode: the binary stays executable, the bundle world-readable.
            std::fs::copy(image.join(file), &to).unwrap();
        }
        let root = Root { dir };
        root.open_dirs();
        root
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes a file the way a kubelet mount would be seen: world-readable.
    fn write(&self, file: &str, content: impl AsRef<[u8]>) {
        let path = self.path(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        set_mode(&path, 0o644);
        self.open_dirs();
    }

    /// A temp dir is 0700 and so are new dirs under a umask 077: user 65532 must be able to
    /// walk the root, as it can in the image (whose directories are 0755).
    fn open_dirs(&self) {
        fn walk(dir: &Path) {
            set_mode(dir, 0o755);
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path);
                }
            }
        }
        walk(self.dir.path());
    }

    /// The bundle's certificates as PEM.
    fn bundle(&self) -> String {
        std::fs::read_to_string(self.path(BUNDLE)).unwrap()
    }

    /// The kubelet's name files: cluster DNS at `nameserver`, and a hosts file for localhost.
    fn name_files(&self, nameserver: Ipv4Addr) {
        self.write("etc/resolv.conf", format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"));
        self.write("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    }

    /// Runs `/ispcert ARGS` in this root as the image's user, with only `env` set.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(chroot());
        cmd.arg(format!("--userspec={USER}")).arg(self.dir.path()).arg("/ispcert").args(args);
        cmd.env_clear().envs(env.iter().copied()).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args, &[]).output().await.expect("chroot runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Found by path: the child's environment is cleared, PATH included.
fn chroot() -> &'static str {
    ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils) is installed")
}

/// A test CA and a server certificate from it for the billing's names.
struct TestCa {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "ispcert image test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(vec![BILLING_HOST.to_string(), "localhost".to_string()]).unwrap();
        leaf_params.distinguished_name.push(DnType::CommonName, BILLING_HOST);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        }
    }
}

/// The simulator behind HTTPS: a TLS front on loopback that forwards each connection to it.
struct Billing {
    sim: RunningSim,
    tls_port: u16,
}

impl Billing {
    async fn start(ca: &TestCa) -> Billing {
        let config = SimConfig {
            accounts: vec![AccountSpec::new(EMAIL, PASSWORD, Money::from_units(1_000_000), "RUB")],
            issue_after: Duration::from_millis(300),
            ..SimConfig::default()
        };
        let sim = ispcert_sim::start(config, "127.0.0.1:0".parse::<SocketAddr>().unwrap()).await.unwrap();
        let tls = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(ca.chain.clone(), ca.key.clone_key())
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = listener.local_addr().unwrap().port();
        let backend = sim.addr();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake is what the negative tests expect; it ends this connection only.
                    if let Ok(mut tls) = acceptor.accept(tcp).await
                        && let Ok(mut plain) = TcpStream::connect(backend).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        Billing { sim, tls_port }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/billmgr", self.tls_port)
    }
}

/// The cluster's DNS, reduced to one name: A for `BILLING_HOST` is 127.0.0.1, other types of it
/// have no records, other names do not exist. It keeps the names it was asked.
struct Dns {
    addr: Ipv4Addr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Dns {
    /// Port 53, because a resolv.conf names no port; each test its own loopback address, so
    /// that tests running at once do not collide.
    async fn start(addr: Ipv4Addr) -> Dns {
        let socket = UdpSocket::bind((addr, 53)).await.unwrap_or_else(|e| panic!("binding {addr}:53: {e}"));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let Some((name, reply)) = dns_reply(&buf[..n]) {
                    log.lock().unwrap().push(name);
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Dns { addr, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// The answer to one query (RFC 1035 §4.1), or None for what is not a query.
fn dns_reply(query: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let known = name == BILLING_HOST;
    let a_record = known && qtype == 1;
    let mut reply = query[..2].to_vec(); // the id
    reply.extend_from_slice(&[0x85, if known { 0x80 } else { 0x83 }]); // answer, authoritative; NXDOMAIN
    reply.extend_from_slice(&[0, 1, 0, u8::from(a_record), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if a_record {
        // name (pointer to the question), A, IN, TTL 5 s, 4 bytes: 127.0.0.1
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
    }
    Some((name, reply))
}

/// `ispcert account check` from inside `root` against `url`.
async fn account_check(root: &Root, url: &str) -> (bool, String, String) {
    root.run(&["account", "check", "--url", url, "--email", EMAIL, "--password-file", "/password", "--timeout", "10"])
        .await
}

#[tokio::test]
#[ignore = "needs root and the unpacked image: run by hack/image"]
async fn starts_in_an_empty_root() {
    let root = Root::from_image();
    let (ok, out, err) = root.run(&["--version"]).await;
    assert!(ok, "--version in the image's root: {err}");
    assert_eq!(out.trim(), concat!("ispcert ", env!("CARGO_PKG_VERSION")));
    // The entrypoint's command exists and explains itself.
    let (ok, out, err) = root.run(&["controller", "--help"]).await;
    assert!(ok && out.contains("--metrics-addr"), "{out}{err}");
}

#[tokio::test]
#[ignore = "needs root and the unpacked image: run by hack/image"]
async fn https_trusts_the_roots_bundle_and_names_resolve_without_nss() {
    let ca = TestCa::new();
    let billing = Billing::start(&ca).await;
    let dns = Dns::start(Ipv4Addr::new(127, 53, 0, 1)).await;
    let root = Root::from_image();
    root.name_files(dns.addr);
    root.write("password", format!("{PASSWORD}\n"));
    // The image's bundle with the test CA added, as an operator would add a private CA.
    let shipped = root.bundle();
    assert!(shipped.matches("BEGIN CERTIFICATE").count() > 100, "the image ships a full CA bundle");
    root.write(BUNDLE, format!("{shipped}{}", ca.ca_pem));

    // By DNS: the name is known to the test server only.
    let (ok, out, err) = account_check(&root, &billing.url(BILLING_HOST)).await;
    assert!(ok && out.contains("can use the API"), "account check over HTTPS by a DNS name: {out}{err}");
    assert!(dns.asked().iter().any(|n| n == BILLING_HOST), "the name was resolved by DNS: {:?}", dns.asked());

    // By /etc/hosts: localhost is in no DNS here.
    let (ok, out, err) = account_check(&root, &billing.url("localhost")).await;
    assert!(ok && out.contains("can use the API"), "account check over HTTPS to localhost: {out}{err}");
    assert!(!dns.asked().iter().any(|n| n == "localhost"), "localhost came from /etc/hosts: {:?}", dns.asked());
    billing.sim.shutdown().await;
}

#[tokio::test]
#[ignore = "needs root and the unpacked image: run by hack/image"]
async fn https_fails_when_the_roots_bundle_lacks_the_ca() {
    let ca = TestCa::new();
    let billing = Billing::start(&ca).await;
    let dns = Dns::start(Ipv4Addr::new(127, 53, 0, 2)).await;
    let root = Root::from_image();
    root.name_files(dns.addr);
    root.write("password", format!("{PASSWORD}\n"));

    // The bundle as shipped: public CAs only. The host's bundle is outside the root, so nothing
    // else could vouch for the test certificate.
    let (ok, out, err) = account_check(&root, &billing.url(BILLING_HOST)).await;
    assert!(!ok, "the test CA is not in the shipped bundle, yet the call succeeded: {out}");
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "refused for its issuer: {err}");

    // No bundle at all: HTTPS cannot be set up.
    std::fs::remove_file(root.path(BUNDLE)).unwrap();
    let (ok, out, err) = account_check(&root, &billing.url(BILLING_HOST)).await;
    assert!(!ok, "without a bundle the call succeeded: {out}");
    assert!(err.contains("No CA certificates were loaded"), "refused for want of CA certificates: {err}");
    billing.sim.shutdown().await;
}

#[tokio::test]
#[ignore = "needs root, the unpacked image and the Kubernetes binaries: run by hack/image"]
async fn the_entrypoint_runs_as_in_a_pod() {
    let ca = TestCa::new();
    let billing = Billing::start(&ca).await;
    let dns = Dns::start(Ipv4Addr::new(127, 53, 0, 3)).await;
    let root = Root::from_image();
    root.name_files(dns.addr);
    root.write(BUNDLE, format!("{}{}", root.bundle(), ca.ca_pem));

    let cp = ispcert_tests::control_plane().await.expect("the control plane starts");
    let client = cp.client().await.unwrap();
    let ns = cp.create_namespace("image").await.unwrap();

    // A service account and its token, mounted where the kubelet mounts them. It may do anything:
    // the operator's own RBAC is the chart's, and not what this test is about.
    let apply = PatchParams::apply("image-test").force();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ispcert"}});
    accounts.patch("ispcert", &apply, &Patch::Apply(&account)).await.unwrap();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{ns}-ispcert")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "ispcert", "namespace": ns}]
    });
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    bindings.patch(&format!("{ns}-ispcert"), &apply, &Patch::Apply(&binding)).await.unwrap();
    let request = TokenRequest {
        spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..TokenRequestSpec::default() }),
        ..TokenRequest::default()
    };
    let token = accounts.create_token_request("ispcert", &PostParams::default(), &request).await.unwrap();
    let token = token.status.and_then(|s| s.token).expect("a token");
    let kubeconfig = kube::config::Kubeconfig::read_from(cp.kubeconfig_path()).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.clone().unwrap();
    let api_ca = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        cluster.certificate_authority_data.expect("the kubeconfig carries the API server's CA"),
    )
    .unwrap();
    let sa = "var/run/secrets/kubernetes.io/serviceaccount";
    root.write(&format!("{sa}/token"), token);
    root.write(&format!("{sa}/ca.crt"), api_ca);
    root.write(&format!("{sa}/namespace"), &ns);
    let server = url::Url::parse(cp.server_url()).unwrap();
    let (host, port) = (server.host_str().unwrap().to_string(), server.port().unwrap().to_string());
    assert!(host.parse::<std::net::IpAddr>().is_ok(), "the API server is reached by IP, as in a cluster: {host}");

    // The Dockerfile's ENTRYPOINT, and what a Deployment adds: flags, POD_NAMESPACE, and the
    // service environment every pod gets.
    let metrics_port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut operator = root
        .command(
            &["controller", "--namespace", &ns, "--metrics-addr", &metrics_addr, "--poll-interval", "1s"],
            &[
                ("KUBERNETES_SERVICE_HOST", host.as_str()),
                ("KUBERNETES_SERVICE_PORT", port.as_str()),
                ("POD_NAMESPACE", ns.as_str()),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read as it comes, so that a full pipe never stalls the operator; complete once it exits.
    let mut stderr = operator.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut log).await;
        log
    });

    // The operator's work, from outside: an issuer on the HTTPS billing by its DNS name, a
    // certificate, and its Secret.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let credentials = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "billing-credentials"},
                             "stringData": {"email": EMAIL, "password": PASSWORD}});
    secrets.patch("billing-credentials", &apply, &Patch::Apply(&credentials)).await.unwrap();
    let dynamic = |kind: &str| {
        let gvk = kube::api::GroupVersionKind::gvk("ispcert.dev", "v1alpha1", kind);
        let resource = kube::api::ApiResource::from_gvk(&gvk);
        Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &resource)
    };
    let issuer = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspIssuer", "metadata": {"name": "billing"},
        "spec": {"url": billing.url(BILLING_HOST), "credentialsSecretRef": {"name": "billing-credentials"},
                 "region": "Russian",
                 "contacts": {"admin": {"firstName": "Anna", "lastName": "Ivanova", "title": "SRE",
                                        "email": "anna@example.com", "phone": "+7 495 1234567"}},
                 "subject": {"country": "RU", "countryId": "182", "state": "Moscow", "locality": "Moscow",
                             "organization": "Example LLC"}}});
    dynamic("IspIssuer").patch("billing", &apply, &Patch::Apply(&issuer)).await.unwrap();
    let certificate = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate", "metadata": {"name": "www"},
        "spec": {"issuerRef": {"name": "billing"}, "product": "alphassl", "commonName": "www.example.com",
                 "approverMailbox": "admin", "secretName": "www-tls"}});
    dynamic("IspCertificate").patch("www", &apply, &Patch::Apply(&certificate)).await.unwrap();

    let started = Instant::now();
    let mut ready_probe = false;
    let secret = loop {
        if let Some(status) = operator.try_wait().unwrap() {
            panic!("the operator exited ({status}):\n{}", log.await.unwrap());
        }
        ready_probe = ready_probe || probe(metrics_port, "/readyz").await;
        if let Ok(Some(s)) = secrets.get_opt("www-tls").await
            && s.data.as_ref().is_some_and(|d| d.contains_key("tls.crt"))
        {
            break s;
        }
        let certificate = dynamic("IspCertificate").get("www").await.ok().map(|c| c.data["status"].clone());
        assert!(
            started.elapsed() < WAIT,
            "no Secret www-tls within {WAIT:?}; the certificate's status: {certificate:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(ready_probe || probe(metrics_port, "/readyz").await, "/readyz answered 200");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert!(dns.asked().iter().any(|n| n == BILLING_HOST), "the billing was found by DNS: {:?}", dns.asked());

    // A pod is stopped with SIGTERM: the operator releases its Lease and exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(operator.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(30), operator.wait()).await.expect("the operator stops").unwrap();
    let log = log.await.unwrap();
    assert!(status.success(), "the operator stopped cleanly ({status}):\n{log}");
    assert!(log.contains("released the leader Lease"), "{log}");
    billing.sim.shutdown().await;
}

/// Whether `path` on the metrics port answers 200.
async fn probe(port: u16, path: &str) -> bool {
    let client = reqwest::Client::new();
    match client.get(format!("http://127.0.0.1:{port}{path}")).timeout(Duration::from_secs(2)).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}
