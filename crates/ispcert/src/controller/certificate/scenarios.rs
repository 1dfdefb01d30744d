//! Scenario tests against a mocked API server (tower-test), in the style of kube-rs
//! controller-rs's fixtures: each scenario lists every request the reconcile must make, in order,
//! with its method, path and body, and the answer the API server gives; a request out of order, a
//! body that differs, or a request too many fails the test. The billing is the real simulator
//! over HTTP where a scenario reaches it.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower_test::mock;

use super::reconcile;
use crate::billing::{BillingClient, Credentials};
use crate::controller::context::{Context, Shared};
use crate::controller::issuers::{IssuerHandle, IssuerKey};
use crate::controller::{Metrics, Settings};
use crate::crd::{ClusterIspIssuer, IspCertificate, IspIssuer};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const CERTS: &str = "/apis/ispcert.dev/v1alpha1/namespaces/ns/ispcertificates";
const SECRETS: &str = "/api/v1/namespaces/ns/secrets";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

/// One request the reconcile must make, and the API server's answer.
struct Call {
    method: Method,
    path: String,
    /// What the body must be (after `redact`), or `None` when it does not matter.
    body: Option<Value>,
    /// Whether the body may hold more than `body` (generated names, defaults the client adds).
    partial: bool,
    status: StatusCode,
    answer: Value,
}

fn call(method: Method, path: impl Into<String>, body: Option<Value>, answer: Value) -> Call {
    Call { method, path: path.into(), body, partial: false, status: StatusCode::OK, answer }
}

/// An event the reconcile must publish: its reason, type, note, and what it is about.
fn event(reason: &str, type_: &str, note: &str) -> Call {
    let body = json!({
        "action": "Reconcile", "reason": reason, "type": type_, "note": note, "reportingController": "ispcert",
        "regarding": {"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate", "name": "www",
                      "namespace": "ns", "uid": "cert-uid"},
    });
    Call { partial: true, ..call(Method::POST, EVENTS, Some(body), json!({})) }
}

/// Whether `got` holds every field of `want`, with the same values.
fn includes(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w.iter().all(|(k, v)| g.get(k).is_some_and(|x| includes(x, v))),
        _ => got == want,
    }
}

fn not_found(path: impl Into<String>) -> Call {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    Call { status: StatusCode::NOT_FOUND, ..call(Method::GET, path, None, status) }
}

fn conflict(method: Method, path: impl Into<String>, body: Option<Value>) -> Call {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                        "message": "the object has been modified"});
    Call { status: StatusCode::CONFLICT, ..call(method, path, body, status) }
}

/// Replaces what changes from run to run (times) so that bodies compare exactly.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if k.ends_with("Time") || k.ends_with("At") || k.ends_with("End") {
                    *x = json!("<time>");
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Answers `calls` in order, checking each request, then checks that no request follows.
async fn serve(mut handle: Handle, calls: Vec<Call>) {
    for (i, c) in calls.into_iter().enumerate() {
        let (request, respond) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("call {i}: no request came; expected {} {}", c.method, c.path))
            .unwrap_or_else(|| panic!("call {i}: the client went away; expected {} {}", c.method, c.path));
        assert_eq!((request.method(), request.uri().path()), (&c.method, c.path.as_str()), "call {i}");
        let bytes = request.into_body().collect_bytes().await.unwrap();
        if let Some(want) = c.body {
            let mut got: Value = serde_json::from_slice(&bytes).unwrap();
            redact(&mut got);
            if c.partial {
                assert!(includes(&got, &want), "call {i}: body of {} {}: {got:#} lacks {want:#}", c.method, c.path);
            } else {
                assert_eq!(got, want, "call {i}: body of {} {}", c.method, c.path);
            }
        }
        let answer = Response::builder().status(c.status).body(Body::from(serde_json::to_vec(&c.answer).unwrap()));
        respond.send_response(answer.unwrap());
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!("a request too many: {} {}", request.method(), request.uri());
    }
}

/// A cache holding `objects`, synced as after its first full list.
fn filled<K: kube::Resource + Clone + 'static>(objects: Vec<K>) -> reflector::Store<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let mut w: Writer<K> = Writer::default();
    w.apply_watcher_event(&watcher::Event::Init);
    for obj in objects {
        w.apply_watcher_event(&watcher::Event::InitApply(obj));
    }
    w.apply_watcher_event(&watcher::Event::InitDone);
    w.as_reader()
}

fn issuer() -> IspIssuer {
    serde_json::from_value(json!({
        "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspIssuer",
        "metadata": {"name": "billing", "namespace": "ns", "uid": "issuer-uid", "generation": 1},
        "spec": {"credentialsSecretRef": {"name": "creds"},
                 "contacts": {"admin": {"firstName": "A", "lastName": "B", "title": "T", "email": "a@example.com", "phone": "+7 1234567"}}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "CredentialsVerified", "message": "",
                                   "lastTransitionTime": "2026-11-30T00:00:00Z"}]}
    }))
    .unwrap()
}

/// A new certificate, as just applied: no status.
fn certificate(extra_metadata: Value, deletion_policy: &str) -> IspCertificate {
    let mut metadata = json!({"name": "www", "namespace": "ns", "uid": "cert-uid", "generation": 1,
                              "resourceVersion": "10", "creationTimestamp": "2026-11-30T00:00:00Z"});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), extra_metadata.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate", "metadata": metadata,
        "spec": {"issuerRef": {"name": "billing"}, "product": "alphassl", "commonName": "www.example.com",
                 "approverMailbox": "admin", "secretName": "www-tls", "deletionPolicy": deletion_policy},
    }))
    .unwrap()
}

/// A certificate issued and Ready for generation 1, whose spec is now at `generation`.
fn ready_certificate(generation: i64) -> IspCertificate {
    serde_json::from_value(json!({
        "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
        "metadata": {"name": "www", "namespace": "ns", "uid": "cert-uid", "generation": generation,
                     "resourceVersion": "10", "creationTimestamp": "2026-11-30T00:00:00Z"},
        "spec": {"issuerRef": {"name": "billing"}, "product": "alphassl", "commonName": "www.example.com",
                 "approverMailbox": "admin", "secretName": "www-tls"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued", "message": "valid", "observedGeneration": 1,
                 "lastTransitionTime": "2026-11-30T00:00:00Z"},
                {"type": "Issuing", "status": "False", "reason": "Issued", "message": "", "observedGeneration": 1,
                 "lastTransitionTime": "2026-11-30T00:00:00Z"},
                {"type": "Stalled", "status": "False", "reason": "Issued", "message": "", "observedGeneration": 1,
                 "lastTransitionTime": "2026-11-30T00:00:00Z"}],
            "observedGeneration": 1, "orderId": "42", "serialNumber": "01:02",
            "notBefore": "2026-11-30T00:00:00Z", "notAfter": "2099-01-01T00:00:00Z", "renewalTime": "2098-01-01T00:00:00Z",
            "dnsNames": ["www.example.com"]
        }
    }))
    .unwrap()
}

/// The metadata of the certificate's Secret as the watch caches it: ours, with its serial.
fn secret_meta() -> PartialObjectMeta<Secret> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "www-tls", "namespace": "ns", "resourceVersion": "77",
                     "labels": {"ispcert.dev/certificate-name": "www"},
                     "annotations": {"ispcert.dev/serial": "01:02"}}
    }))
    .unwrap()
}

/// The shared state and caches of one reconcile, with `issuers` in the issuer cache.
fn context(cert: &IspCertificate, issuers: Vec<IspIssuer>) -> (Arc<Context>, Handle) {
    context_with(cert, filled(issuers))
}

/// The same, with an issuer cache the scenario fills itself.
fn context_with(cert: &IspCertificate, issuer_store: reflector::Store<IspIssuer>) -> (Arc<Context>, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "ns");
    let cluster_issuers = filled::<ClusterIspIssuer>(vec![]);
    let (recheck, _) = broadcast::channel(4);
    let shared = Arc::new(Shared {
        client: client.clone(),
        settings: Settings::fast(),
        http: crate::billing::http_pool(Duration::from_secs(5)).unwrap(),
        reporter: Reporter { controller: "ispcert".into(), instance: None },
        metrics: Metrics::default(),
        backoff: Default::default(),
        issuers: Default::default(),
        recheck,
        cluster_issuers,
        claims: crate::controller::claims::Claims::of(vec![serde_json::from_value(json!(cert)).unwrap()]),
        namespaces: filled(vec![
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}))
                .unwrap(),
        ]),
        verified: Default::default(),
        key_generations: Default::default(),
    });
    let certificates = filled(vec![cert.clone()]);
    // What the Secret watch's first list leaves: the certificate's Secret.
    let secrets = Arc::new(crate::controller::context::SecretsSeen::default());
    let first_list = [watcher::Event::Init, watcher::Event::InitApply(secret_meta()), watcher::Event::InitDone];
    first_list.iter().for_each(|e| secrets.apply(e, |m| crate::controller::secrets::SecretSeen::of(&m.metadata)));
    // The Secret is at the version this process last wrote.
    shared.remember_version("ns/www-tls", "77".into());
    let secret_names = Arc::new(crate::controller::context::SecretNames::default());
    let applied = kube::runtime::watcher::Event::Apply(cert.clone());
    secret_names.apply(&applied, crate::controller::context::secret_name_entry);
    (Arc::new(Context { shared, certificates, secret_names, issuers: issuer_store, secrets }), handle)
}

/// Registers the issuer's billing client, as a passed credentials check would.
fn verified_issuer(ctx: &Context, billing_url: &str) {
    let client = BillingClient::new(ctx.shared.http.clone(), billing_url, Credentials::new(EMAIL, PASSWORD)).unwrap();
    let account = ctx.shared.issuers.account_for(&client);
    let handle = IssuerHandle {
        checked_at: std::time::Instant::now(),
        uid: "issuer-uid".into(),
        generation: Some(1),
        secret_version: "1".into(),
        client,
        account,
    };
    ctx.shared.issuers.insert(IssuerKey::namespaced("ns", "billing"), handle);
}

/// The account key the verified issuer's orders are recorded with.
fn ctx_account(ctx: &Context) -> String {
    let view = ctx.issuer("ns", &crate::crd::IssuerRef { name: "billing".into(), kind: Default::default() }).unwrap();
    ctx.shared.issuers.get(&view).unwrap().account.key().to_string()
}

const EMAIL: &str = "team@example.com";
const PASSWORD: &str = "pa55-word";

async fn simulator() -> ispcert_sim::RunningSim {
    let config = ispcert_sim::SimConfig {
        accounts: vec![ispcert_sim::AccountSpec::new(EMAIL, PASSWORD, ispcert_sim::Money::from_units(100_000), "RUB")],
        ..ispcert_sim::SimConfig::default()
    };
    ispcert_sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// Runs one reconcile of `cert` against `calls`; returns what the reconcile returned.
async fn run(cert: IspCertificate, ctx: Arc<Context>, handle: Handle, calls: Vec<Call>) -> String {
    let server = tokio::spawn(serve(handle, calls));
    let action = tokio::time::timeout(Duration::from_secs(20), reconcile(Arc::new(cert), ctx))
        .await
        .expect("the reconcile ends")
        .expect("the reconcile succeeds");
    server.await.expect("every request was as expected");
    format!("{action:?}")
}

/// The Stalled condition of a certificate that does not wait for a person.
fn not_stalled(reason: &str, generation: i64) -> Value {
    json!({"type": "Stalled", "status": "False", "reason": reason, "message": "",
           "observedGeneration": generation, "lastTransitionTime": "<time>"})
}

const NO_ISSUER: &str =
    "IspIssuer billing in namespace ns does not exist; create it or fix spec.issuerRef. Nothing is ordered meanwhile";

/// The one status patch of a certificate whose issuer does not exist.
fn issuer_not_found_status() -> Value {
    let condition = |type_: &str, status: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": "IssuerNotFound", "message": message,
               "observedGeneration": 1, "lastTransitionTime": "<time>"})
    };
    json!({"status": {
        // New, so not Ready, and nothing happens until a person creates the issuer: stalled.
        "conditions": [condition("Ready", "False", NO_ISSUER), condition("Issuing", "False", ""), condition("Stalled", "True", NO_ISSUER)],
        "observedGeneration": 1, "failedAttempts": 1, "lastFailureTime": "<time>",
    }})
}

#[tokio::test]
async fn a_certificate_without_its_issuer_gets_one_status_patch_and_one_warning() {
    let cert = certificate(json!({}), "Retain");
    let (ctx, handle) = context(&cert, vec![]);
    let calls = vec![
        call(Method::PATCH, format!("{CERTS}/www/status"), Some(issuer_not_found_status()), json!(cert)),
        event("IssuerNotFound", "Warning", NO_ISSUER),
    ];
    let action = run(cert, ctx.clone(), handle, calls).await;
    // Looked at again after the backoff (the issuer may appear without waking the certificate),
    // not only when something changes.
    assert!(action.contains("requeue_after: Some(") && !action.contains("300s"), "{action}");
    assert_eq!(ctx.shared.backoff.failures("certificate/cert-uid"), 1);
}

#[tokio::test]
async fn the_delete_policy_adds_the_finalizer_by_compare_and_swap_first() {
    let cert = certificate(json!({"finalizers": ["other.example.com/keep"]}), "Delete");
    let (ctx, handle) = context(&cert, vec![]);
    let finalizers =
        json!({"metadata": {"finalizers": ["other.example.com/keep", "ispcert.dev/cleanup"], "resourceVersion": "10"}});
    let calls = vec![
        call(Method::PATCH, format!("{CERTS}/www"), Some(finalizers), json!(cert)),
        call(Method::PATCH, format!("{CERTS}/www/status"), Some(issuer_not_found_status()), json!(cert)),
        event("IssuerNotFound", "Warning", NO_ISSUER),
    ];
    run(cert, ctx, handle, calls).await;
}

#[tokio::test]
async fn a_deleted_certificate_without_an_order_deletes_its_secrets_then_its_finalizer() {
    let deleting = json!({"finalizers": ["ispcert.dev/cleanup", "other.example.com/keep"],
                          "deletionTimestamp": "2026-12-01T00:00:00Z"});
    let cert = certificate(deleting, "Delete");
    let (ctx, handle) = context(&cert, vec![issuer()]);
    let ours = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                                   "metadata": {"name": name, "namespace": "ns",
                                                "labels": {"ispcert.dev/certificate-name": "www"}}})
    };
    let calls = vec![
        call(Method::GET, format!("{CERTS}/www"), None, json!(cert)),
        call(Method::GET, format!("{SECRETS}/www-tls"), None, ours("www-tls")),
        call(Method::DELETE, format!("{SECRETS}/www-tls"), None, ours("www-tls")),
        not_found(format!("{SECRETS}/www-ispcert-key")),
        call(
            Method::PATCH,
            format!("{CERTS}/www"),
            Some(json!({"metadata": {"finalizers": ["other.example.com/keep"], "resourceVersion": "10"}})),
            json!(cert),
        ),
    ];
    let action = run(cert, ctx, handle, calls).await;
    assert!(action.contains("requeue_after: None"), "nothing is left to do: {action}");
}

/// A new certificate whose issuer passed its check, with the simulator behind it, and the tag its
/// order will carry.
async fn about_to_order() -> (ispcert_sim::RunningSim, IspCertificate, Arc<Context>, Handle, String) {
    let sim = simulator().await;
    let cert = certificate(json!({}), "Retain");
    let (ctx, handle) = context(&cert, vec![issuer()]);
    verified_issuer(&ctx, &sim.base_url());
    let view = ctx.issuer("ns", &cert.spec.issuer_ref).unwrap();
    let plan = crate::controller::plan::plan(&cert.spec, &view.spec).unwrap();
    let tag = super::order::remote_id("ns", "www", &view, &plan, None);
    (sim, cert, ctx, handle, tag)
}

/// The requests of a new certificate up to its order intent: its Secrets are looked up, the key
/// is made and stored, and the resource is read fresh (who else names its Secret comes from the
/// cache, listed nothing).
fn up_to_the_intent(cert: &IspCertificate) -> Vec<Call> {
    let key_secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "www-ispcert-key", "namespace": "ns"}});
    vec![
        not_found(format!("{SECRETS}/www-tls")),
        not_found(format!("{SECRETS}/www-ispcert-key")),
        call(Method::POST, SECRETS, None, key_secret),
        call(Method::GET, format!("{CERTS}/www/status"), None, json!(cert)),
    ]
}

/// The intent: the attempt with our tag, conditional on the resourceVersion read fresh.
/// Its conditions say that the order is being placed, whatever an earlier run said.
fn intent(tag: &str, account: &str) -> Value {
    let placing = "placing the order at the billing";
    let condition = |type_: &str, status: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": "Ordering", "message": message,
               "observedGeneration": 1, "lastTransitionTime": "<time>"})
    };
    let conditions = [
        condition("Ready", "False", placing),
        condition("Issuing", "True", placing),
        condition("Stalled", "False", ""),
    ];
    json!({"metadata": {"resourceVersion": "10"},
           "status": {"account": account, "conditions": conditions, "observedGeneration": 1,
                      "orderAttempt": {"startedAt": "<time>", "remoteId": tag}}})
}

#[tokio::test]
async fn the_order_intent_is_written_with_a_precondition_and_a_conflict_buys_nothing() {
    let (sim, cert, ctx, handle, tag) = about_to_order().await;

    let account = ctx_account(&ctx);
    let mut calls = up_to_the_intent(&cert);
    calls.push(conflict(Method::PATCH, format!("{CERTS}/www/status"), Some(intent(&tag, &account))));
    let deciding = "the resource changed while ordering; deciding again";
    let condition = |type_: &str, status: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": "Ordering", "message": message,
               "observedGeneration": 1, "lastTransitionTime": "<time>"})
    };
    let status = json!({"status": {
        "account": account,
        "conditions": [condition("Ready", "False", deciding), condition("Issuing", "True", deciding), not_stalled("Ordering", 1)],
        "observedGeneration": 1,
    }});
    calls.push(call(Method::PATCH, format!("{CERTS}/www/status"), Some(status), json!(cert)));
    calls.push(event("KeyGenerated", "Normal", "generated a RSA-2048 private key; it stays in Secret www-ispcert-key"));
    calls.push(event("Ordering", "Normal", deciding));
    run(cert, ctx, handle, calls).await;

    let stats = sim.admin().stats().await.unwrap();
    assert_eq!(stats.account(EMAIL).orders, 0, "nothing is bought when the intent could not be written");
}

#[tokio::test]
async fn the_order_id_is_written_the_moment_the_billing_returns_it() {
    let (sim, cert, ctx, handle, tag) = about_to_order().await;

    let mut calls = up_to_the_intent(&cert);
    let account = ctx_account(&ctx);
    calls.push(call(Method::PATCH, format!("{CERTS}/www/status"), Some(intent(&tag, &account)), json!(cert)));
    // The simulator numbers its first certificate 3100001; the account is recorded already.
    let order_id = json!({"status": {"orderId": "3100001", "orderedAt": "<time>", "orderAttempt": null,
                                     "approverEmails": ["admin@www.example.com"],
                                     "requestedSubject": "CN=www.example.com"}});
    calls.push(call(Method::PATCH, format!("{CERTS}/www/status"), Some(order_id), json!(cert)));
    // The list read before the order cannot show it, and no certificate reads a list of its
    // own: the certificate is asked for directly (not issued yet), so it waits, and the one
    // status patch of the outcome sends only what changed (the intent set observedGeneration
    // already).
    let pending = "order 3100001: the CA has not issued the certificate yet";
    let condition = |type_: &str, status: &str| {
        json!({"type": type_, "status": status, "reason": "Pending", "message": pending,
               "observedGeneration": 1, "lastTransitionTime": "<time>"})
    };
    let outcome = json!({"status": {
        "conditions": [condition("Ready", "False"), condition("Issuing", "True"), not_stalled("Pending", 1)],
    }});
    calls.push(call(Method::PATCH, format!("{CERTS}/www/status"), Some(outcome), json!(cert)));
    calls.push(event("KeyGenerated", "Normal", "generated a RSA-2048 private key; it stays in Secret www-ispcert-key"));
    calls.push(event(
        "Ordered",
        "Normal",
        "ordered alphassl for www.example.com (12 months, price list 55324): billing order 3100001",
    ));
    calls.push(event("Pending", "Normal", pending));
    run(cert, ctx, handle, calls).await;

    let stats = sim.admin().stats().await.unwrap();
    assert_eq!(stats.account(EMAIL).orders, 1);
    assert_eq!(stats.requests_of("certificate"), 1, "one list, before the order");
    assert_eq!(stats.requests_of("certificate.file"), 1, "then the certificate itself");
}

#[tokio::test]
async fn a_ready_certificate_with_an_unchanged_secret_makes_no_api_call() {
    let cert = ready_certificate(1);
    let (ctx, handle) = context(&cert, vec![issuer()]);
    let action = run(cert, ctx, handle, vec![]).await;
    assert!(action.contains("requeue_after: Some"), "looked at again by the renewal time: {action}");
}

#[tokio::test]
async fn a_changed_spec_first_reads_whose_secret_it_is_then_waits_for_its_issuer() {
    let cert = ready_certificate(2);
    let (ctx, handle) = context(&cert, vec![issuer()]);
    let key_secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "www-ispcert-key", "namespace": "ns"}});
    let waiting = "waiting for IspIssuer ns/billing to pass its credentials check";
    // The served certificate was issued for the previous spec: not Ready for this one.
    let status = json!({"status": {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "IssuerNotReady", "message": waiting, "observedGeneration": 2,
             "lastTransitionTime": "<time>"},
            {"type": "Issuing", "status": "True", "reason": "IssuerNotReady", "message": waiting, "observedGeneration": 2,
             "lastTransitionTime": "<time>"},
            not_stalled("IssuerNotReady", 2)],
        "observedGeneration": 2,
    }});
    let calls = vec![
        // Whose Secret it is is settled before a key is made or anything bought.
        not_found(format!("{SECRETS}/www-tls")),
        not_found(format!("{SECRETS}/www-ispcert-key")),
        call(Method::POST, SECRETS, None, key_secret),
        call(Method::PATCH, format!("{CERTS}/www/status"), Some(status), json!(cert)),
        event("KeyGenerated", "Normal", "generated a RSA-2048 private key; it stays in Secret www-ispcert-key"),
        event("IssuerNotReady", "Normal", waiting),
    ];
    run(cert, ctx, handle, calls).await;
}

/// The status patch and event of a reconcile that stopped before ordering with `message`, after
/// making the key.
fn stopped_before_ordering(cert: &IspCertificate, account: &str, message: &str) -> Vec<Call> {
    let condition = |type_: &str, status: &str| {
        json!({"type": type_, "status": status, "reason": "Ordering", "message": message,
               "observedGeneration": 1, "lastTransitionTime": "<time>"})
    };
    let status = json!({"status": {
        "account": account,
        "conditions": [condition("Ready", "False"), condition("Issuing", "True"), not_stalled("Ordering", 1)],
        "observedGeneration": 1,
    }});
    vec![
        call(Method::PATCH, format!("{CERTS}/www/status"), Some(status), json!(cert)),
        event("KeyGenerated", "Normal", "generated a RSA-2048 private key; it stays in Secret www-ispcert-key"),
        event("Ordering", "Normal", message),
    ]
}

/// Issue 9, defect 3: the cache showed a live certificate, but the fresh read shows its deletion
/// begun (while its key was made): nothing is ordered, so nothing is bought to be deleted.
#[tokio::test]
async fn a_deletion_seen_in_the_fresh_read_orders_nothing() {
    let (sim, cert, ctx, handle, _) = about_to_order().await;
    let account = ctx_account(&ctx);
    let mut deleting = json!(cert);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
    deleting["metadata"]["finalizers"] = json!(["other.example.com/keep"]);
    let mut calls = up_to_the_intent(&cert);
    if let Some(fresh) = calls.last_mut() {
        fresh.answer = deleting;
    }
    calls.extend(stopped_before_ordering(&cert, &account, "the certificate is being deleted; nothing is ordered"));
    let action = run(cert, ctx, handle, calls).await;
    assert!(action.contains("requeue_after: Some(1s)"), "{action}");
    assert_eq!(sim.admin().stats().await.unwrap().account(EMAIL).orders, 0);
}

/// Issue 9, defect 7: the fresh read shows an attempt the cache does not have yet (the watch
/// lags). The reconcile stops without ordering and looks again after a second, not at once: a
/// broken watch makes no hot loop of reads and patches.
#[tokio::test]
async fn an_attempt_only_the_fresh_read_shows_is_waited_for_without_a_hot_loop() {
    let (sim, cert, ctx, handle, tag) = about_to_order().await;
    let account = ctx_account(&ctx);
    let mut lagging = json!(cert);
    lagging["status"] = json!({"orderAttempt": {"startedAt": "2026-12-01T00:00:00Z", "remoteId": tag}});
    let mut calls = up_to_the_intent(&cert);
    if let Some(fresh) = calls.last_mut() {
        fresh.answer = lagging;
    }
    calls.extend(stopped_before_ordering(&cert, &account, "the order is already under way"));
    let action = run(cert, ctx, handle, calls).await;
    assert!(action.contains("requeue_after: Some(1s)"), "{action}");
    assert_eq!(sim.admin().stats().await.unwrap().account(EMAIL).orders, 0);
}

/// Issue 9, defect 10: a reconcile that starts before the issuer cache has its first list waits
/// for it, and then sees the issuer (here: waiting for its credentials check), instead of calling
/// it missing and waiting for a change that never comes.
#[tokio::test]
async fn a_reconcile_waits_for_the_issuer_cache_before_calling_the_issuer_missing() {
    let cert = certificate(json!({}), "Retain");
    let mut writer: Writer<IspIssuer> = Writer::default();
    let (ctx, handle) = context_with(&cert, writer.as_reader());
    let fill = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(issuer()));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        writer
    });
    let key_secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "www-ispcert-key", "namespace": "ns"}});
    let waiting = "waiting for IspIssuer ns/billing to pass its credentials check";
    let condition = |type_: &str, status: &str| {
        json!({"type": type_, "status": status, "reason": "IssuerNotReady", "message": waiting,
               "observedGeneration": 1, "lastTransitionTime": "<time>"})
    };
    let status = json!({"status": {
        "conditions": [condition("Ready", "False"), condition("Issuing", "True"), not_stalled("IssuerNotReady", 1)],
        "observedGeneration": 1,
    }});
    let calls = vec![
        not_found(format!("{SECRETS}/www-tls")),
        not_found(format!("{SECRETS}/www-ispcert-key")),
        call(Method::POST, SECRETS, None, key_secret),
        call(Method::PATCH, format!("{CERTS}/www/status"), Some(status), json!(cert)),
        event("KeyGenerated", "Normal", "generated a RSA-2048 private key; it stays in Secret www-ispcert-key"),
        event("IssuerNotReady", "Normal", waiting),
    ];
    run(cert, ctx, handle, calls).await;
    // The writer lives until the reconcile is done, as the watch's would.
    drop(fill.await);
}
