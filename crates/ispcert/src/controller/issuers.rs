//! Billing clients per issuer, built once and shared by every certificate of that issuer, with
//! one shared state per billing account (its list, its journal of orders, its order lock).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::account::Account;
use crate::billing::{BillingClient, Credentials};
use crate::crd::{ClusterIspIssuer, IspIssuer, IssuerKind, IssuerSpec, IssuerStatus};

/// Identifies an issuer: its kind, namespace (empty for cluster issuers) and name.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct IssuerKey {
    pub kind: IssuerKind,
    pub namespace: String,
    pub name: String,
}

impl IssuerKey {
    pub fn namespaced(namespace: &str, name: &str) -> Self {
        IssuerKey { kind: IssuerKind::IspIssuer, namespace: namespace.into(), name: name.into() }
    }

    pub fn cluster(name: &str) -> Self {
        IssuerKey { kind: IssuerKind::ClusterIspIssuer, namespace: String::new(), name: name.into() }
    }

    pub fn kind_str(&self) -> &'static str {
        self.kind.as_str()
    }
}

impl std::fmt::Display for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            IssuerKind::IspIssuer => write!(f, "IspIssuer {}/{}", self.namespace, self.name),
            IssuerKind::ClusterIspIssuer => write!(f, "ClusterIspIssuer {}", self.name),
        }
    }
}

/// Who may use an issuer's account, and how.
#[derive(Clone, Debug, Default)]
pub struct Tenancy {
    /// The namespaces whose certificates may use it; `None` for every one.
    pub namespaces: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Whether its certificates may adopt orders they cannot prove their own.
    pub allow_adoption: bool,
}

/// Either kind of issuer, as the certificate reconcile sees it.
#[derive(Clone, Debug)]
pub struct IssuerView {
    pub key: IssuerKey,
    pub uid: String,
    pub generation: Option<i64>,
    pub spec: IssuerSpec,
    pub status: IssuerStatus,
    pub tenancy: Tenancy,
}

impl From<&IspIssuer> for IssuerView {
    fn from(i: &IspIssuer) -> Self {
        IssuerView {
            key: IssuerKey::namespaced(&i.namespace().unwrap_or_default(), &i.name_any()),
            uid: i.uid().unwrap_or_default(),
            generation: i.metadata.generation,
            spec: i.spec.inner.clone(),
            status: i.status.clone().unwrap_or_default(),
            // An IspIssuer serves its own namespace, whose orders its certificates may adopt.
            tenancy: Tenancy { namespaces: None, allow_adoption: true },
        }
    }
}

impl From<&ClusterIspIssuer> for IssuerView {
    fn from(i: &ClusterIspIssuer) -> Self {
        IssuerView {
            key: IssuerKey::cluster(&i.name_any()),
            uid: i.uid().unwrap_or_default(),
            generation: i.metadata.generation,
            spec: i.spec.inner.clone(),
            status: i.status.clone().unwrap_or_default(),
            tenancy: Tenancy {
                namespaces: i.spec.namespace_selector.clone(),
                allow_adoption: i.spec.allow_order_adoption,
            },
        }
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("Secret {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} {problem}")]
    Invalid { namespace: String, name: String, problem: String },
    #[error("the credentials Secret must be in namespace {allowed}, not {asked}: {why}")]
    NamespaceNotAllowed { allowed: String, asked: String, why: &'static str },
    #[error("read Secret {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Reads an issuer's credentials. The namespace is fixed by the caller: the issuer's own for an
/// `IspIssuer`, the operator's for a `ClusterIspIssuer`; a different `namespace` in the spec is
/// refused, never followed.
pub async fn load_credentials(
    client: &kube::Client,
    view: &IssuerView,
    operator_namespace: &str,
) -> Result<(Credentials, String), CredentialsError> {
    let r = &view.spec.credentials_secret_ref;
    let (namespace, why) = match view.key.kind {
        IssuerKind::IspIssuer => (view.key.namespace.clone(), "an IspIssuer reads credentials from its own namespace"),
        IssuerKind::ClusterIspIssuer => {
            (operator_namespace.to_string(), "a ClusterIspIssuer reads credentials only from the operator's namespace")
        }
    };
    if let Some(asked) = r.namespace.as_deref().filter(|n| !n.is_empty() && *n != namespace) {
        return Err(CredentialsError::NamespaceNotAllowed { allowed: namespace, asked: asked.to_string(), why });
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = api
        .get_opt(&r.name)
        .await
        .map_err(|source| CredentialsError::Kube { namespace: namespace.clone(), name: r.name.clone(), source })?
        .ok_or_else(|| CredentialsError::NotFound { namespace: namespace.clone(), name: r.name.clone() })?;
    // Only a trailing line break is dropped (files made with `echo` have one): spaces may be
    // part of a password, as `ispcert account check` treats them.
    let field = |key: &str| -> Result<String, CredentialsError> {
        let bytes = secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone());
        let value = bytes
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .unwrap_or_default();
        if value.is_empty() {
            return Err(CredentialsError::Invalid {
                namespace: namespace.clone(),
                name: r.name.clone(),
                problem: format!("has no non-empty key {key:?}"),
            });
        }
        Ok(value)
    };
    let email = field(r.email_key.as_deref().unwrap_or("email"))?.trim().to_string();
    let password = field(r.password_key.as_deref().unwrap_or("password"))?;
    if !email.contains('@') || email.contains(':') {
        return Err(CredentialsError::Invalid {
            namespace,
            name: r.name.clone(),
            problem: "holds an email that is not an email address".into(),
        });
    }
    Ok((Credentials::new(email, password), secret.resource_version().unwrap_or_default()))
}

/// A ready-to-use billing client for one issuer.
#[derive(Debug)]
pub struct IssuerHandle {
    /// When the billing last accepted these credentials.
    pub checked_at: std::time::Instant,
    pub uid: String,
    pub generation: Option<i64>,
    pub secret_version: String,
    pub client: BillingClient,
    pub account: Arc<Account>,
}

/// Credentials the billing refused.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub secret_version: String,
    pub at: std::time::Instant,
    pub reason: &'static str,
    pub message: String,
}

/// The handles of every issuer that passed its credentials check.
#[derive(Debug, Default)]
pub struct IssuerRegistry {
    handles: Mutex<HashMap<IssuerKey, Arc<IssuerHandle>>>,
    accounts: Mutex<HashMap<(String, String), Arc<Account>>>,
    /// Issuers whose credentials a certificate's call found refused since their last check:
    /// certificates wait for the issuer to check again instead of retrying wrong logins.
    suspects: Mutex<HashSet<IssuerKey>>,
    /// The last refusal of credentials per issuer: the Secret version refused, when, and the
    /// condition it was reported with.
    refusals: Mutex<HashMap<IssuerKey, Refusal>>,
    list_calls: prometheus_client::metrics::counter::Counter,
}

/// The opaque key of a billing account recorded beside an order id (`status.account`): the
/// billing's URL and the login, hashed (the login is no secret, but need not be spread around).
pub fn account_key(endpoint: &str, email: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{endpoint}\n{}", email.to_ascii_lowercase()).as_bytes());
    hex::encode(&digest[..12])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl IssuerRegistry {
    /// The state of a billing account; issuers sharing an account share it.
    pub fn account_for(&self, client: &BillingClient) -> Arc<Account> {
        let key = (client.endpoint().to_string(), client.credentials().email().to_ascii_lowercase());
        let id = account_key(&key.0, &key.1);
        lock(&self.accounts).entry(key).or_insert_with(|| Arc::new(Account::new(self.list_calls.clone(), id))).clone()
    }

    /// A registry whose accounts count their list calls in `list_calls`.
    pub fn new(list_calls: prometheus_client::metrics::counter::Counter) -> Self {
        IssuerRegistry { list_calls, ..Default::default() }
    }

    /// The handle of a verified issuer, if it is still current for this uid and generation.
    pub fn get(&self, view: &IssuerView) -> Option<Arc<IssuerHandle>> {
        if lock(&self.suspects).contains(&view.key) {
            return None;
        }
        lock(&self.handles).get(&view.key).filter(|h| h.uid == view.uid && h.generation == view.generation).cloned()
    }

    pub fn insert(&self, key: IssuerKey, handle: IssuerHandle) -> Arc<IssuerHandle> {
        let handle = Arc::new(handle);
        lock(&self.handles).insert(key.clone(), handle.clone());
        lock(&self.suspects).remove(&key);
        handle
    }

    pub fn remove(&self, key: &IssuerKey) {
        lock(&self.handles).remove(key);
    }

    /// Marks an issuer's credentials as refused; cleared by the next successful check.
    pub fn suspect(&self, key: &IssuerKey) {
        lock(&self.handles).remove(key);
        lock(&self.suspects).insert(key.clone());
    }

    pub fn is_suspect(&self, key: &IssuerKey) -> bool {
        lock(&self.suspects).contains(key)
    }

    pub fn record_refusal(&self, key: &IssuerKey, refusal: Refusal) {
        lock(&self.refusals).insert(key.clone(), refusal);
    }

    /// The refusal of these very credentials less than `window` ago, if any: then the billing is
    /// not asked again until the Secret changes or the window passes.
    pub fn refused_recently(
        &self,
        key: &IssuerKey,
        secret_version: &str,
        window: std::time::Duration,
    ) -> Option<Refusal> {
        lock(&self.refusals).get(key).filter(|r| r.secret_version == secret_version && r.at.elapsed() < window).cloned()
    }

    pub fn clear_refusal(&self, key: &IssuerKey) {
        lock(&self.refusals).remove(key);
    }
}
