//! The issue stage: follow the order by batched polling, download, verify, reissue for free when
//! the certificate does not fit, write the Secret, and schedule the renewal.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::key::{self, Material};
use super::{Flow, Run, Stop, go};
use crate::billing::{BillingError, Reissue};
use crate::controller::conditions;
use crate::controller::context::Error;
use crate::controller::decide::{BillingPhase, ReissueNeed, Verdict, billing_phase, judge, order_state, renewal_time};
use crate::controller::issuers::IssuerView;
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::reasons as r;
use crate::controller::secrets::{
    ANN_SERIAL, LABEL_CERTIFICATE, Provenance, TLS_SECRET_TYPE, key_secret_name, managed_for, tls_secret, up_to_date,
};
use crate::crd::ReissueState;
use crate::pki::chain::{self, Chain};
use crate::pki::keys;

/// The longest a Ready certificate waits before it is looked at again.
const READY_RECHECK: Duration = Duration::from_secs(24 * 3600);

fn until(t: Timestamp) -> Duration {
    crate::time::remaining_until(t).min(READY_RECHECK).max(Duration::from_secs(1))
}

fn secret_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// A Ready certificate whose Secret is exactly what we last wrote or checked needs no API call.
pub fn fast_path(run: &Run<'_>) -> Option<Stop> {
    let s = &run.status;
    let renewal = s.renewal_time.as_ref()?.0;
    let serial = s.serial_number.as_deref()?;
    let settled = conditions::is_true(&s.conditions, r::READY)
        && s.observed_generation == run.cert.metadata.generation
        && s.order_id.is_some()
        && s.reissue.is_none()
        && s.order_attempt.is_none()
        && run.now < renewal;
    if !settled {
        return None;
    }
    // The spec is the one the certificate was issued for (same generation), so its Secret name
    // is the Secret's; the issuer is not even looked at.
    let secret_name = &run.cert.spec.secret_name;
    let meta = run.ctx.secrets.get(&ObjectRef::new(secret_name).within(&run.ns))?;
    let labelled = meta.labels().get(LABEL_CERTIFICATE).is_some_and(|l| *l == run.name);
    let same_serial = meta.annotations().get(ANN_SERIAL).is_some_and(|a| a == serial);
    let known_version = run.ctx.shared.verified_version(&secret_key(&run.ns, secret_name)) == meta.resource_version();
    (labelled && same_serial && known_version).then(|| {
        let c = conditions::get(&s.conditions, r::READY).map(|c| c.message.clone()).unwrap_or_default();
        Stop::ready(c, Some(until(renewal)))
    })
}

/// The chain stored in a Secret, if it parses.
fn chain_in(secret: &Secret) -> Option<Chain> {
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
    let existing = api.get_opt(&plan.secret_name).await?;
    if let Some(s) = &existing
        && !managed_for(s, &run.name)
    {
        if let Some(other) = run.ctx.claimed_by_other(s, &run.ns, &run.name) {
            return Ok(Flow::Stop(Stop::blocked(
                r::SECRET_IN_USE,
                format!("Secret {} is written by IspCertificate {other}; choose another secretName", plan.secret_name),
                None,
            )));
        }
        if !s.labels().contains_key(LABEL_CERTIFICATE) {
            return Ok(Flow::Stop(Stop::blocked(
                r::SECRET_NOT_MANAGED,
                format!(
                    "Secret {} exists and was not written by ispcert; delete it, choose another secretName, or, if it is a kubernetes.io/tls Secret, hand it over with `kubectl label secret {} {LABEL_CERTIFICATE}={}`",
                    plan.secret_name, plan.secret_name, run.name
                ),
                // An unlabelled Secret is not watched: look again now and then.
                Some(Duration::from_secs(60)),
            )));
        }
    }
    // A Secret's type cannot change: one of another type could never receive the certificate,
    // so it is refused before anything is bought.
    if let Some(s) = &existing
        && s.type_.as_deref() != Some(TLS_SECRET_TYPE)
    {
        return Ok(Flow::Stop(Stop::blocked(
            r::SECRET_WRONG_TYPE,
            format!(
                "Secret {} has type {}, not {TLS_SECRET_TYPE}, and a Secret's type cannot change; delete it (ispcert writes it anew) or choose another secretName",
                plan.secret_name,
                s.type_.as_deref().unwrap_or("Opaque")
            ),
            Some(Duration::from_secs(60)),
        )));
    }
    Ok(Flow::Go(existing))
}

pub async fn converge(
    run: &mut Run<'_>,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    order_id: &str,
    existing: Option<Secret>,
) -> Result<Flow<()>, Error> {
    // The Secret may hold a good certificate already: then nothing is asked of the billing.
    if run.status.reissue.is_none()
        && let Some(s) = existing.as_ref().filter(|s| managed_for(s, &run.name))
        && let Some(stored) = chain_in(s)
    {
        let info = stored.leaf_info();
        if judge(plan, &info, &material.bits, None, run.now) == Verdict::Accept {
            if run.now >= renewal_time(&info) {
                return reissue(run, plan, issuer, material, order_id, ReissueNeed::Renewal, &info.serial).await;
            }
            return store(run, plan, issuer, order_id, stored, material, existing.as_ref()).await;
        }
    }

    let handle = go!(run.handle(issuer).await);
    let settings = run.ctx.shared.settings.clone();
    let wait = settings.poll_interval.max(Duration::from_millis(200));
    // A new order or a reissue is followed through the account's list (one call for every
    // pending certificate); a known certificate whose Secret was lost is downloaded directly.
    if run.status.serial_number.is_none() || run.status.reissue.is_some() {
        let snapshot = match handle.poller.snapshot(&handle.client, settings.poll_interval).await {
            Ok(s) => s,
            Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "polling the billing"))),
        };
        let row = snapshot.row(order_id);
        if let Some(row) = row {
            run.status.order_state = Some(order_state(row));
        }
        match billing_phase(row) {
            BillingPhase::Active => {}
            BillingPhase::Pending(what) => {
                return Ok(Flow::Stop(Stop::pending(
                    r::PENDING,
                    format!("order {order_id} is {what} at the billing"),
                    wait,
                )));
            }
            // The billing may list a new order a moment after answering it.
            BillingPhase::Gone
                if run
                    .status
                    .ordered_at
                    .as_ref()
                    .is_some_and(|t| crate::time::elapsed_since(t.0) < settings.order_grace) =>
            {
                return Ok(Flow::Stop(Stop::pending(
                    r::PENDING,
                    format!("order {order_id} is not listed by the billing yet"),
                    wait,
                )));
            }
            BillingPhase::Gone => {
                run.status.order_state = Some("deleted".into());
                return Ok(Flow::Stop(Stop::blocked(
                    r::ORDER_NOT_FOUND,
                    format!(
                        "order {order_id} is no longer among the account's certificates (deleted at the billing?). Nothing is ordered again automatically: delete and re-create this IspCertificate to buy a new one"
                    ),
                    Some(Duration::from_secs(600)),
                )));
            }
            BillingPhase::Failed => {
                return Ok(Flow::Stop(Stop::blocked(
                    r::ORDER_FAILED,
                    format!(
                        "the CA refused to issue order {order_id}; check the approver mailboxes and the order in the billing panel"
                    ),
                    Some(Duration::from_secs(600)),
                )));
            }
            BillingPhase::Suspended => {
                return Ok(Flow::Stop(Stop::blocked(
                    r::ORDER_SUSPENDED,
                    format!(
                        "order {order_id} is suspended at the billing; renew or reactivate it in the billing panel"
                    ),
                    Some(Duration::from_secs(600)),
                )));
            }
        }
    }

    let downloaded = match handle.client.download(order_id).await {
        Ok(c) => c,
        Err(BillingError::NotIssuedYet) => {
            return Ok(Flow::Stop(Stop::pending(
                r::PENDING,
                format!("order {order_id}: the CA has not issued the certificate yet"),
                wait,
            )));
        }
        Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "downloading the certificate"))),
    };
    let info = downloaded.leaf_info();
    let previous = run.status.reissue.as_ref().and_then(|r| r.previous_serial.clone());
    match judge(plan, &info, &material.bits, previous.as_deref(), run.now) {
        Verdict::Accept => store(run, plan, issuer, order_id, downloaded, material, existing.as_ref()).await,
        Verdict::StillPrevious => {
            // The Secret was lost while the reissue waits for approval (which can take days):
            // serve the certificate being replaced meanwhile, with the key it was issued for.
            if existing.is_none()
                && let Some(key) = [Some(&material.key), material.previous.as_ref()]
                    .into_iter()
                    .flatten()
                    .find(|k| keys::public_key_bits(k).is_ok_and(|b| b == info.public_key_bits))
            {
                let from = Provenance {
                    certificate: &run.name,
                    issuer_kind: issuer.key.kind_str(),
                    issuer_name: &issuer.key.name,
                    order_id,
                };
                let desired = tls_secret(plan, &from, &run.ns, &downloaded, key);
                apply_secret(run, &desired).await?;
                run.event(
                    EventType::Normal,
                    r::SECRET_RESTORED,
                    format!("Secret {} was missing; restored the certificate being reissued", plan.secret_name),
                );
            }
            Ok(Flow::Stop(Stop::pending(
                r::REISSUING,
                format!("order {order_id}: waiting for the reissued certificate"),
                wait,
            )))
        }
        Verdict::Reissue(need) => reissue(run, plan, issuer, material, order_id, need, &info.serial).await,
        Verdict::Reject(why) => Ok(Flow::Stop(Stop::blocked(r::CERTIFICATE_MISMATCH, why, None))),
    }
}

async fn reissue(
    run: &mut Run<'_>,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    order_id: &str,
    need: ReissueNeed,
    current_serial: &str,
) -> Result<Flow<()>, Error> {
    if need == ReissueNeed::Names && plan.alt_names.is_empty() {
        // The `altname` reissue needs at least one additional domain.
        return Ok(Flow::Stop(Stop::blocked(
            r::CERTIFICATE_MISMATCH,
            format!(
                "order {order_id} has additional domains that the spec no longer lists; a reissue cannot remove all of them: keep at least one in altNames, or create a new IspCertificate for {} alone",
                plan.common_name
            ),
            None,
        )));
    }
    let handle = go!(run.handle(issuer).await);
    let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_millis(200));
    let form = match (need, &plan.key) {
        (ReissueNeed::Names, _) => Reissue::AltNames { alt_names: plan.alt_names.clone() },
        (ReissueNeed::Key, _) => Reissue::Manual { csr: material.csr.clone() },
        (ReissueNeed::Renewal, KeyPlan::Cluster { rotate_on_reissue: true, .. }) => {
            let fresh = go!(key::rotate(run, plan, issuer).await?);
            Reissue::Manual { csr: fresh.csr }
        }
        (ReissueNeed::Renewal, KeyPlan::Billing) => Reissue::OldRequest,
        (ReissueNeed::Renewal, _) => Reissue::Manual { csr: material.csr.clone() },
    };
    if let Err(e) = handle.client.reissue(order_id, &form, &plan.approvers).await {
        let what = format!("requesting a free reissue ({}) of order {order_id}", need.reason());
        return Ok(Flow::Stop(match e {
            BillingError::InvalidField { .. } | BillingError::MissingField { .. } | BillingError::InvalidRequest(_) => {
                Stop::blocked(r::BILLING_ERROR, format!("{what}: {e}"), Some(run.ctx.shared.settings.backoff_max))
            }
            other => run.billing_stop(issuer, other, &what),
        }));
    }
    handle.poller.invalidate();
    run.ctx.shared.metrics.reissues.inc();
    run.status.reissue = Some(ReissueState {
        requested_at: Time(Timestamp::now()),
        reason: need.reason().to_string(),
        previous_serial: Some(current_serial.to_string()),
    });
    run.persist(None).await?;
    run.event(
        EventType::Normal,
        r::REISSUING,
        format!("requested a free reissue of order {order_id} ({}, crt_type={})", need.reason(), form.crt_type()),
    );
    Ok(Flow::Stop(Stop::pending(
        r::REISSUING,
        format!("order {order_id}: free reissue requested ({})", need.reason()),
        wait,
    )))
}

async fn store(
    run: &mut Run<'_>,
    plan: &Plan,
    issuer: &IssuerView,
    order_id: &str,
    chain: Chain,
    material: &Material,
    existing: Option<&Secret>,
) -> Result<Flow<()>, Error> {
    let shared = run.ctx.shared.clone();
    let info = chain.leaf_info();
    let from = Provenance {
        certificate: &run.name,
        issuer_kind: issuer.key.kind_str(),
        issuer_name: &issuer.key.name,
        order_id,
    };
    let desired = tls_secret(plan, &from, &run.ns, &chain, &material.key);
    let version = match existing.filter(|e| up_to_date(e, &desired)) {
        Some(e) => e.resource_version(),
        None => {
            let written = apply_secret(run, &desired).await?;
            let (reason, note) = match (existing, &run.status.serial_number) {
                (None, Some(_)) => (
                    r::SECRET_RESTORED,
                    format!(
                        "Secret {} was missing; restored it from the billing without a new order",
                        plan.secret_name
                    ),
                ),
                (Some(_), Some(old)) if *old == info.serial => {
                    (r::SECRET_WRITTEN, format!("Secret {} updated", plan.secret_name))
                }
                _ => (
                    r::ISSUED,
                    format!(
                        "certificate {} for {} stored in Secret {}, valid until {}",
                        info.serial,
                        info.names().join(", "),
                        plan.secret_name,
                        info.not_after.strftime("%Y-%m-%d %H:%M UTC")
                    ),
                ),
            };
            run.event(EventType::Normal, reason, note);
            written.resource_version()
        }
    };
    if let Some(v) = version {
        shared.remember_version(&secret_key(&run.ns, &plan.secret_name), v);
    }
    key::forget_previous(run, material).await?;
    let renew_at = renewal_time(&info);
    let s = &mut run.status;
    s.not_before = Some(Time(info.not_before));
    s.not_after = Some(Time(info.not_after));
    s.serial_number = Some(info.serial.clone());
    s.dns_names = info.names();
    s.renewal_time = Some(Time(renew_at));
    s.reissue = None;
    if s.order_state.as_deref().is_none_or(|st| !st.starts_with("active")) {
        s.order_state = Some("active/issued".into());
    }
    // An empty message: `finish` words it from the status just set.
    Ok(Flow::Stop(Stop::ready("", Some(until(renew_at)))))
}

/// Writes the output Secret by server-side apply, as the operator's field manager.
async fn apply_secret(run: &Run<'_>, desired: &Secret) -> Result<Secret, Error> {
    let shared = &run.ctx.shared;
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &run.ns);
    let params = PatchParams::apply(&shared.settings.manager).force();
    let mut body = serde_json::to_value(desired).map_err(|e| Error::Internal(e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let name = desired.metadata.name.clone().unwrap_or_default();
    Ok(api.patch(&name, &params, &Patch::Apply(&body)).await?)
}
