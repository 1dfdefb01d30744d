//! The order stage: at most one order per certificate, even across crashes, restarts, retries,
//! lost answers and lost Secrets, and never an order another certificate claims.
//!
//! The order of a certificate is, in this order: the one its status names; the one `spec.orderId`
//! adopts; the one an interrupted attempt placed (looked for in the billing's list until the grace
//! period passes and several lists missed it, only then considered never placed); the one the
//! `ispcert.dev/adopt-order` annotation names; the one a Secret left by an earlier resource came
//! from; and only then a new one ([`place`](super::place)).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use tracing::{info, warn};

use super::doubt::{self, ADOPT_ORDER_ANNOTATION, Adoption, CONFIRM_NEW_ORDER_ANNOTATION, Why};
use super::flow::{Flow, Stop, go};
use super::key::Material;
use super::ledger::{Change, Ledger};
use super::run::Run;
use super::settle::Note;
use crate::controller::account::Snapshot;
use crate::controller::claims::Claimed;
use crate::controller::context::Error;
use crate::controller::decide::{BillingPhase, Recovery, TAG_PREFIX, billing_phase, find_order};
use crate::controller::issuers::{IssuerHandle, IssuerView};
use crate::controller::plan::Plan;
use crate::controller::reasons as r;
use crate::controller::secrets::retained_order;
use crate::crd::OrderAttempt;

/// Our idempotency tag for a certificate's order, sent as `remoteid`: one need (namespace, name,
/// issuer, common name, product) has one tag, so a manifest deleted and applied again while its
/// order is pending finds that order instead of buying another. The order that replaces one the
/// billing would not prolong (`replaces`) is another need, with a tag of its own.
pub fn remote_id(namespace: &str, name: &str, issuer: &IssuerView, plan: &Plan, replaces: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut need = format!(
        "{namespace}/{name}/{}/{}/{}/{}",
        issuer.key.kind_str(),
        issuer.key.name,
        plan.common_name.to_ascii_lowercase(),
        plan.product.name
    );
    if let Some(old) = replaces {
        need.push_str(&format!("/replaces/{old}"));
    }
    format!("{TAG_PREFIX}{}", &hex::encode(Sha256::digest(need.as_bytes()))[..24])
}

/// How many reads of the list must miss a lost order, spaced by the poll interval and over at
/// least the grace period, before it counts as never placed.
const MISSES_BEFORE_REORDER: u32 = 3;

/// What the order stage works with besides the plan.
pub struct OrderCtx<'a> {
    pub plan: &'a Plan,
    pub issuer: &'a IssuerView,
    pub handle: &'a IssuerHandle,
    pub claimed: &'a Claimed,
    pub tag: String,
}

impl OrderCtx<'_> {
    /// Who may settle a doubt by adopting an order this certificate cannot prove its own.
    pub fn adoption(&self) -> Adoption {
        if self.issuer.tenancy.allow_adoption {
            Adoption::Allowed
        } else {
            Adoption::NotAllowed { issuer: self.issuer.key.to_string() }
        }
    }
}

/// The order this certificate is issued from, found, adopted or placed.
pub async fn ensure(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    output: Option<&Secret>,
) -> Result<Flow<String>, Error> {
    // A recorded order on a recorded account needs no billing client: right after a restart the
    // issuers are still being checked, and a Ready certificate must not flap to "waiting for the
    // issuer" meanwhile (later stages ask for the client when they call the billing).
    let status = ledger.status();
    if let (Some(id), Some(_)) = (&status.order_id, &status.account) {
        return Ok(Flow::Go(id.clone()));
    }
    let handle = go!(run.handle(issuer));
    if let Some(change) = account_change(ledger.status(), handle.account.key()) {
        ledger.record(change);
    }
    if let Some(id) = ledger.status().order_id.clone() {
        return Ok(Flow::Go(id));
    }
    let mut claimed = run.ctx.claimed_orders(&run.uid, handle.account.key());
    // The order being replaced is never this certificate's order again: not adopted, not
    // recovered, and no reason for doubt before the new one.
    let replaced = ledger.status().replaced_order.clone();
    claimed.surely.extend(replaced.clone());
    let tag = remote_id(&run.ns, &run.name, issuer, plan, replaced.as_deref());
    let order = OrderCtx { plan, issuer, handle: &handle, claimed: &claimed, tag };
    if let Some(id) = plan.adopt.clone().filter(|id| Some(id) != replaced.as_ref()) {
        return adopt_named(run, ledger, &order, id, "spec.orderId").await;
    }
    if let Some(attempt) = ledger.status().order_attempt.clone() {
        return recover_attempt(run, ledger, plan, &order, &attempt).await;
    }
    let named = doubt::listed(run.cert.annotations().get(ADOPT_ORDER_ANNOTATION));
    if let Some(id) = named.into_iter().next().filter(|id| Some(id) != replaced.as_ref()) {
        return adopt_named(run, ledger, &order, id, ADOPT_ORDER_ANNOTATION).await;
    }
    if let Some(flow) = adopt_retained(run, ledger, plan, &order, output).await? {
        return Ok(flow);
    }
    let placed = super::place::place(run, ledger, plan, &order, material).await?;
    Ok(match placed {
        // The certificate of the order being replaced still serves: whatever holds the new
        // order up (a refusal, the budget, a doubt) leaves Ready to what the Secret serves.
        Flow::Stop(stop) if replaced.is_some() => Flow::Stop(stop.keeping_ready()),
        flow => flow,
    })
}

/// The account to record in the status: the one of its order once there is one or an attempt
/// at one (statuses of older versions get it now), until then its issuer's. Other certificates
/// read it to tell whether an order this one names could be theirs: a certificate that is known
/// to be on another account claims nothing on this one.
fn account_change(status: &crate::crd::CertificateStatus, issuers: &str) -> Option<Change> {
    let committed = status.order_id.is_some() || status.order_attempt.is_some();
    let stale = match &status.account {
        None => true,
        Some(recorded) => !committed && recorded != issuers,
    };
    stale.then(|| Change::Account(issuers.to_string()))
}

/// What the billing holds (or, for an order found or adopted, is taken to hold) for the spec from
/// the moment an order is recorded: the approvers and the subject. Recorded with the order, so
/// that no later reconcile (after a restart, say) writes them on their own.
pub fn ordered_for(ledger: &mut Ledger, plan: &Plan) {
    ledger.record(Change::ApproversSent(plan.approver_emails()));
    if let Some(line) = super::reissue::subject_of(plan) {
        ledger.record(Change::SubjectSent(line));
    }
}

/// Records `id` as this resource's order, durably, with the event saying how it was found.
async fn adopt(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &OrderCtx<'_>,
    id: String,
    reason: &'static str,
    how: String,
) -> Result<Flow<String>, Error> {
    let account = order.handle.account.key().to_string();
    ledger.record(Change::Ordered { id: id.clone(), at: Timestamp::now(), account });
    ordered_for(ledger, order.plan);
    ledger.note(Note::normal(reason, how));
    ledger.persist(run).await?;
    Ok(Flow::Go(id))
}

/// The account's list, no older than the poll interval (everyone's shared one), and read after
/// `since` when given.
async fn listed(run: &Run<'_>, order: &OrderCtx<'_>) -> Flow<std::sync::Arc<Snapshot>> {
    listed_since(run, order, None).await
}

async fn listed_since(run: &Run<'_>, order: &OrderCtx<'_>, since: Option<Timestamp>) -> Flow<std::sync::Arc<Snapshot>> {
    let h = order.handle;
    match h.account.snapshot_since(&h.client, run.ctx.shared.settings.poll_interval, since).await {
        Ok(s) => Flow::Go(s),
        Err(e) => Flow::Stop(run.billing_stop(order.issuer, e, "listing the account's certificates")),
    }
}

/// An order the user names (`spec.orderId` or the adopt annotation): adopted when it is live,
/// nobody else's, and the issuer lets this certificate take it.
async fn adopt_named(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &OrderCtx<'_>,
    id: String,
    source: &str,
) -> Result<Flow<String>, Error> {
    let refused = |message: String| Ok(Flow::Stop(Stop::blocked(r::ORDER_REJECTED, message, None)));
    if !crate::billing::decode::is_plausible_id(&id) {
        return refused(format!("{source} {id:?} is not a billing certificate id"));
    }
    if order.claimed.is_surely(&id) {
        return refused(format!(
            "order {id} ({source}) belongs to another IspCertificate (in some namespace); one order serves one certificate"
        ));
    }
    if order.claimed.is_maybe(&id) {
        // Resolves by itself when the other one records another account: looked at again.
        let message = format!(
            "order {id} ({source}) is also named by another IspCertificate (in some namespace) that may be on the same billing account; one order serves one certificate, so this one waits until that one stops naming it or is known to be on another account"
        );
        return Ok(Flow::Stop(Stop::blocked(r::ORDER_REJECTED, message, Some(Duration::from_secs(60)))));
    }
    let snapshot = go!(listed(run, order).await);
    let row = snapshot.row(&id);
    let proven = row.is_some_and(|r| r.remote_id.as_deref() == Some(order.tag.as_str()));
    if let (Adoption::NotAllowed { issuer }, false) = (order.adoption(), proven) {
        return refused(format!(
            "{issuer} does not let its certificates adopt orders ({source} {id}); its owner can allow it with spec.allowOrderAdoption"
        ));
    }
    if billing_phase(row) == BillingPhase::Gone {
        return Ok(Flow::Stop(Stop::blocked(
            r::ORDER_NOT_FOUND,
            format!("order {id} ({source}) is not among the account's certificates, or is deleted"),
            Some(Duration::from_secs(300)),
        )));
    }
    let how = format!("adopted the existing order {id} ({source}); nothing was bought");
    adopt(run, ledger, order, id, r::ORDER_ADOPTED, how).await
}

/// A Secret left behind by a deleted IspCertificate of the same issuer, product and name points
/// at an order that exists already: adopted if it is live and nobody else's, and, for a tenant of
/// a cluster issuer that does not allow adopting, only if the order carries this need's tag.
async fn adopt_retained(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    order: &OrderCtx<'_>,
    output: Option<&Secret>,
) -> Result<Option<Flow<String>>, Error> {
    let issuer = order.issuer;
    let Some(id) = output.and_then(|s| retained_order(s, plan, issuer.key.kind_str(), &issuer.key.name)) else {
        return Ok(None);
    };
    if order.claimed.any(&id) {
        return Ok(None);
    }
    let snapshot = match listed(run, order).await {
        Flow::Go(s) => s,
        Flow::Stop(s) => return Ok(Some(Flow::Stop(s))),
    };
    let row = snapshot.row(&id);
    let proven = row.is_some_and(|r| r.remote_id.as_deref() == Some(order.tag.as_str()));
    if billing_phase(row) == BillingPhase::Gone || (order.adoption() != Adoption::Allowed && !proven) {
        return Ok(None);
    }
    let how = format!(
        "Secret {} came from order {id}, which is still live; adopted it instead of buying again",
        plan.secret_name
    );
    adopt(run, ledger, order, id, r::ORDER_ADOPTED, how).await.map(Some)
}

/// What to do about an interrupted attempt, given what the list shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptStep {
    /// The attempt's order is `id`.
    Adopt(String),
    /// Several orders fit (or one that cannot be proven ours): a person must choose.
    Ambiguous(Vec<String>),
    /// Not seen in this list; look again (this many lists have missed it).
    KeepLooking { misses: u32 },
    /// This list cannot say: it is older than the last one that missed the order, or it lacks
    /// orders known to exist. Not counted.
    Untrusted,
    /// Missed long and often enough: it was never placed.
    NeverPlaced,
}

/// One list that misses the order proves little (read while the billing was still writing it,
/// a page that shifted): it must stay missing over the grace period and several lists, counted
/// in the status so that restarts keep count, and only lists that can be trusted count. Pure.
pub fn attempt_step(
    recovery: Recovery,
    attempt: &OrderAttempt,
    age: Duration,
    grace: Duration,
    trusted: bool,
) -> AttemptStep {
    match recovery {
        Recovery::Found(id) => AttemptStep::Adopt(id),
        Recovery::Ambiguous(ids) => AttemptStep::Ambiguous(ids),
        Recovery::NotFound if !trusted => AttemptStep::Untrusted,
        Recovery::NotFound => {
            let misses = attempt.misses.unwrap_or(0).saturating_add(1);
            if age < grace || misses < MISSES_BEFORE_REORDER {
                AttemptStep::KeepLooking { misses }
            } else {
                AttemptStep::NeverPlaced
            }
        }
    }
}

/// Whether a list may count as missing an order: read after the attempt (and after the last list
/// that missed it), and showing every order some certificate knows to be live on the account.
fn trusted(snapshot: &Snapshot, attempt: &OrderAttempt, known_live: &std::collections::BTreeSet<String>) -> bool {
    let after = attempt.checked_at.as_ref().map_or(attempt.started_at.0, |t| t.0);
    snapshot.started > after && known_live.iter().all(|id| snapshot.row(id).is_some())
}

/// An attempt whose answer was lost: its order is looked for in the list.
async fn recover_attempt(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    order: &OrderCtx<'_>,
    attempt: &OrderAttempt,
) -> Result<Flow<String>, Error> {
    let settings = &run.ctx.shared.settings;
    // Only a list read after the attempt (and after the last one that missed it) can tell: every
    // certificate whose answer was lost in the same outage shares the next one.
    let after = attempt.checked_at.as_ref().map_or(attempt.started_at.0, |t| t.0);
    let snapshot = go!(listed_since(run, order, Some(after)).await);
    let rows = order.handle.account.rows(&snapshot);
    // A day's margin for clocks; `checked_sub` because the status is data anyone with the
    // status subresource could have edited.
    let started = crate::time::utc_date(attempt.started_at.0);
    let since = started.checked_sub(jiff::Span::new().days(1)).unwrap_or(started);
    let allowed = order.adoption() == Adoption::Allowed;
    let recovery = find_order(&rows, &attempt.remote_id, plan, since, order.claimed, allowed);
    let trust = trusted(&snapshot, attempt, &run.ctx.shared.claims.known_live(order.handle.account.key()));
    let age = crate::time::elapsed_since(attempt.started_at.0);
    let looking = settings.poll_interval.max(Duration::from_secs(1));
    match attempt_step(recovery, attempt, age, settings.order_grace, trust) {
        AttemptStep::Adopt(id) => {
            info!(order = %id, "found the order of an interrupted attempt");
            let how = format!(
                "found order {id} placed by an earlier attempt whose answer was lost; nothing was bought again"
            );
            adopt(run, ledger, order, id, r::ORDER_RECOVERED, how).await
        }
        AttemptStep::Ambiguous(ids) => settle_ambiguity(run, ledger, plan, order, ids, &rows).await,
        AttemptStep::Untrusted => Ok(Flow::Stop(Stop::pending(
            r::ORDER_OUTCOME_UNKNOWN,
            "an order's answer was lost; waiting for a list of the billing that can tell whether it was placed",
            looking,
        ))),
        AttemptStep::KeepLooking { misses } => {
            ledger.record(Change::AttemptMissed { misses, at: snapshot.started });
            ledger.persist(run).await?;
            Ok(Flow::Stop(Stop::pending(
                r::ORDER_OUTCOME_UNKNOWN,
                "an order's answer was lost; looking for it in the billing's list before anything is ordered again",
                looking,
            )))
        }
        AttemptStep::NeverPlaced => {
            warn!("an order attempt left no order at the billing; it was never placed");
            ledger.record(Change::AttemptAbandoned);
            ledger.persist(run).await?;
            Ok(Flow::Stop(Stop::pending(
                r::ORDERING,
                "an earlier order attempt left no order at the billing; ordering again",
                Duration::from_secs(1),
            )))
        }
    }
}

/// Several orders fit a lost answer: the adopt annotation may name one of them, or the
/// confirmation may say none is it; otherwise the certificate stops and says so.
async fn settle_ambiguity(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    order: &OrderCtx<'_>,
    ids: Vec<String>,
    rows: &[std::borrow::Cow<'_, crate::billing::CertificateRow>],
) -> Result<Flow<String>, Error> {
    let annotations = run.cert.annotations();
    if let Some(id) = doubt::listed(annotations.get(ADOPT_ORDER_ANNOTATION)).into_iter().find(|id| ids.contains(id))
        && order.adoption() == Adoption::Allowed
    {
        let how = format!("adopted order {id} ({ADOPT_ORDER_ANNOTATION}) for an attempt whose answer was lost");
        return adopt(run, ledger, order, id, r::ORDER_ADOPTED, how).await;
    }
    if doubt::confirmed(&ids, &doubt::listed(annotations.get(CONFIRM_NEW_ORDER_ANNOTATION))) {
        warn!(orders = ?ids, "none of the orders that fit a lost answer is it, says the confirmation: ordering again");
        ledger.record(Change::AttemptAbandoned);
        ledger.persist(run).await?;
        return Ok(Flow::Stop(Stop::pending(
            r::ORDERING,
            "a new order was confirmed; ordering",
            Duration::from_secs(1),
        )));
    }
    let who = (run.ns.as_str(), run.name.as_str());
    Ok(Flow::Stop(doubt::stop(Why::LostAnswer, &ids, rows, plan, who, &order.adoption())))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn a_lost_order_counts_as_never_placed_only_after_the_grace_period_and_three_trusted_misses() {
        let attempt = |misses| OrderAttempt {
            started_at: Time(Timestamp::now()),
            remote_id: "ispcert-x".into(),
            outcome_unknown: Some(true),
            misses,
            checked_at: None,
        };
        let grace = Duration::from_secs(300);
        let (young, old) = (Duration::from_secs(10), Duration::from_secs(301));
        let two = vec!["7".to_string(), "8".to_string()];
        let cases = [
            (Recovery::Found("7".into()), None, young, true, AttemptStep::Adopt("7".into())),
            (Recovery::Ambiguous(two.clone()), Some(5), old, true, AttemptStep::Ambiguous(two)),
            (Recovery::NotFound, None, young, true, AttemptStep::KeepLooking { misses: 1 }),
            (Recovery::NotFound, Some(4), young, true, AttemptStep::KeepLooking { misses: 5 }),
            (Recovery::NotFound, None, old, true, AttemptStep::KeepLooking { misses: 1 }),
            (Recovery::NotFound, Some(1), old, true, AttemptStep::KeepLooking { misses: 2 }),
            (Recovery::NotFound, Some(2), old, true, AttemptStep::NeverPlaced),
            (Recovery::NotFound, Some(u32::MAX), old, true, AttemptStep::NeverPlaced),
            (Recovery::NotFound, Some(2), old, false, AttemptStep::Untrusted),
        ];
        for (recovery, misses, age, trust, want) in cases {
            let got = attempt_step(recovery.clone(), &attempt(misses), age, grace, trust);
            assert_eq!(got, want, "{recovery:?} {misses:?} {age:?} trusted={trust}");
        }
    }

    #[test]
    fn the_account_follows_the_issuer_until_an_order_is_committed_to_one() {
        use crate::crd::CertificateStatus;
        let attempt = OrderAttempt {
            started_at: Time(Timestamp::now()),
            remote_id: "t".into(),
            outcome_unknown: None,
            misses: None,
            checked_at: None,
        };
        let on = |account: Option<&str>| CertificateStatus { account: account.map(String::from), ..Default::default() };
        let ordered = |account: Option<&str>| CertificateStatus { order_id: Some("7".into()), ..on(account) };
        let trying = CertificateStatus { order_attempt: Some(Box::new(attempt)), ..on(Some("A")) };
        let cases = [
            (on(None), Some("B")),
            (on(Some("A")), Some("B")),
            (on(Some("B")), None),
            (ordered(None), Some("B")),
            (ordered(Some("A")), None),
            (trying, None),
        ];
        for (status, want) in cases {
            let got = account_change(&status, "B");
            assert_eq!(got, want.map(|a| Change::Account(a.into())), "{status:?}");
        }
    }

    #[test]
    fn only_a_later_and_complete_list_counts_as_missing_the_order() {
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let row = |id: &str| crate::billing::CertificateRow { id: id.into(), ..Default::default() };
        let attempt = OrderAttempt {
            started_at: Time(t0),
            remote_id: "t".into(),
            outcome_unknown: Some(true),
            misses: Some(1),
            checked_at: Some(Time(at(30))),
        };
        let live: std::collections::BTreeSet<String> = ["5".to_string()].into();
        assert!(trusted(&Snapshot::new(at(60), vec![row("5")]), &attempt, &live));
        assert!(!trusted(&Snapshot::new(at(20), vec![row("5")]), &attempt, &live), "older than the last miss");
        assert!(!trusted(&Snapshot::new(at(60), vec![row("6")]), &attempt, &live), "a known order is missing");
    }
}
