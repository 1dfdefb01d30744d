//! Money without assumptions: every path that could buy a certificate nobody needs, with the
//! billing hiding our `remoteid` tag where that is what makes it dangerous, counted at the
//! simulator. Each test names the defect of issue 9 it covers.

use std::time::Duration;

use ispcert_sim::{ErrorType, FaultKind, FaultSpec, SimConfig};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::*;

/// A simulator whose certificate list shows no `remoteid`, with orders that stay pending.
fn hiding_tags(issue_after: Duration) -> SimConfig {
    SimConfig { hide_remote_id: true, issue_after, ..Env::default_sim() }
}

async fn annotate(env: &Env, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    env.certificates().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn message(cert: &ispcert::crd::IspCertificate, type_: &str) -> String {
    let status = cert.status.as_ref().unwrap();
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.message.clone()).unwrap_or_default()
}

/// Defect 1: an order pending for days, its resource deleted and applied again without status,
/// and a billing that lists no tags. The re-applied resource stops and names the order; adopting
/// it (one annotation) buys nothing.
#[tokio::test]
async fn a_reapplied_resource_with_a_pending_order_and_hidden_tags_adopts_it_on_request() {
    let mut env = Env::with_sim("money-reapply", hiding_tags(Duration::from_secs(3600))).await;
    env.ready_issuer().await;
    let spec = || cert_spec("alphassl", "www.example.com", "www-tls");
    env.apply_certificate("site", spec()).await.unwrap();
    let first = env.wait_cert("site", |s| s.order_id.is_some()).await;
    let id = first.status.unwrap().order_id.unwrap();
    env.delete_certificate("site").await;
    env.wait_gone("site").await;
    // Days later, after restarts: only the billing's list is left, and it shows no tags. (The
    // process that placed the order remembers its tag and would find it, as with shown tags.)
    env.stop_operator().await;
    env.start_operator().await;

    env.apply_certificate("site", spec()).await.unwrap();
    let stopped = env.wait_reason("site", "Stalled", "True", "UnclaimedOrderFound").await;
    let text = message(&stopped, "Ready");
    assert!(text.contains(&id), "the order is named: {text}");
    assert!(text.contains(&format!("ispcert.dev/adopt-order={id}")), "{text}");
    assert!(text.contains(&format!("ispcert.dev/confirm-new-order={id}")), "{text}");
    env.wait_event("site", "Warning", "UnclaimedOrderFound").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 1, "doubt never resolves by ordering");

    annotate(&env, "site", "ispcert.dev/adopt-order", &id).await;
    let adopted = env.wait_cert("site", |s| s.order_id.is_some()).await;
    assert_eq!(adopted.status.unwrap().order_id.as_deref(), Some(id.as_str()));
    env.admin.issue_now(id.parse().unwrap()).await.unwrap();
    env.wait_ready("site").await;
    verify_tls_secret(&env.secrets().get("www-tls").await.unwrap(), &["www.example.com"]);
    assert_eq!(env.orders().await, 1);
}

/// Defect 1, the other way on: confirming a second purchase, naming the order seen, buys one.
#[tokio::test]
async fn a_confirmed_second_purchase_buys_exactly_one() {
    let env = Env::with_sim("money-confirm", hiding_tags(Duration::from_secs(3600))).await;
    env.ready_issuer().await;
    let spec = || cert_spec("alphassl", "www.example.com", "www-tls");
    env.apply_certificate("site", spec()).await.unwrap();
    let id = env.wait_cert("site", |s| s.order_id.is_some()).await.status.unwrap().order_id.unwrap();
    env.delete_certificate("site").await;
    env.wait_gone("site").await;
    env.apply_certificate("again", spec()).await.unwrap();
    env.wait_reason("again", "Stalled", "True", "UnclaimedOrderFound").await;

    // Naming an id that is not the one in doubt confirms nothing.
    annotate(&env, "again", "ispcert.dev/confirm-new-order", "1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 1);
    annotate(&env, "again", "ispcert.dev/confirm-new-order", &id).await;
    let second = env.wait_cert("again", |s| s.order_id.is_some()).await.status.unwrap().order_id.unwrap();
    assert_ne!(second, id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 2, "exactly the one confirmed");
}

/// Defect 1 with a lost answer: the tag cannot find the order, its name, product and time can,
/// when exactly one unclaimed order fits.
#[tokio::test]
async fn a_lost_answer_with_hidden_tags_is_found_by_name_product_and_time() {
    let env = Env::with_sim("money-lost-hidden", hiding_tags(Duration::from_secs(1))).await;
    env.ready_issuer().await;
    env.admin
        .add_fault(&FaultSpec::new(FaultKind::Timeout).on_func("certificate.order.param").times(1).after_commit())
        .await
        .unwrap();
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    env.wait_ready("site").await;
    env.wait_event("site", "Normal", "OrderRecovered").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 1);
}

/// Defect 2: an error type the client does not know, after the billing charged, is a possible
/// order like a lost answer; and `exists` and `xml` too.
#[tokio::test]
async fn error_types_the_client_does_not_know_after_charging_buy_nothing_twice() {
    for (i, error) in [ErrorType::Unknown, ErrorType::Exists, ErrorType::Xml].into_iter().enumerate() {
        let env = Env::with_sim(&format!("money-unknown-{i}"), hiding_tags(Duration::from_secs(1))).await;
        env.ready_issuer().await;
        env.admin
            .add_fault(
                &FaultSpec::new(FaultKind::Error { error }).on_func("certificate.order.param").times(1).after_commit(),
            )
            .await
            .unwrap();
        env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
        env.wait_ready("site").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(env.orders().await, 1, "{error:?} after charging");
    }
}

/// Defect 4: a list answer without `elem` is an error, never an empty list: over the whole grace
/// period it does not make a lost order count as never placed.
#[tokio::test]
async fn lists_without_elem_never_make_a_lost_order_count_as_never_placed() {
    let env = Env::new("money-no-elem").await;
    env.ready_issuer().await;
    env.admin
        .add_fault(&FaultSpec::new(FaultKind::Timeout).on_func("certificate.order.param").times(1).after_commit())
        .await
        .unwrap();
    env.apply_certificate("site", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    // The order is charged and its answer held for the client's whole timeout (5 s): no list
    // runs in between, so from here on every list of the account comes without `elem`.
    while env.orders().await == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broken = env.admin.add_fault(&FaultSpec::new(FaultKind::ListWithoutElem).on_func("certificate")).await.unwrap();
    env.wait_cert("site", |s| s.order_attempt.as_ref().is_some_and(|a| a.outcome_unknown == Some(true))).await;
    // Longer than the grace period (8 s in the test settings) with many lists.
    tokio::time::sleep(env.settings.order_grace + Duration::from_secs(4)).await;
    let attempt = env.certificates().get("site").await.unwrap().status.unwrap().order_attempt;
    assert!(attempt.is_some_and(|a| a.misses.is_none()), "no broken list counted as a miss");
    assert_eq!(env.orders().await, 1);
    env.admin.remove_fault(broken).await.unwrap();
    env.wait_ready("site").await;
    assert_eq!(env.orders().await, 1, "found, not bought again");
}

/// Defect 6: `access` refused on the order function only. That certificate stops with backoff;
/// the issuer stays Ready (it is not suspected), and its other certificates go on.
#[tokio::test]
async fn an_access_refusal_on_ordering_stops_only_that_certificate() {
    let env = Env::new("money-access").await;
    env.ready_issuer().await;
    env.apply_certificate("before", cert_spec("alphassl", "a.example.com", "a-tls")).await.unwrap();
    env.wait_ready("before").await;
    let checks = env.admin.stats().await.unwrap().requests_of("certificate");
    env.admin
        .add_fault(&FaultSpec::new(FaultKind::Error { error: ErrorType::Access }).on_func("certificate.order.param"))
        .await
        .unwrap();
    env.apply_certificate("refused", cert_spec("alphassl", "b.example.com", "b-tls")).await.unwrap();
    let refused = env.wait_reason("refused", "Ready", "False", "AccessDenied").await;
    assert!(message(&refused, "Ready").contains("access"), "{}", message(&refused, "Ready"));
    env.wait_event("refused", "Warning", "AccessDenied").await;

    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stats = env.admin.stats().await.unwrap();
    let tries = stats.requests_of("certificate.order.param");
    // The backoff doubles from 200 ms to at most 2 s: about 6 tries in 6 s, not one per poll.
    assert!(tries <= 2 + started.elapsed().as_secs(), "{tries} order attempts in 6 s");
    let issuer = env.issuers().get("billing").await.unwrap();
    assert!(is(&issuer.status.unwrap().conditions, "Ready", "True"), "the issuer is not suspected");
    // Lists of the account go on (the ready certificate's poll); no credentials re-check loop.
    assert!(stats.requests_of("certificate") >= checks);
    assert_eq!(env.orders().await, 1);
}

/// Defect 9: the order budget. `orderBudget: 1` buys one; the next certificate stops (Stalled,
/// Warning event, metric), also after a restart; raising the budget lets it order. `0` buys none.
#[tokio::test]
async fn the_order_budget_stops_new_orders_and_a_restart_does_not_reset_it() {
    let mut env = Env::new("money-budget").await;
    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    let base = env.issuer_spec("billing-credentials");
    let issuer = |budget: u32| with(base.clone(), json!({"orderBudget": budget}));
    env.apply_issuer("billing", issuer(1)).await.unwrap();
    env.wait_issuer("billing", |s| is(&s.conditions, "Ready", "True")).await;
    env.apply_certificate("one", cert_spec("alphassl", "a.example.com", "a-tls")).await.unwrap();
    env.wait_ready("one").await;
    env.apply_certificate("two", cert_spec("alphassl", "b.example.com", "b-tls")).await.unwrap();
    let stopped = env.wait_reason("two", "Stalled", "True", "OrderBudgetExhausted").await;
    assert!(message(&stopped, "Ready").contains("orderBudget"), "{}", message(&stopped, "Ready"));
    env.wait_event("two", "Warning", "OrderBudgetExhausted").await;
    let series = format!(
        "ispcert_order_budget_exhausted{{issuer_kind=\"IspIssuer\",issuer_namespace=\"{}\",issuer_name=\"billing\"}} 1",
        env.ns
    );
    assert!(env.metrics.encode().contains(&series), "{}", env.metrics.encode());

    env.stop_operator().await;
    env.start_operator().await;
    env.apply_certificate("three", cert_spec("alphassl", "c.example.com", "c-tls")).await.unwrap();
    env.wait_reason("three", "Stalled", "True", "OrderBudgetExhausted").await;
    assert_eq!(env.orders().await, 1, "a restart does not reset the budget");

    // One more order allowed: whichever of the two waiting certificates comes first gets it.
    env.apply_issuer("billing", issuer(2)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while env.orders().await < 2 {
        assert!(std::time::Instant::now() < deadline, "no order with the raised budget");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.orders().await, 2, "the raised budget allows exactly one more");
    let ready =
        |c: &ispcert::crd::IspCertificate| c.status.as_ref().is_some_and(|s| is(&s.conditions, "Ready", "True"));
    let waiting = loop {
        assert!(std::time::Instant::now() < deadline, "neither certificate got the raised budget");
        let (two, three) =
            (env.certificates().get("two").await.unwrap(), env.certificates().get("three").await.unwrap());
        match (ready(&two), ready(&three)) {
            (true, false) => break "three",
            (false, true) => break "two",
            (both, _) => assert!(!both, "both ordered with a budget of one more"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    env.wait_reason(waiting, "Stalled", "True", "OrderBudgetExhausted").await;

    env.apply_issuer("billing", issuer(0)).await.unwrap();
    env.apply_certificate("four", cert_spec("alphassl", "d.example.com", "d-tls")).await.unwrap();
    env.wait_reason("four", "Stalled", "True", "OrderBudgetExhausted").await;
    assert_eq!(env.orders().await, 2, "a budget of 0 allows no new order");
}

/// A ClusterIspIssuer for the tenancy test, selected by this test's label.
fn cluster_issuer(env: &Env, extra: Value) -> Value {
    json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "ClusterIspIssuer",
           "metadata": {"name": format!("shared-{}", env.ns), "labels": {"ispcert.dev/test": env.ns}},
           "spec": with(env.issuer_spec("billing-credentials"), extra)})
}

async fn label_namespace(env: &Env, ns: &str, labels: Value) {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(env.client.clone());
    api.patch(ns, &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": labels}}))).await.unwrap();
}

/// Defect 8: tenants of a shared ClusterIspIssuer. Only selected namespaces may use it; an order
/// another certificate claims, in any namespace and whatever the operator watches, is never
/// adopted; an order nobody claims is adopted only where the issuer allows it.
#[tokio::test]
async fn tenants_of_a_cluster_issuer_never_take_each_others_orders() {
    let mut env = Env::without_operator("money-tenant-a", Env::default_sim()).await;
    let cp = ispcert_tests::control_plane().await.unwrap();
    let tenant = cp.create_namespace("money-tenant-b").await.unwrap();
    let unwatched = cp.create_namespace("money-tenant-c").await.unwrap();
    env.settings.namespaces.push(tenant.clone());
    env.start_operator().await;
    label_namespace(&env, &env.ns, json!({"team": env.ns})).await;
    env.credentials("billing-credentials", EMAIL, PASSWORD).await;
    let name = format!("shared-{}", env.ns);
    let selector = json!({"namespaceSelector": {"matchLabels": {"team": env.ns}}});
    let apply_issuer = |extra: Value| {
        let (api, obj, name) = (env.cluster_issuers(), cluster_issuer(&env, extra), name.clone());
        async move { api.patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&obj)).await.unwrap() }
    };
    apply_issuer(selector.clone()).await;
    let spec = |cn: &str, secret: &str| {
        with(cert_spec("alphassl", cn, secret), json!({"issuerRef": {"name": name, "kind": "ClusterIspIssuer"}}))
    };
    let in_ns = |ns: &str| -> kube::Api<ispcert::crd::IspCertificate> { kube::Api::namespaced(env.client.clone(), ns) };
    let apply_in = |ns: &str, cert: &str, spec: Value| {
        let obj = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
                         "metadata": {"name": cert, "namespace": ns}, "spec": spec});
        let (api, cert) = (in_ns(ns), cert.to_string());
        async move { api.patch(&cert, &PatchParams::apply("e2e").force(), &Patch::Apply(&obj)).await.unwrap() }
    };
    let wait_in = |ns: &str, cert: &str, reason: &'static str| {
        let (api, cert) = (in_ns(ns), cert.to_string());
        async move {
            let start = std::time::Instant::now();
            loop {
                let c = api.get(&cert).await.unwrap();
                if c.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == reason)) {
                    return c;
                }
                assert!(start.elapsed() < WAIT, "{cert}: no {reason}: {:#?}", c.status);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // The selected namespace orders; the other is not allowed, and buys nothing.
    env.apply_certificate("own", spec("a.example.com", "a-tls")).await.unwrap();
    let own = env.wait_ready("own").await.status.unwrap().order_id.unwrap();
    apply_in(&tenant, "other", spec("b.example.com", "b-tls")).await;
    let refused = wait_in(&tenant, "other", "IssuerNotAllowed").await;
    assert!(message(&refused, "Ready").contains("namespaceSelector"), "{}", message(&refused, "Ready"));
    assert_eq!(env.orders().await, 1);

    // Selected now (no change of the certificate needed), the tenant orders its own.
    label_namespace(&env, &tenant, json!({"team": env.ns})).await;
    wait_in(&tenant, "other", "Issued").await;
    assert_eq!(env.orders().await, 2);

    // An order another namespace holds is never adopted, even where adoption is allowed.
    apply_issuer(with(selector.clone(), json!({"allowOrderAdoption": true}))).await;
    apply_in(&tenant, "taker", with(spec("a.example.com", "taken-tls"), json!({"orderId": own}))).await;
    let taken = wait_in(&tenant, "taker", "OrderRejected").await;
    assert!(message(&taken, "Ready").contains("belongs to another IspCertificate"), "{}", message(&taken, "Ready"));

    // Nor one held by a certificate in a namespace this operator does not watch.
    let client = ispcert::billing::BillingClient::new(
        ispcert::billing::http_pool(Duration::from_secs(10)).unwrap(),
        &env.sim.base_url(),
        ispcert::billing::Credentials::new(EMAIL, PASSWORD),
    )
    .unwrap();
    let bought = |cn: &str| {
        let (client, cn) = (client.clone(), cn.to_string());
        async move { client.order(&ispcert_tests::orders::order(55324, &[cn.as_str()], None).0).await.unwrap() }
    };
    let elsewhere = bought("c.example.com").await;
    apply_in(&unwatched, "holder", spec("c.example.com", "c-tls")).await;
    let account = ispcert::controller::issuers::account_key(&env.sim.base_url(), EMAIL);
    let claim = json!({"status": {"orderId": elsewhere, "account": account}});
    in_ns(&unwatched).patch_status("holder", &PatchParams::default(), &Patch::Merge(&claim)).await.unwrap();
    apply_in(&tenant, "taker-2", with(spec("c.example.com", "c2-tls"), json!({"orderId": elsewhere}))).await;
    let held = wait_in(&tenant, "taker-2", "OrderRejected").await;
    assert!(message(&held, "Ready").contains("belongs to another IspCertificate"), "{}", message(&held, "Ready"));

    // An order nobody claims: refused while the issuer does not allow adopting, adopted once it does.
    let free = bought("d.example.com").await;
    apply_issuer(selector.clone()).await;
    apply_in(&tenant, "adopter", with(spec("d.example.com", "d-tls"), json!({"orderId": free}))).await;
    let no = wait_in(&tenant, "adopter", "OrderRejected").await;
    assert!(message(&no, "Ready").contains("allowOrderAdoption"), "{}", message(&no, "Ready"));
    apply_issuer(with(selector, json!({"allowOrderAdoption": true}))).await;
    let adopted = wait_in(&tenant, "adopter", "Issued").await;
    assert_eq!(adopted.status.unwrap().order_id.as_deref(), Some(free.as_str()));
    assert_eq!(env.orders().await, 4, "two ordered by certificates, two bought by hand; none twice");
    env.cluster_issuers().delete(&name, &Default::default()).await.unwrap();
}
