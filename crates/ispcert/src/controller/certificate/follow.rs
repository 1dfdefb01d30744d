//! Following an order to its certificate: the Secret may already hold a good one; otherwise the
//! order is followed through the account's list (one call for every pending certificate), the
//! certificate is downloaded, and the download is judged: stored, waited for, or reissued for
//! free when it does not fit.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::flow::{Flow, Stop, go};
use super::key::Material;
use super::ledger::{Change, Ledger};
use super::output::{apply_secret, chain_in};
use super::reissue::{self, Repeat};
use super::run::Run;
use super::serving::{self, refresh_subscription, renew_request, renewal_of};
use super::settle::Note;
use super::store;
use crate::billing::BillingError;
use crate::controller::context::Error;
use crate::controller::decide::{BillingPhase, ReissueNeed, Verdict, billing_date, billing_phase, judge, order_state};
use crate::controller::issuers::IssuerView;
use crate::controller::plan::Plan;
use crate::controller::reasons as r;
use crate::controller::renewal::Renewal;
use crate::controller::secrets::{ANN_ORDER_ID, Provenance, managed_for, tls_secret};
use crate::crd::CertificateStatus;
use crate::pki::chain::Chain;
use crate::pki::keys;

/// What every step after the order works with: the plan, the issuer, the key and the order id.
pub struct Order<'a> {
    pub plan: &'a Plan,
    pub issuer: &'a IssuerView,
    pub material: &'a Material,
    pub id: &'a str,
}

impl Order<'_> {
    /// Where a Secret written for this order comes from, for its annotations.
    pub fn provenance<'b>(&'b self, run: &'b Run<'_>) -> Provenance<'b> {
        Provenance {
            certificate: &run.name,
            issuer_kind: self.issuer.key.kind_str(),
            issuer_name: &self.issuer.key.name,
            order_id: self.id,
        }
    }
}

pub async fn converge(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    order_id: &str,
    existing: Option<Secret>,
) -> Result<Flow<()>, Error> {
    let order = Order { plan, issuer, material, id: order_id };
    let renew_asked = renew_request(run, ledger.status());
    // An order replacing one the billing would not prolong: the Secret's certificate counts only
    // once it comes from the new order; then the old order is dealt with.
    let replacing = ledger.status().replaced_order.clone();
    if let Some(old) = &replacing
        && existing.as_ref().and_then(|s| s.annotations().get(ANN_ORDER_ID)).map(String::as_str) == Some(order_id)
    {
        go!(super::prolong::retire_replaced(run, ledger, &order, old).await);
    }
    // The Secret may hold a good certificate already: then nothing is asked of the billing.
    if ledger.status().reissue.is_none()
        && ledger.status().replaced_order.is_none()
        && let Some(s) = existing.as_ref().filter(|s| managed_for(s, &run.name))
        && let Some(stored) = chain_in(s)
    {
        let info = stored.leaf_info();
        if judge(plan, &info, &material.bits, None, run.now) == Verdict::Accept {
            return serving::next(run, ledger, &order, stored, &info, renew_asked, existing.as_ref()).await;
        }
    }
    let repeat = repeat_now(run, ledger, renew_asked);
    if let (Repeat::Again(attempt), Some(re)) = (repeat, ledger.status().reissue.clone()) {
        let serial = re.previous_serial.clone().unwrap_or_default();
        return reissue::request(run, ledger, &order, reissue::need_of(&re.reason), &serial, (attempt, None)).await;
    }
    // A new order or a reissue is followed through the list; a known certificate whose Secret
    // was lost is downloaded directly.
    let flow = follow_billing(run, ledger, &order, existing.as_ref()).await?;
    Ok(match (flow, repeat) {
        (Flow::Stop(stop), Repeat::Exhausted) if stop.ready != Some(true) => {
            Flow::Stop(exhausted(run, ledger.status(), stop))
        }
        (flow, _) => flow,
    })
}

/// Whether a reissue under way is due again (timed out, refused by the CA). A renewal asked for
/// meanwhile is answered by it, or starts a fresh series when it was given up on. Records the
/// request as handled.
fn repeat_now(run: &Run<'_>, ledger: &mut Ledger, renew_asked: Option<String>) -> Repeat {
    let settings = &run.ctx.shared.settings;
    let mut repeat = match &ledger.status().reissue {
        Some(re) => {
            reissue::repeat(re, settings.reissue_timeout, settings.backoff_max, settings.reissue_attempts, run.now)
        }
        None => Repeat::Wait,
    };
    if let Some(value) = renew_asked {
        // A reissue under way answers the request; one given up on is requested afresh.
        ledger.record(Change::RenewRequestHandled(value));
        let given_up =
            ledger.status().reissue.as_ref().is_some_and(|re| re.attempts.unwrap_or(1) >= settings.reissue_attempts);
        if repeat == Repeat::Exhausted || given_up {
            repeat = Repeat::Again(1);
        }
    }
    repeat
}

/// Polls (for a new order or a reissue), downloads and judges.
async fn follow_billing(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    existing: Option<&Secret>,
) -> Result<Flow<()>, Error> {
    let status = ledger.status();
    if status.serial_number.is_none() || status.reissue.is_some() || status.replaced_order.is_some() {
        go!(poll(run, ledger, order).await);
    }
    let downloaded = go!(download(run, order).await);
    judged(run, ledger, order, downloaded, existing).await
}

/// A reissue requested as often as allowed and still not completed: a person must look.
fn exhausted(run: &Run<'_>, status: &CertificateStatus, pending: Stop) -> Stop {
    let Some(re) = &status.reissue else { return pending };
    let attempts = re.attempts.unwrap_or(1);
    let order = status.order_id.as_deref().unwrap_or("?");
    let (reason, what) = if re.failed == Some(true) {
        (
            r::REISSUE_FAILED,
            format!("the CA refused the free reissue of order {order} ({}) {attempts} times", re.reason),
        )
    } else {
        (
            r::REISSUE_STUCK,
            format!(
                "the free reissue of order {order} ({}) was requested {attempts} times and not completed",
                re.reason
            ),
        )
    };
    Stop::blocked(
        reason,
        format!(
            "{what}: check the approver mailboxes and the order in the billing panel, then run `ispcert renew {} -n {}` to request it again",
            run.name, run.ns
        ),
        // The billing may still complete it: look now and then.
        Some(Duration::from_secs(600)),
    )
}

/// How long a pending certificate waits before it looks again.
fn poll_wait(run: &Run<'_>) -> Duration {
    run.ctx.shared.settings.poll_interval.max(Duration::from_millis(200))
}

/// The order's state in the account's list (shared by every pending certificate of the account):
/// go on to download when it is active.
async fn poll(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>) -> Flow<()> {
    let handle = match run.handle(order.issuer) {
        Flow::Go(h) => h,
        Flow::Stop(s) => return Flow::Stop(s),
    };
    let settings = &run.ctx.shared.settings;
    let snapshot = match handle.account.snapshot(&handle.client, settings.poll_interval).await {
        Ok(s) => s,
        Err(e) => return Flow::Stop(run.billing_stop(order.issuer, e, "polling the billing")),
    };
    // A list read before our last change cannot tell its outcome, and no certificate reads a
    // list of its own (N changes in a burst would cost N lists of a growing list). A new order
    // asks for its certificate directly (one call, which instant issuers answer at once); a
    // reissue waits for the next shared list.
    if let Some(changed) = last_change(ledger.status())
        && snapshot.started < changed
    {
        if ledger.status().reissue.is_none() {
            return Flow::Go(());
        }
        let what = format!("order {}: waiting for the billing's next list", order.id);
        return Flow::Stop(Stop::pending(r::PENDING, what, poll_wait(run)));
    }
    let row = snapshot.row(order.id);
    if let Some(row) = row {
        ledger.record(Change::OrderState(order_state(row)));
        if let Some(end) = row.expires.as_deref().and_then(billing_date) {
            ledger.record(Change::SubscriptionEnd(end));
        }
    }
    let recent =
        ledger.status().ordered_at.as_ref().is_some_and(|t| crate::time::elapsed_since(t.0) < settings.order_grace);
    let phase = billing_phase(row);
    if phase == BillingPhase::Failed && ledger.status().reissue.is_some() {
        // A refused reissue is requested again after the backoff (`reissue::repeat`), up to the
        // allowed number of times; the order itself is fine.
        ledger.record(Change::ReissueFailed);
        let what =
            format!("order {}: the CA refused the free reissue; it is requested again after a backoff", order.id);
        return Flow::Stop(Stop::pending(r::REISSUE_FAILED, what, settings.backoff_max));
    }
    match phase_stop(&phase, order.id, recent, poll_wait(run)) {
        None => Flow::Go(()),
        Some((change, stop)) => {
            if let Some(change) = change {
                ledger.record(change);
            }
            Flow::Stop(stop)
        }
    }
}

/// When this certificate last changed its order at the billing: a reissue request, else the
/// order itself.
fn last_change(status: &crate::crd::CertificateStatus) -> Option<jiff::Timestamp> {
    match &status.reissue {
        Some(reissue) => Some(reissue.requested_at.0),
        None => status.ordered_at.as_ref().map(|t| t.0),
    }
}

/// What a phase other than active means for the certificate, with the status change it brings.
/// `recent` tells whether the order is younger than the grace period: the billing may list a new
/// order a moment after answering it. Pure.
pub fn phase_stop(
    phase: &BillingPhase,
    order_id: &str,
    recent: bool,
    wait: Duration,
) -> Option<(Option<Change>, Stop)> {
    let ten_minutes = Some(Duration::from_secs(600));
    let stop = match phase {
        BillingPhase::Active => return None,
        BillingPhase::Pending(what) => {
            Stop::pending(r::PENDING, format!("order {order_id} is {what} at the billing"), wait)
        }
        BillingPhase::Gone if recent => {
            Stop::pending(r::PENDING, format!("order {order_id} is not listed by the billing yet"), wait)
        }
        BillingPhase::Gone => {
            return Some((
                Some(Change::OrderState("deleted".into())),
                Stop::blocked(
                    r::ORDER_NOT_FOUND,
                    format!(
                        "order {order_id} is no longer among the account's certificates (deleted at the billing?). Nothing is ordered again automatically: delete and re-create this IspCertificate to buy a new one"
                    ),
                    ten_minutes,
                ),
            ));
        }
        BillingPhase::Failed => Stop::blocked(
            r::ORDER_FAILED,
            format!(
                "the CA refused to issue order {order_id}; check the approver mailboxes and the order in the billing panel"
            ),
            ten_minutes,
        ),
        BillingPhase::Suspended => Stop::blocked(
            r::ORDER_SUSPENDED,
            format!("order {order_id} is suspended at the billing; renew or reactivate it in the billing panel"),
            ten_minutes,
        ),
    };
    Some((None, stop))
}

/// The certificate as the billing delivers it, once the CA has issued it.
async fn download(run: &Run<'_>, order: &Order<'_>) -> Flow<Chain> {
    let handle = match run.handle(order.issuer) {
        Flow::Go(h) => h,
        Flow::Stop(s) => return Flow::Stop(s),
    };
    match handle.client.download(order.id).await {
        Ok(c) => Flow::Go(c),
        Err(BillingError::NotIssuedYet) => Flow::Stop(Stop::pending(
            r::PENDING,
            format!("order {}: the CA has not issued the certificate yet", order.id),
            poll_wait(run),
        )),
        Err(e) => Flow::Stop(run.billing_stop(order.issuer, e, "downloading the certificate")),
    }
}

/// Acts on the judgement of a download: store it, wait for the reissue, or reissue.
async fn judged(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    downloaded: Chain,
    existing: Option<&Secret>,
) -> Result<Flow<()>, Error> {
    let info = downloaded.leaf_info();
    let previous = ledger.status().reissue.as_ref().and_then(|r| r.previous_serial.clone());
    match judge(order.plan, &info, &order.material.bits, previous.as_deref(), run.now) {
        Verdict::Accept => store::store(run, ledger, order, downloaded, existing).await,
        Verdict::StillPrevious => {
            if existing.is_none() {
                restore_previous(run, ledger, order, &downloaded).await?;
            }
            Ok(Flow::Stop(Stop::pending(
                r::REISSUING,
                format!("order {}: waiting for the reissued certificate", order.id),
                poll_wait(run),
            )))
        }
        Verdict::Reissue(ReissueNeed::Renewal) => {
            // An expired certificate is renewed only within a subscription that lets the renewal
            // live; otherwise the subscription's end is what to act on (reissues near it would
            // each live shorter than the last).
            go!(refresh_subscription(run, ledger, order).await);
            if let Renewal::SubscriptionEnds(_) = renewal_of(run, order.plan, &info, ledger.status()) {
                return Ok(Flow::Stop(Stop::blocked(
                    r::SUBSCRIPTION_ENDED,
                    format!("order {}: the subscription has ended; prolong it in the billing panel", order.id),
                    Some(Duration::from_secs(600)),
                )));
            }
            reissue::request(run, ledger, order, ReissueNeed::Renewal, &info.serial, (1, None)).await
        }
        Verdict::Reissue(need) => {
            // A reissue that completed and still does not fit counts as another attempt for
            // the same need: a few in a row, then a person looks.
            let attempt = match &ledger.status().reissue {
                Some(re) if reissue::need_of(&re.reason) == need => re.attempts.unwrap_or(1).saturating_add(1),
                _ => 1,
            };
            if attempt > run.ctx.shared.settings.reissue_attempts {
                let what = format!(
                    "order {}: {} free reissues ({}) in a row gave a certificate that does not fit",
                    order.id,
                    attempt - 1,
                    need.reason()
                );
                let todo = format!(
                    "check the key Secret and the order in the billing panel, then run `ispcert renew {} -n {}`",
                    run.name, run.ns
                );
                return Ok(Flow::Stop(Stop::blocked(r::REISSUE_STUCK, format!("{what}; {todo}"), None)));
            }
            reissue::request(run, ledger, order, need, &info.serial, (attempt, None)).await
        }
        Verdict::Reject(why) => Ok(Flow::Stop(Stop::blocked(r::CERTIFICATE_MISMATCH, why, None))),
    }
}

/// The Secret was lost while the reissue waits for approval (which can take days): serve the
/// certificate being replaced meanwhile, with the key it was issued for.
async fn restore_previous(run: &Run<'_>, ledger: &mut Ledger, order: &Order<'_>, served: &Chain) -> Result<(), Error> {
    let bits = served.leaf_info().public_key_bits;
    let material = order.material;
    let Some(key) = [Some(&material.key), material.previous.as_ref()]
        .into_iter()
        .flatten()
        .find(|k| keys::public_key_bits(k).is_ok_and(|b| b == bits))
    else {
        return Ok(());
    };
    let desired = tls_secret(order.plan, &order.provenance(run), &run.ns, served, key);
    apply_secret(run, &desired).await?;
    ledger.note(Note::normal(
        r::SECRET_RESTORED,
        format!("Secret {} was missing; restored the certificate being reissued", order.plan.secret_name),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_but_active_stops_with_its_reason() {
        let wait = Duration::from_secs(1);
        let reason = |phase: BillingPhase, recent: bool| {
            phase_stop(&phase, "7", recent, wait).map(|(change, stop)| (change, stop.reason, stop.ready))
        };
        assert_eq!(reason(BillingPhase::Active, false), None);
        assert_eq!(reason(BillingPhase::Pending("processing".into()), false), Some((None, r::PENDING, None)));
        assert_eq!(
            reason(BillingPhase::Gone, true),
            Some((None, r::PENDING, None)),
            "a new order may not be listed yet"
        );
        assert_eq!(
            reason(BillingPhase::Gone, false),
            Some((Some(Change::OrderState("deleted".into())), r::ORDER_NOT_FOUND, Some(false)))
        );
        assert_eq!(reason(BillingPhase::Failed, false), Some((None, r::ORDER_FAILED, Some(false))));
        assert_eq!(reason(BillingPhase::Suspended, true), Some((None, r::ORDER_SUSPENDED, Some(false))));
        let (_, stop) = phase_stop(&BillingPhase::Pending("processing".into()), "7", false, wait).unwrap();
        assert_eq!(stop.message, "order 7 is processing at the billing");
    }
}
