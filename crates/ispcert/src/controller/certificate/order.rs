//! The order stage: at most one order per certificate, even across crashes, restarts, retries,
//! lost answers and lost Secrets.
//!
//! The order of a certificate is, in this order: the one its status names; the one `spec.orderId`
//! adopts; the one an interrupted attempt placed (looked for in the billing's list until the grace
//! period passes, only then considered never placed); the one a Secret left by an earlier
//! resource came from; and only then a new one ([`place`](super::place)).

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use tracing::{info, warn};

use super::flow::{Flow, Stop, go};
use super::key::Material;
use super::ledger::{Change, Ledger};
use super::run::Run;
use super::settle::Note;
use crate::controller::context::Error;
use crate::controller::decide::{BillingPhase, Recovery, TAG_PREFIX, billing_phase, find_order};
use crate::controller::issuers::{IssuerHandle, IssuerView};
use crate::controller::plan::Plan;
use crate::controller::reasons as r;
use crate::controller::secrets::retained_order;
use crate::crd::OrderAttempt;

/// Our idempotency tag for a certificate's order, sent as `remoteid`: one need (namespace, name,
/// issuer, common name, product) has one tag, so a manifest deleted and applied again while its
/// order is pending finds that order instead of buying another.
pub fn remote_id(namespace: &str, name: &str, issuer: &IssuerView, plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let need = format!(
        "{namespace}/{name}/{}/{}/{}/{}",
        issuer.key.kind_str(),
        issuer.key.name,
        plan.common_name.to_ascii_lowercase(),
        plan.product.name
    );
    format!("{TAG_PREFIX}{}", &hex::encode(Sha256::digest(need.as_bytes()))[..24])
}

/// How many reads of the list must miss a lost order, spaced by the poll interval and over at
/// least the grace period, before it counts as never placed.
const MISSES_BEFORE_REORDER: u32 = 3;

/// The order this certificate is issued from, found, adopted or placed.
pub async fn ensure(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    output: Option<&Secret>,
) -> Result<Flow<String>, Error> {
    if let Some(id) = ledger.status().order_id.clone() {
        return Ok(Flow::Go(id));
    }
    let handle = go!(run.handle(issuer));
    let claimed = run.ctx.claimed_orders(&run.uid);
    if let Some(id) = plan.adopt.clone() {
        return adopt_spec_order(run, ledger, &handle, issuer, id, &claimed).await;
    }
    if let Some(attempt) = ledger.status().order_attempt.clone() {
        return recover_attempt(run, ledger, &handle, plan, issuer, &attempt, &claimed).await;
    }
    // A Secret left behind by a deleted IspCertificate of the same issuer, product and name
    // points at an order that exists already.
    if let Some(id) = output.and_then(|s| retained_order(s, plan, issuer.key.kind_str(), &issuer.key.name))
        && !claimed.contains(&id)
        && go!(is_live(run, &handle, issuer, &id).await)
    {
        let how = format!(
            "Secret {} came from order {id}, which is still live; adopted it instead of buying again",
            plan.secret_name
        );
        return adopt(run, ledger, id, r::ORDER_ADOPTED, how).await;
    }
    let tag = remote_id(&run.ns, &run.name, issuer, plan);
    super::place::place(run, ledger, plan, issuer, material, tag, claimed).await
}

/// Records `id` as this resource's order, durably, with the event saying how it was found.
async fn adopt(
    run: &Run<'_>,
    ledger: &mut Ledger,
    id: String,
    reason: &'static str,
    how: String,
) -> Result<Flow<String>, Error> {
    ledger.record(Change::Ordered { id: id.clone(), at: Timestamp::now() });
    ledger.note(Note::normal(reason, how));
    ledger.persist(run).await?;
    Ok(Flow::Go(id))
}

/// Whether the account's list (fresh) shows order `id` as not deleted.
async fn is_live(run: &Run<'_>, handle: &IssuerHandle, issuer: &IssuerView, id: &str) -> Flow<bool> {
    match handle.poller.snapshot(&handle.client, Duration::ZERO).await {
        Ok(snapshot) => Flow::Go(!matches!(billing_phase(snapshot.row(id)), BillingPhase::Gone)),
        Err(e) => Flow::Stop(run.billing_stop(issuer, e, "listing the account's certificates")),
    }
}

/// `spec.orderId`: an order bought elsewhere, adopted when it is live and nobody else's.
async fn adopt_spec_order(
    run: &Run<'_>,
    ledger: &mut Ledger,
    handle: &IssuerHandle,
    issuer: &IssuerView,
    id: String,
    claimed: &HashSet<String>,
) -> Result<Flow<String>, Error> {
    if claimed.contains(&id) {
        return Ok(Flow::Stop(Stop::blocked(
            r::ORDER_REJECTED,
            format!(
                "order {id} (spec.orderId) already belongs to another IspCertificate; one order serves one certificate"
            ),
            None,
        )));
    }
    let snapshot = match handle.poller.snapshot(&handle.client, run.ctx.shared.settings.poll_interval).await {
        Ok(s) => s,
        Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "listing the account's certificates"))),
    };
    if billing_phase(snapshot.row(&id)) == BillingPhase::Gone {
        return Ok(Flow::Stop(Stop::blocked(
            r::ORDER_NOT_FOUND,
            format!("order {id} (spec.orderId) is not among the account's certificates, or is deleted"),
            Some(Duration::from_secs(300)),
        )));
    }
    let how = format!("adopted the existing order {id}; nothing was bought");
    adopt(run, ledger, id, r::ORDER_ADOPTED, how).await
}

/// What to do about an interrupted attempt, given what the list shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptStep {
    /// The attempt's order is `id`.
    Adopt(String),
    /// Several orders fit: a person must choose.
    Ambiguous(Vec<String>),
    /// Not seen yet; look again (this many reads have missed it).
    KeepLooking { misses: u32 },
    /// Missed long and often enough: it was never placed.
    NeverPlaced,
}

/// One read that misses the order proves little (a list read while the billing was still writing
/// it, a page that shifted): it must stay missing over the grace period and several reads,
/// counted in the status so that restarts keep count. Pure.
pub fn attempt_step(recovery: Recovery, attempt: &OrderAttempt, age: Duration, grace: Duration) -> AttemptStep {
    match recovery {
        Recovery::Found(id) => AttemptStep::Adopt(id),
        Recovery::Ambiguous(ids) => AttemptStep::Ambiguous(ids),
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

/// An attempt whose answer was lost: its order is looked for in a fresh list.
async fn recover_attempt(
    run: &Run<'_>,
    ledger: &mut Ledger,
    handle: &IssuerHandle,
    plan: &Plan,
    issuer: &IssuerView,
    attempt: &OrderAttempt,
    claimed: &HashSet<String>,
) -> Result<Flow<String>, Error> {
    let settings = &run.ctx.shared.settings;
    let snapshot = match handle.poller.snapshot(&handle.client, Duration::ZERO).await {
        Ok(s) => s,
        Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "looking for an order whose answer was lost"))),
    };
    // A day's margin for clocks; `checked_sub` because the status is data anyone with the
    // status subresource could have edited.
    let started = crate::time::utc_date(attempt.started_at.0);
    let since = started.checked_sub(jiff::Span::new().days(1)).unwrap_or(started);
    let recovery = find_order(&snapshot.rows, &attempt.remote_id, plan, since, claimed);
    let age = crate::time::elapsed_since(attempt.started_at.0);
    let looking = settings.poll_interval.max(Duration::from_secs(1));
    match attempt_step(recovery, attempt, age, settings.order_grace) {
        AttemptStep::Adopt(id) => {
            info!(order = %id, "found the order of an interrupted attempt");
            let how = format!(
                "found order {id} placed by an earlier attempt whose answer was lost; nothing was bought again"
            );
            adopt(run, ledger, id, r::ORDER_RECOVERED, how).await
        }
        AttemptStep::Ambiguous(ids) => Ok(Flow::Stop(Stop::blocked(
            r::ORDER_OUTCOME_UNKNOWN,
            format!(
                "an order attempt's answer was lost and orders {} all fit it; to avoid buying twice nothing is ordered: set spec.orderId on a new IspCertificate to the right one",
                ids.join(", ")
            ),
            None,
        ))),
        AttemptStep::KeepLooking { misses } => {
            ledger.record(Change::AttemptMissed { misses });
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
                Duration::ZERO,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn a_lost_order_counts_as_never_placed_only_after_the_grace_period_and_three_misses() {
        let attempt = |misses| OrderAttempt {
            started_at: Time(Timestamp::now()),
            remote_id: "ispcert-x".into(),
            outcome_unknown: Some(true),
            misses,
        };
        let grace = Duration::from_secs(300);
        let (young, old) = (Duration::from_secs(10), Duration::from_secs(301));
        let cases = [
            (Recovery::Found("7".into()), None, young, AttemptStep::Adopt("7".into())),
            (
                Recovery::Ambiguous(vec!["7".into(), "8".into()]),
                Some(5),
                old,
                AttemptStep::Ambiguous(vec!["7".into(), "8".into()]),
            ),
            (Recovery::NotFound, None, young, AttemptStep::KeepLooking { misses: 1 }),
            (Recovery::NotFound, Some(4), young, AttemptStep::KeepLooking { misses: 5 }),
            (Recovery::NotFound, None, old, AttemptStep::KeepLooking { misses: 1 }),
            (Recovery::NotFound, Some(1), old, AttemptStep::KeepLooking { misses: 2 }),
            (Recovery::NotFound, Some(2), old, AttemptStep::NeverPlaced),
            (Recovery::NotFound, Some(u32::MAX), old, AttemptStep::NeverPlaced),
        ];
        for (recovery, misses, age, want) in cases {
            assert_eq!(
                attempt_step(recovery.clone(), &attempt(misses), age, grace),
                want,
                "{recovery:?} {misses:?} {age:?}"
            );
        }
    }
}
