//! The output Secret: whose it is (settled before anything is bought), what it holds, and writing
//! it. A Ready certificate whose Secret is exactly what we last wrote needs no API call at all.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::flow::{Flow, SECRET_IN_USE_RECHECK, Stop};
use super::run::Run;
use super::serving::expected_end;
use crate::controller::conditions;
use crate::controller::context::{Error, KubeResult, secret_key};
use crate::controller::plan::Plan;
use crate::controller::reasons as r;
use crate::controller::renewal::{Subscription, subscription};
use crate::controller::secrets::{LABEL_CERTIFICATE, TLS_SECRET_TYPE, key_secret_name, managed_for};
use crate::crd::CertificateStatus;
use crate::pki::chain::{self, Chain};

/// The longest a Ready certificate waits before it is looked at again.
const READY_RECHECK: Duration = Duration::from_secs(24 * 3600);

/// How long until `t`, between a second and a day.
pub fn until(t: Timestamp) -> Duration {
    crate::time::remaining_until(t).min(READY_RECHECK).max(Duration::from_secs(1))
}

/// A Ready certificate whose Secret is exactly what we last wrote or checked needs no API call.
pub fn fast_path(run: &Run<'_>, s: &CertificateStatus) -> Option<Stop> {
    let renewal = s.renewal_time.as_ref()?.0;
    let serial = s.serial_number.as_deref()?;
    let settled = conditions::is_true(&s.conditions, r::READY)
        && s.observed_generation == run.cert.metadata.generation
        && s.order_id.is_some()
        && s.reissue.is_none()
        && s.order_attempt.is_none()
        && s.prolong.is_none()
        && s.replaced_order.is_none()
        && run.now < renewal
        && super::serving::renew_request(run, s).is_none()
        && subscription_running(run, s);
    if !settled {
        return None;
    }
    // The spec is the one the certificate was issued for (same generation), so its Secret name
    // is the Secret's; the issuer is not even looked at.
    let secret_name = &run.cert.spec.secret_name;
    let seen = run.ctx.secrets.get(&run.ns, secret_name)?;
    let labelled = seen.owner() == run.name;
    let same_serial = seen.serial() == Some(serial);
    let verified = run.ctx.shared.verified_version(&secret_key(&run.ns, secret_name));
    let known_version = verified.is_some() && verified.as_deref() == seen.resource_version();
    (labelled && same_serial && known_version).then(|| {
        let c = conditions::get(&s.conditions, r::READY).map(|c| c.message.clone()).unwrap_or_default();
        Stop::ready(c, Some(until(renewal)))
    })
}

/// Whether the subscription is far from its end, known or expected (near it, its end is read
/// again and, under `Automatic`, prolonged).
fn subscription_running(run: &Run<'_>, s: &CertificateStatus) -> bool {
    let warning = jiff::SignedDuration::try_from(run.ctx.shared.settings.subscription_warning).unwrap_or_default();
    let end = s.subscription_end.as_ref().map(|t| t.0).or_else(|| expected_end(s, run.cert.spec.period));
    subscription(end, warning, run.now) == Subscription::Running
}

/// The chain stored in a Secret, if it parses.
pub fn chain_in(secret: &Secret) -> Option<Chain> {
    let data = secret.data.as_ref()?;
    let mut ders = chain::certificates_in_pem(&data.get("tls.crt")?.0);
    if let Some(ca) = data.get("ca.crt") {
        ders.extend(chain::certificates_in_pem(&ca.0));
    }
    chain::order(ders).ok()
}

/// Reads the output Secret and checks that this certificate may write it, before anything is
/// bought: another certificate's Secret, or one ispcert did not write, is never taken.
pub async fn output_secret(run: &Run<'_>, plan: &Plan) -> Result<Flow<Option<Secret>>, Error> {
    if plan.secret_name == key_secret_name(&run.name) {
        return Ok(Flow::Stop(Stop::blocked(
            r::INVALID_SPEC,
            format!(
                "secretName {} is the Secret where this certificate keeps its private key; choose another secretName",
                plan.secret_name
            ),
            None,
        )));
    }
    let api: Api<Secret> = Api::namespaced(run.ctx.shared.client.clone(), &run.ns);
    let existing =
        api.get_opt(&plan.secret_name).await.doing(|| format!("read Secret {}/{}", run.ns, plan.secret_name))?;
    Ok(match existing.as_ref().and_then(|s| refusal(run, plan, s)) {
        Some(stop) => Flow::Stop(stop),
        None => Flow::Go(existing),
    })
}

/// Why an existing Secret cannot be this certificate's output, if it cannot.
fn refusal(run: &Run<'_>, plan: &Plan, s: &Secret) -> Option<Stop> {
    let name = &plan.secret_name;
    if !managed_for(s, &run.name) {
        if let Some(other) = run.ctx.claimed_by_other(s, &run.ns, &run.name) {
            return Some(Stop::blocked(
                r::SECRET_IN_USE,
                format!("Secret {name} is written by IspCertificate {other}; choose another secretName"),
                // Looked at again now and then: when the other certificate goes, this one takes
                // the Secret over without anyone editing it.
                Some(SECRET_IN_USE_RECHECK),
            ));
        }
        if !s.labels().contains_key(LABEL_CERTIFICATE) {
            return Some(Stop::blocked(
                r::SECRET_NOT_MANAGED,
                format!(
                    "Secret {name} exists and was not written by ispcert; delete it, choose another secretName, or, if it is a kubernetes.io/tls Secret, hand it over with `kubectl label secret {name} {LABEL_CERTIFICATE}={}`",
                    run.name
                ),
                // An unlabelled Secret is not watched: look again now and then.
                Some(Duration::from_secs(60)),
            ));
        }
    }
    // A Secret's type cannot change: one of another type could never receive the certificate,
    // so it is refused before anything is bought.
    (s.type_.as_deref() != Some(TLS_SECRET_TYPE)).then(|| {
        Stop::blocked(
            r::SECRET_WRONG_TYPE,
            format!(
                "Secret {name} has type {}, not {TLS_SECRET_TYPE}, and a Secret's type cannot change; delete it (ispcert writes it anew) or choose another secretName",
                s.type_.as_deref().unwrap_or("Opaque")
            ),
            Some(Duration::from_secs(60)),
        )
    })
}

/// Writes the output Secret by server-side apply, as the operator's field manager.
pub async fn apply_secret(run: &Run<'_>, desired: &Secret) -> Result<Secret, Error> {
    let shared = &run.ctx.shared;
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &run.ns);
    let params = PatchParams::apply(&shared.settings.manager).force();
    let mut body = serde_json::to_value(desired).map_err(|e| Error::Internal(e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let name = desired.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &params, &Patch::Apply(&body)).await.doing(|| format!("apply Secret {}/{name}", run.ns))
}
