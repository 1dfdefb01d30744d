//! Deletion. `Retain` (default): nothing happens at the billing and the Secret stays, so deleting
//! a manifest never takes a site down; no finalizer is ever added. `Delete`: the finalizer
//! `ispcert.dev/cleanup` holds the resource until the certificate is deleted at the billing, then
//! the Secrets go too. When the billing cannot be reached the resource says why, and the
//! annotation `ispcert.dev/skip-billing-cleanup: "true"` lets the deletion finish without it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::info;

use super::{FINALIZER, SKIP_CLEANUP_ANNOTATION};
use crate::billing::BillingError;
use crate::controller::conditions;
use crate::controller::context::{Context, Error, KubeResult};
use crate::controller::decide::{Recovery, find_order};
use crate::controller::plan::plan;
use crate::controller::reasons as r;
use crate::controller::secrets::{key_secret_name, managed_for};
use crate::controller::status;
use crate::crd::{DeletionPolicy, IspCertificate};

/// `IspCertificate ns/name`, for errors that name what failed.
fn describe(cert: &IspCertificate) -> String {
    format!("IspCertificate {}/{}", cert.namespace().unwrap_or_default(), cert.name_any())
}

fn has_finalizer(cert: &IspCertificate) -> bool {
    cert.finalizers().iter().any(|f| f == FINALIZER)
}

async fn set_finalizer(cert: &IspCertificate, ctx: &Context, present: bool) -> Result<bool, Error> {
    let api: Api<IspCertificate> = Api::namespaced(ctx.shared.client.clone(), &cert.namespace().unwrap_or_default());
    let mut list: Vec<String> = cert.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if present {
        list.push(FINALIZER.to_string());
    }
    // The resourceVersion makes this a compare-and-swap: other finalizers are never lost.
    let patch = serde_json::json!({"metadata": {"finalizers": list, "resourceVersion": cert.resource_version()}});
    match api.patch(&cert.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
        Err(e) => Err(Error::kube(format!("patch finalizers of {}", describe(cert)), e)),
    }
}

/// Adds the finalizer for `deletionPolicy: Delete` and removes it for `Retain`. Returns an action
/// when the patch lost a race and the reconcile should start again.
pub async fn align_finalizer(cert: &IspCertificate, ctx: &Context) -> Result<Option<Action>, Error> {
    let want = cert.spec.deletion_policy == DeletionPolicy::Delete;
    if want == has_finalizer(cert) {
        return Ok(None);
    }
    Ok(if set_finalizer(cert, ctx, want).await? { None } else { Some(Action::requeue(Duration::from_millis(200))) })
}

async fn blocked(cert: &IspCertificate, ctx: &Context, message: String) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let old = cert.status.clone().unwrap_or_default();
    let mut new = old.clone();
    let was = conditions::get(&old.conditions, r::READY).map(|c| c.reason.clone());
    conditions::set(
        &mut new.conditions,
        r::READY,
        false,
        r::DELETION_BLOCKED,
        &message,
        cert.metadata.generation,
        Timestamp::now(),
    );
    // Deletion bumps the generation; the status speaks of this one.
    new.observed_generation = cert.metadata.generation;
    let api: Api<IspCertificate> = Api::namespaced(shared.client.clone(), &cert.namespace().unwrap_or_default());
    status::write(&api, &cert.name_any(), &old, &new, None)
        .await
        .doing(|| format!("patch status of {}", describe(cert)))?;
    if was.as_deref() != Some(r::DELETION_BLOCKED) {
        shared.event(cert, EventType::Warning, r::DELETION_BLOCKED, "Delete", message).await;
    }
    let key = format!("certificate/{}", cert.uid().unwrap_or_default());
    Ok(Action::requeue(shared.backoff.fail(&key, shared.settings.backoff_min, shared.settings.backoff_max)))
}

/// The deletion of a resource: with the finalizer, its order is deleted at the billing (after
/// finding the order of an interrupted attempt), then its Secrets; then the finalizer goes.
pub async fn on_delete(cert: &IspCertificate, ctx: &Context) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let ns = cert.namespace().unwrap_or_default();
    let name = cert.name_any();
    if !has_finalizer(cert) {
        return Ok(Action::await_change());
    }
    // The cache may not show an order id written a moment ago: decide on a fresh read.
    let api: Api<IspCertificate> = Api::namespaced(shared.client.clone(), &ns);
    let Some(fresh) = api.get_opt(&name).await.doing(|| format!("read {}", describe(cert)))? else {
        return Ok(Action::await_change());
    };
    let cert = &fresh;
    let skip = cert.annotations().get(SKIP_CLEANUP_ANNOTATION).is_some_and(|v| v == "true");
    if !skip && let Err(why) = billing_cleanup(cert, ctx).await {
        let way_out = format!(
            "to finish without deleting at the billing: kubectl annotate ispcert {name} -n {ns} {SKIP_CLEANUP_ANNOTATION}=true"
        );
        if !ctx.namespace_terminating(&ns) {
            return blocked(cert, ctx, format!("{why} {way_out}")).await;
        }
        // The namespace's deletion takes the issuer and its credentials too: wait a bounded
        // time for them, then keep the order at the billing rather than hold the namespace.
        let wait = shared.settings.namespace_cleanup_wait;
        // The reasons end in "…, or" to lead into the way out; here they stand alone.
        let why = why.trim_end_matches(" or").trim_end_matches(',').trim_end_matches(';');
        let since = cert.metadata.deletion_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
        if crate::time::elapsed_since(since) < wait {
            let note = format!(
                "{why}. The namespace is being deleted: after {} the order is kept at the billing and the namespace goes",
                humantime::format_duration(wait)
            );
            return blocked(cert, ctx, note).await;
        }
        let order = cert.status.as_ref().and_then(|s| s.order_id.clone()).unwrap_or_else(|| "(none recorded)".into());
        let note = format!(
            "namespace {ns} is being deleted and its issuer could not delete order {order} at the billing ({why}; gave up after {}); the order is kept there: delete it in the billing panel if it is not wanted",
            humantime::format_duration(wait)
        );
        shared.event(cert, EventType::Warning, r::DELETION_BLOCKED, "Delete", note).await;
    }
    delete_secrets(cert, ctx).await?;
    set_finalizer(cert, ctx, false).await?;
    shared.backoff.reset(&format!("certificate/{}", cert.uid().unwrap_or_default()));
    Ok(Action::await_change())
}

/// Deletes this resource's order at the billing, or says why it cannot (yet).
async fn billing_cleanup(cert: &IspCertificate, ctx: &Context) -> Result<(), String> {
    // An order being replaced (the billing would not prolong it) goes with the resource too.
    if let Some(old) = cert.status.as_ref().and_then(|s| s.replaced_order.as_deref()) {
        delete_at_billing(cert, ctx, old).await?;
    }
    match order_to_delete(cert, ctx).await? {
        Some(id) => delete_at_billing(cert, ctx, &id).await,
        None => Ok(()),
    }
}

/// The order this resource owns at the billing, or why that cannot be told yet. Only the order it
/// recorded as its own: a `spec.orderId` whose adoption never went through may be another
/// certificate's, or a mistyped id of someone's paid order. An order attempt whose answer was lost
/// may have placed an order: it is found by its tag before the resource goes, or it would be left
/// paid and unclaimed.
async fn order_to_delete(cert: &IspCertificate, ctx: &Context) -> Result<Option<String>, String> {
    let status = cert.status.clone().unwrap_or_default();
    let Some(attempt) = status.order_attempt.filter(|_| status.order_id.is_none()) else {
        return Ok(status.order_id);
    };
    let what = "cannot look for the order of an interrupted attempt";
    let ns = cert.namespace().unwrap_or_default();
    let issuer = ctx
        .issuer(&ns, &cert.spec.issuer_ref)
        .ok_or_else(|| format!("{what}: the issuer does not exist; restore it, or"))?;
    let handle =
        ctx.shared.issuers.get(&issuer).ok_or_else(|| format!("{what}: the issuer is not ready; fix it, or"))?;
    let snapshot = handle
        .account
        .snapshot(&handle.client, ctx.shared.settings.poll_interval)
        .await
        .map_err(|e| format!("{what}: {e}; retrying, or"))?;
    let rows = handle.account.rows(&snapshot);
    let claimed = ctx.claimed_orders(&cert.uid().unwrap_or_default(), handle.account.key());
    // The same search as the order stage's: the tag, or the one order of the name and product
    // since the attempt that nobody claims when the billing shows no tags.
    let found = match plan(&cert.spec, &issuer.spec) {
        Ok(plan) => {
            let started = crate::time::utc_date(attempt.started_at.0);
            let since = started.checked_sub(jiff::Span::new().days(1)).unwrap_or(started);
            find_order(&rows, &attempt.remote_id, &plan, since, &claimed, issuer.tenancy.allow_adoption)
        }
        Err(_) => {
            match rows.iter().find(|r| !r.id.is_empty() && r.remote_id.as_deref() == Some(attempt.remote_id.as_str())) {
                Some(r) => Recovery::Found(r.id.clone()),
                None => Recovery::NotFound,
            }
        }
    };
    match found {
        Recovery::Found(id) => Ok(Some(id)),
        Recovery::Ambiguous(ids) => Err(format!(
            "an order attempt's answer was lost and orders {} all fit it; delete the right one in the billing panel, then",
            ids.join(", ")
        )),
        Recovery::NotFound if crate::time::elapsed_since(attempt.started_at.0) < ctx.shared.settings.order_grace => {
            Err("an order attempt's answer was lost; looking for that order before deleting; or".into())
        }
        Recovery::NotFound => Ok(None),
    }
}

/// Deletes order `id` at the billing (one already gone counts as deleted), or says why not.
async fn delete_at_billing(cert: &IspCertificate, ctx: &Context, id: &str) -> Result<(), String> {
    let shared = &ctx.shared;
    let Some(issuer) = ctx.issuer(&cert.namespace().unwrap_or_default(), &cert.spec.issuer_ref) else {
        return Err(format!(
            "cannot delete order {id} at the billing: issuer {} does not exist; restore it, or",
            cert.spec.issuer_ref.name
        ));
    };
    let Some(handle) = shared.issuers.get(&issuer) else {
        return Err(format!("cannot delete order {id} at the billing: {} is not ready; fix it, or", issuer.key));
    };
    match handle.client.delete(id).await {
        Ok(()) | Err(BillingError::NotFound { .. }) => {
            info!(order = %id, "deleted at the billing");
            let note = format!("deleted certificate {id} at the billing");
            shared.event(cert, EventType::Normal, r::DELETED_AT_BILLING, "Delete", note).await;
            handle.account.invalidate();
            Ok(())
        }
        Err(e) => Err(format!("deleting order {id} at the billing failed: {e}; retrying, or")),
    }
}

/// Deletes the output Secret and the key Secret, each only if it is this resource's.
async fn delete_secrets(cert: &IspCertificate, ctx: &Context) -> Result<(), Error> {
    let shared = &ctx.shared;
    let (ns, name) = (cert.namespace().unwrap_or_default(), cert.name_any());
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    for secret_name in [cert.spec.secret_name.clone(), key_secret_name(&name)] {
        let doing = |verb: &str| format!("{verb} Secret {ns}/{secret_name}");
        if let Some(s) = secrets.get_opt(&secret_name).await.doing(|| doing("read"))?
            && managed_for(&s, &name)
        {
            match secrets.delete(&secret_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::kube(doing("delete"), e)),
            }
        }
        shared.forget_version(&format!("{ns}/{secret_name}"));
    }
    Ok(())
}
