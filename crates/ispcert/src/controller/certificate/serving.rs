//! A certificate its Secret serves, for this spec and key: what it needs next. A renewal asked for
//! through `ispcert renew`; near the subscription's end, the end read again (and under
//! `Automatic` the subscription prolonged); a renewal that is due; approvers changed since the
//! billing was given them; or nothing (the Secret is kept up to date and the renewal scheduled).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::flow::{Flow, go};
use super::follow::Order;
use super::ledger::{Change, Ledger};
use super::run::Run;
use super::{prolong, reissue, store};
use crate::controller::context::Error;
use crate::controller::decide::{ReissueNeed, billing_date, same_names};
use crate::controller::plan::Plan;
use crate::controller::renewal::{Renewal, RenewalPolicy, Subscription, plan_renewal, subscription};
use crate::crd::CertificateStatus;
use crate::pki::chain::{CertInfo, Chain};

/// What a serving certificate needs next, acted on. `renew_asked` is a renewal asked for through
/// the annotation and not acted on yet.
pub async fn next(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    stored: Chain,
    info: &CertInfo,
    renew_asked: Option<String>,
    existing: Option<&Secret>,
) -> Result<Flow<()>, Error> {
    go!(refresh_subscription(run, ledger, order).await);
    go!(prolong::ensure(run, ledger, order, &info.serial).await?);
    if let Some(value) = renew_asked {
        return reissue::request(run, ledger, order, ReissueNeed::Renewal, &info.serial, (1, Some(value))).await;
    }
    if renewal_of(run, order.plan, info, ledger.status()).at().is_some_and(|at| run.now >= at) {
        return reissue::request(run, ledger, order, ReissueNeed::Renewal, &info.serial, (1, None)).await;
    }
    // Approvers changed since the billing was last given them: a free reissue with the new
    // ones. Unknown (an adopted order, an earlier version): the current ones count.
    let wanted = order.plan.approver_emails();
    let sent = &ledger.status().approver_emails;
    if sent.is_empty() {
        ledger.record(Change::ApproversSent(wanted));
    } else if !same_names(sent, &wanted) {
        return reissue::request(run, ledger, order, ReissueNeed::Approvers, &info.serial, (1, None)).await;
    }
    // The subject of a key made in the cluster changed since the billing was given a CSR: a free
    // reissue with the CSR the key stage made for the new one. Unknown: the current one counts.
    if let Some(wanted) = reissue::subject_of(order.plan) {
        match &ledger.status().requested_subject {
            None => ledger.record(Change::SubjectSent(wanted)),
            Some(sent) if *sent != wanted => {
                return reissue::request(run, ledger, order, ReissueNeed::Subject, &info.serial, (1, None)).await;
            }
            Some(_) => {}
        }
    }
    store::store(run, ledger, order, stored, existing).await
}

/// Annotation `ispcert renew` sets (to the time of the request): a value the status has not
/// acted on yet asks for a free reissue now. Safe to repeat: each value is acted on once.
pub const RENEW_ANNOTATION: &str = "ispcert.dev/renew";

/// The value of the `ispcert.dev/renew` annotation when it asks for a renewal not acted on yet.
pub fn renew_request(run: &Run<'_>, status: &CertificateStatus) -> Option<String> {
    let value = run.cert.annotations().get(RENEW_ANNOTATION).filter(|v| !v.is_empty())?;
    (status.renew_request.as_ref() != Some(value)).then(|| value.clone())
}

/// Near or past the subscription's end, its end is read again from the account's list (shared,
/// at most `subscription_recheck` old): a person may have prolonged it in the billing panel. An
/// end never read (a certificate issued at once is never looked up in the list) is expected a
/// period after the order, and read when that comes near: no list call before.
pub async fn refresh_subscription(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>) -> Flow<()> {
    let settings = &run.ctx.shared.settings;
    let warning = jiff::SignedDuration::try_from(settings.subscription_warning).unwrap_or_default();
    let status = ledger.status();
    let end = status.subscription_end.as_ref().map(|t| t.0).or_else(|| expected_end(status, order.plan.period));
    if subscription(end, warning, run.now) == Subscription::Running {
        return Flow::Go(());
    }
    let handle = match run.handle(order.issuer) {
        Flow::Go(h) => h,
        Flow::Stop(s) => return Flow::Stop(s),
    };
    match handle.account.snapshot(&handle.client, settings.subscription_recheck).await {
        Ok(snapshot) => {
            if let Some(end) = snapshot.row(order.id).and_then(|row| row.expires.as_deref()).and_then(billing_date) {
                ledger.record(Change::SubscriptionEnd(end));
            }
            Flow::Go(())
        }
        Err(e) => Flow::Stop(run.billing_stop(order.issuer, e, "reading the subscription's end")),
    }
}

/// When a subscription whose end was never read is expected to end: `period` months after the
/// order (the billing's own rule for `expiredate`).
pub fn expected_end(status: &CertificateStatus, period: u32) -> Option<jiff::Timestamp> {
    let ordered = status.ordered_at.as_ref()?.0;
    let months = jiff::Span::new().try_months(i64::from(period)).ok()?;
    ordered.to_zoned(jiff::tz::TimeZone::UTC).checked_add(months).ok().map(|z| z.timestamp())
}

/// The renewal plan of a certificate this order serves, under the spec's `renewBefore`, the
/// operator's floor and the subscription's end as last read.
pub fn renewal_of(run: &Run<'_>, plan: &Plan, info: &CertInfo, status: &CertificateStatus) -> Renewal {
    let floor = jiff::SignedDuration::try_from(run.ctx.shared.settings.renewal_floor).unwrap_or_default();
    let policy = RenewalPolicy { before: plan.renew_before, floor };
    plan_renewal(info, &policy, status.subscription_end.as_ref().map(|t| t.0))
}
