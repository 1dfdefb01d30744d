//! Which orders are claimed, cluster-wide and whatever the operator watches: every
//! `IspCertificate` in the cluster, reduced to the few fields money decisions need.
//!
//! An order belongs to the certificate whose status (or spec) names it; a certificate never
//! adopts, recovers or deletes an order another one claims, in any namespace. Each object is read
//! leniently, field by field, from the raw watch event: even a certificate whose spec the
//! operator cannot read still claims its order. It also counts the orders of an issuer for its
//! budget.
//!
//! Nothing is kept of the objects but their [`Claim`]s, tallied by account and issuer as the
//! watch delivers them: a question costs a lookup, not a scan of every certificate (a scan per
//! order made a burst of N orders cost O(N²), most of the operator's CPU at 10,000).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::watch;

use super::issuers::IssuerKey;
use crate::crd::IspCertificate;

/// The claims view of every IspCertificate of the cluster.
#[derive(Clone)]
pub struct Claims {
    tally: Arc<Mutex<Tally>>,
    synced: watch::Receiver<bool>,
}

/// An order id or a uid. Each order id is held once per certificate, shared by its claim and
/// every tally that counts it (six copies of each took 0.3 KiB per certificate).
type Id = Arc<str>;

/// What one certificate claims and counts, read from its raw object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Claim {
    account: Option<String>,
    /// `status.orderId` and `status.replacedOrder`.
    orders: Vec<Id>,
    spec_order: Option<Id>,
    /// `status.orderId` unless its state says deleted, with an account recorded.
    live: Option<Id>,
    issuer: Option<IssuerKey>,
    /// For the budget: when the order was placed and its id, or when an attempt without an id
    /// started.
    counted: Option<(Timestamp, Option<Id>)>,
}

fn text<'a>(obj: &'a DynamicObject, part: &str, field: &str) -> Option<&'a str> {
    obj.data.get(part)?.get(field)?.as_str().filter(|s| !s.is_empty())
}

fn time_of(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str).and_then(|s| s.parse::<Timestamp>().ok())
}

impl Claim {
    fn of(c: &DynamicObject) -> Claim {
        let status = c.data.get("status");
        let order_id: Option<Id> = text(c, "status", "orderId").map(Id::from);
        let account = text(c, "status", "account").map(str::to_string);
        let deleted = text(c, "status", "orderState").is_some_and(|s| s.starts_with("deleted"));
        let ordered = order_id.clone().zip(time_of(status.and_then(|s| s.get("orderedAt"))));
        let attempt = time_of(status.and_then(|s| s.get("orderAttempt")).and_then(|a| a.get("startedAt")));
        Claim {
            orders: order_id.iter().cloned().chain(text(c, "status", "replacedOrder").map(Id::from)).collect(),
            live: order_id.filter(|_| account.is_some() && !deleted),
            account,
            spec_order: text(c, "spec", "orderId").map(Id::from),
            issuer: issuer_of(c),
            counted: ordered.map(|(id, at)| (at, Some(id))).or(attempt.map(|at| (at, None))),
        }
    }
}

/// The issuer a certificate's `issuerRef` names.
fn issuer_of(c: &DynamicObject) -> Option<IssuerKey> {
    let r = c.data.get("spec")?.get("issuerRef")?;
    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
    match r.get("kind").and_then(Value::as_str).unwrap_or("IspIssuer") {
        "IspIssuer" => Some(IssuerKey::namespaced(c.metadata.namespace.as_deref()?, name)),
        "ClusterIspIssuer" => Some(IssuerKey::cluster(name)),
        _ => None,
    }
}

/// Counts of ids, so that one certificate's claim can be taken back without a rescan.
type Counts = HashMap<Id, u32>;

fn add(counts: &mut Counts, id: &Id) {
    *counts.entry(id.clone()).or_default() += 1;
}

fn take(counts: &mut Counts, id: &Id) {
    if let Some(n) = counts.get_mut(id) {
        *n -= 1;
        if *n == 0 {
            counts.remove(id);
        }
    }
}

/// Every certificate's claim (by uid) and their tallies.
#[derive(Default)]
pub(super) struct Tally {
    of: HashMap<Id, Claim>,
    /// Orders recorded as theirs by certificates on each account.
    surely: HashMap<String, Counts>,
    /// `spec.orderId`s of certificates on each account.
    maybe_on: HashMap<String, Counts>,
    /// Orders named by certificates that recorded no account (older versions): perhaps on any.
    maybe_anywhere: Counts,
    /// Live orders on each account.
    live: HashMap<String, Counts>,
    /// Per issuer, by time: orders placed (their id) and attempts without one (`None`).
    counted: HashMap<IssuerKey, BTreeMap<(Timestamp, Id), Option<Id>>>,
    /// The claims seen since a re-list began; they replace the tally when it ends.
    relist: Option<HashMap<Id, Claim>>,
}

impl Tally {
    fn tally(&mut self, uid: &Id, c: &Claim, adding: bool) {
        let sign = if adding { add } else { take };
        let maybe = |c: &Claim| c.orders.iter().chain(c.spec_order.iter()).cloned().collect::<Vec<_>>();
        match &c.account {
            Some(a) => {
                c.orders.iter().for_each(|id| sign(self.surely.entry(a.clone()).or_default(), id));
                c.spec_order.iter().for_each(|id| sign(self.maybe_on.entry(a.clone()).or_default(), id));
                c.live.iter().for_each(|id| sign(self.live.entry(a.clone()).or_default(), id));
            }
            None => maybe(c).iter().for_each(|id| sign(&mut self.maybe_anywhere, id)),
        }
        if let (Some(issuer), Some((at, id))) = (&c.issuer, &c.counted) {
            let times = self.counted.entry(issuer.clone()).or_default();
            if adding {
                times.insert((*at, uid.clone()), id.clone());
            } else {
                times.remove(&(*at, uid.clone()));
            }
        }
    }

    fn set(&mut self, uid: Id, claim: Option<Claim>) {
        if let Some(old) = self.of.remove(&uid) {
            self.tally(&uid, &old, false);
        }
        if let Some(new) = claim {
            self.tally(&uid, &new, true);
            self.of.insert(uid, new);
        }
    }

    fn apply(&mut self, event: watcher::Event<DynamicObject>) -> bool {
        let uid = |o: &DynamicObject| Id::from(o.metadata.uid.as_deref().unwrap_or_default());
        match event {
            watcher::Event::Apply(o) => self.set(uid(&o), Some(Claim::of(&o))),
            watcher::Event::Delete(o) => self.set(uid(&o), None),
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                if let Some(relist) = self.relist.as_mut() {
                    relist.insert(uid(&o), Claim::of(&o));
                }
            }
            watcher::Event::InitDone => {
                let claims = self.relist.take().unwrap_or_default();
                *self = Tally::default();
                for (uid, claim) in claims {
                    self.set(uid, Some(claim));
                }
                return true;
            }
        }
        false
    }
}

/// The orders of one billing account that other certificates claim, as asked of the tally when
/// a decision needs to know (plus `surely` and `maybe`, orders a caller adds).
#[derive(Clone, Default)]
pub struct Claimed {
    pub(super) source: Option<(Arc<Mutex<Tally>>, String, String)>,
    /// Claimed surely, besides what the tally says.
    pub surely: HashSet<String>,
    /// Claimed perhaps, besides what the tally says.
    pub maybe: HashSet<String>,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed").field("surely", &self.surely).field("maybe", &self.maybe).finish_non_exhaustive()
    }
}

impl Claimed {
    /// Whether certificates other than the asking one count for an id: `count` is how many
    /// do on the account, `mine` whether the asking one is among them.
    fn counted(&self, count: impl Fn(&Tally, &str) -> u32, mine: impl Fn(&Claim, &str) -> bool) -> bool {
        let Some((tally, me, account)) = &self.source else { return false };
        let tally = lock(tally);
        let own = tally.of.get(me.as_str()).is_some_and(|c| mine(c, account));
        count(&tally, account) > u32::from(own)
    }

    /// Recorded as theirs on this account by another certificate.
    pub fn is_surely(&self, id: &str) -> bool {
        self.surely.contains(id)
            || self.counted(
                |t, a| t.surely.get(a).and_then(|c| c.get(id)).copied().unwrap_or(0),
                |c, a| c.account.as_deref() == Some(a) && c.orders.iter().any(|o| &**o == id),
            )
    }

    /// Perhaps on this account: a certificate of an older version that did not record its
    /// account, or one whose spec names the order but whose status does not say yet. Never
    /// adopted or recovered; still a reason for doubt before a new order.
    pub fn is_maybe(&self, id: &str) -> bool {
        let on_account = |t: &Tally, a: &str| t.maybe_on.get(a).and_then(|c| c.get(id)).copied().unwrap_or(0);
        let anywhere = |t: &Tally, _: &str| t.maybe_anywhere.get(id).copied().unwrap_or(0);
        let mine_on = |c: &Claim, a: &str| c.account.as_deref() == Some(a) && c.spec_order.as_deref() == Some(id);
        let mine_anywhere =
            |c: &Claim, _: &str| c.account.is_none() && c.orders.iter().chain(c.spec_order.iter()).any(|o| &**o == id);
        self.maybe.contains(id) || self.counted(on_account, mine_on) || self.counted(anywhere, mine_anywhere)
    }

    /// Whether another certificate surely or perhaps claims `id`.
    pub fn any(&self, id: &str) -> bool {
        self.is_surely(id) || self.is_maybe(id)
    }
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|p| p.into_inner())
}

impl Claims {
    /// Starts the cluster-wide watch; the returned future drives it until the stream ends.
    pub fn watch(client: &kube::Client) -> (Claims, impl std::future::Future<Output = ()> + Send + 'static) {
        let resource = ApiResource::erase::<IspCertificate>(&());
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let (claims, ready) = Claims::empty();
        let tally = claims.tally.clone();
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let drive = stream.for_each(move |event| {
            if let Ok(event) = event
                && lock(&tally).apply(event)
            {
                let _ = ready.send(true);
            }
            futures::future::ready(())
        });
        (claims, drive)
    }

    fn empty() -> (Claims, watch::Sender<bool>) {
        let (ready, synced) = watch::channel(false);
        (Claims { tally: Arc::default(), synced }, ready)
    }

    /// A view over objects given directly (tests).
    #[cfg(test)]
    pub fn of(objects: Vec<DynamicObject>) -> Claims {
        let (claims, ready) = Claims::empty();
        let mut tally = lock(&claims.tally);
        tally.apply(watcher::Event::Init);
        for o in objects {
            tally.apply(watcher::Event::InitApply(o));
        }
        tally.apply(watcher::Event::InitDone);
        drop(tally);
        let _ = ready.send(true);
        claims
    }

    /// Waits until the first full list is in.
    pub async fn wait_synced(&self) -> Result<(), watch::error::RecvError> {
        self.synced.clone().wait_for(|s| *s).await.map(drop)
    }

    /// The orders of `account` that certificates other than `me` (by uid) claim: in their
    /// status, or adopted by their spec.
    pub fn claimed_by_others(&self, me: &str, account: &str) -> Claimed {
        Claimed { source: Some((self.tally.clone(), me.to_string(), account.to_string())), ..Default::default() }
    }

    /// Order ids of `account` some certificate records as its own and has not seen deleted: the
    /// billing's list must show every one of them, or the list is incomplete.
    pub fn known_live(&self, account: &str) -> BTreeSet<String> {
        lock(&self.tally).live.get(account).map(|c| c.keys().map(|id| id.to_string()).collect()).unwrap_or_default()
    }

    /// The orders certificates of `issuer` placed or adopted since `since` (by id), and the order
    /// attempts of its certificates started since then that have no id yet.
    pub fn recent_orders(&self, issuer: &IssuerKey, since: Timestamp) -> (BTreeSet<String>, usize) {
        let tally = lock(&self.tally);
        let Some(times) = tally.counted.get(issuer) else { return (BTreeSet::new(), 0) };
        let mut ids = BTreeSet::new();
        let mut attempts = 0;
        for id in times.range((since, Id::from(""))..).map(|(_, id)| id) {
            match id {
                Some(id) => {
                    ids.insert(id.to_string());
                }
                None => attempts += 1,
            }
        }
        (ids, attempts)
    }
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

    fn claims_of(claimed: &Claimed, ids: &[&str]) -> (Vec<String>, Vec<String>) {
        let pick = |f: &dyn Fn(&str) -> bool| ids.iter().filter(|id| f(id)).map(|id| id.to_string()).collect();
        (pick(&|id| claimed.is_surely(id)), pick(&|id| claimed.is_maybe(id) && !claimed.is_surely(id)))
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
        let ids = ["10", "11", "12", "13", "14", "15"];
        // Another namespace's order is claimed too, and a spec that cannot be typed still claims.
        let claimed = claims.claimed_by_others("u4", "A");
        assert_eq!(claims_of(&claimed, &ids), (vec!["10".into(), "11".into(), "14".into()], vec!["13".into()]));
        assert!(claimed.any("13") && !claimed.any("12"), "one's own order is not another's claim");
        assert!(claims.claimed_by_others("u1", "B").is_surely("10"));
        assert!(!claims.claimed_by_others("u1", "A").is_surely("10"), "u1's own order 10 on A");
        assert_eq!(claims.known_live("A"), ["10", "12"].map(String::from).into());
        let shared = IssuerKey::cluster("shared");
        let (ids, attempts) = claims.recent_orders(&shared, t("2026-11-30T12:00:00Z"));
        assert_eq!((ids, attempts), (["10".to_string()].into(), 1));
        let own = IssuerKey::namespaced("a", "own");
        assert_eq!(claims.recent_orders(&own, t("2026-11-30T12:00:00Z")).0.len(), 1);
        assert_eq!(claims.recent_orders(&IssuerKey::namespaced("b", "own"), t("2026-11-30T12:00:00Z")).0.len(), 0);
    }

    #[test]
    fn a_changed_or_deleted_certificate_takes_its_claims_back() {
        let claims = Claims::of(vec![]);
        let apply = |e| {
            lock(&claims.tally).apply(e);
        };
        let ordered = |id: &str| json!({"orderId": id, "account": "A", "orderedAt": "2026-12-01T10:00:00Z"});
        apply(watcher::Event::Apply(cert("a", "u1", json!({"name": "i"}), ordered("20"))));
        let claimed = claims.claimed_by_others("me", "A");
        assert!(claimed.is_surely("20"));
        apply(watcher::Event::Apply(cert("a", "u1", json!({"name": "i"}), ordered("21"))));
        assert!(!claimed.is_surely("20") && claimed.is_surely("21"), "asked when needed, not copied");
        let issuer = IssuerKey::namespaced("a", "i");
        assert_eq!(claims.recent_orders(&issuer, Timestamp::UNIX_EPOCH).0, ["21".to_string()].into());
        apply(watcher::Event::Delete(cert("a", "u1", json!({"name": "i"}), ordered("21"))));
        assert!(!claimed.any("21"));
        assert_eq!(claims.recent_orders(&issuer, Timestamp::UNIX_EPOCH).0.len(), 0);
        assert!(lock(&claims.tally).surely.values().all(|c| c.is_empty()), "no count left behind");
    }
}
