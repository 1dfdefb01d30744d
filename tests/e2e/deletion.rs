//! Deleting an `IspCertificate` under `Retain` and `Delete`, checked at the simulator.

use std::time::{Duration, Instant};

use ispcert_sim::{FaultKind, FaultSpec};
use serde_json::json;

use crate::support::*;

async fn wait_gone(env: &Env, name: &str) {
    let start = Instant::now();
    while env.certificates().get_opt(name).await.unwrap().is_some() {
        assert!(start.elapsed() < WAIT, "{name} was not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The certificate `site` for www.example.com with `deletionPolicy: Delete`.
async fn apply_deleting_site(env: &Env) {
    let spec = with(cert_spec("alphassl", "www.example.com", "www-tls"), json!({"deletionPolicy": "Delete"}));
    env.apply_certificate("site", spec).await.unwrap();
}

#[tokio::test]
async fn retain_keeps_the_secret_and_the_order() {
    let env = Env::new("delete-retain").await;
    env.ready_issuer().await;
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let cert = env.wait_ready("site").await;
    assert!(cert.metadata.finalizers.unwrap_or_default().is_empty(), "Retain needs no finalizer");
    let id: u64 = cert.status.unwrap().order_id.unwrap().parse().unwrap();
    env.delete_certificate("site").await;
    wait_gone(&env, "site").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    verify_tls_secret(&env.secrets().get("www-tls").await.unwrap(), &["www.example.com"]);
    assert!(env.secrets().get_opt("site-ispcert-key").await.unwrap().is_some(), "the key is retained too");
    assert!(!env.admin.certificate(id).await.unwrap().deleted);
    assert_eq!(env.stats().await.deletes, 0);
}

#[tokio::test]
async fn delete_removes_the_certificate_at_the_billing() {
    let env = Env::new("delete-delete").await;
    env.ready_issuer().await;
    apply_deleting_site(&env).await;
    let cert = env.wait_ready("site").await;
    assert_eq!(cert.metadata.finalizers.unwrap_or_default(), ["ispcert.dev/cleanup"]);
    let id: u64 = cert.status.unwrap().order_id.unwrap().parse().unwrap();
    env.delete_certificate("site").await;
    wait_gone(&env, "site").await;
    assert!(env.admin.certificate(id).await.unwrap().deleted);
    assert_eq!(env.stats().await.deletes, 1);
    assert!(env.secrets().get_opt("www-tls").await.unwrap().is_none(), "the Secret goes with it");
    assert!(env.secrets().get_opt("site-ispcert-key").await.unwrap().is_none(), "and the key Secret");
}

#[tokio::test]
async fn deletion_never_hangs_when_the_billing_is_gone() {
    let env = Env::new("delete-blocked").await;
    env.ready_issuer().await;
    apply_deleting_site(&env).await;
    let id: u64 = env.wait_ready("site").await.status.unwrap().order_id.unwrap().parse().unwrap();
    env.admin
        .add_fault(&FaultSpec::new(FaultKind::Status { status: 503 }).on_func("certificate.delete"))
        .await
        .unwrap();
    env.delete_certificate("site").await;
    let blocked = env.wait_reason("site", "Ready", "False", "DeletionBlocked").await;
    assert_eq!(
        blocked.status.as_ref().unwrap().observed_generation,
        blocked.metadata.generation,
        "the status speaks of the generation being deleted"
    );
    let message = blocked.status.unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone();
    assert!(message.contains("ispcert.dev/skip-billing-cleanup=true"), "the way out is named: {message}");
    env.wait_event("site", "Warning", "DeletionBlocked").await;

    // The documented way out.
    let patch = json!({"metadata": {"annotations": {"ispcert.dev/skip-billing-cleanup": "true"}}});
    env.certificates()
        .patch("site", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    wait_gone(&env, "site").await;
    assert!(!env.admin.certificate(id).await.unwrap().deleted);
}

#[tokio::test]
async fn deleting_a_refused_adoption_leaves_the_other_certificates_order_alone() {
    let env = Env::new("delete-claimed").await;
    env.ready_issuer().await;
    env.apply_certificate("owner", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let id = env.wait_ready("owner").await.status.unwrap().order_id.unwrap();
    // A second resource claims the same order, with Delete: refused, it never owns the order.
    env.apply_certificate(
        "copy",
        with(cert_spec("alphassl", "www.example.com", "copy-tls"), json!({"orderId": id, "deletionPolicy": "Delete"})),
    )
    .await
    .unwrap();
    env.wait_reason("copy", "Ready", "False", "OrderRejected").await;
    env.delete_certificate("copy").await;
    wait_gone(&env, "copy").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!env.admin.certificate(id.parse().unwrap()).await.unwrap().deleted, "the owner's order is untouched");
    assert_eq!(env.stats().await.deletes, 0);
    assert_eq!(env.orders().await, 1);
    verify_tls_secret(&env.secrets().get("www-tls").await.unwrap(), &["www.example.com"]);
}

/// Deleting a namespace deletes everything in it at once: the issuer and its credentials go with
/// the `Delete` certificate, so its billing clean-up cannot run. After a bounded wait the order
/// is kept at the billing and the certificate lets the namespace go. (The test bed has no
/// namespace controller: the test marks the namespace Terminating and deletes what that
/// controller would.)
#[tokio::test]
async fn a_namespace_being_deleted_is_not_held_by_a_delete_certificate_whose_issuer_went_with_it() {
    use k8s_openapi::api::core::v1::Namespace;
    let mut env = Env::without_operator("delete-namespace", Env::default_sim()).await;
    // Long enough that the blocked state is seen however slow the machine is.
    env.settings.namespace_cleanup_wait = Duration::from_secs(10);
    env.start_operator().await;
    env.ready_issuer().await;
    apply_deleting_site(&env).await;
    let cert = env.wait_ready("site").await;
    let id: u64 = cert.status.unwrap().order_id.unwrap().parse().unwrap();

    let namespaces: kube::Api<Namespace> = kube::Api::all(env.client.clone());
    namespaces.delete(&env.ns, &Default::default()).await.unwrap();
    env.issuers().delete("billing", &Default::default()).await.unwrap();
    env.secrets().delete("billing-credentials", &Default::default()).await.unwrap();
    env.delete_certificate("site").await;

    let blocked = env.wait_reason("site", "Ready", "False", "DeletionBlocked").await;
    let message = blocked.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap().message;
    assert!(
        message.contains("issuer billing does not exist")
            && message.contains("The namespace is being deleted: after 10s the order is kept"),
        "{message}"
    );
    wait_gone(&env, "site").await;
    assert!(!env.admin.certificate(id).await.unwrap().deleted, "kept at the billing");
    assert!(env.secrets().get_opt("www-tls").await.unwrap().is_none(), "the Secrets go");
    assert!(env.secrets().get_opt("site-ispcert-key").await.unwrap().is_none());
}
