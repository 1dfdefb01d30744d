//! Certificates the operator cannot read. A stored object whose fields do not fit the operator's
//! types (stored under an older, looser CRD; written by a tool that bypassed validation) would
//! fail the whole list every certificate of the scope comes from, and stop them all. So the
//! certificate watch reads raw objects and types them one by one here: one that cannot be typed
//! is reported (a Warning event naming the field, a Stalled condition, the metric
//! `ispcert_unreadable_objects`) and left out of the cache, and the others go on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::context::Shared;
use super::metrics::UnreadableLabels;
use super::{conditions, reasons as r};
use crate::crd::IspCertificate;

/// Types the raw watch events of certificates, reporting those that cannot be typed.
pub struct Reader {
    shared: Arc<Shared>,
    /// The typed cache the events go to: where an object that turned unreadable is found, to be
    /// taken out.
    cache: Store<IspCertificate>,
    /// Unreadable objects (namespace, name) and the generation last reported, so that a report
    /// is made once per spec (our own status write must not report it again).
    reported: Mutex<HashMap<(String, String), i64>>,
}

/// Why an object cannot be typed: the field and what is wrong with it.
pub fn problem(obj: &DynamicObject) -> Option<String> {
    parse(obj).err()
}

fn parse(obj: &DynamicObject) -> Result<IspCertificate, String> {
    let value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

impl Reader {
    pub fn new(shared: Arc<Shared>, cache: Store<IspCertificate>) -> Reader {
        Reader { shared, cache, reported: Mutex::default() }
    }

    /// The typed event, or none for an object that cannot be typed (then reported; if the cache
    /// holds an earlier, readable version, the event takes that out instead: the operator does
    /// not go on acting on a spec that is gone).
    pub fn event(&self, event: watcher::Event<DynamicObject>) -> Option<watcher::Event<IspCertificate>> {
        use watcher::Event as E;
        match event {
            E::Init => Some(E::Init),
            E::InitDone => Some(E::InitDone),
            E::InitApply(obj) => self.read(&obj).map(E::InitApply),
            E::Apply(obj) => match self.read(&obj) {
                Some(cert) => Some(E::Apply(cert)),
                None => self.cached(&obj).map(E::Delete),
            },
            E::Delete(obj) => {
                self.forget(&obj);
                match parse(&obj) {
                    Ok(cert) => Some(E::Delete(cert)),
                    Err(_) => self.cached(&obj).map(E::Delete),
                }
            }
        }
    }

    fn read(&self, obj: &DynamicObject) -> Option<IspCertificate> {
        match parse(obj) {
            Ok(cert) => {
                self.forget(obj);
                Some(cert)
            }
            Err(problem) => {
                self.report(obj, problem);
                None
            }
        }
    }

    fn cached(&self, obj: &DynamicObject) -> Option<IspCertificate> {
        let key = ObjectRef::<IspCertificate>::new(&obj.name_any()).within(&obj.namespace().unwrap_or_default());
        self.cache.get(&key).map(|c| c.as_ref().clone())
    }

    fn key(obj: &DynamicObject) -> (String, String) {
        (obj.namespace().unwrap_or_default(), obj.name_any())
    }

    fn forget(&self, obj: &DynamicObject) {
        let key = Reader::key(obj);
        if lock(&self.reported).remove(&key).is_some() {
            self.shared.metrics.unreadable.remove(&UnreadableLabels::certificate(&key.0, &key.1));
        }
    }

    fn report(&self, obj: &DynamicObject, problem: String) {
        let key = Reader::key(obj);
        let generation = obj.metadata.generation.unwrap_or_default();
        if lock(&self.reported).insert(key.clone(), generation) == Some(generation) {
            return;
        }
        self.shared.metrics.unreadable.get_or_create(&UnreadableLabels::certificate(&key.0, &key.1)).set(1);
        warn!(namespace = %key.0, name = %key.1, problem = %problem, "an IspCertificate cannot be read; left alone");
        let (shared, obj) = (self.shared.clone(), obj.clone());
        tokio::spawn(async move { say_unreadable(&shared, &obj, &problem).await });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a person reads on an unreadable certificate. Pure.
pub fn message(problem: &str) -> String {
    format!(
        "the operator cannot read this IspCertificate ({problem}); fix that field. If the value was accepted when applied, the CRD in the cluster is older than the operator: apply the CRDs of this version (kubectl apply -f crds/, or upgrade the chart). Nothing is done for this certificate meanwhile"
    )
}

/// The Warning event and the Stalled condition of an unreadable certificate.
async fn say_unreadable(shared: &Shared, obj: &DynamicObject, problem: &str) {
    let message = message(problem);
    let reference = ObjectReference {
        api_version: Some(IspCertificate::api_version(&()).into_owned()),
        kind: Some(IspCertificate::kind(&()).into_owned()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        resource_version: obj.metadata.resource_version.clone(),
        ..Default::default()
    };
    shared.event_on(&reference, EventType::Warning, r::UNREADABLE_SPEC, "Read", message.clone()).await;

    let old = obj.data.get("status").and_then(|s| s.get("conditions")).cloned().unwrap_or_default();
    let mut list: Vec<Condition> = serde_json::from_value(old).unwrap_or_default();
    let (generation, now) = (obj.metadata.generation, jiff::Timestamp::now());
    for (type_, holds) in [(r::READY, false), (r::ISSUING, false), (r::STALLED, true)] {
        let text = if type_ == r::ISSUING { "" } else { message.as_str() };
        conditions::set(&mut list, type_, holds, r::UNREADABLE_SPEC, text, generation, now);
    }
    let patch = json!({"status": {"conditions": list, "observedGeneration": generation}});
    let resource = ApiResource::erase::<IspCertificate>(&());
    let api: Api<DynamicObject> =
        Api::namespaced_with(shared.client.clone(), &obj.namespace().unwrap_or_default(), &resource);
    if let Err(e) = api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        warn!(error = %e, name = %obj.name_any(), "could not write the status of an unreadable IspCertificate");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
            "metadata": {"name": "www", "namespace": "shop", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn the_problem_names_the_field() {
        let good = json!({"issuerRef": {"name": "billing"}, "product": "alphassl",
                          "commonName": "www.example.com", "secretName": "www-tls"});
        assert_eq!(problem(&raw(good.clone())), None);
        let mut bad = good;
        bad["multiDomain"] = json!({"addonCode": 5_000_000_000u64});
        let found = problem(&raw(bad)).unwrap();
        assert!(found.starts_with("spec.multiDomain.addonCode: "), "{found}");
        assert!(found.contains("5000000000"), "{found}");
        assert!(message(&found).contains(&found) && message(&found).contains("kubectl apply -f crds/"));
    }
}
