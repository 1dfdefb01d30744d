//! A certificate kept alive through renewals, stuck validations and its subscription's end, with
//! seconds-short certificates and subscriptions (simulator switches `validity`, `subscription`
//! and `hold_reissues`), and `ispcert renew` on real objects.

use std::time::Duration;

use ispcert_sim::{Settings as SimSettings, SimConfig};
use serde_json::json;

use crate::support::*;

fn quick_sim(validity: u64) -> SimConfig {
    SimConfig {
        issue_after: Duration::from_millis(300),
        validity: Some(Duration::from_secs(validity)),
        ..Env::default_sim()
    }
}

/// `ispcert renew` as a person types it, against the test control plane.
async fn ispcert_renew(args: &[&str]) -> std::process::Output {
    ispcert("renew", args).await
}

/// An `ispcert` command as a person types it, against the test control plane.
async fn ispcert(command: &str, args: &[&str]) -> std::process::Output {
    let kubeconfig = ispcert_tests::control_plane().await.unwrap().kubeconfig_path().to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let command = command.to_string();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(operator_binary())
            .arg(command)
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("ispcert runs")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn renew_before_reissues_in_place_for_free_and_bad_values_are_refused_at_apply() {
    let env = Env::with_sim("life-renew-before", quick_sim(30)).await;
    env.ready_issuer().await;
    let both = with(
        cert_spec("alphassl", "both.example.com", "both-tls"),
        json!({"renewBefore": "10s", "renewBeforePercentage": 50}),
    );
    let err = env.apply_certificate("both", both).await.unwrap_err().to_string();
    assert!(err.contains("set renewBefore or renewBeforePercentage, not both"), "{err}");
    let bad = with(cert_spec("alphassl", "bad.example.com", "bad-tls"), json!({"renewBefore": "soon"}));
    let err = env.apply_certificate("bad", bad).await.unwrap_err().to_string();
    assert!(err.contains("renewBefore must be a positive duration"), "{err}");

    let spec = with(cert_spec("alphassl", "early.example.com", "early-tls"), json!({"renewBefore": "22s"}));
    env.apply_certificate("early", spec).await.unwrap();
    let first = env.wait_ready("early").await.status.unwrap();
    let not_after = first.not_after.clone().unwrap().0;
    assert_eq!(
        first.renewal_time.clone().unwrap().0,
        not_after - jiff::SignedDuration::from_secs(22),
        "22 s before notAfter"
    );
    let secret_uid = env.secrets().get("early-tls").await.unwrap().metadata.uid;

    let serial = first.serial_number.clone();
    let renewed = env.wait_cert("early", |s| is(&s.conditions, "Ready", "True") && s.serial_number != serial).await;
    let renewed = renewed.status.unwrap();
    assert!(renewed.not_after.unwrap().0 > not_after);
    let secret = env.secrets().get("early-tls").await.unwrap();
    assert_eq!(secret.metadata.uid, secret_uid, "the Secret is updated in place");
    verify_tls_secret(&secret, &["early.example.com"]);
    let stats = env.stats().await;
    assert_eq!(stats.orders, 1, "renewals buy nothing");
    assert!(stats.reissues >= 1, "renewed by a free reissue");
}

#[tokio::test]
async fn a_stuck_reissue_is_requested_again_within_its_bound_then_stops_and_renew_restarts_it() {
    // 12-second certificates: renewal at 8 s; reissues wait for an approver who never answers.
    let mut env = Env::without_operator("life-stuck", quick_sim(12)).await;
    env.settings.reissue_timeout = Duration::from_secs(3);
    env.settings.reissue_attempts = 2;
    env.start_operator().await;
    env.admin.set_settings(SimSettings { hold_reissues: true, ..Default::default() }).await.unwrap();
    env.ready_issuer().await;
    env.apply_certificate("stuck", cert_spec("alphassl", "stuck.example.com", "stuck-tls")).await.unwrap();
    let ready = env.wait_ready("stuck").await.status.unwrap();

    // Requested, not completed within 3 s, requested once more (a Warning), then given up after
    // twice that: the certificate stops and says what to do.
    let again = env.wait_event("stuck", "Warning", "Reissuing").await;
    assert!(again.contains("not completed in time") && again.contains("attempt 2 of 2"), "{again}");
    let stuck = env
        .wait_cert("stuck", |s| s.conditions.iter().any(|c| c.type_ == "Stalled" && c.reason == "ReissueStuck"))
        .await;
    let stalled = stuck.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(
        stalled.message.contains("requested 2 times") && stalled.message.contains("ispcert renew stuck"),
        "{}",
        stalled.message
    );
    assert_eq!(env.stats().await.reissues, 2, "bounded");

    // Its certificate has expired by now: Ready says so, whatever is pending.
    let expired = env.wait_reason("stuck", "Ready", "False", "Expired").await;
    let message = expired.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap().message;
    assert!(message.contains("expired at"), "{message}");
    env.wait_event("stuck", "Warning", "Expired").await;

    // `ispcert renew` starts a fresh request; the approver answers this time.
    env.admin.set_settings(SimSettings::default()).await.unwrap();
    let out = ispcert_renew(&["stuck", "-n", &env.ns]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("IspCertificate {}/stuck", env.ns)));
    let deadline = std::time::Instant::now() + WAIT;
    while env.stats().await.reissues < 3 {
        assert!(std::time::Instant::now() < deadline, "renew requested the reissue again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let serial = ready.serial_number.clone();
    env.wait_cert("stuck", |s| is(&s.conditions, "Ready", "True") && s.serial_number != serial).await;
    assert_eq!(env.orders().await, 1, "reissues are free: one order throughout");
}

#[tokio::test]
async fn a_ca_refusal_of_a_reissue_is_requested_again_and_renew_on_a_ready_certificate_reissues_once() {
    let env = Env::with_sim("life-refused", quick_sim(3600)).await;
    env.ready_issuer().await;
    for name in ["refused", "other"] {
        env.apply_certificate(name, cert_spec("alphassl", &format!("{name}.example.com"), &format!("{name}-tls")))
            .await
            .unwrap();
    }
    let first = env.wait_ready("refused").await.status.unwrap();
    env.wait_ready("other").await;
    env.admin.set_settings(SimSettings { hold_reissues: true, ..Default::default() }).await.unwrap();

    // By label, as a person renews a group.
    let label = json!({"metadata": {"labels": {"team": "web"}}});
    env.certificates().patch("refused", &Default::default(), &kube::api::Patch::Merge(&label)).await.unwrap();
    let out = ispcert_renew(&["-l", "team=web", "-n", &env.ns]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_cert("refused", |s| s.reissue.is_some()).await;
    // Asked again while the reissue waits: acted on, nothing more requested.
    let out = ispcert_renew(&["refused", "-n", &env.ns]).await;
    assert!(out.status.success());
    let annotation =
        env.certificates().get("refused").await.unwrap().metadata.annotations.unwrap()["ispcert.dev/renew"].clone();
    env.wait_cert("refused", |s| s.renew_request.as_deref() == Some(annotation.as_str())).await;
    assert_eq!(env.stats().await.reissues, 1, "one reissue for two requests while it waits");

    // The CA refuses it (certificate state 6): requested again after the backoff, with a Warning.
    let order = first.order_id.clone().unwrap().parse().unwrap();
    env.admin.fail_certificate(order).await.unwrap();
    let warned = env.wait_event("refused", "Warning", "ReissueFailed").await;
    assert!(warned.contains("the CA refused the last request") && warned.contains("attempt 2 of 3"), "{warned}");
    env.admin.set_settings(SimSettings::default()).await.unwrap();
    env.admin.issue_now(order).await.unwrap();
    let serial = first.serial_number.clone();
    env.wait_cert("refused", |s| {
        is(&s.conditions, "Ready", "True") && s.serial_number != serial && s.reissue.is_none()
    })
    .await;
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (2, 2), "the other certificate untouched, no order");
    let other = env.certificates().get("other").await.unwrap();
    assert!(!other.metadata.annotations.unwrap_or_default().contains_key("ispcert.dev/renew"));
}

#[tokio::test]
async fn a_subscription_ending_under_manual_warns_then_ends_without_money_or_a_reissue_cascade() {
    // A 20-second subscription and certificates as long as it allows: each is capped at its end.
    // Issued after 4 s, so the order is followed through the list, which shows the end.
    let sim = SimConfig {
        subscription: Some(Duration::from_secs(20)),
        issue_after: Duration::from_secs(4),
        ..quick_sim(3600)
    };
    let mut env = Env::without_operator("life-subscription", sim).await;
    env.settings.subscription_warning = Duration::from_secs(12);
    env.start_operator().await;
    env.ready_issuer().await;
    env.apply_certificate("short", cert_spec("alphassl", "short.example.com", "short-tls")).await.unwrap();
    let ready = env.wait_ready("short").await.status.unwrap();
    let end = ready.subscription_end.clone().expect("the subscription's end from the billing").0;
    assert_eq!(ready.not_after.clone().unwrap().0, end, "the CA caps the certificate at the subscription's end");
    assert!(ready.renewal_time.is_none(), "no renewal planned: it could gain nothing");

    let ending = env.wait_reason("short", "SubscriptionEnding", "True", "SubscriptionEnding").await.status.unwrap();
    assert!(is(&ending.conditions, "Ready", "True"), "still Ready while it ends");
    let warned = env.wait_event("short", "Warning", "SubscriptionEnding").await;
    assert!(warned.contains("prolong it in the billing panel"), "{warned}");
    let series = format!(
        "ispcert_certificate_subscription_ending{{namespace=\"{}\",name=\"short\",issuer_name=\"billing\",issuer_kind=\"IspIssuer\"}} 1",
        env.ns
    );
    // The series is read from the operator's cache, which may trail our read by a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !env.metrics.encode().contains(&series) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(env.metrics.encode().contains(&series), "{}", env.metrics.encode());

    let ended = env.wait_reason("short", "Ready", "False", "SubscriptionEnded").await.status.unwrap();
    let message = ended.conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone();
    assert!(message.contains("delete and re-create this IspCertificate"), "{message}");
    env.wait_event("short", "Warning", "SubscriptionEnded").await;
    // A while past the end: nothing bought, nothing reissued.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.prolongs, stats.reissues), (1, 0, 0), "Manual buys nothing and reissues nothing");
}

#[tokio::test]
async fn a_secret_in_use_is_taken_over_when_its_other_owner_goes() {
    let env = Env::new("life-secret-in-use").await;
    env.ready_issuer().await;
    env.apply_certificate("first", cert_spec("alphassl", "one.example.com", "shared-tls")).await.unwrap();
    env.wait_ready("first").await;
    env.apply_certificate("second", cert_spec("alphassl", "two.example.com", "shared-tls")).await.unwrap();
    env.wait_reason("second", "Ready", "False", "SecretInUse").await;
    env.delete_certificate("first").await;
    env.wait_gone("first").await;
    env.wait_ready("second").await;
    verify_tls_secret(&env.secrets().get("shared-tls").await.unwrap(), &["two.example.com"]);
    assert_eq!(env.orders().await, 2);
}

#[tokio::test]
async fn a_csr_that_is_not_the_keys_is_made_again_and_the_renewal_takes_one_reissue() {
    use ispcert::pki::keys;
    let env = Env::with_sim("life-csr", quick_sim(3600)).await;
    env.ready_issuer().await;
    env.apply_certificate("mixed", cert_spec("alphassl", "mixed.example.com", "mixed-tls")).await.unwrap();
    let first = env.wait_ready("mixed").await.status.unwrap();

    // The key Secret restored from two backups: its key, and a CSR made for another key.
    let other_key = keys::generate(keys::KeyAlgorithm::Rsa2048).unwrap();
    let stale_csr = keys::csr(&other_key, "mixed.example.com", &[], &Default::default()).unwrap();
    let patch = json!({"stringData": {"tls.csr": stale_csr}});
    env.secrets().patch("mixed-ispcert-key", &Default::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();

    let out = ispcert_renew(&["mixed", "-n", &env.ns]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let serial = first.serial_number.clone();
    env.wait_cert("mixed", |s| is(&s.conditions, "Ready", "True") && s.serial_number != serial).await;
    env.wait_event("mixed", "Normal", "KeyGenerated").await;
    let key_secret = env.secrets().get("mixed-ispcert-key").await.unwrap();
    let data = key_secret.data.unwrap();
    let key = secrecy::SecretString::from(String::from_utf8(data["tls.key"].0.clone()).unwrap());
    let csr = keys::inspect_csr(std::str::from_utf8(&data["tls.csr"].0).unwrap()).unwrap();
    assert_eq!(csr.public_key_bits, keys::public_key_bits(&key).unwrap(), "the CSR is the key's again");
    verify_tls_secret(&env.secrets().get("mixed-tls").await.unwrap(), &["mixed.example.com"]);
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 1), "one reissue, no order");
}

#[tokio::test]
async fn ispcert_status_shows_one_view_of_a_real_certificate() {
    let env = Env::new("life-status").await;
    env.ready_issuer().await;
    env.apply_certificate("shown", cert_spec("alphassl", "shown.example.com", "shown-tls")).await.unwrap();
    let status = env.wait_ready("shown").await.status.unwrap();
    env.wait_event("shown", "Normal", "Issued").await;
    let out = ispcert("status", &["shown", "-n", &env.ns]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let order = format!("order:         {} (active", status.order_id.unwrap());
    let secret = format!("shown-tls: serial {}, shown.example.com", status.serial_number.unwrap());
    for expected in [
        format!("IspCertificate {}/shown", env.ns),
        "IspIssuer billing: Ready=True".to_string(),
        order,
        secret,
        "key matches".to_string(),
        "renewal:       20".to_string(),
        "Issued".to_string(),
        "KeyGenerated".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    let missing = ispcert("status", &["nothing", "-n", &env.ns]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(&format!("IspCertificate {}/nothing does not exist", env.ns))
    );
}

#[tokio::test]
async fn a_changed_approver_mailbox_is_a_free_oldrequest_reissue_with_the_new_approver() {
    let env = Env::with_sim("life-approver", quick_sim(3600)).await;
    env.ready_issuer().await;
    env.apply_certificate("mail", cert_spec("alphassl", "mail.example.com", "mail-tls")).await.unwrap();
    let first = env.wait_ready("mail").await.status.unwrap();
    assert_eq!(first.approver_emails, ["admin@mail.example.com"]);
    let id: u64 = first.order_id.clone().unwrap().parse().unwrap();

    env.apply_certificate(
        "mail",
        with(cert_spec("alphassl", "mail.example.com", "mail-tls"), json!({"approverMailbox": "hostmaster"})),
    )
    .await
    .unwrap();
    let serial = first.serial_number.clone();
    let renewed = env.wait_cert("mail", |s| is(&s.conditions, "Ready", "True") && s.serial_number != serial).await;
    assert_eq!(renewed.status.unwrap().approver_emails, ["hostmaster@mail.example.com"]);
    let note = env.wait_event("mail", "Normal", "Reissuing").await;
    assert!(note.contains("ApproversChanged, crt_type=oldrequest"), "{note}");
    assert_eq!(env.admin.certificate(id).await.unwrap().approver_emails, ["hostmaster@mail.example.com"]);
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues), (1, 1), "free, and once");
}

#[tokio::test]
async fn after_a_billing_outage_every_pending_certificate_is_ready_within_one_backoff_cap() {
    use ispcert_sim::{FaultKind, FaultSpec};
    // Orders are issued only when the test says so (after the outage), so every certificate is
    // pending through it; the billing answers 503 to everything for 20 s; the test settings cap
    // the backoff at 2 s.
    let sim = SimConfig { issue_after: Duration::from_secs(3600), ..Env::default_sim() };
    let env = Env::with_sim("life-outage", sim).await;
    env.ready_issuer().await;
    let names: Vec<String> = (0..5).map(|i| format!("out{i}")).collect();
    for name in &names {
        env.apply_certificate(name, cert_spec("alphassl", &format!("{name}.example.com"), &format!("{name}-tls")))
            .await
            .unwrap();
    }
    let mut orders = vec![];
    for name in &names {
        let cert = env.wait_cert(name, |s| s.order_id.is_some() && s.order_attempt.is_none()).await;
        orders.push(cert.status.unwrap().order_id.unwrap().parse::<u64>().unwrap());
    }
    let fault = env.admin.add_fault(&FaultSpec::new(FaultKind::Status { status: 503 })).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    for name in &names {
        let status = env.certificates().get(name).await.unwrap().status.unwrap();
        assert!(status.failed_attempts.unwrap_or(0) >= 1, "{name} saw the outage: {status:?}");
    }
    env.admin.remove_fault(fault).await.unwrap();
    for id in orders {
        env.admin.issue_now(id).await.unwrap();
    }
    let back = std::time::Instant::now();
    for name in &names {
        env.wait_ready(name).await;
    }
    let took = back.elapsed();
    assert!(took < Duration::from_secs(6), "all Ready {took:?} after the billing came back (backoff cap 2 s)");
    assert_eq!(env.orders().await, 5, "the outage bought nothing twice");
}

/// A subscription of `seconds` under `Automatic`, warned (and prolonged) 12 s ahead.
async fn automatic_env(prefix: &str, seconds: u64) -> Env {
    let sim = SimConfig {
        subscription: Some(Duration::from_secs(seconds)),
        // Not at once: the order is followed through the list, which shows the end.
        issue_after: Duration::from_secs(4),
        ..quick_sim(3600)
    };
    let mut env = Env::without_operator(prefix, sim).await;
    env.settings.subscription_warning = Duration::from_secs(12);
    env.start_operator().await;
    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    let issuer = with(env.issuer_spec("billing-credentials"), json!({"subscriptionRenewal": "Automatic"}));
    env.apply_issuer("billing", issuer).await.unwrap();
    env.wait_issuer("billing", |s| is(&s.conditions, "Ready", "True")).await;
    env
}

#[tokio::test]
async fn automatic_prolongs_once_and_the_certificate_stays_ready_across_the_old_end() {
    let env = automatic_env("life-prolong", 30).await;
    env.apply_certificate("auto", cert_spec("alphassl", "auto.example.com", "auto-tls")).await.unwrap();
    let first = env.wait_ready("auto").await.status.unwrap();
    let old_end = first.subscription_end.clone().expect("the end from the list").0;

    // Prolonged inside the warning time; the re-enrolled certificate lives past the old end.
    let mut ready_throughout = true;
    let deadline = std::time::Instant::now() + WAIT;
    let renewed = loop {
        let cert = env.certificates().get("auto").await.unwrap();
        let status = cert.status.clone().unwrap_or_default();
        ready_throughout &= is(&status.conditions, "Ready", "True");
        if status.serial_number != first.serial_number && status.reissue.is_none() && ready_throughout {
            break status;
        }
        assert!(std::time::Instant::now() < deadline && ready_throughout, "not renewed while Ready: {status:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let new_end = renewed.subscription_end.clone().unwrap().0;
    assert!(new_end > old_end, "the subscription now ends later");
    assert!(renewed.not_after.unwrap().0 > old_end, "the new certificate outlives the old end");
    assert!(renewed.prolonged_at.is_some() && renewed.prolong.is_none());
    env.wait_event("auto", "Normal", "Prolonged").await;
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.prolongs), (1, 1), "exactly one prolongation, no order");
}

#[tokio::test]
async fn a_lost_prolong_answer_is_confirmed_from_the_list_and_never_paid_twice() {
    use ispcert_sim::{FaultKind, FaultSpec};
    let env = automatic_env("life-prolong-lost", 30).await;
    // The billing prolongs and charges, then the answer is lost.
    let lost = FaultSpec::new(FaultKind::Status { status: 502 }).on_func("service.prolong").times(1).after_commit();
    env.admin.add_fault(&lost).await.unwrap();
    env.apply_certificate("lost", cert_spec("alphassl", "lost.example.com", "lost-tls")).await.unwrap();
    let first = env.wait_ready("lost").await.status.unwrap();
    let warned = env.wait_event("lost", "Warning", "Prolonging").await;
    assert!(warned.contains("never repeated"), "{warned}");
    let serial = first.serial_number.clone();
    let renewed =
        env.wait_cert("lost", |s| s.prolonged_at.is_some() && s.serial_number != serial && s.reissue.is_none()).await;
    assert!(renewed.status.unwrap().subscription_end.unwrap().0 > first.subscription_end.unwrap().0);
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.prolongs), (1, 1), "confirmed from the list, not paid again");
}

#[tokio::test]
async fn automatic_stays_within_the_order_budget_and_says_so_while_still_ready() {
    let env = automatic_env("life-prolong-budget", 30).await;
    let issuer =
        with(env.issuer_spec("billing-credentials"), json!({"subscriptionRenewal": "Automatic", "orderBudget": 1}));
    env.apply_issuer("billing", issuer).await.unwrap();
    env.apply_certificate("capped", cert_spec("alphassl", "capped.example.com", "capped-tls")).await.unwrap();
    env.wait_ready("capped").await;
    // The order spent today's budget of one: the prolongation waits, the certificate serves.
    let waiting = env.wait_reason("capped", "Issuing", "True", "OrderBudgetExhausted").await.status.unwrap();
    assert!(is(&waiting.conditions, "Ready", "True"), "still Ready: {:?}", waiting.conditions);
    let message = waiting.conditions.iter().find(|c| c.type_ == "Issuing").unwrap().message.clone();
    assert!(message.contains("order budget (1 per 24 hours) allows no prolongation"), "{message}");
    env.wait_event("capped", "Warning", "OrderBudgetExhausted").await;
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.prolongs), (1, 0));
}

#[tokio::test]
async fn a_billing_that_refuses_to_prolong_gets_one_new_order_and_the_old_one_follows_deletion_policy() {
    use ispcert_sim::{ErrorType, FaultKind, FaultSpec};
    let env = automatic_env("life-prolong-refused", 30).await;
    // This billing does not let the account prolong certificates: refused before any charge.
    let refused = FaultSpec::new(FaultKind::Error { error: ErrorType::Access }).on_func("service.prolong");
    env.admin.add_fault(&refused).await.unwrap();
    let spec = |name: &str, policy: &str| {
        with(
            cert_spec("alphassl", &format!("{name}.example.com"), &format!("{name}-tls")),
            json!({"deletionPolicy": policy}),
        )
    };
    env.apply_certificate("gone", spec("gone", "Delete")).await.unwrap();
    env.apply_certificate("kept", spec("kept", "Retain")).await.unwrap();
    let first = [env.wait_ready("gone").await.status.unwrap(), env.wait_ready("kept").await.status.unwrap()];

    // Each is replaced by one new order and serves its certificate, Ready all along.
    let deadline = std::time::Instant::now() + WAIT;
    let mut replaced = Vec::new();
    for (name, before) in ["gone", "kept"].into_iter().zip(&first) {
        let status = loop {
            let status = env.certificates().get(name).await.unwrap().status.unwrap_or_default();
            assert!(is(&status.conditions, "Ready", "True"), "{name} stays Ready: {:?}", status.conditions);
            let swapped = status.order_id.is_some() && status.order_id != before.order_id;
            if swapped && status.replaced_order.is_none() && status.serial_number != before.serial_number {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "{name} not replaced: {status:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(status.subscription_end.clone().unwrap().0 > before.subscription_end.clone().unwrap().0);
        replaced.push(status);
    }
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.prolongs), (4, 0), "one new order per certificate, nothing prolonged");
    let warned = env.wait_event("gone", "Warning", "ProlongRefused").await;
    assert!(warned.contains("One new order replaces it"), "{warned}");

    // Delete: the old order is deleted at the billing; Retain: it is left to run out.
    let old = |i: usize| first[i].order_id.clone().unwrap().parse::<u64>().unwrap();
    assert!(env.admin.certificate(old(0)).await.unwrap().deleted, "Delete removes the replaced order");
    assert!(!env.admin.certificate(old(1)).await.unwrap().deleted, "Retain leaves it");
    assert!(env.wait_event("gone", "Normal", "OrderReplaced").await.contains("deleted order"));
    assert!(env.wait_event("kept", "Normal", "OrderReplaced").await.contains("left at the billing"));
    let secret = env.secrets().get("gone-tls").await.unwrap();
    let served = secret.metadata.annotations.unwrap_or_default().get("ispcert.dev/order-id").cloned();
    assert_eq!(served, replaced[0].order_id, "the Secret serves the new order's certificate");
}

/// Applies `spec` and waits until the certificate is Ready for it with nothing under way.
async fn settled_on(env: &Env, name: &str, spec: serde_json::Value) -> ispcert::crd::CertificateStatus {
    env.apply_certificate(name, spec).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let cert = env.certificates().get(name).await.unwrap();
        let status = cert.status.clone().unwrap_or_default();
        let current = status.observed_generation == cert.metadata.generation;
        if current && is(&status.conditions, "Ready", "True") && status.reissue.is_none() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "{name} did not settle: {status:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_spec_change_takes_its_free_reissue_form_with_the_approvers_indexed_as_the_reference_says() {
    let env = Env::with_sim("life-table", quick_sim(3600)).await;
    // The billing keeps the alt names in another order than given (reverse alphabetical): the
    // `oldrequest` and `manual` forms index approvers by that order, `altname` by its parameter.
    let reorder = SimSettings { reorder_altnames: true, ..Default::default() };
    env.admin.set_settings(reorder).await.unwrap();
    env.ready_issuer().await;
    let names = |alt: &[&str]| alt.iter().map(|n| format!("{n}.table.example.com")).collect::<Vec<_>>();
    let base = |alt: &[&str], extra: serde_json::Value| {
        let spec = with(
            cert_spec("comodo-positivessl-multidomain", "a.table.example.com", "table-tls"),
            json!({"altNames": names(alt)}),
        );
        with(spec, extra)
    };
    let mail = |who: &str, n: &str| format!("{who}@{n}.table.example.com");
    let first = settled_on(&env, "table", base(&["b", "c"], json!({}))).await;
    let id: u64 = first.order_id.clone().unwrap().parse().unwrap();
    let at_billing = || async { env.admin.certificate(id).await.unwrap() };
    assert_eq!(at_billing().await.altnames, names(&["c", "b"]), "kept in another order");
    let charged = env.stats().await.charged;

    // altNames: `altname`, approvers indexed by the altname parameter (b, d).
    let approvers = json!({"approvers": [{"domain": "d.table.example.com", "email": mail("hostmaster", "d")}]});
    let s = settled_on(&env, "table", base(&["b", "d"], approvers.clone())).await;
    let billing = at_billing().await;
    assert_eq!(billing.approver_emails, [mail("admin", "a"), mail("admin", "b"), mail("hostmaster", "d")]);
    assert_eq!(billing.altnames, names(&["d", "b"]));
    assert_eq!(s.dns_names.len(), 3);

    // privateKey.algorithm: `manual` with the new key's CSR, approvers in the billing's order (d, b).
    let ecdsa = with(approvers.clone(), json!({"privateKey": {"algorithm": "ECDSA"}}));
    let s = settled_on(&env, "table", base(&["b", "d"], ecdsa.clone())).await;
    assert_eq!(at_billing().await.approver_emails, [mail("admin", "a"), mail("hostmaster", "d"), mail("admin", "b")]);
    let key = env.secrets().get("table-ispcert-key").await.unwrap();
    assert!(String::from_utf8_lossy(&key.data.unwrap()["tls.key"].0).contains("BEGIN PRIVATE KEY"));

    // subject: `manual` with a CSR for the new subject.
    let subject = with(ecdsa.clone(), json!({"subject": {"organization": "Table Org"}}));
    let s2 = settled_on(&env, "table", base(&["b", "d"], subject.clone())).await;
    assert!(s2.requested_subject.as_deref().unwrap_or_default().contains("O=Table Org"), "{s2:?}");
    assert_ne!(s2.serial_number, s.serial_number, "reissued for the new subject");
    assert_eq!(at_billing().await.approver_emails, [mail("admin", "a"), mail("hostmaster", "d"), mail("admin", "b")]);

    // approverMailbox: `oldrequest` with the new mailbox, in the billing's order.
    let postmaster = with(subject.clone(), json!({"approverMailbox": "postmaster"}));
    let s3 = settled_on(&env, "table", base(&["b", "d"], postmaster.clone())).await;
    let billing = at_billing().await;
    assert_eq!(billing.approver_emails, [mail("postmaster", "a"), mail("hostmaster", "d"), mail("postmaster", "b")]);
    assert_eq!(billing.reissue_forms, ["altname", "manual", "manual", "oldrequest"]);

    // period and renewBefore: nothing now, no call that costs or reissues.
    let later = with(postmaster, json!({"period": 24, "renewBefore": "20m"}));
    let s4 = settled_on(&env, "table", base(&["b", "d"], later)).await;
    assert_eq!(s4.serial_number, s3.serial_number, "not reissued");
    let renewal = s4.renewal_time.unwrap().0;
    assert_eq!(renewal, s4.not_after.unwrap().0 - jiff::SignedDuration::from_mins(20));
    let stats = env.stats().await;
    assert_eq!((stats.orders, stats.reissues, stats.prolongs), (1, 4, 0));
    assert_eq!(stats.charged, charged, "every change above was free");
}
