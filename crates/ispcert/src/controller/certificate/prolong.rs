//! Renewal of the subscription under `subscriptionRenewal: Automatic`: `service.prolong` once per
//! period, crash-safe like an order. The intent (`status.prolong`, with the end it replaces) is
//! written before the billing is asked; the outcome is confirmed only by a list read after the
//! intent showing a later end; a lost answer is never retried (in doubt the certificate stops and
//! says so); each prolongation counts against the issuer's order budget. Once confirmed, the
//! certificate follows the re-enrolment the CA makes and downloads the new certificate.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::flow::{Flow, Stop};
use super::follow::Order;
use super::ledger::{Change, Intent, Ledger};
use super::run::Run;
use super::settle::Note;
use crate::billing::BillingError;
use crate::controller::context::{Error, KubeResult};
use crate::controller::decide::billing_date;
use crate::controller::issuers::IssuerKey;
use crate::controller::metrics::OutcomeLabels;
use crate::controller::reasons as r;
use crate::controller::renewal::{Subscription, subscription};
use crate::crd::{CertificateStatus, DeletionPolicy, IssuerKind, ProlongState, ReissueState, SubscriptionRenewal};

/// What the prolongation stage does for a certificate that serves. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: `Manual`, or the end is not near.
    None,
    /// An intent is recorded: confirm it from the list.
    Confirm(ProlongState),
    /// Prolong the subscription ending at this moment.
    Prolong(Timestamp),
}

/// The next step, from the policy, the status and the subscription as last read.
pub fn step(policy: SubscriptionRenewal, status: &CertificateStatus, warning: SignedDuration, now: Timestamp) -> Step {
    if let Some(p) = &status.prolong {
        return Step::Confirm((**p).clone());
    }
    if policy != SubscriptionRenewal::Automatic {
        return Step::None;
    }
    match subscription(status.subscription_end.as_ref().map(|t| t.0), warning, now) {
        Subscription::Ending(end) | Subscription::Ended(end) => Step::Prolong(end),
        Subscription::Running => Step::None,
    }
}

/// Runs the prolongation stage for a certificate whose Secret serves `serial`.
pub async fn ensure(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>, serial: &str) -> Result<Flow<()>, Error> {
    let settings = &run.ctx.shared.settings;
    let warning = SignedDuration::try_from(settings.subscription_warning).unwrap_or_default();
    match step(order.plan.subscription_renewal, ledger.status(), warning, run.now) {
        Step::None => Ok(Flow::Go(())),
        Step::Confirm(p) => Ok(confirm(run, ledger, order, &p, serial).await),
        Step::Prolong(end) => prolong(run, ledger, order, end).await,
    }
}

/// Prolongations and orders of this issuer's certificates in the last 24 hours, from the cache.
fn spent_today(run: &Run<'_>, issuer: &IssuerKey) -> usize {
    let day_ago = run.now - SignedDuration::from_hours(24);
    let recent = |t: Option<&Time>| t.is_some_and(|t| t.0 >= day_ago);
    run.ctx
        .certificates
        .state()
        .iter()
        .filter(|c| {
            let r = &c.spec.issuer_ref;
            r.name == issuer.name
                && r.kind == issuer.kind
                && (r.kind == IssuerKind::ClusterIspIssuer
                    || c.namespace().as_deref() == Some(issuer.namespace.as_str()))
        })
        .filter_map(|c| c.status.as_ref())
        .map(|s| {
            usize::from(recent(s.prolonged_at.as_ref()) || recent(s.prolong.as_ref().map(|p| &p.requested_at)))
                + usize::from(recent(s.ordered_at.as_ref()))
        })
        .sum()
}

async fn prolong(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>, end: Timestamp) -> Result<Flow<()>, Error> {
    let handle = match run.handle(order.issuer) {
        Flow::Go(h) => h,
        Flow::Stop(s) => return Ok(Flow::Stop(s)),
    };
    let budget = order.issuer.spec.order_budget();
    if spent_today(run, &order.issuer.key) >= usize::try_from(budget).unwrap_or(usize::MAX) {
        let message = format!(
            "the subscription of order {} ends at {end}, and {}'s order budget ({budget} per 24 hours) allows no prolongation now; it is tried again later",
            order.id, order.issuer.key
        );
        return Ok(Flow::Stop(Stop::trouble(r::ORDER_BUDGET_EXHAUSTED, message, Duration::from_secs(3600))));
    }
    // The cache may lag behind our own writes: the decision is checked on the resource as the
    // server holds it, and the intent is durable there before the billing is asked (a crash
    // after the call finds it; a second reconcile cannot write another).
    let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_secs(1));
    let fresh = run.api.get_status(&run.name).await.doing(|| format!("read status of {}", run.key()))?;
    let server = fresh.status.clone().unwrap_or_default();
    if fresh.metadata.deletion_timestamp.is_some()
        || server.prolong.is_some()
        || server.prolonged_at != ledger.status().prolonged_at
    {
        let what = "the prolongation is already under way or the resource changed; deciding again";
        return Ok(Flow::Stop(Stop::pending(r::PROLONGING, what, wait)));
    }
    let intent = ProlongState { requested_at: Time(Timestamp::now()), previous_end: Time(end), outcome_unknown: None };
    if let Intent::Conflict = ledger.write_prolong_intent(run, &fresh, intent).await? {
        return Ok(Flow::Stop(Stop::pending(
            r::PROLONGING,
            "the resource changed while prolonging; deciding again",
            wait,
        )));
    }
    let result = handle.client.prolong(order.id, order.plan.period).await;
    let metrics = &run.ctx.shared.metrics;
    let outcome = |o: &str| metrics.prolongs.get_or_create(&OutcomeLabels { outcome: o.into() }).inc();
    let what = format!("service.prolong of order {} for {} months", order.id, order.plan.period);
    match result {
        Ok(()) => {
            outcome("placed");
            ledger.note(Note::normal(r::PROLONGING, format!("requested {what}")));
        }
        Err(e) if e.may_have_charged() => {
            outcome("unknown");
            ledger.record(Change::ProlongOutcomeUnknown);
            ledger.note(Note {
                type_: EventType::Warning,
                reason: r::PROLONGING,
                text: format!(
                    "{what}: the answer was lost ({e}); it is confirmed from the billing's list, never repeated"
                ),
            });
        }
        Err(e) if refuses_prolonging(&e) => {
            // Refused before anything was charged, and not for a reason a person can lift:
            // this billing does not prolong the certificate, so one new order replaces it.
            outcome("refused");
            return replace(run, ledger, order, &what, &e).await;
        }
        Err(e) => {
            // Refused before anything was charged, for now (credentials, balance, a captcha).
            outcome("refused");
            ledger.record(Change::ProlongAbandoned);
            let message = format!(
                "the billing refused {what}: {e}. It is tried again in an hour; or prolong it in the billing panel"
            );
            return Ok(Flow::Stop(Stop::trouble(r::PROLONG_REFUSED, message, Duration::from_secs(3600))));
        }
    }
    ledger.persist(run).await?;
    let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_millis(200));
    Ok(Flow::Stop(Stop::pending(
        r::PROLONGING,
        format!("{what}: waiting for the billing's list to show the new end"),
        wait,
    )))
}

/// Whether a refusal of `service.prolong`, made before anything was charged, says that this
/// billing does not prolong the certificate (the function or the period refused), so that one new
/// order replaces it. Pure. Refusals a person lifts (credentials, balance, a captcha), an order the
/// billing no longer knows, and unclear answers are not: they stop and say so instead.
pub fn refuses_prolonging(e: &BillingError) -> bool {
    matches!(e, BillingError::Access { .. } | BillingError::InvalidField { .. } | BillingError::MissingField { .. })
}

/// Records that one new order replaces `order` (placed by the order stage next, crash-safe and
/// within the budget like any order); the old order stays claimed by this certificate until the
/// new certificate is stored.
async fn replace(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    what: &str,
    e: &BillingError,
) -> Result<Flow<()>, Error> {
    ledger.record(Change::Replacing { old: order.id.to_string() });
    ledger.persist(run).await?;
    let after = match order.plan.deletion_policy {
        DeletionPolicy::Delete => "deleted at the billing",
        DeletionPolicy::Retain => "left to run out (deletionPolicy Retain)",
    };
    ledger.note(Note {
        type_: EventType::Warning,
        reason: r::PROLONG_REFUSED,
        text: format!(
            "the billing refused {what}: {e}. One new order replaces it; order {} is {after} once the new certificate is stored",
            order.id
        ),
    });
    Ok(Flow::Stop(Stop::pending(
        r::ORDERING,
        format!("the billing does not prolong order {}: a new order replaces it", order.id),
        Duration::from_millis(200),
    )))
}

/// Once the Secret serves the new order's certificate, the order it replaced is dealt with:
/// deleted at the billing under `deletionPolicy: Delete` (one already gone counts as deleted),
/// else left to run out. A failed deletion is tried again; the certificate stays Ready.
pub async fn retire_replaced(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>, old: &str) -> Flow<()> {
    let text = match order.plan.deletion_policy {
        DeletionPolicy::Delete => {
            let handle = match run.handle(order.issuer) {
                Flow::Go(h) => h,
                Flow::Stop(s) => return Flow::Stop(s),
            };
            match handle.client.delete(old).await {
                Ok(()) | Err(BillingError::NotFound { .. }) => {}
                Err(e) => {
                    let what = format!("deleting order {old}, which order {} replaced", order.id);
                    return Flow::Stop(run.billing_stop(order.issuer, e, &what).keeping_ready());
                }
            }
            format!("deleted order {old} at the billing: order {} replaced it", order.id)
        }
        DeletionPolicy::Retain => format!(
            "order {old}, replaced by order {}, is left at the billing to run out (deletionPolicy Retain)",
            order.id
        ),
    };
    ledger.record(Change::ReplacedOrderRetired);
    ledger.note(Note::normal(r::ORDER_REPLACED, text));
    Flow::Go(())
}

/// Confirms a recorded prolongation from a list read after it: a later end means done (the
/// certificate then follows the CA's re-enrolment); none within the grace period means doubt.
async fn confirm(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>, p: &ProlongState, serial: &str) -> Flow<()> {
    let handle = match run.handle(order.issuer) {
        Flow::Go(h) => h,
        Flow::Stop(s) => return Flow::Stop(s),
    };
    let settings = &run.ctx.shared.settings;
    let snapshot =
        match handle.account.snapshot_since(&handle.client, settings.poll_interval, Some(p.requested_at.0)).await {
            Ok(s) => s,
            Err(e) => return Flow::Stop(run.billing_stop(order.issuer, e, "confirming the prolongation")),
        };
    let end = snapshot.row(order.id).and_then(|row| row.expires.as_deref()).and_then(billing_date);
    if let Some(end) = end.filter(|end| *end > p.previous_end.0) {
        ledger.record(Change::Prolonged { end, at: p.requested_at.0 });
        ledger.record(Change::ReissueRequested(ReissueState {
            requested_at: Time(Timestamp::now()),
            reason: "Prolonged".into(),
            previous_serial: Some(serial.to_string()),
            attempts: None,
            failed: None,
        }));
        let until = end.strftime("%Y-%m-%d %H:%M UTC");
        ledger
            .note(Note::normal(r::PROLONGED, format!("the subscription of order {} now runs until {until}", order.id)));
        let wait = settings.poll_interval.max(Duration::from_millis(200));
        return Flow::Stop(Stop::pending(
            r::REISSUING,
            format!("order {}: waiting for the re-enrolled certificate", order.id),
            wait,
        ));
    }
    if crate::time::elapsed_since(p.requested_at.0) < settings.order_grace {
        let wait = settings.poll_interval.max(Duration::from_millis(200));
        return Flow::Stop(Stop::pending(
            r::PROLONGING,
            format!("order {}: waiting for the billing's list to show the prolongation", order.id),
            wait,
        ));
    }
    let message = format!(
        "service.prolong of order {} was requested at {} and the billing's list still shows the subscription ending {}. Nothing is repeated: check the order in the billing panel and prolong it there if it was not (the operator reads the new end from the list)",
        order.id,
        p.requested_at.0.strftime("%Y-%m-%d %H:%M UTC"),
        p.previous_end.0.strftime("%Y-%m-%d %H:%M UTC")
    );
    Flow::Stop(Stop::trouble(r::PROLONG_OUTCOME_UNKNOWN, message, Duration::from_secs(600)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Shortfall;

    #[test]
    fn only_a_refusal_of_the_function_or_its_period_replaces_the_order() {
        let access = BillingError::Access { object: "service.prolong".into(), message: "denied".into() };
        let period = BillingError::InvalidField { field: "period".into(), message: "not offered".into() };
        assert!(refuses_prolonging(&access) && refuses_prolonging(&period));
        let lifted_by_a_person = [BillingError::Auth, BillingError::NotEnoughMoney(Shortfall::default())];
        let gone = BillingError::NotFound { object: "elid".into() };
        let unclear = BillingError::PaidUnclear { kind: "xml".into(), object: String::new(), message: String::new() };
        for e in lifted_by_a_person.iter().chain([&gone, &unclear]) {
            assert!(!refuses_prolonging(e), "{e} buys nothing");
        }
    }

    #[test]
    fn a_replacement_leaves_no_order_of_its_own_and_claims_the_old_one() {
        let mut status = CertificateStatus {
            order_id: Some("7".into()),
            ordered_at: Some(Time(Timestamp::UNIX_EPOCH)),
            subscription_end: Some(Time(Timestamp::UNIX_EPOCH)),
            serial_number: Some("01".into()),
            approver_emails: vec!["admin@a.example.com".into()],
            ..Default::default()
        };
        super::super::ledger::apply(&mut status, Change::Replacing { old: "7".into() });
        assert_eq!((status.order_id.as_deref(), status.replaced_order.as_deref()), (None, Some("7")));
        assert!(status.ordered_at.is_none() && status.subscription_end.is_none() && status.approver_emails.is_empty());
        assert_eq!(status.serial_number.as_deref(), Some("01"), "the served certificate is still what it is");
        super::super::ledger::apply(&mut status, Change::ReplacedOrderRetired);
        assert!(status.replaced_order.is_none());
    }

    #[test]
    fn automatic_prolongs_near_the_end_once_and_confirms_a_recorded_intent_first() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let days = |n: i64| now + SignedDuration::from_hours(24 * n);
        let warning = SignedDuration::from_hours(24 * 30);
        let with_end = |n: i64| CertificateStatus { subscription_end: Some(Time(days(n))), ..Default::default() };
        let (auto, manual) = (SubscriptionRenewal::Automatic, SubscriptionRenewal::Manual);
        assert_eq!(step(auto, &with_end(40), warning, now), Step::None, "not near the end");
        assert_eq!(step(auto, &with_end(20), warning, now), Step::Prolong(days(20)));
        assert_eq!(step(auto, &with_end(-1), warning, now), Step::Prolong(days(-1)), "ended: prolonged too");
        assert_eq!(step(manual, &with_end(20), warning, now), Step::None, "Manual buys nothing");
        assert_eq!(step(auto, &CertificateStatus::default(), warning, now), Step::None, "end unknown");
        let intent = ProlongState { requested_at: Time(now), previous_end: Time(days(20)), outcome_unknown: None };
        let pending = CertificateStatus { prolong: Some(Box::new(intent.clone())), ..with_end(20) };
        assert_eq!(step(auto, &pending, warning, now), Step::Confirm(intent.clone()), "never a second call");
        assert_eq!(
            step(manual, &pending, warning, now),
            Step::Confirm(intent),
            "an intent is confirmed whatever the policy"
        );
    }
}
