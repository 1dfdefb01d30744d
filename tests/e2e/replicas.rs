//! The real `ispcert controller` binary, several replicas with leader election: only the leader
//! reconciles, each certificate is bought once, a graceful stop hands the Lease over at once and a
//! crashed leader is replaced within the lease duration. Also: the binary refuses to start without
//! the CRDs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Waits until exactly one replica says it leads and returns its index. Every running replica is
/// ready, leading or standing by.
async fn leader(replicas: &[&OperatorProcess]) -> usize {
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
    let a = OperatorProcess::start(&env, &kubeconfig, "replica-a");
    let b = OperatorProcess::start(&env, &kubeconfig, "replica-b");
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
    let c = OperatorProcess::start(&env, &kubeconfig, "replica-c");
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
