//! Placing a new order: the one path that spends money.
//!
//! Before the billing is asked, the decision is checked against a fresh read of the resource (the
//! cache may lag behind our own writes) and a fresh list of its certificates, and the intent
//! (`status.orderAttempt`, with our `remoteid` tag) is written with a resourceVersion
//! precondition. The id is written the moment the billing returns it; a lost answer leaves the
//! attempt marked so that the next reconcile looks for the order instead of buying again.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tracing::info;

use super::flow::{Flow, Stop, go};
use super::key::Material;
use super::ledger::{Change, Intent, Ledger};
use super::run::Run;
use super::settle::Note;
use crate::billing::{BillingError, BillingKeyPair, OrderKey, OrderRequest};
use crate::controller::context::{Error, KubeResult};
use crate::controller::decide::{Recovery, find_order};
use crate::controller::issuers::IssuerView;
use crate::controller::metrics::OutcomeLabels;
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::reasons as r;
use crate::crd::{IspCertificate, OrderAttempt};

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

pub async fn place(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    tag: String,
    claimed: HashSet<String>,
) -> Result<Flow<String>, Error> {
    let fresh = go!(fresh_resource(run, plan).await?);
    let handle = go!(run.handle(issuer));
    let snapshot = match handle.poller.snapshot(&handle.client, Duration::ZERO).await {
        Ok(s) => s,
        Err(e) => {
            return Ok(Flow::Stop(run.billing_stop(issuer, e, "listing the account's certificates before ordering")));
        }
    };
    if let Recovery::Found(id) =
        find_order(&snapshot.rows, &tag, plan, crate::time::utc_date(Timestamp::now()), &claimed)
        && snapshot.row(&id).is_some_and(|r| r.remote_id.as_deref() == Some(tag.as_str()))
    {
        ledger.record(Change::Ordered { id: id.clone(), at: Timestamp::now() });
        ledger.note(Note::normal(
            r::ORDER_RECOVERED,
            format!("order {id} carries this certificate's tag already; nothing was bought again"),
        ));
        ledger.persist(run).await?;
        return Ok(Flow::Go(id));
    }

    let attempt = OrderAttempt {
        started_at: Time(Timestamp::now()),
        remote_id: tag.clone(),
        outcome_unknown: None,
        misses: None,
    };
    if let Intent::Conflict = ledger.write_intent(run, &fresh, attempt).await? {
        return Ok(Flow::Stop(Stop::pending(
            r::ORDERING,
            "the resource changed while ordering; deciding again",
            Duration::ZERO,
        )));
    }
    // From here on the resource's status on the server carries the attempt.
    info!(product = plan.product.name, pricelist = plan.pricelist, "ordering");
    let result = handle.client.order(&order_request(plan, material, tag)).await;
    handle.poller.invalidate();
    record(run, ledger, plan, issuer, result).await
}

/// The resource as the server holds it now, when nothing there forbids ordering: no order or
/// attempt the cache did not show yet, and no older certificate naming the same Secret.
async fn fresh_resource(run: &Run<'_>, plan: &Plan) -> Result<Flow<IspCertificate>, Error> {
    let fresh = run.api.get_status(&run.name).await.doing(|| format!("read status of {}", run.key()))?;
    let status = fresh.status.clone().unwrap_or_default();
    if status.order_id.is_some() || status.order_attempt.is_some() {
        return Ok(Flow::Stop(Stop::pending(r::ORDERING, "the order is already under way", Duration::ZERO)));
    }
    // Two certificates naming one Secret: the cache may not show the older one yet.
    let list = run
        .api
        .list(&kube::api::ListParams::default())
        .await
        .doing(|| format!("list IspCertificates in namespace {}", run.ns))?;
    let age = |c: &IspCertificate| (c.metadata.creation_timestamp.as_ref().map(|t| t.0), c.metadata.name.clone());
    if let Some(older) = list.items.iter().find(|c| {
        c.spec.secret_name == plan.secret_name
            && c.metadata.deletion_timestamp.is_none()
            && c.metadata.uid != fresh.metadata.uid
            && age(c) < age(&fresh)
    }) {
        return Ok(Flow::Stop(Stop::secret_in_use(&plan.secret_name, &older.name_any())));
    }
    Ok(Flow::Go(fresh))
}

/// Records the billing's answer to an order: the id at once, a lost answer as such, a refusal
/// as a stop that says what to do.
async fn record(
    run: &Run<'_>,
    ledger: &mut Ledger,
    plan: &Plan,
    issuer: &IssuerView,
    result: Result<String, BillingError>,
) -> Result<Flow<String>, Error> {
    let metrics = &run.ctx.shared.metrics;
    let outcome = |o: &str| metrics.orders.get_or_create(&OutcomeLabels { outcome: o.into() }).inc();
    match result {
        Ok(id) => {
            outcome("placed");
            ledger.record(Change::Ordered { id: id.clone(), at: Timestamp::now() });
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
                    "the billing's answer to the order was lost ({e}); the order is looked for in the list before anything is ordered again"
                ),
                wait,
            )))
        }
        Err(e) => {
            outcome("refused");
            ledger.record(Change::AttemptAbandoned);
            ledger.persist(run).await?;
            Ok(Flow::Stop(refusal(run, plan, issuer, e)))
        }
    }
}

/// What a refused order means for the certificate.
fn refusal(run: &Run<'_>, plan: &Plan, issuer: &IssuerView, e: BillingError) -> Stop {
    match e {
        BillingError::NotEnoughMoney(s) => Stop::failed(
            r::NOT_ENOUGH_MONEY,
            format!(
                "the billing account cannot pay for {}: {s}. The order is retried until the balance allows it",
                plan.product.name
            ),
        )
        .not_ready(),
        BillingError::Auth | BillingError::Access { .. } => run.billing_stop(issuer, e, "ordering"),
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
