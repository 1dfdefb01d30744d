//! Which orders are claimed, cluster-wide and whatever the operator watches: every
//! `IspCertificate` in the cluster, kept as the few fields money decisions need.
//!
//! An order belongs to the certificate whose status (or spec) names it; a certificate never
//! adopts, recovers or deletes an order another one claims, in any namespace. The view is read
//! leniently, field by field, from the raw objects: even a certificate whose spec the operator
//! cannot read still claims its order. It also counts the orders of an issuer for its budget.

use std::collections::{BTreeSet, HashSet};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::issuers::IssuerKey;
use crate::crd::{IspCertificate, IssuerKind};

/// The claims view: a cache of every IspCertificate's money fields.
#[derive(Clone)]
pub struct Claims {
    store: Store<DynamicObject>,
}

/// The fields a claim decision reads, pruned from the object to keep the cache small.
const KEPT: [(&str, &[&str]); 2] = [
    ("spec", &["issuerRef", "orderId", "commonName", "product"]),
    ("status", &["orderId", "account", "orderState", "orderedAt", "orderAttempt", "replacedOrder"]),
];

/// The orders of one billing account that other certificates claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Recorded as theirs on this account.
    pub surely: HashSet<String>,
    /// Perhaps on this account: a certificate of an older version that did not record its
    /// account, or one whose spec names the order but whose status does not say yet. Never
    /// adopted or recovered; still a reason for doubt before a new order.
    pub maybe: HashSet<String>,
}

impl Claimed {
    /// Whether another certificate surely or perhaps claims `id`.
    pub fn any(&self, id: &str) -> bool {
        self.surely.contains(id) || self.maybe.contains(id)
    }
}

fn prune(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    obj.metadata.annotations = None;
    obj.metadata.labels = None;
    let Value::Object(data) = &mut obj.data else { return };
    data.retain(|k, _| KEPT.iter().any(|(part, _)| part == k));
    for (part, fields) in KEPT {
        if let Some(Value::Object(m)) = data.get_mut(part) {
            m.retain(|k, _| fields.contains(&k.as_str()));
        }
    }
}

fn text<'a>(obj: &'a DynamicObject, part: &str, field: &str) -> Option<&'a str> {
    obj.data.get(part)?.get(field)?.as_str().filter(|s| !s.is_empty())
}

impl Claims {
    /// Starts the cluster-wide watch; the returned future drives it until the stream ends.
    pub fn watch(client: &kube::Client) -> (Claims, impl std::future::Future<Output = ()> + Send + 'static) {
        let resource = ApiResource::erase::<IspCertificate>(&());
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let stream = watcher(api, watcher::Config::default()).default_backoff().modify(prune).reflect(writer);
        (Claims { store }, stream.for_each(|_| futures::future::ready(())))
    }

    /// A view over objects given directly (tests).
    #[cfg(test)]
    pub fn of(objects: Vec<DynamicObject>) -> Claims {
        let mut writer = reflector::store::Writer::new(ApiResource::erase::<IspCertificate>(&()));
        writer.apply_watcher_event(&watcher::Event::Init);
        for mut o in objects {
            prune(&mut o);
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Claims { store: writer.as_reader() }
    }

    /// Waits until the first full list is in.
    pub async fn wait_synced(&self) -> Result<(), reflector::store::WriterDropped> {
        self.store.wait_until_ready().await
    }

    /// The orders of `account` that certificates other than `me` (by uid) claim: in their
    /// status, or adopted by their spec.
    pub fn claimed_by_others(&self, me: &str, account: &str) -> Claimed {
        let mut claimed = Claimed::default();
        for c in self.store.state().iter().filter(|c| c.metadata.uid.as_deref() != Some(me)) {
            let on = text(c, "status", "account");
            if on.is_some_and(|a| a != account) {
                continue;
            }
            // An order being replaced stays its certificate's until the new one serves.
            for field in ["orderId", "replacedOrder"] {
                if let Some(id) = text(c, "status", field) {
                    let set = if on.is_some() { &mut claimed.surely } else { &mut claimed.maybe };
                    set.insert(id.to_string());
                }
            }
            if let Some(id) = text(c, "spec", "orderId").filter(|id| !claimed.surely.contains(*id)) {
                claimed.maybe.insert(id.to_string());
            }
        }
        claimed
    }

    /// Order ids of `account` some certificate records as its own and has not seen deleted: the
    /// billing's list must show every one of them, or the list is incomplete.
    pub fn known_live(&self, account: &str) -> BTreeSet<String> {
        self.store
            .state()
            .iter()
            .filter(|c| text(c, "status", "account") == Some(account))
            .filter(|c| text(c, "status", "orderState").is_none_or(|s| !s.starts_with("deleted")))
            .filter_map(|c| text(c, "status", "orderId"))
            .map(str::to_string)
            .collect()
    }

    /// The orders certificates of `issuer` placed or adopted since `since` (by id), and the order
    /// attempts of its certificates started since then that have no id yet.
    pub fn recent_orders(&self, issuer: &IssuerKey, since: Timestamp) -> (BTreeSet<String>, usize) {
        let mut ids = BTreeSet::new();
        let mut attempts = 0;
        for c in self.store.state().iter().filter(|c| uses(c, issuer)) {
            let after = |t: Option<&Value>| {
                t.and_then(Value::as_str).and_then(|s| s.parse::<Timestamp>().ok()).is_some_and(|t| t >= since)
            };
            let status = c.data.get("status");
            if let Some(id) = text(c, "status", "orderId")
                && after(status.and_then(|s| s.get("orderedAt")))
            {
                ids.insert(id.to_string());
            } else if after(status.and_then(|s| s.get("orderAttempt")).and_then(|a| a.get("startedAt"))) {
                attempts += 1;
            }
        }
        (ids, attempts)
    }
}

/// Whether a certificate's `issuerRef` names `issuer`.
fn uses(c: &DynamicObject, issuer: &IssuerKey) -> bool {
    let Some(r) = c.data.get("spec").and_then(|s| s.get("issuerRef")) else { return false };
    let kind = r.get("kind").and_then(Value::as_str).unwrap_or("IspIssuer");
    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
    let same_kind = match issuer.kind {
        IssuerKind::IspIssuer => {
            kind == "IspIssuer" && c.metadata.namespace.as_deref() == Some(issuer.namespace.as_str())
        }
        IssuerKind::ClusterIspIssuer => kind == "ClusterIspIssuer",
    };
    same_kind && name == issuer.name
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cert(ns: &str, uid: &str, issuer: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
            "metadata": {"name": uid, "namespace": ns, "uid": uid, "annotations": {"big": "x".repeat(1000)}},
            "spec": {"issuerRef": issuer, "commonName": "a.example.com", "secretName": "s",
                     "multiDomain": {"addonCode": 5_000_000_000u64}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn orders_are_claimed_cluster_wide_and_counted_per_issuer() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let claims = Claims::of(vec![
            cert(
                "a",
                "u1",
                json!({"name": "shared", "kind": "ClusterIspIssuer"}),
                json!({"orderId": "10", "account": "A", "orderedAt": "2026-12-01T10:00:00Z", "orderState": "active"}),
            ),
            cert(
                "b",
                "u2",
                json!({"name": "shared", "kind": "ClusterIspIssuer"}),
                json!({"orderId": "11", "account": "A", "orderedAt": "2026-11-20T10:00:00Z", "orderState": "deleted"}),
            ),
            cert(
                "b",
                "u3",
                json!({"name": "shared", "kind": "ClusterIspIssuer"}),
                json!({"orderAttempt": {"startedAt": "2026-12-01T11:00:00Z", "remoteId": "t"}}),
            ),
            cert(
                "a",
                "u4",
                json!({"name": "own"}),
                json!({"orderId": "12", "account": "A", "orderedAt": "2026-12-01T10:00:00Z"}),
            ),
            // Another account's order 10 is no claim on account A's order 10.
            cert("c", "u5", json!({"name": "other"}), json!({"orderId": "10", "account": "B"})),
            // An older version's status without the account: perhaps on A.
            cert("d", "u6", json!({"name": "old"}), json!({"orderId": "13"})),
            // An order being replaced is still its certificate's.
            cert("e", "u7", json!({"name": "own"}), json!({"replacedOrder": "14", "account": "A"})),
        ]);
        // Another namespace's order is claimed too, and a spec that cannot be typed still claims.
        let claimed = claims.claimed_by_others("u4", "A");
        assert_eq!(claimed.surely, ["10", "11", "14"].map(String::from).into());
        assert_eq!(claimed.maybe, ["13".to_string()].into());
        assert!(claimed.any("13") && !claimed.any("12"), "one's own order is not another's claim");
        assert_eq!(claims.claimed_by_others("u1", "B").surely, ["10".to_string()].into());
        assert_eq!(claims.known_live("A"), ["10", "12"].map(String::from).into());
        let shared = IssuerKey::cluster("shared");
        let (ids, attempts) = claims.recent_orders(&shared, t("2026-11-30T12:00:00Z"));
        assert_eq!((ids, attempts), (["10".to_string()].into(), 1));
        let own = IssuerKey::namespaced("a", "own");
        assert_eq!(claims.recent_orders(&own, t("2026-11-30T12:00:00Z")).0.len(), 1);
        assert_eq!(claims.recent_orders(&IssuerKey::namespaced("b", "own"), t("2026-11-30T12:00:00Z")).0.len(), 0);
        // What is kept is only what the decisions read.
        let kept = &claims.store.state()[0];
        assert!(kept.metadata.annotations.is_none() && kept.data["spec"].get("multiDomain").is_none());
    }
}
