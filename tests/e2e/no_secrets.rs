//! Credentials and private keys never show in what the operator tells the world: its log (at the
//! most verbose level), its events, and the status of its resources.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use crate::support::*;

const WRONG_PASSWORD: &str = "wrong-but-still-secret-71";

/// The ways a secret could be written out: as text, base64 as in a Secret's `data`, and as the
/// list of byte values that `Debug` prints for a `ByteString`.
fn renderings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let head = &bytes[..bytes.len().min(24)];
    vec![secret.to_string(), STANDARD.encode(bytes), head.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")]
}

#[tokio::test]
async fn no_credentials_or_keys_in_logs_events_or_status() {
    let env = Env::new("no-secrets").await;
    // A wrong password first: the failure path is where a secret most easily slips into a message.
    env.credentials("billing-credentials", EMAIL, WRONG_PASSWORD).await;
    env.apply_issuer("billing", env.issuer_spec("billing-credentials")).await.unwrap();
    env.wait_issuer("billing", |s| s.conditions.iter().any(|c| c.reason == "WrongCredentials")).await;
    let cluster_key = with(
        cert_spec("alphassl", "cluster.example.com", "cluster-tls"),
        json!({"privateKey": {"algorithm": "RSA", "size": 2048}}),
    );
    let billing_key =
        with(cert_spec("rapidssl", "billing.example.com", "billing-tls"), json!({"privateKey": {"source": "Billing"}}));
    env.apply_certificate("cluster-key", cluster_key).await.unwrap();
    env.apply_certificate("billing-key", billing_key).await.unwrap();
    env.wait_reason("cluster-key", "Ready", "False", "IssuerNotReady").await;

    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    env.wait_ready("cluster-key").await;
    env.wait_ready("billing-key").await;

    let mut secrets = vec![("the password", PASSWORD.to_string()), ("the wrong password", WRONG_PASSWORD.to_string())];
    for name in ["cluster-tls", "billing-tls"] {
        let secret = env.secrets().get(name).await.unwrap();
        let key = String::from_utf8(secret.data.unwrap()["tls.key"].0.clone()).unwrap();
        assert!(key.contains("PRIVATE KEY"), "{name} holds a PEM key");
        // Each base64 line of the PEM on its own, so a key logged in pieces or re-wrapped is found too.
        for line in key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 32) {
            secrets.push(("a private key", line.to_string()));
        }
        secrets.push(("a private key", key));
    }

    let log = captured_log();
    assert!(
        log.contains(&env.ns) && log.contains("cluster-key"),
        "the capture holds this test's operator lines ({} bytes captured)",
        log.len()
    );
    let events = Api::<Event>::namespaced(env.client.clone(), &env.ns).list(&ListParams::default()).await.unwrap();
    assert!(!events.items.is_empty());
    let certificates = env.certificates().list(&ListParams::default()).await.unwrap();
    let issuers = env.issuers().list(&ListParams::default()).await.unwrap();
    let statuses = serde_json::to_string(&(
        certificates.items.iter().map(|c| &c.status).collect::<Vec<_>>(),
        issuers.items.iter().map(|i| &i.status).collect::<Vec<_>>(),
    ))
    .unwrap();
    let told = [("the log", log), ("an event", serde_json::to_string(&events.items).unwrap()), ("a status", statuses)];

    for (where_, text) in &told {
        assert!(!text.contains("PRIVATE KEY"), "{where_} shows a PEM private key");
        for (what, secret) in &secrets {
            for shown in renderings(secret) {
                // The test's message names what leaked, never the secret itself.
                assert!(!text.contains(&shown), "{where_} shows {what}");
            }
        }
    }
}
