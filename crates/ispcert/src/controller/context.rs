//! What every reconcile shares, and the reconcile error type.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::broadcast;
use tracing::warn;

use super::backoff::Backoffs;
use super::issuers::{IssuerKey, IssuerRegistry, IssuerView};
use super::metrics::Metrics;
use super::settings::Settings;
use crate::billing::BillingError;
use crate::crd::{ClusterIspIssuer, IspCertificate, IspIssuer, IssuerKind, IssuerRef};
use crate::pki::keys::KeyError;

/// A reconcile failure. `category` names it in events, conditions and metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed; `action` names the call and its object, for example
    /// "patch status of IspCertificate ns/name".
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube { action: action.into(), source }
    }

    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => super::reasons::KUBERNETES_ERROR,
            Error::Billing(BillingError::Transport { .. }) => super::reasons::BILLING_UNREACHABLE,
            Error::Billing(_) => super::reasons::BILLING_ERROR,
            Error::Key(_) => "KeyError",
            Error::Internal(_) => "InternalError",
        }
    }
}

/// Names the Kubernetes call a result came from, for errors that say what failed on which object.
pub trait KubeResult<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> KubeResult<T> for Result<T, kube::Error> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kube { action: action(), source })
    }
}

/// How long a reconcile waits for the caches' first lists before it fails and retries.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Shared by every controller of the process.
pub struct Shared {
    pub client: kube::Client,
    pub settings: Settings,
    /// One HTTP connection pool for every billing account.
    pub http: reqwest::Client,
    pub metrics: Metrics,
    pub backoff: Backoffs,
    pub issuers: IssuerRegistry,
    /// Asks the issuer controllers to check an issuer's credentials again now.
    pub recheck: broadcast::Sender<IssuerKey>,
    /// Who publishes the events. Each event gets a recorder of its own: kube's `Recorder` keeps
    /// every event it published for six minutes (to count repeats in one series) and sweeps that
    /// whole cache on each publish, which cost 6 KiB per certificate and made a burst of N
    /// issuances O(N²). Our events mark transitions, so repeats within minutes are rare; one is
    /// a new Event (a POST) instead of a series update (a PATCH): the same one write.
    pub reporter: Reporter,
    pub cluster_issuers: Store<ClusterIspIssuer>,
    /// Every IspCertificate of the cluster, as the money fields: which orders are claimed.
    pub claims: super::claims::Claims,
    /// The metadata of every namespace, for ClusterIspIssuers' namespace selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The resourceVersion of each output Secret ("namespace/name") as we last wrote or checked
    /// it: a Secret still at that version needs no read to be trusted.
    pub verified: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Key generations running at once: one per core. Unbounded, a thousand new certificates
    /// made a thousand blocking threads that fought over two cores and kept their memory.
    pub key_generations: KeyGenerations,
}

/// The permits of [`Shared::key_generations`].
#[derive(Debug)]
pub struct KeyGenerations(pub tokio::sync::Semaphore);

impl Default for KeyGenerations {
    fn default() -> Self {
        KeyGenerations(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
    }
}

/// What a certificate reconcile sees: the shared state plus the caches of its namespace scope.
pub struct Context {
    pub shared: Arc<Shared>,
    pub certificates: Store<IspCertificate>,
    /// The certificates of the cache by the Secret they name: (namespace, secretName) → (created,
    /// name), without those being deleted.
    pub secret_names: Arc<SecretNames>,
    pub issuers: Store<IspIssuer>,
    /// What we keep of the Secrets we label, from a metadata-only watch.
    pub secrets: Arc<SecretsSeen>,
}

/// A Secret a certificate names: `namespace/secretName` (one shared string per certificate).
pub type SecretKey = Arc<str>;
/// A certificate as the Secret's owner is chosen: the oldest, then by name.
pub type SecretClaimant = (Option<jiff::Timestamp>, Arc<str>);
/// See [`Context::secrets`].
pub type SecretsSeen = super::index::Latest<super::secrets::SecretSeen>;
/// See [`Context::secret_names`].
pub type SecretNames = super::index::Index<SecretKey, SecretClaimant>;

/// The key of a Secret in the verified-versions map and in [`SecretNames`]: `namespace/name`.
pub fn secret_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// What a certificate contributes to [`SecretNames`].
pub fn secret_name_entry(c: &IspCertificate) -> Option<(SecretKey, SecretClaimant)> {
    if c.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let key = Arc::from(secret_key(&c.namespace().unwrap_or_default(), &c.spec.secret_name));
    Some((key, (c.metadata.creation_timestamp.as_ref().map(|t| t.0), Arc::from(c.name_any()))))
}

impl Shared {
    pub fn verified_version(&self, key: &str) -> Option<String> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    pub fn remember_version(&self, key: &str, version: String) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string(), version);
    }

    pub fn forget_version(&self, key: &str) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Publishes an event; failures are logged, never fatal (events are best effort).
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.event_on(&obj.object_ref(&()), type_, reason, action, note).await;
    }

    /// An event about the object `reference` points at.
    pub async fn event_on(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            // The API server refuses notes over 1024 bytes, which would lose the event.
            note: Some(crate::text::clip(note, 1024)),
            action: action.to_string(),
            secondary: None,
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, reference).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }
}

impl Context {
    /// The issuer a certificate points at, from the caches.
    pub fn issuer(&self, namespace: &str, r: &IssuerRef) -> Option<IssuerView> {
        match r.kind {
            IssuerKind::IspIssuer => {
                self.issuers.get(&ObjectRef::new(&r.name).within(namespace)).map(|i| IssuerView::from(i.as_ref()))
            }
            IssuerKind::ClusterIspIssuer => {
                self.shared.cluster_issuers.get(&ObjectRef::new(&r.name)).map(|i| IssuerView::from(i.as_ref()))
            }
        }
    }

    /// The oldest `IspCertificate` of the namespace that names `secret_name`, which alone may
    /// write it (ties broken by name, so every reconcile agrees).
    pub fn secret_owner(&self, namespace: &str, secret_name: &str) -> Option<Arc<IspCertificate>> {
        let (_, name) = self.secret_names.first(secret_key(namespace, secret_name).as_str())?;
        self.certificates.get(&ObjectRef::new(&name).within(namespace))
    }

    /// Whether a Secret's certificate label names a live `IspCertificate` other than `me`.
    pub fn claimed_by_other(&self, secret: &Secret, namespace: &str, me: &str) -> Option<String> {
        let label = secret.labels().get(super::secrets::LABEL_CERTIFICATE)?;
        (label != me && self.certificates.get(&ObjectRef::new(label).within(namespace)).is_some())
            .then(|| label.clone())
    }

    /// Whether the namespace is being deleted (its deletion takes everything in it, the issuer and
    /// its credentials too).
    pub fn namespace_terminating(&self, namespace: &str) -> bool {
        self.shared.namespaces.get(&ObjectRef::new(namespace)).is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    }

    /// The labels of a namespace, from the cache.
    pub fn namespace_labels(&self, namespace: &str) -> std::collections::BTreeMap<String, String> {
        self.shared.namespaces.get(&ObjectRef::new(namespace)).map(|n| n.labels().clone()).unwrap_or_default()
    }

    /// Order ids of `account` held by other certificates, in any namespace; never adopted,
    /// recovered or deleted by this one.
    pub fn claimed_orders(&self, me_uid: &str, account: &str) -> super::claims::Claimed {
        self.shared.claims.claimed_by_others(me_uid, account)
    }

    /// Waits until every cache a reconcile reads has its first full list: deciding on a cache
    /// still filling up would take a present issuer for a missing one, or miss an older owner.
    pub async fn wait_synced(&self) -> Result<(), Error> {
        async fn ready<F, E>(what: &str, wait: F) -> Result<(), Error>
        where
            F: std::future::Future<Output = Result<(), E>>,
        {
            match tokio::time::timeout(SYNC_WAIT, wait).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Error::Internal(format!("the {what} cache stopped"))),
                Err(_) => Err(Error::Internal(format!("the {what} cache has not finished its first list yet"))),
            }
        }
        ready("certificate", self.certificates.wait_until_ready()).await?;
        ready("issuer", self.issuers.wait_until_ready()).await?;
        ready("cluster issuer", self.shared.cluster_issuers.wait_until_ready()).await?;
        ready("Secret", self.secrets.wait_until_ready()).await?;
        ready("namespace", self.shared.namespaces.wait_until_ready()).await?;
        ready("claims", self.shared.claims.wait_synced()).await
    }
}
