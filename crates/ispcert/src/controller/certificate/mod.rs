//! The certificate reconcile: validate, make and store the key, order once, follow the billing by
//! batched polling, download, verify, write the Secret, and schedule the free reissue.
//!
//! Each stage returns [`Flow::Go`] to continue or [`Flow::Stop`] with what to report; `finish`
//! turns that into one status patch (only what changed), events on transitions, metrics and the
//! requeue. Decisions live in `plan`, `decide` and `secrets`, which are pure and unit-tested.

mod cleanup;
mod issue;
mod key;
mod order;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{debug, info, warn};

use super::conditions;
use super::context::{Context, Error};
use super::issuers::{IssuerHandle, IssuerView};
use super::metrics::{CertificateLabels, ControllerLabels, FailureLabels};
use super::plan::plan;
use super::reasons as r;
use super::status;
use crate::billing::BillingError;
use crate::crd::{CertificateStatus, IspCertificate};

/// The finalizer that guards billing clean-up; present only with `deletionPolicy: Delete`.
pub const FINALIZER: &str = "ispcert.dev/cleanup";
/// Annotation that lets a deletion finish without deleting at the billing (the way out when the
/// billing is gone for good).
pub const SKIP_CLEANUP_ANNOTATION: &str = "ispcert.dev/skip-billing-cleanup";

/// What a stage decided when it cannot go on.
#[derive(Debug, Clone)]
pub struct Stop {
    /// `Some(false)` marks the certificate not Ready; `None` leaves Ready as the stored
    /// certificate allows (see `finish`).
    ready: Option<bool>,
    reason: &'static str,
    message: String,
    /// Whether an order or reissue is under way.
    issuing: bool,
    /// A warning the user should see, counted in `failedAttempts`.
    failure: bool,
    requeue: Requeue,
}

/// When to look at the certificate again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    After(Duration),
    /// After the per-object backoff, which grows with each failure in a row.
    Backoff,
    /// When the resource, its issuer or its Secrets change.
    OnChange,
}

impl From<Option<Duration>> for Requeue {
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Requeue::OnChange, Requeue::After)
    }
}

impl Stop {
    pub fn ready(message: impl Into<String>, requeue: Option<Duration>) -> Self {
        Stop {
            ready: Some(true),
            reason: r::ISSUED,
            message: message.into(),
            issuing: false,
            failure: false,
            requeue: requeue.into(),
        }
    }
    /// Waiting on the billing or the CA; not a failure.
    pub fn pending(reason: &'static str, message: impl Into<String>, requeue: Duration) -> Self {
        Stop {
            ready: None,
            reason,
            message: message.into(),
            issuing: true,
            failure: false,
            requeue: Requeue::After(requeue),
        }
    }
    /// Something a person must fix; retried when the resource (or what it watches) changes, and
    /// after `requeue` if given.
    pub fn blocked(reason: &'static str, message: impl Into<String>, requeue: Option<Duration>) -> Self {
        Stop {
            ready: Some(false),
            reason,
            message: message.into(),
            issuing: false,
            failure: true,
            requeue: requeue.into(),
        }
    }
    /// Another IspCertificate, created first, writes the Secret this one names.
    pub fn secret_in_use(secret: &str, owner: &str) -> Self {
        Stop::blocked(
            r::SECRET_IN_USE,
            format!(
                "Secret {secret} is already written by IspCertificate {owner} (created first); choose another secretName. Nothing is ordered meanwhile"
            ),
            None,
        )
    }
    /// A failure retried with the per-object backoff.
    pub fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Stop { ready: None, reason, message: message.into(), issuing: true, failure: true, requeue: Requeue::Backoff }
    }
}

pub enum Flow<T> {
    Go(T),
    Stop(Stop),
}

/// Unwraps a [`Flow`], returning the stop from the enclosing function.
macro_rules! go {
    ($e:expr) => {
        match $e {
            Flow::Go(v) => v,
            Flow::Stop(s) => return Ok(Flow::Stop(s)),
        }
    };
}
pub(crate) use go;

/// One reconcile of one certificate.
pub struct Run<'a> {
    pub cert: &'a IspCertificate,
    pub ctx: &'a Context,
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub api: Api<IspCertificate>,
    pub status: CertificateStatus,
    /// What the server holds as far as this run knows: the cached status plus our writes.
    written: CertificateStatus,
    pub now: Timestamp,
    events: Vec<(EventType, &'static str, String)>,
    handle: Option<Arc<IssuerHandle>>,
}

impl<'a> Run<'a> {
    fn new(cert: &'a IspCertificate, ctx: &'a Context) -> Self {
        let ns = cert.namespace().unwrap_or_default();
        Run {
            cert,
            ctx,
            api: Api::namespaced(ctx.shared.client.clone(), &ns),
            ns,
            name: cert.name_any(),
            uid: cert.uid().unwrap_or_default(),
            status: cert.status.clone().unwrap_or_default(),
            written: cert.status.clone().unwrap_or_default(),
            now: Timestamp::now(),
            events: vec![],
            handle: None,
        }
    }

    /// Queues an event published after the status write.
    pub fn event(&mut self, type_: EventType, reason: &'static str, note: impl Into<String>) {
        self.events.push((type_, reason, note.into()));
    }

    /// Writes the status now (for facts that must be durable before the next step, such as an
    /// order id). The final write in `finish` sends only what changed after this.
    pub async fn persist(&mut self, precondition: Option<&str>) -> Result<(), Error> {
        status::write(&self.api, &self.name, &self.written, &self.status, precondition).await?;
        self.written = self.status.clone();
        Ok(())
    }

    /// The status as the server holds it, as far as this run knows.
    pub fn written_status(&self) -> &CertificateStatus {
        &self.written
    }

    /// Records that the server now holds `status` (written outside [`Run::persist`]).
    pub fn mark_written(&mut self) {
        self.written = self.status.clone();
    }

    /// The billing client of the certificate's issuer, when the issuer has passed its check.
    pub async fn handle(&mut self, issuer: &IssuerView) -> Flow<Arc<IssuerHandle>> {
        if let Some(h) = &self.handle {
            return Flow::Go(h.clone());
        }
        let shared = &self.ctx.shared;
        let wait = shared.settings.poll_interval.max(Duration::from_secs(1));
        if shared.issuers.is_suspect(&issuer.key) {
            return Flow::Stop(Stop::pending(
                r::ISSUER_NOT_READY,
                format!("the billing refused {}'s credentials; waiting for the issuer to check them again", issuer.key),
                wait,
            ));
        }
        match shared.issuers.get(issuer) {
            Some(h) => {
                self.handle = Some(h.clone());
                Flow::Go(h)
            }
            // The issuer controller verifies credentials and registers the client; until it has
            // (for example right after start-up) the certificate waits a moment.
            None => Flow::Stop(Stop::pending(
                r::ISSUER_NOT_READY,
                format!("waiting for {} to pass its credentials check", issuer.key),
                wait,
            )),
        }
    }

    /// Turns a billing error of a call that spends no money into a stop, flagging refused
    /// credentials so the issuer checks them again instead of certificates retrying them.
    pub fn billing_stop(&self, issuer: &IssuerView, e: BillingError, what: &str) -> Stop {
        match &e {
            BillingError::Auth | BillingError::Access { .. } => {
                self.ctx.shared.issuers.suspect(&issuer.key);
                let _ = self.ctx.shared.recheck.send(issuer.key.clone());
                Stop::pending(r::ISSUER_NOT_READY, format!("{what}: {e}"), self.ctx.shared.settings.poll_interval)
            }
            BillingError::Transport { .. } => Stop::failed(r::BILLING_UNREACHABLE, format!("{what}: {e}")),
            BillingError::NotFound { .. } => Stop::blocked(
                r::ORDER_NOT_FOUND,
                format!("{what}: {e}. Nothing is ordered again automatically; check the order in the billing panel"),
                Some(Duration::from_secs(600)),
            ),
            _ => Stop::failed(r::BILLING_ERROR, format!("{what}: {e}")),
        }
    }
}

/// The stages in order. Returns the stop that ended the run.
async fn drive(run: &mut Run<'_>) -> Result<Flow<()>, Error> {
    if let Some(stop) = issue::fast_path(run) {
        return Ok(Flow::Stop(stop));
    }
    let spec = &run.cert.spec;
    let Some(issuer) = run.ctx.issuer(&run.ns, &spec.issuer_ref) else {
        let kind = format!("{:?}", spec.issuer_ref.kind);
        let place = match spec.issuer_ref.kind {
            crate::crd::IssuerKind::IspIssuer => format!(" in namespace {}", run.ns),
            crate::crd::IssuerKind::ClusterIspIssuer => String::new(),
        };
        // A certificate still valid for this spec stays Ready; the trouble shows under Issuing.
        return Ok(Flow::Stop(Stop {
            ready: None,
            ..Stop::blocked(
                r::ISSUER_NOT_FOUND,
                format!(
                    "{kind} {}{place} does not exist; create it or fix spec.issuerRef. Nothing is ordered meanwhile",
                    spec.issuer_ref.name
                ),
                Some(Duration::from_secs(300)),
            )
        }));
    };
    let plan = match plan(spec, &issuer.spec) {
        Ok(p) => p,
        Err(problems) => {
            return Ok(Flow::Stop(Stop::blocked(
                r::INVALID_SPEC,
                format!(
                    "fix the spec ({} problem{}): {}",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" },
                    problems.join("; ")
                ),
                None,
            )));
        }
    };
    if let Some(owner) = run.ctx.secret_owner(&run.ns, &plan.secret_name)
        && owner.uid().as_deref() != Some(run.uid.as_str())
    {
        return Ok(Flow::Stop(Stop::secret_in_use(&plan.secret_name, &owner.name_any())));
    }
    if !conditions::is_true(&issuer.status.conditions, r::READY) && run.status.order_id.is_none() {
        let why = conditions::get(&issuer.status.conditions, r::READY).map(|c| c.message.clone()).unwrap_or_default();
        return Ok(Flow::Stop(Stop::pending(
            r::ISSUER_NOT_READY,
            format!("{} is not ready ({why}); nothing is ordered until it is", issuer.key),
            run.ctx.shared.settings.poll_interval.max(Duration::from_secs(5)),
        )));
    }
    // Whose Secret it is is settled before anything is made or bought.
    let output = go!(issue::output_secret(run, &plan).await?);
    let material = go!(key::ensure(run, &plan, &issuer, output.as_ref()).await?);
    let order_id = go!(order::ensure(run, &plan, &issuer, &material, output.as_ref()).await?);
    issue::converge(run, &plan, &issuer, &material, &order_id, output).await
}

/// Reconcile entry point.
pub async fn reconcile(cert: Arc<IspCertificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let shared = &ctx.shared;
    shared.metrics.reconciles.get_or_create(&ControllerLabels { controller: "certificate".into() }).inc();
    if cert.metadata.deletion_timestamp.is_some() {
        return cleanup::on_delete(&cert, &ctx).await;
    }
    if let Some(action) = cleanup::align_finalizer(&cert, &ctx).await? {
        return Ok(action);
    }
    let mut run = Run::new(&cert, &ctx);
    let stop = match drive(&mut run).await {
        Ok(Flow::Stop(s)) => s,
        Ok(Flow::Go(())) => Stop::ready("", None),
        Err(e) => {
            shared
                .metrics
                .failures
                .get_or_create(&FailureLabels { controller: "certificate".into(), category: e.category().into() })
                .inc();
            Stop::failed(e.category(), e.to_string())
        }
    };
    finish(run, stop).await
}

/// Writes what the run found (one status patch with only the changes), publishes events and
/// metrics, and picks the requeue.
async fn finish(mut run: Run<'_>, stop: Stop) -> Result<Action, Error> {
    let shared = run.ctx.shared.clone();
    let generation = run.cert.metadata.generation;
    let backoff_key = format!("certificate/{}", run.uid);
    let old = run.cert.status.clone().unwrap_or_default();

    // A certificate that is valid for this very spec stays Ready while a renewal waits or fails.
    let serving = conditions::is_true(&old.conditions, r::READY)
        && old.observed_generation == generation
        && run.status.not_after.as_ref().is_some_and(|t| t.0 > run.now);
    let ready = stop.ready.unwrap_or(serving);

    let requeue = match stop.requeue {
        Requeue::After(d) => Some(d),
        Requeue::OnChange => None,
        Requeue::Backoff => {
            Some(shared.backoff.fail(&backoff_key, shared.settings.backoff_min, shared.settings.backoff_max))
        }
    };
    if stop.failure {
        run.status.last_failure_time = Some(Time(run.now));
        run.status.failed_attempts = Some(run.status.failed_attempts.unwrap_or(0).saturating_add(1));
    } else {
        shared.backoff.reset(&backoff_key);
        if stop.ready == Some(true) {
            run.status.failed_attempts = None;
        }
    }

    let (ready_reason, ready_message) = if ready && stop.ready.is_none() {
        // Keep the Ready condition's own words; the trouble shows under Issuing.
        conditions::get(&old.conditions, r::READY)
            .map(|c| (reason_static(&c.reason), c.message.clone()))
            .unwrap_or((r::ISSUED, String::new()))
    } else {
        (stop.reason, stop.message.clone())
    };
    let ready_message = if ready && ready_message.is_empty() { ready_text(&run) } else { ready_message };
    conditions::set(&mut run.status.conditions, r::READY, ready, ready_reason, &ready_message, generation, run.now);
    let issuing_message = if stop.issuing { stop.message.clone() } else { String::new() };
    conditions::set(
        &mut run.status.conditions,
        r::ISSUING,
        stop.issuing,
        stop.reason,
        issuing_message,
        generation,
        run.now,
    );
    run.status.observed_generation = generation;

    // Events: the queued ones, plus one when the outcome's reason changed.
    let before = conditions::get(&old.conditions, if stop.issuing { r::ISSUING } else { r::READY })
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    let now_cond = conditions::get(&run.status.conditions, if stop.issuing { r::ISSUING } else { r::READY })
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    if before != now_cond && !(ready && stop.reason == r::ISSUED && run.events.iter().any(|e| e.1 == r::ISSUED)) {
        let kind = if stop.failure { EventType::Warning } else { EventType::Normal };
        let note = if stop.message.is_empty() { ready_message.clone() } else { stop.message.clone() };
        run.events.push((kind, stop.reason, note));
    }

    if let Err(e) = status::write(&run.api, &run.name, &run.written, &run.status, None).await {
        // A status that cannot be written is retried with backoff; nothing was decided on it.
        warn!(certificate = %format!("{}/{}", run.ns, run.name), error = %e, "status write failed");
        return Ok(Action::requeue(shared.backoff.fail(
            &backoff_key,
            shared.settings.backoff_min,
            shared.settings.backoff_max,
        )));
    }
    for (kind, reason, note) in std::mem::take(&mut run.events) {
        shared.event(run.cert, kind, reason, "Reconcile", note).await;
    }

    let labels = CertificateLabels { namespace: run.ns.clone(), name: run.name.clone() };
    shared.metrics.ready.get_or_create(&labels).set(i64::from(ready));
    if let Some(t) = &run.status.not_after {
        shared.metrics.expiration.get_or_create(&labels).set(t.0.as_second());
    }
    if let Some(t) = &run.status.renewal_time {
        shared.metrics.renewal.get_or_create(&labels).set(t.0.as_second());
    }
    if stop.failure {
        info!(certificate = %format!("{}/{}", run.ns, run.name), reason = stop.reason, message = %stop.message, "not ready");
    } else {
        debug!(certificate = %format!("{}/{}", run.ns, run.name), reason = stop.reason, "reconciled");
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn ready_text(run: &Run<'_>) -> String {
    let until =
        run.status.not_after.as_ref().map(|t| t.0.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default();
    format!("certificate is valid until {until}; Secret {} is up to date", run.cert.spec.secret_name)
}

/// Maps a reason read back from a condition to our constant (conditions hold owned strings).
fn reason_static(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[r::ISSUED, r::SECRET_WRITTEN, r::SECRET_RESTORED, r::RENEWAL_SCHEDULED];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or(r::ISSUED)
}

/// Requeue after errors the reconcile did not handle itself.
pub fn error_policy(cert: Arc<IspCertificate>, error: &Error, ctx: Arc<Context>) -> Action {
    let shared = &ctx.shared;
    warn!(certificate = %cert.name_any(), error = %error, "certificate reconcile failed");
    let key = format!("certificate/{}", cert.uid().unwrap_or_default());
    Action::requeue(shared.backoff.fail(&key, shared.settings.backoff_min, shared.settings.backoff_max))
}
