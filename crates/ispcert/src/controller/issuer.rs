//! The issuer reconcile: read the credentials, check them with a real billing call, and say so in
//! the `Ready` condition. Never retries refused credentials until the Secret changes or the
//! refusal window passes: repeated wrong logins can lock a billing account.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{Instrument, info, warn};

use super::conditions;
use super::context::{Error, KubeResult, Shared};
use super::issuers::{CredentialsError, IssuerHandle, IssuerView, Refusal, load_credentials};
use super::reasons as r;
use super::status;
use crate::billing::{BillingClient, BillingError, parse_endpoint};
use crate::crd::{ClusterIspIssuer, IspIssuer};

/// What the reconcile needs from either issuer kind.
pub trait IssuerResource:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    fn view(&self) -> IssuerView;
    fn api(client: kube::Client, namespace: Option<&str>) -> Api<Self>;
}

impl IssuerResource for IspIssuer {
    fn view(&self) -> IssuerView {
        IssuerView::from(self)
    }
    fn api(client: kube::Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client, namespace.unwrap_or("default"))
    }
}

impl IssuerResource for ClusterIspIssuer {
    fn view(&self) -> IssuerView {
        IssuerView::from(self)
    }
    fn api(client: kube::Client, _: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

/// The outcome of one check.
struct Check {
    ready: bool,
    reason: &'static str,
    message: String,
    requeue: Duration,
}

pub async fn reconcile<K: IssuerResource>(obj: Arc<K>, shared: Arc<Shared>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        kind = obj.view().key.kind_str(),
        namespace = %obj.namespace().unwrap_or_default(),
        name = %obj.name_any(),
        generation = obj.meta().generation.unwrap_or_default(),
    );
    reconcile_issuer(obj, shared).instrument(span).await
}

async fn reconcile_issuer<K: IssuerResource>(obj: Arc<K>, shared: Arc<Shared>) -> Result<Action, Error> {
    let view = obj.view();
    let settings = &shared.settings;
    shared.metrics.reconciles.get_or_create(&super::metrics::ControllerLabels { controller: "issuer".into() }).inc();
    let backoff_key = format!("issuer/{}", view.key);

    let check = match check(&view, &shared).await {
        Ok(c) => c,
        Err(e) => {
            let wait = shared.backoff.fail(&backoff_key, settings.backoff_min, settings.backoff_max);
            warn!(error = %e, "issuer check failed");
            Check { ready: false, reason: r::KUBERNETES_ERROR, message: e.to_string(), requeue: wait }
        }
    };
    if check.ready {
        shared.backoff.reset(&backoff_key);
    } else {
        shared.metrics.error("issuer", check.reason);
    }
    let (kind, namespace) = (view.key.kind_str(), view.key.namespace.as_str());
    shared.metrics.set_issuer_ready(kind, namespace, &view.key.name, if check.ready { "True" } else { "False" });

    let mut new = view.status.clone();
    let was = conditions::get(&new.conditions, r::READY).map(|c| (c.status.clone(), c.reason.clone()));
    let now = Timestamp::now();
    conditions::set(&mut new.conditions, r::READY, check.ready, check.reason, &check.message, view.generation, now);
    // A refusal waits for a person (a fixed Secret, URL or account); an unreachable billing heals.
    let transient = [r::BILLING_UNREACHABLE, r::BILLING_ERROR, r::KUBERNETES_ERROR].contains(&check.reason);
    let stalled = !check.ready && !transient;
    let stalled_message = if stalled { check.message.as_str() } else { "" };
    conditions::set(&mut new.conditions, r::STALLED, stalled, check.reason, stalled_message, view.generation, now);
    new.observed_generation = view.generation;
    let changed = was.as_ref().map(|(s, reason)| (s.as_str(), reason.as_str()))
        != Some((if check.ready { "True" } else { "False" }, check.reason));
    if changed {
        new.last_check_time = Some(Time(now));
        let kind = if check.ready { EventType::Normal } else { EventType::Warning };
        shared.event(obj.as_ref(), kind, check.reason, "CheckCredentials", check.message.clone()).await;
        info!(ready = check.ready, reason = check.reason, "issuer checked");
    }
    let api = K::api(shared.client.clone(), obj.namespace().as_deref());
    status::write(&api, &obj.name_any(), &view.status, &new, None)
        .await
        .doing(|| format!("patch status of {}", view.key))?;
    Ok(Action::requeue(check.requeue))
}

async fn check(view: &IssuerView, shared: &Shared) -> Result<Check, Error> {
    let settings = &shared.settings;
    // While not Ready the Secret is read again soon (a cheap GET), so fixing it heals quickly;
    // the billing itself is asked only when the Secret changed or the refusal window passed.
    let retry = Duration::from_secs(10).min(settings.issuer_recheck);
    let not_ready = |reason, message: String| Check { ready: false, reason, message, requeue: retry };

    if let Err(e) = parse_endpoint(&view.spec.url) {
        shared.issuers.remove(&view.key);
        return Ok(Check { requeue: settings.issuer_recheck, ..not_ready(r::INVALID_URL, e) });
    }
    let (credentials, secret_version) = match load_credentials(&shared.client, view, &settings.operator_namespace).await
    {
        Ok(c) => c,
        Err(e) => {
            shared.issuers.remove(&view.key);
            let reason = match &e {
                CredentialsError::NotFound { .. } => r::CREDENTIALS_NOT_FOUND,
                CredentialsError::Invalid { .. } => r::CREDENTIALS_INVALID,
                CredentialsError::NamespaceNotAllowed { .. } => r::CREDENTIALS_NAMESPACE_NOT_ALLOWED,
                CredentialsError::Kube { .. } => r::KUBERNETES_ERROR,
            };
            return Ok(not_ready(reason, e.to_string()));
        }
    };

    if let Some(check) = still_verified(view, shared, &secret_version) {
        return Ok(check);
    }
    if let Some(refusal) = shared.issuers.refused_recently(&view.key, &secret_version, settings.wrong_credentials_retry)
    {
        return Ok(not_ready(refusal.reason, refusal.message));
    }
    let client = BillingClient::new(shared.http.clone(), &view.spec.url, credentials)
        .map_err(|e| Error::Internal(e.to_string()))?
        .observed_by(shared.metrics.billing_observer());
    Ok(verify(view, shared, client, secret_version, retry).await)
}

/// The last check still holds: same Secret, Ready, and checked less than the recheck interval ago.
fn still_verified(view: &IssuerView, shared: &Shared, secret_version: &str) -> Option<Check> {
    let recheck = shared.settings.issuer_recheck;
    let h = shared.issuers.get(view)?;
    let fresh = h.secret_version == secret_version
        && conditions::is_true(&view.status.conditions, r::READY)
        && h.checked_at.elapsed() < recheck;
    fresh.then(|| Check {
        ready: true,
        reason: r::CREDENTIALS_VERIFIED,
        message: ready_message(&h.client),
        // Saturating: the clock moved on since the comparison above.
        requeue: recheck.saturating_sub(h.checked_at.elapsed()),
    })
}

/// Asks the billing whether it takes these credentials; registers the client when it does and
/// remembers a refusal when it does not.
async fn verify(
    view: &IssuerView,
    shared: &Shared,
    client: BillingClient,
    secret_version: String,
    retry: Duration,
) -> Check {
    let settings = &shared.settings;
    let e = match client.verify_access().await {
        Ok(()) => {
            shared.issuers.clear_refusal(&view.key);
            let account = shared.issuers.account_for(&client);
            let message = ready_message(&client);
            let handle = IssuerHandle {
                checked_at: std::time::Instant::now(),
                uid: view.uid.clone(),
                generation: view.generation,
                secret_version,
                client,
                account,
            };
            shared.issuers.insert(view.key.clone(), handle);
            return Check { ready: true, reason: r::CREDENTIALS_VERIFIED, message, requeue: settings.issuer_recheck };
        }
        Err(e) => e,
    };
    shared.issuers.remove(&view.key);
    let (reason, message) = refused(view, &client.credentials().redacted_email(), &e);
    if matches!(e, BillingError::Auth | BillingError::Access { .. }) {
        let at = std::time::Instant::now();
        shared.issuers.record_refusal(&view.key, Refusal { secret_version, at, reason, message: message.clone() });
    }
    let requeue = match &e {
        BillingError::Transport { .. } => {
            shared.backoff.fail(&format!("issuer/{}", view.key), settings.backoff_min, settings.backoff_max)
        }
        _ => retry,
    };
    Check { ready: false, reason, message, requeue }
}

/// The reason and message of a failed credentials check. Pure.
fn refused(view: &IssuerView, account: &str, e: &BillingError) -> (&'static str, String) {
    match e {
        BillingError::Auth => (
            r::WRONG_CREDENTIALS,
            format!(
                "the billing refused the login {account}: fix the email or password in Secret {}; checked again when the Secret changes",
                view.spec.credentials_secret_ref.name
            ),
        ),
        BillingError::Access { .. } => (r::ACCESS_DENIED, e.to_string()),
        BillingError::Transport { .. } => (r::BILLING_UNREACHABLE, format!("{} at {}", e, view.spec.url)),
        _ => (r::BILLING_ERROR, e.to_string()),
    }
}

fn ready_message(client: &BillingClient) -> String {
    format!("credentials for {} accepted by {}", client.credentials().redacted_email(), client.endpoint())
}

/// Requeue after errors the reconcile did not handle itself.
pub fn error_policy<K: IssuerResource>(_obj: Arc<K>, error: &Error, shared: Arc<Shared>) -> Action {
    warn!(error = %error, "issuer reconcile failed");
    Action::requeue(shared.settings.backoff_max)
}
