//! Every way to get a certificate reaches Ready with a valid Secret and exactly one order.

use std::time::Duration;

use ispcert::billing::{BillingClient, Credentials, http_pool};
use ispcert::pki::keys::{self, CsrSubject, KeyAlgorithm};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn cluster_generated_key_never_leaves_the_cluster() {
    let env = Env::new("mode-cluster").await;
    env.ready_issuer().await;
    env.apply_certificate(
        "site",
        with(
            cert_spec("alphassl", "site.example.com", "site-tls"),
            json!({
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "secretTemplate": {"labels": {"team": "web"}, "annotations": {"owner": "web-team"}}
            }),
        ),
    )
    .await
    .unwrap();
    let cert = env.wait_ready("site").await;
    let secret = env.secrets().get("site-tls").await.unwrap();
    let leaf = verify_tls_secret(&secret, &["site.example.com"]);

    let status = cert.status.unwrap();
    let order_id = status.order_id.clone().expect("the order id is in the status");
    assert_eq!(status.serial_number.as_deref(), Some(leaf.serial.as_str()));
    assert_eq!(status.dns_names, ["site.example.com"]);
    assert!(status.renewal_time.is_some() && status.not_after.is_some());
    assert!(is(&status.conditions, "Issuing", "False"));
    assert_eq!(annotation(&secret, "ispcert.dev/order-id"), order_id);
    assert_eq!(annotation(&secret, "ispcert.dev/common-name"), "site.example.com");
    assert_eq!(annotation(&secret, "ispcert.dev/issuer-name"), "billing");
    assert_eq!(annotation(&secret, "owner"), "web-team");
    assert_eq!(secret.metadata.labels.as_ref().unwrap()["team"], "web");

    // The key Secret holds the very key of tls.key, and the billing never had a key.
    let key_secret = env.secrets().get("site-ispcert-key").await.unwrap();
    let stored = &key_secret.data.as_ref().unwrap()["tls.key"].0;
    assert!(stored == &secret.data.as_ref().unwrap()["tls.key"].0, "the key Secret holds the served key");
    assert!(String::from_utf8_lossy(stored).contains("BEGIN PRIVATE KEY"));
    let at_billing = env.admin.certificate(order_id.parse().unwrap()).await.unwrap();
    assert!(!at_billing.billing_has_key, "a cluster key is never sent to the billing");
    assert_eq!(at_billing.crt_type, "manual");
    let tag = at_billing.remoteid.clone().expect("the order carries our tag");
    assert!(tag.starts_with("ispcert-") && tag.len() == 32, "{tag}");

    assert_eq!(env.orders().await, 1);
    env.wait_event("site", "Normal", "Ordered").await;
    env.wait_event("site", "Normal", "Issued").await;

    // Nothing more is bought or written while it stays valid, even across an operator restart.
    let mut env = env;
    env.stop_operator().await;
    env.start_operator().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.orders().await, 1);
    let again = env.secrets().get("site-tls").await.unwrap();
    assert_eq!(again.metadata.resource_version, secret.metadata.resource_version, "no write that changes nothing");
}

#[tokio::test]
async fn billing_generated_key() {
    let env = Env::new("mode-billing").await;
    env.ready_issuer().await;
    env.apply_certificate(
        "billing-key",
        with(
            cert_spec("rapidssl", "api.example.com", "api-tls"),
            json!({
                "privateKey": {"source": "Billing"}
            }),
        ),
    )
    .await
    .unwrap();
    let cert = env.wait_ready("billing-key").await;
    let secret = env.secrets().get("api-tls").await.unwrap();
    verify_tls_secret(&secret, &["api.example.com"]);
    let id: u64 = cert.status.unwrap().order_id.unwrap().parse().unwrap();
    assert!(env.admin.certificate(id).await.unwrap().billing_has_key);
    let stats = env.stats().await;
    assert_eq!(stats.orders, 1);
    assert_eq!(stats.requests.get("certificate.order.csr").copied(), Some(1), "one key from the billing");
}

#[tokio::test]
async fn existing_csr_and_key_from_a_secret() {
    let env = Env::new("mode-csr").await;
    env.ready_issuer().await;
    let key = keys::generate(KeyAlgorithm::Rsa2048).unwrap();
    let csr = keys::csr(&key, "shop.example.com", &[], &CsrSubject::default()).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "shop-csr"},
        "stringData": {"tls.csr": csr, "tls.key": key.expose_secret()}
    }))
    .unwrap();
    env.secrets().create(&PostParams::default(), &secret).await.unwrap();
    env.apply_certificate(
        "shop",
        with(
            cert_spec("comodo-positivessl", "shop.example.com", "shop-tls"),
            json!({
                "privateKey": {"source": "Secret", "secretRef": {"name": "shop-csr"}}
            }),
        ),
    )
    .await
    .unwrap();
    env.wait_ready("shop").await;
    let out = env.secrets().get("shop-tls").await.unwrap();
    let leaf = verify_tls_secret(&out, &["shop.example.com"]);
    assert_eq!(leaf.public_key_bits, keys::public_key_bits(&key).unwrap(), "issued for the user's own key");
    assert_eq!(env.orders().await, 1);
}

#[tokio::test]
async fn adopting_an_order_bought_elsewhere_buys_nothing() {
    let env = Env::new("mode-adopt").await;
    env.ready_issuer().await;
    // Bought by hand (in the billing's panel, say) with a key the cluster never sees.
    let client = BillingClient::new(
        http_pool(Duration::from_secs(10)).unwrap(),
        &env.sim.base_url(),
        Credentials::new(EMAIL, PASSWORD),
    )
    .unwrap();
    let (request, foreign) = ispcert_tests::orders::order(55324, &["old.example.com"], None);
    let id = client.order(&request).await.unwrap();
    assert_eq!(env.orders().await, 1);

    env.apply_certificate("old", with(cert_spec("alphassl", "old.example.com", "old-tls"), json!({"orderId": id})))
        .await
        .unwrap();
    let cert = env.wait_ready("old").await;
    assert_eq!(cert.status.unwrap().order_id.as_deref(), Some(id.as_str()));
    let out = env.secrets().get("old-tls").await.unwrap();
    let leaf = verify_tls_secret(&out, &["old.example.com"]);
    assert_ne!(leaf.public_key_bits, keys::public_key_bits(&foreign).unwrap(), "re-keyed to a cluster key");
    let stats = env.stats().await;
    assert_eq!(stats.orders, 1, "adoption buys nothing");
    assert_eq!(stats.reissues, 1, "one free reissue moved it to the cluster's key");
    env.wait_event("old", "Normal", "OrderAdopted").await;
}

#[tokio::test]
async fn wildcard() {
    let env = Env::new("mode-wildcard").await;
    env.ready_issuer().await;
    env.apply_certificate("wild", cert_spec("alphassl-wildcard", "*.example.com", "wild-tls")).await.unwrap();
    env.wait_ready("wild").await;
    let out = env.secrets().get("wild-tls").await.unwrap();
    verify_tls_secret(&out, &["*.example.com"]);
    let id: u64 = env.certificates().get("wild").await.unwrap().status.unwrap().order_id.unwrap().parse().unwrap();
    assert_eq!(
        env.admin.certificate(id).await.unwrap().approver_emails,
        ["admin@example.com"],
        "a wildcard is approved through its base domain"
    );
    assert_eq!(env.orders().await, 1);
}

#[tokio::test]
async fn multi_domain_with_a_mailbox_per_domain() {
    let env = Env::new("mode-multi").await;
    env.ready_issuer().await;
    env.apply_certificate(
        "multi",
        json!({
            "issuerRef": {"name": "billing"},
            "product": "globalsign-domainssl",
            "commonName": "a.example.com",
            "altNames": ["b.example.org", "c.example.net"],
            "approvers": [
                {"domain": "a.example.com", "email": "hostmaster@a.example.com"},
                {"domain": "b.example.org", "email": "webmaster@b.example.org"},
                {"domain": "c.example.net", "email": "postmaster@c.example.net"}
            ],
            "secretName": "multi-tls"
        }),
    )
    .await
    .unwrap();
    let cert = env.wait_ready("multi").await;
    let out = env.secrets().get("multi-tls").await.unwrap();
    verify_tls_secret(&out, &["a.example.com", "b.example.org", "c.example.net"]);
    let id: u64 = cert.status.unwrap().order_id.unwrap().parse().unwrap();
    let at_billing = env.admin.certificate(id).await.unwrap();
    assert_eq!(
        at_billing.approver_emails,
        ["hostmaster@a.example.com", "webmaster@b.example.org", "postmaster@c.example.net"]
    );
    assert_eq!(at_billing.addon, Some((55364, 2)));
    assert_eq!(annotation(&out, "ispcert.dev/alt-names"), "b.example.org,c.example.net");
    assert_eq!(env.orders().await, 1);

    // Dropping an alt name is a free reissue, not a purchase.
    env.apply_certificate(
        "multi",
        json!({
            "issuerRef": {"name": "billing"},
            "product": "globalsign-domainssl",
            "commonName": "a.example.com",
            "altNames": ["b.example.org"],
            "approverMailbox": "admin",
            "secretName": "multi-tls"
        }),
    )
    .await
    .unwrap();
    let generation = env.certificates().get("multi").await.unwrap().metadata.generation;
    env.wait_cert("multi", |s| {
        is(&s.conditions, "Ready", "True") && s.observed_generation == generation && s.dns_names.len() == 2
    })
    .await;
    verify_tls_secret(&env.secrets().get("multi-tls").await.unwrap(), &["a.example.com", "b.example.org"]);
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 1));

    // No alt name at all cannot be reached by a reissue: said plainly, nothing sent.
    env.apply_certificate(
        "multi",
        json!({
            "issuerRef": {"name": "billing"},
            "product": "globalsign-domainssl",
            "commonName": "a.example.com",
            "approverMailbox": "admin",
            "secretName": "multi-tls"
        }),
    )
    .await
    .unwrap();
    let cert = env.wait_reason("multi", "Ready", "False", "CertificateMismatch").await;
    assert!(cert.status.unwrap().conditions.iter().any(|c| c.message.contains("keep at least one in altNames")));
    assert_eq!(env.stats().await.reissues, 1);
}

#[tokio::test]
async fn cluster_issuer_reads_credentials_only_from_the_operator_namespace() {
    let env = Env::new("mode-cluster-issuer").await;
    // The operator of this test runs with its namespace as the operator namespace.
    env.credentials("cluster-credentials", EMAIL, PASSWORD).await;
    let name = format!("shared-{}", env.ns);
    let apply = |name: String, spec: serde_json::Value| {
        let api = env.cluster_issuers();
        let labels = json!({"ispcert.dev/test": env.ns});
        async move {
            let obj = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "ClusterIspIssuer",
                             "metadata": {"name": name, "labels": labels}, "spec": spec});
            api.patch(&name, &kube::api::PatchParams::apply("e2e").force(), &kube::api::Patch::Apply(&obj))
                .await
                .unwrap()
        }
    };
    apply(name.clone(), env.issuer_spec("cluster-credentials")).await;
    let mut elsewhere = env.issuer_spec("cluster-credentials");
    elsewhere["credentialsSecretRef"]["namespace"] = json!("default");
    let bad = format!("elsewhere-{}", env.ns);
    apply(bad.clone(), elsewhere).await;

    let start = std::time::Instant::now();
    loop {
        let i = env.cluster_issuers().get(&bad).await.unwrap();
        if let Some(c) = i.status.as_ref().and_then(|s| s.conditions.first())
            && c.reason == "CredentialsNamespaceNotAllowed"
        {
            assert!(c.message.contains("only from the operator's namespace"), "{}", c.message);
            break;
        }
        assert!(start.elapsed() < WAIT, "the ClusterIspIssuer with a foreign Secret was not refused: {:?}", i.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    env.apply_certificate(
        "site",
        with(
            cert_spec("alphassl", "site.example.com", "site-tls"),
            json!({
                "issuerRef": {"name": name, "kind": "ClusterIspIssuer"}
            }),
        ),
    )
    .await
    .unwrap();
    env.wait_ready("site").await;
    verify_tls_secret(&env.secrets().get("site-tls").await.unwrap(), &["site.example.com"]);
    assert_eq!(
        annotation(&env.secrets().get("site-tls").await.unwrap(), "ispcert.dev/issuer-kind"),
        "ClusterIspIssuer"
    );
    assert_eq!(env.orders().await, 1);
    env.cluster_issuers().delete(&name, &Default::default()).await.unwrap();
    env.cluster_issuers().delete(&bad, &Default::default()).await.unwrap();
}
