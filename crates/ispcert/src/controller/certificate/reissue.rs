//! A free reissue of the order: which of the billing's three forms serves the need, with a new
//! key first when the key rotates, recorded in the status as soon as the billing took it; and
//! when a reissue that is not completed (an approver email nobody answered, a CA refusal) is
//! requested again, a bounded number of times.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::flow::{Flow, Stop, go};
use super::follow::Order;
use super::key::{self, Material};
use super::ledger::{Change, Ledger};
use super::run::Run;
use super::settle::Note;
use crate::billing::{BillingError, Reissue};
use crate::controller::context::{Error, KubeResult};
use crate::controller::decide::ReissueNeed;
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::reasons as r;
use crate::crd::ReissueState;
use kube::runtime::events::EventType;

/// The reissue form a need takes. `None` for a rotation: the form carries the new key's CSR,
/// made first. Pure.
pub fn form(need: ReissueNeed, plan: &Plan, material: &Material) -> Option<Reissue> {
    Some(match (need, &plan.key) {
        (ReissueNeed::Names, _) => Reissue::AltNames { alt_names: plan.alt_names.clone() },
        (ReissueNeed::Key | ReissueNeed::Subject, _) => Reissue::Manual { csr: material.csr.clone() },
        (ReissueNeed::Approvers, _) => Reissue::OldRequest,
        (ReissueNeed::Renewal, KeyPlan::Cluster { rotate_on_reissue: true, .. }) => return None,
        (ReissueNeed::Renewal, KeyPlan::Billing) => Reissue::OldRequest,
        (ReissueNeed::Renewal, _) => Reissue::Manual { csr: material.csr.clone() },
    })
}

/// The subject our CSRs carry (`CN=www.example.com, O=Org`), for a key made in the cluster (the
/// only CSRs whose subject the spec sets). Pure.
pub fn subject_of(plan: &Plan) -> Option<String> {
    let line = |rest: String| {
        if rest.is_empty() { format!("CN={}", plan.common_name) } else { format!("CN={}, {rest}", plan.common_name) }
    };
    matches!(plan.key, KeyPlan::Cluster { .. }).then(|| line(plan.csr_subject().line()))
}

/// The need a recorded reissue serves, from its reason.
pub fn need_of(reason: &str) -> ReissueNeed {
    match reason {
        "NamesChanged" => ReissueNeed::Names,
        "KeyMismatch" => ReissueNeed::Key,
        "ApproversChanged" => ReissueNeed::Approvers,
        "SubjectChanged" => ReissueNeed::Subject,
        _ => ReissueNeed::Renewal,
    }
}

/// What a reissue under way calls for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// Keep waiting for it.
    Wait,
    /// Request it again, as this attempt.
    Again(u32),
    /// Requested the allowed number of times, and the last one timed out too.
    Exhausted,
}

/// When a reissue is requested again. Pure.
///
/// An attempt waits `timeout`·2ⁿ⁻¹ for approval (approver emails are answered within days), or
/// `failure_wait`·2ⁿ⁻¹ once the CA refused it; after `max` attempts it is exhausted.
pub fn repeat(reissue: &ReissueState, timeout: Duration, failure_wait: Duration, max: u32, now: Timestamp) -> Repeat {
    let attempts = reissue.attempts.unwrap_or(1).max(1);
    let base = if reissue.failed == Some(true) { failure_wait.min(timeout) } else { timeout };
    let wait = base.saturating_mul(1u32 << (attempts - 1).min(16));
    let due = SignedDuration::try_from(wait).ok().and_then(|w| reissue.requested_at.0.checked_add(w).ok());
    match due {
        Some(due) if now < due => Repeat::Wait,
        _ if attempts >= max => Repeat::Exhausted,
        _ => Repeat::Again(attempts + 1),
    }
}

/// Goes on only when the server holds what this reconcile decided from: the cache can lag behind
/// our own last write (a reissue requested a moment ago, a renewal request handled), and asking
/// again would send every approver a second email.
async fn decided_on_current(run: &Run<'_>) -> Result<Flow<()>, Error> {
    let fresh = run.api.get_status(&run.name).await.doing(|| format!("read status of {}", run.key()))?;
    let (server, cached) = (fresh.status.unwrap_or_default(), run.cert.status.clone().unwrap_or_default());
    let same =
        |s: &crate::crd::CertificateStatus| (s.reissue.clone(), s.renew_request.clone(), s.serial_number.clone());
    if same(&server) == same(&cached) {
        return Ok(Flow::Go(()));
    }
    let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_millis(200));
    Ok(Flow::Stop(Stop::pending(r::REISSUING, "the resource changed meanwhile; deciding again", wait)))
}

/// Requests a free reissue of the order for `need`; `current_serial` is the certificate it
/// replaces, which downloads keep showing until the new one is issued. `attempt` counts the
/// requests for this need: a repeat (2 and up) keeps the key a rotation made for the first one.
/// `renew` is the `ispcert renew` request this reissue answers, recorded as handled once the
/// decision is known to stand on the current resource.
pub async fn request(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    need: ReissueNeed,
    current_serial: &str,
    (attempt, renew): (u32, Option<String>),
) -> Result<Flow<()>, Error> {
    let (plan, order_id) = (order.plan, order.id);
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
    let handle = go!(run.handle(order.issuer));
    go!(decided_on_current(run).await?);
    if let Some(value) = renew {
        ledger.record(Change::RenewRequestHandled(value));
        ledger.note(Note::normal(r::RENEW_REQUESTED, "renewal requested through the ispcert.dev/renew annotation"));
    }
    let form = match form(need, plan, order.material) {
        Some(form) => form,
        None if attempt > 1 => Reissue::Manual { csr: order.material.csr.clone() },
        None => Reissue::Manual { csr: go!(key::rotate(run, ledger, plan, order.issuer).await?).csr },
    };
    let failed_before = ledger.status().reissue.as_ref().is_some_and(|r| r.failed == Some(true));
    if let Err(e) = handle.client.reissue(order_id, &form, &plan.approvers).await {
        let what = format!("requesting a free reissue ({}) of order {order_id}", need.reason());
        return Ok(Flow::Stop(match e {
            BillingError::InvalidField { .. } | BillingError::MissingField { .. } | BillingError::InvalidRequest(_) => {
                Stop::blocked(r::BILLING_ERROR, format!("{what}: {e}"), Some(run.ctx.shared.settings.backoff_max))
            }
            other => run.billing_stop(order.issuer, other, &what),
        }));
    }
    // The follower waits for a list read after the request (`follow::poll`): no invalidation,
    // so a mass renewal shares lists instead of reading one per certificate.
    run.ctx.shared.metrics.reissues.inc();
    ledger.record(Change::ReissueRequested(ReissueState {
        requested_at: Time(Timestamp::now()),
        reason: need.reason().to_string(),
        previous_serial: Some(current_serial.to_string()),
        attempts: (attempt > 1).then_some(attempt),
        failed: None,
    }));
    ledger.record(Change::ApproversSent(plan.approver_emails()));
    if let (Reissue::Manual { .. }, Some(line)) = (&form, subject_of(plan)) {
        ledger.record(Change::SubjectSent(line));
    }
    ledger.persist(run).await?;
    let what = format!("a free reissue of order {order_id} ({}, crt_type={})", need.reason(), form.crt_type());
    ledger.note(match attempt {
        1 => Note::normal(r::REISSUING, format!("requested {what}")),
        _ => {
            let max = run.ctx.shared.settings.reissue_attempts;
            let why = if failed_before {
                "the CA refused the last request"
            } else {
                "the last request was not completed in time"
            };
            let reason = if failed_before { r::REISSUE_FAILED } else { r::REISSUING };
            Note {
                type_: EventType::Warning,
                reason,
                text: format!("{why}; requested {what} again (attempt {attempt} of {max})"),
            }
        }
    });
    let wait = run.ctx.shared.settings.poll_interval.max(std::time::Duration::from_millis(200));
    Ok(Flow::Stop(Stop::pending(
        r::REISSUING,
        format!("order {order_id}: free reissue requested ({})", need.reason()),
        wait,
    )))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::controller::plan::tests_support::plan_for;
    use crate::pki::keys::KeyAlgorithm;

    #[test]
    fn a_reissue_is_requested_again_after_its_doubling_wait_a_bounded_number_of_times() {
        let hour = Duration::from_secs(3600);
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let at = |h: i64| t0 + SignedDuration::from_hours(h);
        let reissue = |attempts: Option<u32>, failed: Option<bool>| ReissueState {
            requested_at: Time(t0),
            reason: "Renewal".into(),
            previous_serial: None,
            attempts,
            failed,
        };
        // (case, attempts, failed, now, expected) with a 24 h timeout, 1 h after a CA refusal, 3 attempts.
        let cases = [
            ("first, within the timeout", None, None, at(23), Repeat::Wait),
            ("first, timed out", None, None, at(24), Repeat::Again(2)),
            ("second waits twice as long", Some(2), None, at(47), Repeat::Wait),
            ("second, timed out", Some(2), None, at(48), Repeat::Again(3)),
            ("third waits four times as long", Some(3), None, at(95), Repeat::Wait),
            ("third, timed out: exhausted", Some(3), None, at(96), Repeat::Exhausted),
            ("refused by the CA: after the failure wait", None, Some(true), at(1), Repeat::Again(2)),
            ("refused, second", Some(2), Some(true), at(1), Repeat::Wait),
            ("refused three times", Some(3), Some(true), at(4), Repeat::Exhausted),
        ];
        for (case, attempts, failed, now, expected) in cases {
            assert_eq!(repeat(&reissue(attempts, failed), hour * 24, hour, 3, now), expected, "{case}");
        }
        assert_eq!(need_of("NamesChanged"), ReissueNeed::Names);
        assert_eq!(need_of("KeyMismatch"), ReissueNeed::Key);
        assert_eq!(need_of("ApproversChanged"), ReissueNeed::Approvers);
        assert_eq!(need_of("SubjectChanged"), ReissueNeed::Subject);
        assert_eq!(need_of("KeyRotation"), ReissueNeed::Renewal);
    }

    #[test]
    fn each_need_takes_its_form() {
        let material =
            Material { key: SecretString::from("K".to_string()), csr: "CSR".into(), bits: vec![], previous: None };
        let mut plan = plan_for("globalsign-domainssl", "a.example.com", &["b.example.com"]);
        let crt_type = |need, plan: &Plan| form(need, plan, &material).map(|f| f.crt_type());
        assert_eq!(crt_type(ReissueNeed::Names, &plan), Some("altname"));
        assert_eq!(crt_type(ReissueNeed::Key, &plan), Some("manual"));
        assert_eq!(crt_type(ReissueNeed::Approvers, &plan), Some("oldrequest"));
        assert_eq!(crt_type(ReissueNeed::Subject, &plan), Some("manual"));
        assert_eq!(crt_type(ReissueNeed::Renewal, &plan), Some("manual"), "the stored CSR, same key");
        plan.key = KeyPlan::Billing;
        assert_eq!(crt_type(ReissueNeed::Renewal, &plan), Some("oldrequest"));
        plan.key = KeyPlan::Cluster { algorithm: KeyAlgorithm::Rsa2048, rotate_on_reissue: true };
        assert_eq!(crt_type(ReissueNeed::Renewal, &plan), None, "a new key first");
        assert_eq!(crt_type(ReissueNeed::Key, &plan), Some("manual"));
    }
}
