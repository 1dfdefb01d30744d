//! The certificate reconcile: validate, make and store the key, order once, follow the billing by
//! batched polling, download, verify, write the Secret, and schedule the free reissue.
//!
//! Every reconcile reads, decides, then acts. The stages (`admit`, `key`, `order`, `place`,
//! `follow`, `reissue`, `store`) read what they need, leave the pure decisions to `plan`,
//! `decide`, `secrets` and their own pure helpers, and return [`Flow::Go`] to continue or
//! [`Flow::Stop`] with what they decided; what they learn about the status goes to the [`Ledger`]
//! as [`Change`]s. [`settle`] (pure) turns the stop into the new status, the events and the
//! requeue; `finish` writes the status (only what changed) and publishes the events. The
//! certificate's metric series are read from the cache at each scrape (`controller::series`).

mod admit;
mod cleanup;
mod doubt;
mod flow;
mod follow;
mod key;
mod ledger;
mod order;
mod output;
mod place;
mod prolong;
mod reissue;
mod run;
#[cfg(test)]
mod scenarios;
mod serving;
mod settle;
mod store;

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{Instrument, debug, info, warn};

pub use doubt::{ADOPT_ORDER_ANNOTATION, CONFIRM_NEW_ORDER_ANNOTATION};
pub(crate) use flow::go;
pub use flow::{Flow, Requeue, Stop};
pub use ledger::{Change, Ledger};
use run::Run;
pub use serving::RENEW_ANNOTATION;
pub use settle::{Inputs, Note, Settled, settle};

use super::context::{Context, Error};
use super::metrics::ControllerLabels;
use crate::crd::IspCertificate;

/// The finalizer that guards billing clean-up; present only with `deletionPolicy: Delete`.
pub const FINALIZER: &str = "ispcert.dev/cleanup";
/// Annotation that lets a deletion finish without deleting at the billing (the way out when the
/// billing is gone for good).
pub const SKIP_CLEANUP_ANNOTATION: &str = "ispcert.dev/skip-billing-cleanup";

/// Reconcile entry point. Everything it logs carries the certificate's namespace, name and
/// generation, from one span.
pub async fn reconcile(cert: Arc<IspCertificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %cert.namespace().unwrap_or_default(),
        name = %cert.name_any(),
        generation = cert.metadata.generation.unwrap_or_default(),
    );
    reconcile_certificate(cert, ctx).instrument(span).await
}

async fn reconcile_certificate(cert: Arc<IspCertificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let shared = &ctx.shared;
    ctx.wait_synced().await?;
    shared.metrics.reconciles.get_or_create(&ControllerLabels { controller: "certificate".into() }).inc();
    if cert.metadata.deletion_timestamp.is_some() {
        return cleanup::on_delete(&cert, &ctx).await;
    }
    if let Some(action) = cleanup::align_finalizer(&cert, &ctx).await? {
        return Ok(action);
    }
    if awaits_first_issuer_check(&cert, &ctx) {
        // Nothing to say yet, so nothing is written: the issuer's status change wakes it.
        return Ok(Action::requeue(std::time::Duration::from_secs(2)));
    }
    let run = Run::new(&cert, &ctx);
    let mut ledger = Ledger::new(&cert.status.clone().unwrap_or_default());
    let stop = match drive(&run, &mut ledger).await {
        Ok(Flow::Stop(s)) => s,
        Ok(Flow::Go(())) => Stop::ready("", None),
        Err(e) => Stop::failed(e.category(), e.to_string()),
    };
    finish(&run, ledger, stop).await
}

/// Who renews the certificate's subscription: its own `subscriptionRenewal`, else its issuer's.
fn subscription_renewal(run: &Run<'_>) -> crate::crd::SubscriptionRenewal {
    let spec = &run.cert.spec;
    let issuer = || run.ctx.issuer(&run.ns, &spec.issuer_ref).and_then(|i| i.spec.subscription_renewal);
    spec.subscription_renewal.or_else(issuer).unwrap_or_default()
}

/// A new certificate (no status yet) whose issuer exists but has not been checked once (right
/// after the operator starts, or just created): writing "waiting for the issuer" would cost every
/// such certificate a status write and an event for a moment's wait.
fn awaits_first_issuer_check(cert: &IspCertificate, ctx: &Context) -> bool {
    cert.status.is_none()
        && ctx
            .issuer(&cert.namespace().unwrap_or_default(), &cert.spec.issuer_ref)
            .is_some_and(|i| super::conditions::get(&i.status.conditions, super::reasons::READY).is_none())
}

/// The stages in order. Returns the stop that ended the run.
async fn drive(run: &Run<'_>, ledger: &mut Ledger) -> Result<Flow<()>, Error> {
    if let Some(stop) = output::fast_path(run, ledger.status()) {
        return Ok(Flow::Stop(stop));
    }
    let (issuer, plan) = match admit::admit(run, ledger.status()) {
        Ok(admitted) => admitted,
        Err(stop) => return Ok(Flow::Stop(stop)),
    };
    // Whose Secret it is is settled before anything is made or bought.
    let output = go!(output::output_secret(run, &plan).await?);
    let material = go!(key::ensure(run, ledger, &plan, &issuer, output.as_ref()).await?);
    let order_id = go!(order::ensure(run, ledger, &plan, &issuer, &material, output.as_ref()).await?);
    follow::converge(run, ledger, &plan, &issuer, &material, &order_id, output).await
}

/// Acts on what the run decided: one status patch with only the changes, the events and the
/// requeue.
async fn finish(run: &Run<'_>, ledger: Ledger, stop: Stop) -> Result<Action, Error> {
    let shared = &run.ctx.shared;
    let backoff_key = format!("certificate/{}", run.uid);
    let old = run.cert.status.clone().unwrap_or_default();
    let (built, written, events) = ledger.into_parts();
    let inputs = Inputs {
        old: &old,
        built,
        events,
        generation: run.cert.metadata.generation,
        secret_name: &run.cert.spec.secret_name,
        subscription_warning: jiff::SignedDuration::try_from(shared.settings.subscription_warning).unwrap_or_default(),
        subscription_renewal: subscription_renewal(run),
        now: run.now,
    };
    let settled = settle(inputs, &stop);

    let requeue = match settled.requeue {
        Requeue::After(d) => Some(d),
        Requeue::OnChange => None,
        Requeue::Backoff => {
            let known = old.failed_attempts.unwrap_or(0);
            Some(shared.backoff.fail_after(
                &backoff_key,
                known,
                shared.settings.backoff_min,
                shared.settings.backoff_max,
            ))
        }
    };
    if settled.reset_backoff {
        shared.backoff.reset(&backoff_key);
    }
    if let Err(e) = super::status::write(&run.api, &run.name, &written, &settled.status, None).await {
        // A status that cannot be written is retried with backoff; nothing was decided on it.
        warn!(error = %e, "status write failed");
        return Ok(Action::requeue(shared.backoff.fail(
            &backoff_key,
            shared.settings.backoff_min,
            shared.settings.backoff_max,
        )));
    }
    for note in &settled.events {
        shared.event(run.cert, note.type_, note.reason, "Reconcile", note.text.clone()).await;
    }
    if stop.failure {
        shared.metrics.error("certificate", stop.reason);
        info!(reason = stop.reason, message = %stop.message, "not ready");
    } else {
        debug!(reason = stop.reason, "reconciled");
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Requeue after errors the reconcile did not handle itself.
pub fn error_policy(cert: Arc<IspCertificate>, error: &Error, ctx: Arc<Context>) -> Action {
    let shared = &ctx.shared;
    warn!(namespace = %cert.namespace().unwrap_or_default(), name = %cert.name_any(), error = %error, "certificate reconcile failed");
    let key = format!("certificate/{}", cert.uid().unwrap_or_default());
    Action::requeue(shared.backoff.fail(&key, shared.settings.backoff_min, shared.settings.backoff_max))
}
