//! Reconcile branches against a mocked API server (tower-test): which branches talk to the API
//! and what they send first. The end-to-end tests cover the same flows on a real API server.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::broadcast;
use tower_test::mock;

use super::reconcile;
use crate::controller::context::{Context, Shared};
use crate::controller::{Metrics, Settings};
use crate::crd::{ClusterIspIssuer, IspCertificate, IspIssuer};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn apply<K: kube::Resource + Clone>(w: &mut Writer<K>, obj: K)
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    w.apply_watcher_event(&watcher::Event::Apply(obj));
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

/// A certificate that was issued and is Ready for generation 1.
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
                 "lastTransitionTime": "2026-11-30T00:00:00Z"}],
            "observedGeneration": 1, "orderId": "42", "serialNumber": "01:02",
            "notBefore": "2026-11-30T00:00:00Z", "notAfter": "2099-01-01T00:00:00Z", "renewalTime": "2098-01-01T00:00:00Z",
            "dnsNames": ["www.example.com"]
        }
    }))
    .unwrap()
}

fn secret_meta() -> PartialObjectMeta<Secret> {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "www-tls", "namespace": "ns", "resourceVersion": "77",
                     "labels": {"ispcert.dev/certificate-name": "www"},
                     "annotations": {"ispcert.dev/serial": "01:02"}}
    }))
    .unwrap()
}

fn context(cert: &IspCertificate) -> (Arc<Context>, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "ns");
    let (cluster_issuers, _) = reflector::store::<ClusterIspIssuer>();
    let (recheck, _) = broadcast::channel(4);
    let shared = Arc::new(Shared {
        client: client.clone(),
        settings: Settings::fast(),
        http: crate::billing::http_pool(Duration::from_secs(1)).unwrap(),
        recorder: kube::runtime::events::Recorder::new(
            client.clone(),
            Reporter { controller: "ispcert".into(), instance: None },
        ),
        metrics: Metrics::default(),
        backoff: Default::default(),
        issuers: Default::default(),
        recheck,
        cluster_issuers,
        verified: Default::default(),
    });
    shared.remember_version("ns/www-tls", "77".into());
    let (certificates, mut cw) = reflector::store::<IspCertificate>();
    apply(&mut cw, cert.clone());
    let (issuers, mut iw) = reflector::store::<IspIssuer>();
    apply(&mut iw, issuer());
    let (secrets, mut sw) = reflector::store::<PartialObjectMeta<Secret>>();
    apply(&mut sw, secret_meta());
    // The writers go out of scope but the stores keep what was applied.
    (Arc::new(Context { shared, certificates, issuers, secrets }), handle)
}

#[tokio::test]
async fn a_ready_certificate_with_an_unchanged_secret_makes_no_api_call() {
    let cert = ready_certificate(1);
    let (ctx, mut handle) = context(&cert);
    let action = tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(cert), ctx))
        .await
        .expect("the reconcile does not wait on the API")
        .unwrap();
    assert!(format!("{action:?}").contains("requeue_after: Some"), "{action:?}");
    // Any request would have hung the reconcile (the mock never answers); none is queued either.
    let call = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(
        matches!(call, Err(_) | Ok(None)),
        "an API call was made: {:?}",
        call.ok().flatten().map(|(r, _)| r.uri().clone())
    );
}

#[tokio::test]
async fn a_changed_spec_first_reads_whose_secret_it_is() {
    let cert = ready_certificate(2);
    let (ctx, mut handle) = context(&cert);
    let task = tokio::spawn(reconcile(Arc::new(cert), ctx));
    let (request, _respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("the reconcile calls the API")
        .expect("a request");
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/ns/secrets/www-tls",
        "whose Secret it is is settled before a key is made or anything bought"
    );
    task.abort();
}
