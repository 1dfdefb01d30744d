//! The real `ispcert controller` binary, several replicas with leader election: only the leader
//! reconciles, each certificate is bought once, a graceful stop hands the Lease over at once and a
//! crashed leader is replaced within the lease duration. Also: the binary refuses to start without
//! the CRDs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Replica {
    child: Child,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_replica(env: &Env, kubeconfig: &std::path::Path, name: &str) -> Replica {
    let port = free_port();
    let child = Command::new(operator_binary())
        .args(["controller", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--namespace", &env.ns, "--operator-namespace", &env.ns])
        .args(["--cluster-issuer-selector", &format!("ispcert.dev/test={}", env.ns)])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--lease-duration", "6s"])
        .args(["--poll-interval", "500ms", "--backoff-min", "200ms", "--backoff-max", "2s", "--log-format", "json"])
        .env("POD_NAME", name)
        .env("ISPCERT_LOG", "ispcert=debug,kube_lease_manager=debug,info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(std::env::temp_dir().join(format!("{}-{name}.log", env.ns))).unwrap())
        .spawn()
        .expect("the ispcert binary starts");
    Replica { child, port }
}

async fn get(port: u16, path: &str) -> Option<(bool, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
    let ok = response.status().is_success();
    Some((ok, response.text().await.ok()?))
}

/// The value of a metric without labels, 0 when the replica does not export it.
async fn metric(port: u16, name: &str) -> f64 {
    let Some((_, text)) = get(port, "/metrics").await else { return 0.0 };
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until exactly one replica says it leads and returns its index. Every running replica is
/// ready, leading or standing by.
async fn leader(replicas: &[&Replica]) -> usize {
    let start = Instant::now();
    loop {
        let mut leading = vec![];
        for (i, r) in replicas.iter().enumerate() {
            if metric(r.port, "ispcert_leader").await == 1.0 {
                leading.push(i);
            }
        }
        match leading.as_slice() {
            [one] => {
                // Every replica, leading or standing by, becomes ready.
                for r in replicas {
                    while get(r.port, "/readyz").await.map(|(ok, _)| ok) != Some(true) {
                        assert!(start.elapsed() < WAIT, "a replica on port {} never became ready", r.port);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                return *one;
            }
            [] => {}
            many => panic!("several replicas lead at once: {many:?}"),
        }
        assert!(start.elapsed() < WAIT, "no replica became the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies a certificate and waits until it is Ready.
async fn issue(env: &Env, name: &str) {
    let spec = cert_spec("alphassl", &format!("{name}.example.com"), &format!("{name}-tls"));
    env.apply_certificate(name, spec).await.unwrap();
    env.wait_ready(name).await;
}

/// How long a Lease held by a replica that stopped without a word lasts.
const LEASE: Duration = Duration::from_secs(6);

#[tokio::test]
async fn two_replicas_one_leader_one_order_each_and_handovers() {
    let env = Env::without_operator("replicas", Env::default_sim()).await;
    let kubeconfig = ispcert_tests::control_plane().await.unwrap().kubeconfig_path().to_path_buf();
    let a = start_replica(&env, &kubeconfig, "replica-a");
    let b = start_replica(&env, &kubeconfig, "replica-b");
    let first = leader(&[&a, &b]).await;
    env.ready_issuer().await;
    issue(&env, "one").await;
    assert_eq!(env.orders().await, 1);
    let (leading, standing_by) = if first == 0 { (a, b) } else { (b, a) };
    let (_, metrics) = get(leading.port, "/metrics").await.unwrap();
    assert!(
        metrics.contains("ispcert_certificate_ready_status{namespace=")
            && metrics.contains("ispcert_orders_total{outcome=\"placed\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        metric(standing_by.port, "ispcert_reconciles_total{controller=\"certificate\"}").await,
        0.0,
        "only the leader reconciles"
    );

    // A graceful stop (a rollout) releases the Lease: the other replica leads within seconds,
    // well inside the lease duration.
    let stopping = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(leading.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    leader(&[&standing_by]).await;
    let handover = stopping.elapsed();
    assert!(handover < LEASE / 2, "handed over in {handover:?} after a graceful stop");
    drop(leading);
    issue(&env, "two").await;

    // A crashed leader says nothing: a new replica takes the Lease once it expires.
    let c = start_replica(&env, &kubeconfig, "replica-c");
    let crashing = Instant::now();
    drop(standing_by);
    leader(&[&c]).await;
    let takeover = crashing.elapsed();
    assert!(takeover <= LEASE + Duration::from_secs(3), "taken over in {takeover:?} after a crash");
    issue(&env, "three").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 3, "each certificate bought once across both handovers");
    eprintln!("handover after a graceful stop: {handover:?}; after a crash: {takeover:?}");
}

#[tokio::test]
async fn the_binary_refuses_to_start_without_the_crds() {
    let bare = ispcert_testbed::ControlPlane::start(ispcert_testbed::Options {
        bin_script: Some(ispcert_tests::bin_script()),
        ..ispcert_testbed::Options::default()
    })
    .await
    .expect("a control plane without CRDs");
    let out = tokio::task::spawn_blocking({
        let kubeconfig = bare.kubeconfig_path().to_path_buf();
        move || {
            Command::new(operator_binary())
                .args(["controller", "--leader-elect=false", "--metrics-addr", "off", "--kubeconfig"])
                .arg(kubeconfig)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CRDs are not installed") && stderr.contains("kubectl apply -f crds/"), "{stderr}");
}
