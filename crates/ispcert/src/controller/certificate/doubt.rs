//! Doubt never resolves by ordering. When the account already holds orders that may be the one a
//! certificate wants (a lost answer that several orders fit, an earlier resource's order still
//! pending, an order made in the billing panel), the certificate stops and says which orders, and
//! the two ways on, each one `kubectl annotate` away: adopt one of them, or confirm that another
//! purchase is wanted. Pure: the stop, the annotations and what they say.

use std::collections::BTreeSet;

use super::flow::Stop;
use crate::billing::CertificateRow;
use crate::controller::decide::order_state;
use crate::controller::plan::Plan;
use crate::controller::reasons as r;

/// Names one order of the account to adopt as this certificate's own.
pub const ADOPT_ORDER_ANNOTATION: &str = "ispcert.dev/adopt-order";
/// Confirms that a new order is wanted although the account holds these orders (ids,
/// comma-separated): every one of the orders in doubt must be named.
pub const CONFIRM_NEW_ORDER_ANNOTATION: &str = "ispcert.dev/confirm-new-order";

/// The ids an annotation lists (comma- or space-separated).
pub fn listed(value: Option<&String>) -> BTreeSet<String> {
    value
        .map(|v| v.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether the person confirmed a new order knowing every one of `doubtful`.
pub fn confirmed(doubtful: &[String], confirmation: &BTreeSet<String>) -> bool {
    !doubtful.is_empty() && doubtful.iter().all(|id| confirmation.contains(id))
}

/// Why the orders are in doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// An order attempt's answer was lost and these orders all fit it.
    LostAnswer,
    /// Before a new order: the account holds these orders for the same name and product.
    Unclaimed,
}

/// Who may settle the doubt by adopting: the certificate's owner, or only the issuer's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    Allowed,
    /// A ClusterIspIssuer that does not let tenants adopt orders they cannot prove theirs.
    NotAllowed {
        issuer: String,
    },
}

/// The stop that names the orders in doubt and the ways on.
pub fn stop<R: std::borrow::Borrow<CertificateRow>>(
    why: Why,
    ids: &[String],
    rows: &[R],
    plan: &Plan,
    who: (&str, &str),
    adoption: &Adoption,
) -> Stop {
    let (namespace, name) = who;
    let described: Vec<String> = ids
        .iter()
        .map(|id| match rows.iter().map(std::borrow::Borrow::borrow).find(|r: &&CertificateRow| r.id == *id) {
            Some(row) => {
                let created = row.created.as_deref().map(|c| format!(", created {c}")).unwrap_or_default();
                format!("{id} ({}{created})", order_state(row))
            }
            None => id.clone(),
        })
        .collect();
    let orders = described.join(", ");
    let what = match why {
        Why::LostAnswer => format!("an order attempt's answer was lost and orders {orders} all fit it"),
        Why::Unclaimed => format!(
            "the account holds order(s) {orders} for {} ({}) that no IspCertificate claims",
            plan.common_name, plan.product.name
        ),
    };
    let annotate = format!("kubectl annotate ispcert {name} -n {namespace}");
    let adopt = match adoption {
        Adoption::Allowed => format!("To use one: {annotate} {ADOPT_ORDER_ANNOTATION}={}", ids[0]),
        Adoption::NotAllowed { issuer } => format!(
            "{issuer} does not let its certificates adopt orders they cannot prove theirs: its owner can allow it (spec.allowOrderAdoption)"
        ),
    };
    let confirm = format!("{annotate} {CONFIRM_NEW_ORDER_ANNOTATION}={}", ids.join(","));
    Stop::blocked(
        r::UNCLAIMED_ORDER_FOUND,
        format!("{what}; to avoid buying twice nothing is ordered. {adopt}. To buy another anyway: {confirm}"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::tests_support::plan_for;

    #[test]
    fn the_stop_names_the_orders_and_both_ways_on() {
        let plan = plan_for("alphassl", "www.example.com", &[]);
        let rows = [CertificateRow {
            id: "31".into(),
            item_status: Some(2),
            created: Some("2026-11-30".into()),
            ..Default::default()
        }];
        let ids = ["31".to_string(), "32".to_string()];
        let s = stop(Why::Unclaimed, &ids, &rows, &plan, ("ns", "www"), &Adoption::Allowed);
        assert_eq!(s.reason, r::UNCLAIMED_ORDER_FOUND);
        assert_eq!(s.ready, Some(false));
        assert!(
            s.message.contains("order(s) 31 (active, created 2026-11-30), 32 for www.example.com (alphassl)"),
            "{}",
            s.message
        );
        assert!(s.message.contains("kubectl annotate ispcert www -n ns ispcert.dev/adopt-order=31"), "{}", s.message);
        assert!(s.message.contains("ispcert.dev/confirm-new-order=31,32"), "{}", s.message);
        let tenant = Adoption::NotAllowed { issuer: "ClusterIspIssuer shared".into() };
        let s = stop(Why::LostAnswer, &ids, &rows, &plan, ("ns", "www"), &tenant);
        assert!(s.message.starts_with("an order attempt's answer was lost and orders 31"), "{}", s.message);
        assert!(!s.message.contains("adopt-order=") && s.message.contains("spec.allowOrderAdoption"));
    }

    #[test]
    fn a_confirmation_must_name_every_order_in_doubt() {
        let said = listed(Some(&"31, 32".to_string()));
        assert_eq!(said, ["31", "32"].map(String::from).into());
        assert!(confirmed(&["31".into(), "32".into()], &said));
        assert!(!confirmed(&["31".into(), "33".into()], &said), "an order seen after the confirmation asks again");
        assert!(!confirmed(&[], &said));
        assert!(listed(None).is_empty());
    }
}
