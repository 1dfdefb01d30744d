//! A free reissue of the order: which of the billing's three forms serves the need, with a new
//! key first when the key rotates, recorded in the status as soon as the billing took it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::flow::{Flow, Stop, go};
use super::follow::Order;
use super::key::{self, Material};
use super::ledger::{Change, Ledger};
use super::run::Run;
use super::settle::Note;
use crate::billing::{BillingError, Reissue};
use crate::controller::context::Error;
use crate::controller::decide::ReissueNeed;
use crate::controller::plan::{KeyPlan, Plan};
use crate::controller::reasons as r;
use crate::crd::ReissueState;

/// The reissue form a need takes. `None` for a rotation: the form carries the new key's CSR,
/// made first. Pure.
pub fn form(need: ReissueNeed, plan: &Plan, material: &Material) -> Option<Reissue> {
    Some(match (need, &plan.key) {
        (ReissueNeed::Names, _) => Reissue::AltNames { alt_names: plan.alt_names.clone() },
        (ReissueNeed::Key, _) => Reissue::Manual { csr: material.csr.clone() },
        (ReissueNeed::Renewal, KeyPlan::Cluster { rotate_on_reissue: true, .. }) => return None,
        (ReissueNeed::Renewal, KeyPlan::Billing) => Reissue::OldRequest,
        (ReissueNeed::Renewal, _) => Reissue::Manual { csr: material.csr.clone() },
    })
}

/// Requests a free reissue of the order for `need`; `current_serial` is the certificate it
/// replaces, which downloads keep showing until the new one is issued.
pub async fn request(
    run: &Run<'_>,
    ledger: &mut Ledger,
    order: &Order<'_>,
    need: ReissueNeed,
    current_serial: &str,
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
    let form = match form(need, plan, order.material) {
        Some(form) => form,
        None => Reissue::Manual { csr: go!(key::rotate(run, ledger, plan, order.issuer).await?).csr },
    };
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
    }));
    ledger.persist(run).await?;
    ledger.note(Note::normal(
        r::REISSUING,
        format!("requested a free reissue of order {order_id} ({}, crt_type={})", need.reason(), form.crt_type()),
    ));
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
    fn each_need_takes_its_form() {
        let material =
            Material { key: SecretString::from("K".to_string()), csr: "CSR".into(), bits: vec![], previous: None };
        let mut plan = plan_for("globalsign-domainssl", "a.example.com", &["b.example.com"]);
        let crt_type = |need, plan: &Plan| form(need, plan, &material).map(|f| f.crt_type());
        assert_eq!(crt_type(ReissueNeed::Names, &plan), Some("altname"));
        assert_eq!(crt_type(ReissueNeed::Key, &plan), Some("manual"));
        assert_eq!(crt_type(ReissueNeed::Renewal, &plan), Some("manual"), "the stored CSR, same key");
        plan.key = KeyPlan::Billing;
        assert_eq!(crt_type(ReissueNeed::Renewal, &plan), Some("oldrequest"));
        plan.key = KeyPlan::Cluster { algorithm: KeyAlgorithm::Rsa2048, rotate_on_reissue: true };
        assert_eq!(crt_type(ReissueNeed::Renewal, &plan), None, "a new key first");
        assert_eq!(crt_type(ReissueNeed::Key, &plan), Some("manual"));
    }
}
