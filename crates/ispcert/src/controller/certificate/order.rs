//! The order stage: at most one order per certificate, even across crashes, restarts, retries,
//! lost answers and lost Secrets.
//!
//! Before the billing is asked, the intent (`status.orderAttempt`, with our `remoteid` tag) is
//! written with a resourceVersion precondition on a freshly read object, and the account's list is
//! searched for an order carrying the tag. The id is written the moment the billing returns it.
//! An attempt whose answer was lost is looked for in the list until the grace period passes;
//! only then is it considered never placed.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::key::Material;
use super::{Flow, Run, Stop, go};
use crate::billing::{BillingError, BillingKeyPair, OrderKey, OrderRequest};
use crate::controller::context::Error;
use crate::controller::decide::{BillingPhase, Recovery, TAG_PREFIX, billing_phase, find_order};
use crate::controller::issuers::IssuerView;
use crate::controller::metrics::OutcomeLabels;
use crate::controller::plan::{KeyPlan, Plan};
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

fn adopted(run: &mut Run<'_>, id: String, reason: &'static str, how: String) -> Flow<String> {
    run.status.order_id = Some(id.clone());
    run.status.ordered_at = Some(Time(Timestamp::now()));
    run.status.order_attempt = None;
    run.event(EventType::Normal, reason, how);
    Flow::Go(id)
}

pub async fn ensure(
    run: &mut Run<'_>,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    output: Option<&Secret>,
) -> Result<Flow<String>, Error> {
    if let Some(id) = run.status.order_id.clone() {
        return Ok(Flow::Go(id));
    }
    let settings = run.ctx.shared.settings.clone();
    let handle = go!(run.handle(issuer).await);

    let claimed = run.ctx.claimed_orders(&run.uid);
    if let Some(id) = plan.adopt.clone() {
        if claimed.contains(&id) {
            return Ok(Flow::Stop(Stop::blocked(
                r::ORDER_REJECTED,
                format!(
                    "order {id} (spec.orderId) already belongs to another IspCertificate; one order serves one certificate"
                ),
                None,
            )));
        }
        let snapshot = match handle.poller.snapshot(&handle.client, settings.poll_interval).await {
            Ok(s) => s,
            Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "listing the account's certificates"))),
        };
        return Ok(match billing_phase(snapshot.row(&id)) {
            BillingPhase::Gone => Flow::Stop(Stop::blocked(
                r::ORDER_NOT_FOUND,
                format!("order {id} (spec.orderId) is not among the account's certificates, or is deleted"),
                Some(Duration::from_secs(300)),
            )),
            _ => {
                let flow = adopted(
                    run,
                    id.clone(),
                    r::ORDER_ADOPTED,
                    format!("adopted the existing order {id}; nothing was bought"),
                );
                run.persist(None).await?;
                flow
            }
        });
    }

    let tag = remote_id(&run.ns, &run.name, issuer, plan);

    if let Some(attempt) = run.status.order_attempt.clone() {
        let snapshot = match handle.poller.snapshot(&handle.client, Duration::ZERO).await {
            Ok(s) => s,
            Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "looking for an order whose answer was lost"))),
        };
        // A day's margin for clocks; `checked_sub` because the status is data anyone with the
        // status subresource could have edited.
        let started = crate::time::utc_date(attempt.started_at.0);
        let since = started.checked_sub(jiff::Span::new().days(1)).unwrap_or(started);
        match find_order(&snapshot.rows, &attempt.remote_id, plan, since, &claimed) {
            Recovery::Found(id) => {
                info!(certificate = %run.name, order = %id, "found the order of an interrupted attempt");
                let flow = adopted(
                    run,
                    id.clone(),
                    r::ORDER_RECOVERED,
                    format!(
                        "found order {id} placed by an earlier attempt whose answer was lost; nothing was bought again"
                    ),
                );
                run.persist(None).await?;
                return Ok(flow);
            }
            Recovery::Ambiguous(ids) => {
                return Ok(Flow::Stop(Stop::blocked(
                    r::ORDER_OUTCOME_UNKNOWN,
                    format!(
                        "an order attempt's answer was lost and orders {} all fit it; to avoid buying twice nothing is ordered: set spec.orderId on a new IspCertificate to the right one",
                        ids.join(", ")
                    ),
                    None,
                )));
            }
            Recovery::NotFound => {
                // One read that misses the order proves little (a list read while the billing
                // was still writing it, a page that shifted): it must stay missing over the grace
                // period and several reads, counted in the status so that restarts keep count.
                let age = crate::time::elapsed_since(attempt.started_at.0);
                let misses = attempt.misses.unwrap_or(0).saturating_add(1);
                if age < settings.order_grace || misses < MISSES_BEFORE_REORDER {
                    if let Some(a) = run.status.order_attempt.as_mut() {
                        a.misses = Some(misses);
                    }
                    run.persist(None).await?;
                    return Ok(Flow::Stop(Stop::pending(
                        r::ORDER_OUTCOME_UNKNOWN,
                        "an order's answer was lost; looking for it in the billing's list before anything is ordered again",
                        settings.poll_interval.max(Duration::from_secs(1)),
                    )));
                }
                warn!(certificate = %run.name, "an order attempt left no order at the billing; it was never placed");
                run.status.order_attempt = None;
                run.persist(None).await?;
                return Ok(Flow::Stop(Stop::pending(
                    r::ORDERING,
                    "an earlier order attempt left no order at the billing; ordering again",
                    Duration::ZERO,
                )));
            }
        }
    }

    // A Secret left behind by a deleted IspCertificate of the same issuer, product and name
    // points at an order that exists already.
    if let Some(secret) = output
        && let Some(id) = retained_order(secret, plan, issuer.key.kind_str(), &issuer.key.name)
        && !claimed.contains(&id)
    {
        let snapshot = match handle.poller.snapshot(&handle.client, Duration::ZERO).await {
            Ok(s) => s,
            Err(e) => return Ok(Flow::Stop(run.billing_stop(issuer, e, "listing the account's certificates"))),
        };
        if !matches!(billing_phase(snapshot.row(&id)), BillingPhase::Gone) {
            let flow = adopted(
                run,
                id.clone(),
                r::ORDER_ADOPTED,
                format!(
                    "Secret {} came from order {id}, which is still live; adopted it instead of buying again",
                    plan.secret_name
                ),
            );
            run.persist(None).await?;
            return Ok(flow);
        }
    }

    place(run, plan, issuer, material, tag, claimed).await
}

async fn place(
    run: &mut Run<'_>,
    plan: &Plan,
    issuer: &IssuerView,
    material: &Material,
    tag: String,
    claimed: std::collections::HashSet<String>,
) -> Result<Flow<String>, Error> {
    let settings = run.ctx.shared.settings.clone();
    let handle = go!(run.handle(issuer).await);
    let metrics = run.ctx.shared.metrics.clone();

    // The cache may lag behind our own writes: decide on a fresh read.
    let fresh = run.api.get_status(&run.name).await?;
    let fresh_status = fresh.status.clone().unwrap_or_default();
    if fresh_status.order_id.is_some() || fresh_status.order_attempt.is_some() {
        return Ok(Flow::Stop(Stop::pending(r::ORDERING, "the order is already under way", Duration::ZERO)));
    }
    // Two certificates naming one Secret: the cache may not show the older one yet.
    let list = run.api.list(&kube::api::ListParams::default()).await?;
    if let Some(older) = list.items.iter().find(|c| {
        c.spec.secret_name == plan.secret_name
            && c.metadata.deletion_timestamp.is_none()
            && c.metadata.uid != fresh.metadata.uid
            && (c.metadata.creation_timestamp.as_ref().map(|t| t.0), c.metadata.name.clone())
                < (fresh.metadata.creation_timestamp.as_ref().map(|t| t.0), fresh.metadata.name.clone())
    }) {
        return Ok(Flow::Stop(Stop::secret_in_use(&plan.secret_name, &older.name_any())));
    }
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
        let flow = adopted(
            run,
            id.clone(),
            r::ORDER_RECOVERED,
            format!("order {id} carries this certificate's tag already; nothing was bought again"),
        );
        run.persist(None).await?;
        return Ok(flow);
    }

    // The server's status is the base from here on: only the attempt is added to it.
    run.status = fresh_status.clone();
    run.status.order_attempt = Some(OrderAttempt {
        started_at: Time(Timestamp::now()),
        remote_id: tag.clone(),
        outcome_unknown: None,
        misses: None,
    });
    let base = fresh_status;
    let rv = fresh.metadata.resource_version.clone();
    match crate::controller::status::write(&run.api, &run.name, &base, &run.status, rv.as_deref()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Nothing was written: forget the attempt so that `finish` does not write it.
            run.status = run.written_status().clone();
            return Ok(Flow::Stop(Stop::pending(
                r::ORDERING,
                "the resource changed while ordering; deciding again",
                Duration::ZERO,
            )));
        }
        Err(e) => {
            run.status = run.written_status().clone();
            return Err(e.into());
        }
    }
    // From here on the resource's status on the server is `base` plus the attempt.
    run.mark_written();
    let written = run.status.clone();

    let request = order_request(plan, material, tag);
    info!(certificate = %format!("{}/{}", run.ns, run.name), product = plan.product.name, pricelist = plan.pricelist, "ordering");
    let result = handle.client.order(&request).await;
    handle.poller.invalidate();
    match result {
        Ok(id) => {
            metrics.orders.get_or_create(&OutcomeLabels { outcome: "placed".into() }).inc();
            run.status.order_id = Some(id.clone());
            run.status.ordered_at = Some(Time(Timestamp::now()));
            run.status.order_attempt = None;
            // Written at once: this id is what keeps every later reconcile from ordering again.
            let mut tries = 0;
            loop {
                match crate::controller::status::write(&run.api, &run.name, &written, &run.status, None).await {
                    Ok(_) => break,
                    Err(e) if tries < 3 => {
                        tries += 1;
                        warn!(error = %e, "writing the order id failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    // The attempt stays recorded, so the next reconcile finds the order by its tag.
                    Err(e) => return Err(e.into()),
                }
            }
            run.mark_written();
            run.event(
                EventType::Normal,
                r::ORDERED,
                format!(
                    "ordered {} for {} ({} months, price list {}): billing order {id}",
                    plan.product.name,
                    plan.names().join(", "),
                    plan.period,
                    plan.pricelist
                ),
            );
            Ok(Flow::Go(id))
        }
        Err(e) if e.may_have_charged() => {
            metrics.orders.get_or_create(&OutcomeLabels { outcome: "unknown".into() }).inc();
            if let Some(a) = run.status.order_attempt.as_mut() {
                a.outcome_unknown = Some(true);
            }
            crate::controller::status::write(&run.api, &run.name, &written, &run.status, None).await?;
            run.mark_written();
            Ok(Flow::Stop(Stop::pending(
                r::ORDER_OUTCOME_UNKNOWN,
                format!(
                    "the billing's answer to the order was lost ({e}); the order is looked for in the list before anything is ordered again"
                ),
                settings.poll_interval.max(Duration::from_secs(1)),
            )))
        }
        Err(e) => {
            metrics.orders.get_or_create(&OutcomeLabels { outcome: "refused".into() }).inc();
            run.status.order_attempt = None;
            crate::controller::status::write(&run.api, &run.name, &written, &run.status, None).await?;
            run.mark_written();
            Ok(Flow::Stop(match e {
                BillingError::NotEnoughMoney(s) => Stop {
                    ready: Some(false),
                    ..Stop::failed(
                        r::NOT_ENOUGH_MONEY,
                        format!(
                            "the billing account cannot pay for {}: {s}. The order is retried until the balance allows it",
                            plan.product.name
                        ),
                    )
                },
                BillingError::Auth | BillingError::Access { .. } => run.billing_stop(issuer, e, "ordering"),
                BillingError::InvalidField { .. }
                | BillingError::MissingField { .. }
                | BillingError::InvalidRequest(_) => Stop::blocked(
                    r::ORDER_REJECTED,
                    format!("the billing refused the order: {e}"),
                    Some(settings.backoff_max),
                ),
                other => Stop {
                    ready: Some(false),
                    ..Stop::failed(r::ORDER_REJECTED, format!("the billing refused the order: {other}"))
                },
            }))
        }
    }
}
