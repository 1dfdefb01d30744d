//! Placing a new order: the one path that spends money.
//!
//! The decision is made on a fresh read of the resource (the cache may lag behind our own writes:
//! an order id or attempt written a moment ago, a deletion begun) and, under the account's order
//! lock, on the account's list plus the orders this process placed since it was read: our tag
//! already there is our order; an unclaimed order for the same name and product is a doubt a
//! person settles; an exhausted budget stops. Then the intent (`status.orderAttempt`, with our
//! `remoteid` tag) is written with a resourceVersion precondition, the order is placed, and its
//! id written the moment the billing returns it; a lost answer leaves the attempt marked, so that
//! the next reconcile looks for the order instead of buying again.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tracing::info;

use super::doubt::{self, CONFIRM_NEW_ORDER_ANNOTATION, Why};
use super::flow::{Flow, Stop, go};
use super::key::Material;
use super::ledger::{Change, Intent, Ledger};
use super::order::OrderCtx;
use super::run::Run;
use super::settle::Note;
use crate::billing::{BillingError, BillingKeyPair, CertificateRow, OrderKey, OrderRequest};
use crate::controller::account::Placed;
use crate::controller::claims::Claimed;
use crate::controller::context::{Error, KubeResult};
use crate::controller::decide::{orders_since, unclaimed_orders};
use crate::controller::metrics::{IssuerLabels, OutcomeLabels};
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::reasons as r;
use crate::crd::{IspCertificate, OrderAttempt};

/// The window of an issuer's order budget.
const BUDGET_WINDOW: SignedDuration = SignedDuration::from_hours(24);

fn order_request(plan: &Plan, material: &Material, tag: String) -> OrderRequest {
    let key = match plan.key {
        KeyPlan::Billing => OrderKey::Billing(BillingKeyPair { csr: material.csr.clone(), key: material.key.clone() }),
        _ => OrderKey::Csr(material.csr.clone()),
    };
    OrderRequest {
        pricelist: plan.pricelist,
        period: plan.period,
        common_name: plan.common_name.clone(),
        alt_names: plan.alt_names.clone(),
        addon: plan.addon,
        approvers: plan.approvers.clone(),
        subject: plan.billing_subject(),
        admin: plan.admin.clone(),
        tech: plan.tech.clone(),
        key,
        remote_id: Some(tag),
    }
}

/// What the account's list says about a new order. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Before {
    /// An order carrying this need's tag: ours already.
    Ours(String),
    /// Unclaimed orders for the same name and product, not confirmed away.
    Doubt(Vec<String>),
    /// The issuer's budget allows no further order now.
    OverBudget {
        used: usize,
        budget: u32,
    },
    Order,
}

/// What the decision reads.
pub struct Facts<'a, R: Borrow<CertificateRow>> {
    pub rows: &'a [R],
    pub tag: &'a str,
    pub plan: &'a Plan,
    pub claimed: &'a Claimed,
    /// The ids the person confirmed a new order despite.
    pub confirmed: &'a BTreeSet<String>,
    pub budget: u32,
    /// Orders counted against the budget in its window.
    pub used: usize,
}

pub fn before_ordering<R: Borrow<CertificateRow>>(f: &Facts<'_, R>) -> Before {
    if let Some(r) = f
        .rows
        .iter()
        .map(Borrow::borrow)
        .find(|r| !r.id.is_empty() && r.remote_id.as_deref() == Some(f.tag) && r.item_status != Some(4))
    {
        return Before::Ours(r.id.clone());
    }
    let doubtful = unclaimed_orders(f.rows, f.plan, f.claimed);
    if !doubtful.is_empty() && !doubt::confirmed(&doubtful, f.confirmed) {
        return Before::Doubt(doubtful);
    }
    if f.used >= f.budget as usize {
        return Before::OverBudget { used: f.used, budget: f.budget };
    }
    Before::Order
}

pub async fn place(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    order: &OrderCtx<'_>,
    material: &Material,
) -> Result<Flow<String>, Error> {
    let fresh = go!(fresh_resource(run).await?);
    let (handle, issuer) = (order.handle, order.issuer);
    // From the last look at the list until the order is recorded, no other order of the account
    // is decided: the budget and the doubt see every order placed before.
    let _turn = handle.account.ordering().await;
    let snapshot = match handle.account.snapshot(&handle.client, run.ctx.shared.settings.poll_interval).await {
        Ok(s) => s,
        Err(e) => {
            return Ok(Flow::Stop(run.billing_stop(issuer, e, "listing the account's certificates before ordering")));
        }
    };
    let rows = handle.account.rows(&snapshot);
    let now = Timestamp::now();
    let since = now.checked_sub(BUDGET_WINDOW).unwrap_or(now);
    let (recorded, attempts) = run.ctx.shared.claims.recent_orders(&issuer.key, since);
    let facts = Facts {
        rows: &rows,
        tag: &order.tag,
        plan,
        claimed: order.claimed,
        confirmed: &doubt::listed(run.cert.annotations().get(CONFIRM_NEW_ORDER_ANNOTATION)),
        budget: issuer.spec.order_budget(),
        used: orders_since(&rows, crate::time::utc_date(since), &recorded, attempts),
    };
    let decision = before_ordering(&facts);
    set_budget_metric(run, issuer, matches!(decision, Before::OverBudget { .. }));
    match decision {
        Before::Ours(id) => {
            let account = handle.account.key().to_string();
            ledger.record(Change::Ordered { id: id.clone(), at: now, account });
            super::order::ordered_for(ledger, plan);
            let how = format!("order {id} carries this certificate's tag already; nothing was bought again");
            ledger.note(Note::normal(r::ORDER_RECOVERED, how));
            ledger.persist(run).await?;
            Ok(Flow::Go(id))
        }
        Before::Doubt(ids) => {
            let who = (run.ns.as_str(), run.name.as_str());
            Ok(Flow::Stop(doubt::stop(Why::Unclaimed, &ids, &rows, plan, who, &order.adoption())))
        }
        Before::OverBudget { used, budget } => Ok(Flow::Stop(over_budget(issuer, used, budget))),
        Before::Order => order_now(run, ledger, plan, order, material, &fresh).await,
    }
}

/// Writes the intent, orders, journals and records the answer.
async fn order_now(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    order: &OrderCtx<'_>,
    material: &Material,
    fresh: &IspCertificate,
) -> Result<Flow<String>, Error> {
    let handle = order.handle;
    let attempt = OrderAttempt {
        started_at: Time(Timestamp::now()),
        remote_id: order.tag.clone(),
        outcome_unknown: None,
        misses: None,
        checked_at: None,
    };
    if let Intent::Conflict = ledger.write_intent(run, fresh, attempt).await? {
        let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_secs(1));
        return Ok(Flow::Stop(Stop::pending(r::ORDERING, "the resource changed while ordering; deciding again", wait)));
    }
    // From here on the resource's status on the server carries the attempt.
    info!(product = plan.product.name, pricelist = plan.pricelist, "ordering");
    let started = Timestamp::now();
    // No invalidation of the shared list: the journal shows this order to every later decision,
    // and its follower waits for a list read after it. (Invalidating made each of N orders in a
    // burst re-read the whole growing list: quadratic.)
    let result = handle.client.order(&order_request(plan, material, order.tag.clone())).await;
    let placed = |id: Option<String>| Placed {
        id,
        common_name: plan.common_name.clone(),
        pricelist: plan.pricelist,
        remote_id: order.tag.clone(),
        at: started,
    };
    match &result {
        Ok(id) => handle.account.journal(placed(Some(id.clone()))),
        Err(e) if e.may_have_charged() => handle.account.journal(placed(None)),
        Err(_) => {}
    }
    record(run, ledger, plan, order, result).await
}

/// The resource as the server holds it now, when nothing there forbids ordering: no order or
/// attempt the cache did not show yet, and no deletion begun meanwhile.
async fn fresh_resource(run: &Run<'_>) -> Result<Flow<IspCertificate>, Error> {
    let fresh = run.api.get_status(&run.name).await.doing(|| format!("read status of {}", run.key()))?;
    let status = fresh.status.clone().unwrap_or_default();
    let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_secs(1));
    if fresh.metadata.deletion_timestamp.is_some() {
        return Ok(Flow::Stop(Stop::pending(
            r::ORDERING,
            "the certificate is being deleted; nothing is ordered",
            wait,
        )));
    }
    if status.order_id.is_some() || status.order_attempt.is_some() {
        return Ok(Flow::Stop(Stop::pending(r::ORDERING, "the order is already under way", wait)));
    }
    Ok(Flow::Go(fresh))
}

/// The stop of an exhausted budget: it waits for the window to move on or a person to raise it.
fn over_budget(issuer: &crate::controller::issuers::IssuerView, used: usize, budget: u32) -> Stop {
    let message = format!(
        "{} allows {budget} new orders per 24 hours (spec.orderBudget) and {used} count already (from the billing's list and the certificates' statuses); nothing is ordered until the window moves on or the budget is raised",
        issuer.key
    );
    Stop::blocked(r::ORDER_BUDGET_EXHAUSTED, message, Some(Duration::from_secs(15 * 60)))
}

fn set_budget_metric(run: &Run<'_>, issuer: &crate::controller::issuers::IssuerView, exhausted: bool) {
    let labels = IssuerLabels {
        issuer_kind: issuer.key.kind_str().into(),
        issuer_namespace: issuer.key.namespace.clone(),
        issuer_name: issuer.key.name.clone(),
    };
    run.ctx.shared.metrics.budget_exhausted.get_or_create(&labels).set(i64::from(exhausted));
}

/// Records the billing's answer to an order: the id at once, a lost answer as such, a refusal
/// as a stop that says what to do.
async fn record(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    order: &OrderCtx<'_>,
    result: Result<String, BillingError>,
) -> Result<Flow<String>, Error> {
    let metrics = &run.ctx.shared.metrics;
    let outcome = |o: &str| metrics.orders.get_or_create(&OutcomeLabels { outcome: o.into() }).inc();
    match result {
        Ok(id) => {
            outcome("placed");
            let account = order.handle.account.key().to_string();
            ledger.record(Change::Ordered { id: id.clone(), at: Timestamp::now(), account });
            super::order::ordered_for(ledger, plan);
            // Written at once: this id is what keeps every later reconcile from ordering again.
            // If it cannot be written the attempt stays recorded, and the next reconcile finds
            // the order by its tag.
            ledger.persist_retrying(run).await?;
            ledger.note(Note::normal(
                r::ORDERED,
                format!(
                    "ordered {} for {} ({} months, price list {}): billing order {id}",
                    plan.product.name,
                    plan.names().join(", "),
                    plan.period,
                    plan.pricelist
                ),
            ));
            Ok(Flow::Go(id))
        }
        Err(e) if e.may_have_charged() => {
            outcome("unknown");
            ledger.record(Change::AttemptOutcomeUnknown);
            ledger.persist(run).await?;
            let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_secs(1));
            Ok(Flow::Stop(Stop::pending(
                r::ORDER_OUTCOME_UNKNOWN,
                format!(
                    "the billing's answer to the order was lost or unclear ({e}); the order is looked for in the list before anything is ordered again"
                ),
                wait,
            )))
        }
        Err(e) => {
            outcome("refused");
            ledger.record(Change::AttemptAbandoned);
            ledger.persist(run).await?;
            Ok(Flow::Stop(refusal(run, plan, order, e)))
        }
    }
}

/// What a refused order means for the certificate.
fn refusal(run: &Run<'_>, plan: &Plan, order: &OrderCtx<'_>, e: BillingError) -> Stop {
    match e {
        BillingError::NotEnoughMoney(s) => Stop::failed(
            r::NOT_ENOUGH_MONEY,
            format!(
                "the billing account cannot pay for {}: {s}. The order is retried until the balance allows it",
                plan.product.name
            ),
        )
        .not_ready(),
        BillingError::Auth => run.billing_stop(order.issuer, e, "ordering"),
        // The credentials work (the issuer's check reads the list): only ordering is refused,
        // for this certificate, and retried with its own backoff, not by stopping the issuer.
        BillingError::Access { .. } => Stop::failed(
            r::ACCESS_DENIED,
            format!("the billing refused access to ordering: {e}. Retried with backoff; reading works, so the issuer stays Ready"),
        )
        .not_ready(),
        BillingError::InvalidField { .. } | BillingError::MissingField { .. } | BillingError::InvalidRequest(_) => {
            Stop::blocked(
                r::ORDER_REJECTED,
                format!("the billing refused the order: {e}"),
                Some(run.ctx.shared.settings.backoff_max),
            )
        }
        other => Stop::failed(r::ORDER_REJECTED, format!("the billing refused the order: {other}")).not_ready(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::tests_support::plan_for;

    fn row(id: &str, tag: Option<&str>, cn: &str) -> CertificateRow {
        CertificateRow {
            id: id.into(),
            domain: cn.into(),
            pricelist: Some("55324".into()),
            item_status: Some(2),
            remote_id: tag.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn before_a_new_order_our_tag_then_doubt_then_the_budget_decide() {
        let plan = plan_for("alphassl", "www.example.com", &[]);
        let none = Claimed::default();
        let nothing = BTreeSet::new();
        let facts = |rows, claimed, confirmed, used| Facts {
            rows,
            tag: "ispcert-me",
            plan: &plan,
            claimed,
            confirmed,
            budget: 3,
            used,
        };
        let ours = [row("1", Some("ispcert-me"), "www.example.com"), row("2", None, "www.example.com")];
        assert_eq!(before_ordering(&facts(&ours, &none, &nothing, 9)), Before::Ours("1".into()));
        let other = [row("2", None, "www.example.com"), row("3", Some("ispcert-x"), "www.example.com")];
        assert_eq!(before_ordering(&facts(&other, &none, &nothing, 0)), Before::Doubt(vec!["2".into(), "3".into()]));
        let claimed = Claimed { surely: ["2".into(), "3".into()].into(), ..Default::default() };
        assert_eq!(
            before_ordering(&facts(&other, &claimed, &nothing, 0)),
            Before::Order,
            "another certificate's orders"
        );
        let said: BTreeSet<String> = ["2".into(), "3".into()].into();
        assert_eq!(before_ordering(&facts(&other, &none, &said, 0)), Before::Order, "confirmed");
        let partly: BTreeSet<String> = ["2".into()].into();
        assert!(matches!(before_ordering(&facts(&other, &none, &partly, 0)), Before::Doubt(_)));
        assert_eq!(before_ordering(&facts(&[], &none, &nothing, 2)), Before::Order);
        assert_eq!(before_ordering(&facts(&[], &none, &nothing, 3)), Before::OverBudget { used: 3, budget: 3 });
        let zero = Facts { budget: 0, ..facts(&[], &none, &nothing, 0) };
        assert_eq!(before_ordering(&zero), Before::OverBudget { used: 0, budget: 0 }, "0 allows no order");
    }
}
