//! Every bad input ends, with zero orders, in a rejection at apply time or in a condition and a
//! Warning event that say what to fix.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::*;

/// Applying `spec` is refused by the API server with a message containing `expect`.
async fn refused(env: &Env, name: &str, spec: Value, expect: &str) {
    match env.create_certificate(name, spec).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains(expect), "expected {expect:?} in {:?}", s.message);
        }
        other => panic!("{name}: expected a rejection containing {expect:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_at_apply_time() {
    let env = Env::new("bad-apply").await;
    env.ready_issuer().await;
    let base = || cert_spec("alphassl", "www.example.com", "www-tls");
    refused(&env, "unknown-product", with(base(), json!({"product": "alphasll"})), "unknown product").await;
    refused(&env, "period-36", with(base(), json!({"period": 36})), "period must be 12 or 24 months").await;
    refused(
        &env,
        "bad-mailbox",
        with(base(), json!({"approvers": [{"domain": "www.example.com", "email": "root@www.example.com"}]})),
        "email must be admin@, administrator@, hostmaster@, postmaster@ or webmaster@",
    )
    .await;
    refused(
        &env,
        "stray-approver",
        with(base(), json!({"approvers": [{"domain": "other.example.com", "email": "admin@other.example.com"}]})),
        "every approvers[].domain must be the commonName or one of altNames",
    )
    .await;
    refused(
        &env,
        "conflicting-keys",
        with(base(), json!({"orderId": "123", "privateKey": {"source": "Billing"}})),
        "adopting an existing order (orderId) needs the key in the cluster",
    )
    .await;
    refused(
        &env,
        "billing-key-with-algorithm",
        with(base(), json!({"privateKey": {"source": "Billing", "algorithm": "ECDSA", "size": 384}})),
        "leave them unset with source Billing or Secret",
    )
    .await;
    refused(
        &env,
        "billing-key-rotated",
        with(base(), json!({"privateKey": {"source": "Billing", "rotationPolicy": "Always"}})),
        "leave them unset with source Billing or Secret",
    )
    .await;
    refused(
        &env,
        "csr-without-secret",
        with(base(), json!({"privateKey": {"source": "Secret"}})),
        "privateKey.secretRef is required with source Secret",
    )
    .await;
    refused(
        &env,
        "wildcard-on-plain",
        with(base(), json!({"commonName": "*.example.com"})),
        "a wildcard commonName (*.) needs a wildcard product",
    )
    .await;
    refused(
        &env,
        "alt-on-single",
        with(base(), json!({"altNames": ["b.example.com"]})),
        "altNames need a multi-domain product",
    )
    .await;
    refused(&env, "empty-cn", with(base(), json!({"commonName": ""})), "commonName must not be empty").await;
    refused(&env, "no-approver", json!({"issuerRef": {"name": "billing"}, "product": "alphassl", "commonName": "www.example.com", "secretName": "x"}), "every name needs an approver").await;

    // A field that decides what is bought cannot change afterwards.
    env.apply_certificate("fixed", base()).await.unwrap();
    match env.apply_certificate("fixed", with(base(), json!({"commonName": "other.example.com"}))).await {
        Err(kube::Error::Api(s)) => assert!(s.message.contains("commonName cannot change"), "{}", s.message),
        other => panic!("a commonName change was accepted: {other:?}"),
    }
    env.wait_ready("fixed").await;
    assert_eq!(env.orders().await, 1, "only the valid certificate was ordered");
}

#[tokio::test]
async fn an_issuer_that_does_not_exist() {
    let env = Env::new("bad-issuer").await;
    env.apply_certificate(
        "orphan",
        with(cert_spec("alphassl", "www.example.com", "www-tls"), json!({"issuerRef": {"name": "nobody"}})),
    )
    .await
    .unwrap();
    let cert = env.wait_reason("orphan", "Ready", "False", "IssuerNotFound").await;
    let message = &cert.status.unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone();
    assert!(message.contains("IspIssuer nobody in namespace") && message.contains("does not exist"), "{message}");
    env.wait_event("orphan", "Warning", "IssuerNotFound").await;
    assert_eq!(env.orders().await, 0);

    // Creating the issuer heals it without touching the certificate.
    env.credentials("c2", EMAIL, PASSWORD).await;
    env.apply_issuer("nobody", env.issuer_spec("c2")).await.unwrap();
    env.wait_ready("orphan").await;
    assert_eq!(env.orders().await, 1);
}

#[tokio::test]
async fn credentials_in_another_namespace_are_refused() {
    let env = Env::new("bad-creds-ns").await;
    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    let mut spec = env.issuer_spec("billing-credentials");
    spec["credentialsSecretRef"]["namespace"] = json!("kube-system");
    env.apply_issuer("billing", spec).await.unwrap();
    let issuer =
        env.wait_issuer("billing", |s| s.conditions.iter().any(|c| c.reason == "CredentialsNamespaceNotAllowed")).await;
    let message = issuer.status.unwrap().conditions[0].message.clone();
    assert!(message.contains("an IspIssuer reads credentials from its own namespace"), "{message}");

    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_reason("site", "Ready", "False", "IssuerNotReady").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = env.stats().await;
    assert_eq!(stats.orders, 0);
    assert!(stats.requests.is_empty(), "the billing is not even asked: {:?}", stats.requests);
}

#[tokio::test]
async fn problems_only_the_operator_can_see() {
    let env = Env::new("bad-runtime").await;
    env.ready_issuer().await;
    // 55346 is AlphaSSL in the foreign price list; the issuer buys from the Russian one.
    env.apply_certificate("wrong-region", cert_spec("55346", "www.example.com", "www-tls")).await.unwrap();
    let cert = env.wait_reason("wrong-region", "Ready", "False", "InvalidSpec").await;
    let message = cert.status.unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone();
    assert!(
        message.contains("belongs to the Foreign price list") && message.contains("use the product name alphassl"),
        "{message}"
    );
    let note = env.wait_event("wrong-region", "Warning", "InvalidSpec").await;
    assert!(note.contains("Foreign price list"), "{note}");

    // A CSR Secret whose CSR is for other names.
    env.apply_certificate(
        "csr-missing",
        with(
            cert_spec("alphassl", "shop.example.com", "shop-tls"),
            json!({
                "privateKey": {"source": "Secret", "secretRef": {"name": "does-not-exist"}}
            }),
        ),
    )
    .await
    .unwrap();
    env.wait_reason("csr-missing", "Ready", "False", "CsrSecretInvalid").await;
    env.wait_event("csr-missing", "Warning", "CsrSecretInvalid").await;

    // A Secret of the same name that ispcert did not write is never taken, and nothing is bought.
    let foreign: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "hand-made-tls"}, "stringData": {"note": "mine"}})).unwrap();
    env.secrets().create(&Default::default(), &foreign).await.unwrap();
    env.apply_certificate("taker", cert_spec("alphassl", "take.example.com", "hand-made-tls")).await.unwrap();
    let taker = env.wait_reason("taker", "Ready", "False", "SecretNotManaged").await;
    assert!(taker.status.unwrap().conditions.iter().any(|c| c.message.contains("kubectl label secret hand-made-tls")));
    assert_eq!(env.orders().await, 0, "refused before ordering");

    // Handed over, but an Opaque Secret can never become kubernetes.io/tls: still nothing bought.
    let label = json!({"metadata": {"labels": {"ispcert.dev/certificate-name": "taker"}}});
    env.secrets().patch("hand-made-tls", &Default::default(), &kube::api::Patch::Merge(&label)).await.unwrap();
    let taker = env.wait_reason("taker", "Ready", "False", "SecretWrongType").await;
    assert!(taker.status.unwrap().conditions.iter().any(|c| c.message.contains("has type Opaque")));
    env.wait_event("taker", "Warning", "SecretWrongType").await;

    // The output Secret cannot be the Secret that holds the certificate's own key.
    env.apply_certificate("selfish", cert_spec("alphassl", "self.example.com", "selfish-ispcert-key")).await.unwrap();
    let selfish = env.wait_reason("selfish", "Ready", "False", "InvalidSpec").await;
    assert!(selfish.status.unwrap().conditions.iter().any(|c| c.message.contains("keeps its private key")));
    assert!(env.secrets().get_opt("selfish-ispcert-key").await.unwrap().is_none(), "no key was made");
    assert_eq!(env.orders().await, 0, "refused before ordering");

    // Two certificates naming one Secret: the later one is refused and never writes.
    env.apply_certificate("first", cert_spec("alphassl", "one.example.com", "shared-tls")).await.unwrap();
    env.wait_ready("first").await;
    env.apply_certificate("second", cert_spec("alphassl", "two.example.com", "shared-tls")).await.unwrap();
    let second = env.wait_reason("second", "Ready", "False", "SecretInUse").await;
    assert!(second.status.unwrap().conditions.iter().any(|c| c.message.contains("IspCertificate first")));
    env.wait_event("second", "Warning", "SecretInUse").await;
    verify_tls_secret(&env.secrets().get("shared-tls").await.unwrap(), &["one.example.com"]);
    assert_eq!(env.orders().await, 1, "only the first certificate was ordered");
}

/// An integer one past what the operator's types hold is refused at apply time; the largest
/// accepted values are read and reconciled, and certificates beside them go on.
#[tokio::test]
async fn the_largest_accepted_values_are_read_and_one_more_is_refused() {
    let mut env = Env::new("bad-extreme").await;
    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    let issuer = with(env.issuer_spec("billing-credentials"), json!({"orderBudget": u32::MAX}));
    env.apply_issuer("billing", issuer).await.expect("the largest order budget is accepted");
    env.wait_issuer("billing", |s| is(&s.conditions, "Ready", "True")).await;
    let mut too_big = env.issuer_spec("billing-credentials");
    too_big["orderBudget"] = json!(u64::from(u32::MAX) + 1);
    assert!(env.apply_issuer("too-big", too_big).await.is_err(), "an order budget past u32 is refused");

    let multi = || {
        json!({"issuerRef": {"name": "billing"}, "product": "globalsign-domainssl",
               "commonName": "a.example.com", "altNames": ["b.example.com"], "secretName": "extreme-tls",
               "approverMailbox": "admin"})
    };
    let extreme = with(
        multi(),
        json!({"period": 24, "multiDomain": {"addonCode": u32::MAX},
               "privateKey": {"algorithm": "RSA", "size": 4096}}),
    );
    let mut one_more = multi();
    one_more["multiDomain"] = json!({"addonCode": u64::from(u32::MAX) + 1});
    // Applied as JSON: no client type could even hold it.
    match env.apply_certificate("one-more", one_more).await {
        Err(kube::Error::Api(s)) => assert!(s.code == 422 && s.message.contains("spec.multiDomain.addonCode"), "{s:?}"),
        other => panic!("an addonCode past u32 is refused at apply time, not {other:?}"),
    }
    env.apply_certificate("extreme", extreme).await.expect("the largest values are accepted");
    env.apply_certificate("beside", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    // A status anyone with the status subresource could write, at the largest values too.
    env.apply_certificate(
        "stuck",
        with(cert_spec("alphassl", "x.example.com", "x-tls"), json!({"issuerRef": {"name": "nobody"}})),
    )
    .await
    .unwrap();
    env.wait_reason("stuck", "Ready", "False", "IssuerNotFound").await;
    // Written while the operator is away, so that no reconcile in flight writes over it.
    env.stop_operator().await;
    let patch = json!({"status": {"failedAttempts": u32::MAX}});
    env.certificates().patch_status("stuck", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    env.start_operator().await;

    env.wait_ready("beside").await;
    let extreme = env.wait_ready("extreme").await;
    assert_eq!(extreme.spec.multi_domain.unwrap().addon_code, u32::MAX);
    verify_tls_secret(&env.secrets().get("extreme-tls").await.unwrap(), &["a.example.com", "b.example.com"]);
    // The stuck one is looked at again (with backoff) and its count saturates instead of wrapping.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = env.certificates().get("stuck").await.expect("still readable").status.unwrap();
    assert_eq!(stuck.failed_attempts, Some(u32::MAX));
    assert_eq!(env.orders().await, 2);
}

/// An object stored under an older, looser CRD with a value the operator cannot hold: reported
/// (a Stalled condition and a Warning event naming the field, a metric), left alone, and the
/// certificates beside it go on; fixed, it is reconciled.
#[tokio::test]
async fn a_certificate_the_operator_cannot_read_is_reported_and_the_others_go_on() {
    // A control plane of its own: its CRD has no upper bounds, as an older version's had.
    let crds = tempfile::tempdir().unwrap();
    let ours = std::fs::read_to_string(ispcert_tests::repo_root().join("crds/crds.yaml")).unwrap();
    let loose: String =
        ours.lines().filter(|l| !l.trim_start().starts_with("maximum:")).map(|l| format!("{l}\n")).collect();
    assert_ne!(loose, ours);
    std::fs::write(crds.path().join("crds.yaml"), loose).unwrap();
    let cp = ispcert_testbed::ControlPlane::start(ispcert_testbed::Options {
        bin_script: Some(ispcert_tests::bin_script()),
        crd_dirs: vec![crds.path().to_path_buf()],
        ..ispcert_testbed::Options::default()
    })
    .await
    .expect("a control plane with the loose CRD");
    let mut env = Env::on(&cp, "unreadable", Env::default_sim()).await;
    env.start_operator().await;
    env.ready_issuer().await;

    let bad_spec = |addon: u64| {
        json!({"issuerRef": {"name": "billing"}, "product": "globalsign-domainssl", "commonName": "a.example.com",
               "altNames": ["b.example.com"], "secretName": "bad-tls", "approverMailbox": "admin",
               "multiDomain": {"addonCode": addon}})
    };
    let raw = kube::api::ApiResource::erase::<ispcert::crd::IspCertificate>(&());
    let dynamic: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(env.client.clone(), &env.ns, &raw);
    let apply = |name: &str, spec: Value| {
        let obj = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
                         "metadata": {"name": name, "namespace": env.ns}, "spec": spec});
        let (api, name) = (dynamic.clone(), name.to_string());
        async move { api.patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&obj)).await.unwrap() }
    };
    apply("bad", bad_spec(5_000_000_000)).await;
    env.apply_certificate("good", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_ready("good").await;

    let note = env.wait_event("bad", "Warning", "UnreadableSpec").await;
    assert!(note.contains("spec.multiDomain.addonCode") && note.contains("5000000000"), "{note}");
    let stalled = loop {
        let status = dynamic.get("bad").await.unwrap().data["status"].clone();
        let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| c["type"] == "Stalled" && c["status"] == "True") {
            break c.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stalled["reason"], "UnreadableSpec");
    let series =
        format!("ispcert_unreadable_objects{{kind=\"IspCertificate\",namespace=\"{}\",name=\"bad\"}} 1", env.ns);
    assert!(env.metrics.encode().contains(&series), "{}", env.metrics.encode());
    assert_eq!(env.orders().await, 1, "only the readable certificate was ordered");

    // Fixed, it is read, reconciled, and no longer reported.
    apply("bad", bad_spec(1)).await;
    env.wait_ready("bad").await;
    assert!(!env.metrics.encode().contains("ispcert_unreadable_objects{"), "{}", env.metrics.encode());
    assert_eq!(env.orders().await, 2);
}
