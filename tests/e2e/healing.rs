//! Trouble that heals by itself once its cause is fixed, and never costs a second order.

use std::time::Duration;

use ispcert_sim::{AccountSpec, FaultKind, FaultSpec, Money, SimConfig};

use crate::support::*;

#[tokio::test]
async fn wrong_credentials_heal_when_the_secret_is_fixed() {
    let env = Env::new("heal-creds").await;
    env.credentials("billing-credentials", EMAIL, "not-the-password").await;
    let started = std::time::Instant::now();
    env.apply_issuer("billing", env.issuer_spec("billing-credentials")).await.unwrap();
    let issuer = env.wait_issuer("billing", |s| s.conditions.iter().any(|c| c.reason == "WrongCredentials")).await;
    let message = issuer.status.unwrap().conditions[0].message.clone();
    assert!(message.contains("refused the login") && !message.contains("not-the-password"), "{message}");
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_reason("site", "Ready", "False", "IssuerNotReady").await;

    // Wrong logins are not repeated in a loop (an account can be locked for that): one, then at
    // most one per refusal window (2 s in the test settings), however busy the machine is.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = env.admin.stats().await.unwrap().requests_of("certificate");
    let windows = started.elapsed().as_secs().div_ceil(2);
    assert!(refused <= 1 + windows, "{refused} logins with the same wrong password in {windows} refusal windows");
    assert_eq!(env.orders().await, 0);

    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    env.wait_issuer("billing", |s| is(&s.conditions, "Ready", "True")).await;
    env.wait_ready("site").await;
    verify_tls_secret(&env.secrets().get("www-tls").await.unwrap(), &["www.example.com"]);
    assert_eq!(env.orders().await, 1);
}

#[tokio::test]
async fn not_enough_money_heals_after_a_top_up_with_exactly_one_order() {
    let env = Env::with_sim(
        "heal-money",
        SimConfig {
            accounts: vec![AccountSpec::new(EMAIL, PASSWORD, Money::from_units(10), "RUB")],
            issue_after: Duration::from_secs(1),
            ..SimConfig::default()
        },
    )
    .await;
    env.ready_issuer().await;
    env.apply_certificate("site", cert_spec("globalsign-organizationssl", "www.example.com", "www-tls")).await.unwrap();
    let cert = env.wait_reason("site", "Ready", "False", "NotEnoughMoney").await;
    let message = cert.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone();
    assert!(message.contains("top up at least") && message.contains("RUB"), "the deficit is shown: {message}");
    env.wait_event("site", "Warning", "NotEnoughMoney").await;
    let before = env.stats().await;
    assert_eq!((before.orders, before.charged), (0, Money::ZERO));

    env.admin.top_up(EMAIL, Money::from_units(1_000_000)).await.unwrap();
    env.wait_ready("site").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.stats().await;
    assert_eq!(after.orders, 1, "exactly one order after the top-up");
    let id: u64 = env.certificates().get("site").await.unwrap().status.unwrap().order_id.unwrap().parse().unwrap();
    assert_eq!(after.charged, env.admin.certificate(id).await.unwrap().cost, "charged once");
}

#[tokio::test]
async fn a_lost_order_answer_is_found_not_bought_again() {
    let env = Env::new("heal-lost-answer").await;
    env.ready_issuer().await;
    // The billing takes the money, then the answer is lost (a proxy's 502).
    env.admin
        .add_fault(
            &FaultSpec::new(FaultKind::Status { status: 502 })
                .on_func("certificate.order.param")
                .times(1)
                .after_commit(),
        )
        .await
        .unwrap();
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_ready("site").await;
    verify_tls_secret(&env.secrets().get("www-tls").await.unwrap(), &["www.example.com"]);
    assert_eq!(env.orders().await, 1, "the lost order was found, not bought again");
    env.wait_event("site", "Normal", "OrderRecovered").await;
}

#[tokio::test]
async fn a_timed_out_order_with_a_restart_in_between_is_found() {
    let mut env = Env::new("heal-timeout").await;
    env.ready_issuer().await;
    env.admin
        .add_fault(&FaultSpec::new(FaultKind::Timeout).on_func("certificate.order.param").times(1).after_commit())
        .await
        .unwrap();
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    // The operator is stopped while the order hangs, as a crash or a rolling update would.
    env.wait_cert("site", |s| s.order_attempt.is_some()).await;
    env.stop_operator().await;
    assert_eq!(env.orders().await, 1, "the order reached the billing");
    env.start_operator().await;
    env.wait_ready("site").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 1);
}

#[tokio::test]
async fn a_refused_order_before_commit_is_retried_once_the_billing_is_back() {
    let env = Env::new("heal-outage").await;
    env.ready_issuer().await;
    // An outage of every order call: nothing reaches the billing, so retrying is safe.
    let fault = env
        .admin
        .add_fault(&FaultSpec::new(FaultKind::Html { status: 503 }).on_func("certificate.order.param"))
        .await
        .unwrap();
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_cert("site", |s| s.conditions.iter().any(|c| c.reason == "OrderOutcomeUnknown")).await;
    assert_eq!(env.orders().await, 0);
    env.admin.remove_fault(fault).await.unwrap();
    env.wait_ready("site").await;
    assert_eq!(env.orders().await, 1);
}

#[tokio::test]
async fn a_lost_secret_is_restored_without_a_new_order() {
    let env = Env::new("heal-secret").await;
    env.ready_issuer().await;
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_ready("site").await;
    let first = env.secrets().get("www-tls").await.unwrap();

    env.secrets().delete("www-tls", &Default::default()).await.unwrap();
    let start = std::time::Instant::now();
    let restored = loop {
        if let Ok(s) = env.secrets().get("www-tls").await {
            break s;
        }
        assert!(start.elapsed() < WAIT, "the Secret was not restored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    verify_tls_secret(&restored, &["www.example.com"]);
    assert!(restored.data.as_ref().unwrap()["tls.key"] == first.data.as_ref().unwrap()["tls.key"], "same key");
    env.wait_event("site", "Normal", "SecretRestored").await;

    // Both Secrets lost while the operator is down: the key is gone for good, so a new key is
    // made and the certificate reissued for it, for free.
    let mut env = env;
    env.stop_operator().await;
    env.secrets().delete("site-ispcert-key", &Default::default()).await.unwrap();
    env.secrets().delete("www-tls", &Default::default()).await.unwrap();
    env.start_operator().await;
    let start = std::time::Instant::now();
    while env.secrets().get("www-tls").await.is_err() {
        assert!(start.elapsed() < WAIT, "the Secret was not restored after losing both");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_ready("site").await;
    let rekeyed = env.secrets().get("www-tls").await.unwrap();
    verify_tls_secret(&rekeyed, &["www.example.com"]);
    assert_ne!(rekeyed.data.as_ref().unwrap()["tls.key"], first.data.as_ref().unwrap()["tls.key"]);
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 1), "a lost key costs a free reissue, never an order");
}

#[tokio::test]
async fn a_key_secret_stripped_of_its_annotations_keeps_its_key() {
    let env = Env::new("heal-key-annotations").await;
    env.ready_issuer().await;
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_ready("site").await;
    let key_before = env.secrets().get("site-ispcert-key").await.unwrap().data.unwrap()["tls.key"].clone();

    // A GitOps tool or a backup restore drops every annotation of the key Secret, and the
    // output Secret is lost, so the key is needed again.
    let mut stripped = env.secrets().get("site-ispcert-key").await.unwrap();
    stripped.metadata.annotations = None;
    env.secrets().replace("site-ispcert-key", &Default::default(), &stripped).await.unwrap();
    env.secrets().delete("www-tls", &Default::default()).await.unwrap();
    let start = std::time::Instant::now();
    let served = loop {
        if let Ok(s) = env.secrets().get("www-tls").await {
            break s;
        }
        assert!(start.elapsed() < WAIT, "the Secret was not restored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    env.wait_ready("site").await;
    verify_tls_secret(&served, &["www.example.com"]);
    // Compared without printing: a failure message must not carry key material.
    assert!(served.data.unwrap()["tls.key"] == key_before, "the same key serves the same certificate");
    let restored = env.secrets().get("site-ispcert-key").await.unwrap();
    assert!(restored.data.unwrap()["tls.key"] == key_before, "the key Secret keeps its key");
    assert!(
        restored.metadata.annotations.is_some_and(|a| a.get("ispcert.dev/key-source").is_some_and(|v| v == "cluster")),
        "the key is described anew"
    );
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 0), "nothing bought, nothing reissued");
}

#[tokio::test]
async fn a_certificate_recreated_after_deletion_adopts_its_retained_order() {
    let env = Env::new("heal-recreate").await;
    env.ready_issuer().await;
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let first = env.wait_ready("site").await.status.unwrap().order_id.unwrap();
    env.delete_certificate("site").await;
    let start = std::time::Instant::now();
    while env.certificates().get_opt("site").await.unwrap().is_some() {
        assert!(start.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // GitOps re-creates the same manifest: the retained Secret points at the live order, and the
    // retained key Secret still holds its key.
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let again = env.wait_ready("site").await.status.unwrap().order_id.unwrap();
    assert_eq!(again, first);
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 0));
}

#[tokio::test]
async fn a_manifest_applied_again_while_its_order_is_pending_buys_nothing() {
    // Approval takes a while: the order is pending, no Secret exists yet.
    let env =
        Env::with_sim("heal-reapply-pending", SimConfig { issue_after: Duration::from_secs(12), ..Env::default_sim() })
            .await;
    env.ready_issuer().await;
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let first = env.wait_cert("site", |s| s.order_id.is_some()).await.status.unwrap().order_id.unwrap();
    env.delete_certificate("site").await;
    let start = std::time::Instant::now();
    while env.certificates().get_opt("site").await.unwrap().is_some() {
        assert!(start.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let again = env.wait_ready("site").await.status.unwrap().order_id.unwrap();
    assert_eq!(again, first, "the pending order was found by its tag");
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 0), "same order, same key");
    env.wait_event("site", "Normal", "OrderRecovered").await;
}

#[tokio::test]
async fn renewal_is_a_free_reissue_and_rotates_the_key_when_asked() {
    // Certificates valid for 24 s: renewal comes two thirds in, at 16 s.
    let env = Env::with_sim(
        "heal-renewal",
        SimConfig {
            issue_after: Duration::from_millis(500),
            validity: Some(Duration::from_secs(24)),
            ..Env::default_sim()
        },
    )
    .await;
    env.ready_issuer().await;
    env.apply_certificate("kept", cert_spec("alphassl", "kept.example.com", "kept-tls")).await.unwrap();
    env.apply_certificate(
        "rotated",
        crate::support::with(
            cert_spec("alphassl", "rotated.example.com", "rotated-tls"),
            serde_json::json!({
                "privateKey": {"algorithm": "ECDSA", "rotationPolicy": "Always"}
            }),
        ),
    )
    .await
    .unwrap();
    let kept = env.wait_ready("kept").await.status.unwrap();
    let rotated = env.wait_ready("rotated").await.status.unwrap();
    let kept_key = env.secrets().get("kept-tls").await.unwrap().data.unwrap()["tls.key"].clone();
    let rotated_key = env.secrets().get("rotated-tls").await.unwrap().data.unwrap()["tls.key"].clone();
    let renewal = kept.renewal_time.clone().unwrap().0;
    let life = kept.not_after.clone().unwrap().0.duration_since(kept.not_before.clone().unwrap().0);
    assert_eq!(
        renewal,
        kept.not_before.clone().unwrap().0 + life * 2 / 3,
        "renewal at two thirds of the real lifetime"
    );

    let kept_serial = kept.serial_number.clone();
    let renewed = env.wait_cert("kept", |s| is(&s.conditions, "Ready", "True") && s.serial_number != kept_serial).await;
    let rotated_serial = rotated.serial_number.clone();
    env.wait_cert("rotated", |s| is(&s.conditions, "Ready", "True") && s.serial_number != rotated_serial).await;
    assert!(renewed.status.unwrap().not_after.unwrap().0 > kept.not_after.unwrap().0);

    let kept_now = env.secrets().get("kept-tls").await.unwrap();
    verify_tls_secret(&kept_now, &["kept.example.com"]);
    assert!(kept_now.data.unwrap()["tls.key"] == kept_key, "rotationPolicy Never keeps the key");
    let rotated_now = env.secrets().get("rotated-tls").await.unwrap();
    verify_tls_secret(&rotated_now, &["rotated.example.com"]);
    assert!(rotated_now.data.unwrap()["tls.key"] != rotated_key, "rotationPolicy Always makes a new key");
    let stats = env.stats().await;
    assert_eq!(stats.orders, 2, "renewals buy nothing");
    assert!(stats.reissues >= 2);
    env.wait_event("kept", "Normal", "Reissuing").await;
}

#[tokio::test]
async fn a_second_key_change_while_a_reissue_is_pending_keeps_the_served_key() {
    // Nothing is issued until the test says so.
    let env =
        Env::with_sim("heal-two-keys", SimConfig { issue_after: Duration::from_secs(3600), ..Env::default_sim() })
            .await;
    env.ready_issuer().await;
    let spec = |extra| crate::support::with(cert_spec("alphassl", "www.example.com", "www-tls"), extra);
    env.apply_certificate("site", spec(serde_json::json!({}))).await.unwrap();
    let id: u64 =
        env.wait_cert("site", |s| s.order_id.is_some()).await.status.unwrap().order_id.unwrap().parse().unwrap();
    env.admin.issue_now(id).await.unwrap();
    env.wait_ready("site").await;
    let served = env.secrets().get("www-tls").await.unwrap().data.unwrap()["tls.key"].clone();

    let env_ref = &env;
    let key_secret_with = move |algorithm: &'static str| async move {
        let env = env_ref;
        let start = std::time::Instant::now();
        loop {
            let s = env.secrets().get("site-ispcert-key").await.unwrap();
            if s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("ispcert.dev/key-algorithm"))
                .is_some_and(|a| a == algorithm)
                && env.stats().await.reissues >= 1
            {
                return s;
            }
            assert!(start.elapsed() < WAIT, "no {algorithm} key with its reissue requested");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // A new key: its reissue is pending at the billing, the old key still serves.
    env.apply_certificate("site", spec(serde_json::json!({"privateKey": {"algorithm": "ECDSA", "size": 256}})))
        .await
        .unwrap();
    let first = key_secret_with("ECDSA-P256").await;
    assert!(first.data.unwrap()["tls.key.previous"] == served, "the served key is kept beside the new one");
    // Changed again before the billing issued: the served key must still be kept.
    env.apply_certificate("site", spec(serde_json::json!({"privateKey": {"algorithm": "ECDSA", "size": 384}})))
        .await
        .unwrap();
    let second = key_secret_with("ECDSA-P384").await;
    assert!(second.data.unwrap()["tls.key.previous"] == served, "the served key survives a second change");
    assert!(env.secrets().get("www-tls").await.unwrap().data.unwrap()["tls.key"] == served);

    // Whatever reissue the operator has asked for by now is issued at once.
    let start = std::time::Instant::now();
    loop {
        env.admin.issue_now(id).await.unwrap();
        let out = env.secrets().get("www-tls").await.unwrap();
        if out.data.as_ref().unwrap()["tls.key"] != served {
            verify_tls_secret(&out, &["www.example.com"]);
            break;
        }
        assert!(start.elapsed() < WAIT, "the reissued certificate was not stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = env.wait_ready("site").await;
    assert_eq!(env.stats().await.orders, 1, "key changes are reissues, never orders");
    let key_now = env.secrets().get("site-ispcert-key").await.unwrap().data.unwrap();
    assert!(!key_now.contains_key("tls.key.previous"), "the old key goes once its successor serves");
    let served_now = env.secrets().get("www-tls").await.unwrap().data.unwrap()["tls.key"].clone();
    assert!(key_now["tls.key"] == served_now, "the latest key serves");
    assert!(done.status.unwrap().order_id.is_some());
}
