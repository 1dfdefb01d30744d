//! The real `ispcert controller` binary, two replicas with leader election: only the leader
//! works, each certificate is bought once, and the other replica takes over when the leader dies.
//! Also: the binary refuses to start without the CRDs.

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
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--lease-duration", "4s"])
        .args(["--poll-interval", "500ms", "--backoff-min", "200ms", "--backoff-max", "2s", "--log-format", "json"])
        .env("POD_NAME", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the ispcert binary starts");
    Replica { child, port }
}

async fn ready(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/readyz");
    matches!(reqwest::get(url).await, Ok(r) if r.status().is_success())
}

/// Waits until exactly one replica says it is ready (leading) and returns its index.
async fn leader(replicas: &[&Replica]) -> usize {
    let start = Instant::now();
    loop {
        let mut leading = vec![];
        for (i, r) in replicas.iter().enumerate() {
            if ready(r.port).await {
                leading.push(i);
            }
        }
        match leading.as_slice() {
            [one] => return *one,
            [] => {}
            many => panic!("several replicas lead at once: {many:?}"),
        }
        assert!(start.elapsed() < WAIT, "no replica became the leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_replicas_one_leader_one_order_and_failover() {
    let env = Env::without_operator("replicas", Env::default_sim()).await;
    let kubeconfig = ispcert_tests::control_plane().await.unwrap().kubeconfig_path().to_path_buf();
    let a = start_replica(&env, &kubeconfig, "replica-a");
    let b = start_replica(&env, &kubeconfig, "replica-b");
    let first = leader(&[&a, &b]).await;

    env.ready_issuer().await;
    env.apply_certificate("one", cert_spec("alphassl", "one.example.com", "one-tls")).await.unwrap();
    env.wait_ready("one").await;
    assert_eq!(env.orders().await, 1);
    let metrics =
        reqwest::get(format!("http://127.0.0.1:{}/metrics", [&a, &b][first].port)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("ispcert_certificate_ready_status{namespace=")
            && metrics.contains("ispcert_orders_total{outcome=\"placed\"} 1"),
        "{metrics}"
    );

    // The leader dies without a goodbye; the other takes the Lease once it expires.
    let (survivor, dead) = if first == 0 { (b, a) } else { (a, b) };
    drop(dead);
    leader(&[&survivor]).await;
    env.apply_certificate("two", cert_spec("alphassl", "two.example.com", "two-tls")).await.unwrap();
    env.wait_ready("two").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 2, "each certificate bought once across the failover");
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
