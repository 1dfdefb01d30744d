//! Pure decisions of the certificate reconcile: what the billing's list says about an order, which
//! order in the list is ours, what a download means, what to do with the key, when to renew.

use std::borrow::Borrow;
use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::Date;

use super::claims::Claimed;
use super::plan::{KeyPlan, Plan};
use crate::billing::CertificateRow;
use crate::pki::chain::CertInfo;
use crate::pki::keys::KeyAlgorithm;

/// Where an order stands, from the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillingPhase {
    /// Not active yet (ordered, processing) or the CA is still validating: wait.
    Pending(String),
    /// Active: the certificate may be issued; only a download proves it.
    Active,
    /// Stopped or suspended by the billing (for example unpaid prolongation).
    Suspended,
    /// The CA refused to issue.
    Failed,
    /// Not in the account's list, or deleted.
    Gone,
}

/// Reads the raw status codes of a list row. The certificate status code is used only when the
/// billing shows it; the item status alone never proves issue.
pub fn billing_phase(row: Option<&CertificateRow>) -> BillingPhase {
    let Some(row) = row else { return BillingPhase::Gone };
    if row.crt_status == Some(6) {
        return BillingPhase::Failed;
    }
    let label = row.status_msg.clone().unwrap_or_default();
    match row.item_status {
        Some(4) => BillingPhase::Gone,
        Some(3) => BillingPhase::Suspended,
        Some(1) => BillingPhase::Pending(if label.is_empty() { "ordered".into() } else { label }),
        Some(5) => BillingPhase::Pending(if label.is_empty() { "processing".into() } else { label }),
        Some(2) if matches!(row.crt_status, Some(3) | Some(4)) => {
            BillingPhase::Pending(if label.is_empty() { "waiting for the CA".into() } else { label })
        }
        // Active, or a status this version does not know: try a download, which is the proof.
        _ => BillingPhase::Active,
    }
}

/// A short name of the billing's state for `status.orderState`.
pub fn order_state(row: &CertificateRow) -> String {
    let item = match row.item_status {
        Some(1) => "ordered",
        Some(2) => "active",
        Some(3) => "suspended",
        Some(4) => "deleted",
        Some(5) => "processing",
        _ => "unknown",
    };
    match row.crt_status {
        Some(3) => format!("{item}/requested"),
        Some(4) => format!("{item}/enrolled"),
        Some(5) => format!("{item}/issued"),
        Some(6) => format!("{item}/failed"),
        _ => item.to_string(),
    }
}

/// What the list says about an order attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    Found(String),
    /// Several orders fit and none carries our tag: a person must choose (spec.orderId).
    Ambiguous(Vec<String>),
    NotFound,
}

fn parse_date(s: &str) -> Option<Date> {
    s.get(..10)?.parse().ok()
}

/// A date of the billing's list as a moment in UTC: `YYYY-MM-DD` as the start of that day, the
/// earliest moment it can mean and so the safe side for an end; `YYYY-MM-DD HH:MM:SS` (a billing
/// that shows the time of day) as that moment.
pub fn billing_date(s: &str) -> Option<Timestamp> {
    let time = s.get(10..11).filter(|sep| *sep == " " || *sep == "T").and_then(|_| s.get(11..19));
    let time = time.and_then(|t| t.parse::<jiff::civil::Time>().ok()).unwrap_or_default();
    parse_date(s)?.to_datetime(time).to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// The prefix of every `remoteid` tag the operator sends.
pub const TAG_PREFIX: &str = "ispcert-";

/// Finds the order an attempt placed: by our `remoteid` tag; otherwise by common name and price
/// list among live orders created since the attempt that no other certificate claims and no other
/// ispcert tag marks. One such order is ours only when the billing shows no tags at all (then a
/// tag cannot tell), nobody perhaps claims it, and the issuer lets its certificates take orders
/// they cannot prove their own (`adoption_allowed`); otherwise any such order may be ours with
/// the tag dropped, so the answer is `Ambiguous` and nothing is ordered until a person decides.
pub fn find_order<R: Borrow<CertificateRow>>(
    rows: &[R],
    remote_id: &str,
    plan: &Plan,
    since: Date,
    claimed: &Claimed,
    adoption_allowed: bool,
) -> Recovery {
    // A journaled order whose answer was lost has no id: it is the attempt itself, not a find.
    let live = |r: &&CertificateRow| r.item_status != Some(4) && !r.id.is_empty();
    let rows = || rows.iter().map(Borrow::borrow);
    if let Some(r) = rows().filter(live).find(|r| r.remote_id.as_deref() == Some(remote_id)) {
        return Recovery::Found(r.id.clone());
    }
    let tags_shown = rows().any(|r| r.remote_id.is_some());
    let candidates: Vec<&CertificateRow> = rows()
        .filter(live)
        .filter(|r| r.remote_id.as_deref().is_none_or(|t| !t.starts_with(TAG_PREFIX)))
        .filter(|r| same_need(r, plan))
        .filter(|r| r.created.as_deref().and_then(parse_date).is_none_or(|d| d >= since))
        .filter(|r| !claimed.is_surely(&r.id))
        .collect();
    let perhaps_claimed = candidates.iter().any(|r| claimed.is_maybe(&r.id));
    let ids: Vec<String> = candidates.iter().map(|r| r.id.clone()).collect();
    match (ids.len(), tags_shown || perhaps_claimed || !adoption_allowed) {
        (0, _) => Recovery::NotFound,
        (1, false) => Recovery::Found(ids[0].clone()),
        _ => Recovery::Ambiguous(ids),
    }
}

/// Whether a row is an order for the plan's common name and price list.
fn same_need(r: &CertificateRow, plan: &Plan) -> bool {
    let pricelist = plan.pricelist.to_string();
    r.domain.eq_ignore_ascii_case(&plan.common_name) && r.pricelist.as_deref().is_none_or(|p| p == pricelist)
}

/// Live orders of the account for the plan's name and product that no certificate surely claims:
/// before a new order, any of them may be the certificate wanted (an earlier resource's order
/// still pending, a manifest applied again without its status, an order made in the panel).
pub fn unclaimed_orders<R: Borrow<CertificateRow>>(rows: &[R], plan: &Plan, claimed: &Claimed) -> Vec<String> {
    rows.iter()
        .map(Borrow::borrow)
        .filter(|r| r.item_status != Some(4) && !r.id.is_empty())
        .filter(|r| same_need(r, plan))
        .filter(|r| !claimed.is_surely(&r.id))
        .map(|r| r.id.clone())
        .collect()
}

/// How many orders count against a budget since `since`: the account's rows created since that
/// date (the list shows dates only, so up to a day more), the orders the issuer's certificates
/// recorded since then, and their attempts without an id yet. Each order counts once.
pub fn orders_since<R: Borrow<CertificateRow>>(
    rows: &[R],
    since: Date,
    recorded: &BTreeSet<String>,
    attempts: usize,
) -> usize {
    let mut ids: BTreeSet<&str> = recorded.iter().map(String::as_str).collect();
    let mut lost = 0;
    for r in rows
        .iter()
        .map(Borrow::borrow)
        .filter(|r| r.created.as_deref().and_then(parse_date).is_some_and(|d| d >= since))
    {
        if r.id.is_empty() {
            lost += 1;
        } else {
            ids.insert(&r.id);
        }
    }
    ids.len() + attempts.max(lost)
}

/// What a downloaded certificate means for this resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid for the spec and the key: store it.
    Accept,
    /// The certificate a reissue replaces is still being served: wait.
    StillPrevious,
    /// Needs a free reissue of this kind.
    Reissue(ReissueNeed),
    /// Cannot be fixed by a reissue.
    Reject(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReissueNeed {
    /// The alt names differ from the spec: `crt_type=altname`.
    Names,
    /// The certificate is for another key: `crt_type=manual` with our CSR.
    Key,
    /// Expired or due for renewal: `crt_type=oldrequest` (or `manual` when rotating keys).
    Renewal,
    /// The approver emails changed: `crt_type=oldrequest` with the new ones.
    Approvers,
    /// The subject of a key made in the cluster changed: `crt_type=manual` with a new CSR.
    Subject,
}

impl ReissueNeed {
    pub fn reason(self) -> &'static str {
        match self {
            ReissueNeed::Names => "NamesChanged",
            ReissueNeed::Key => "KeyMismatch",
            ReissueNeed::Renewal => "Renewal",
            ReissueNeed::Approvers => "ApproversChanged",
            ReissueNeed::Subject => "SubjectChanged",
        }
    }
}

/// Judges a download against the plan, the key we hold and a reissue under way.
pub fn judge(plan: &Plan, cert: &CertInfo, key_bits: &[u8], previous_serial: Option<&str>, now: Timestamp) -> Verdict {
    if previous_serial.is_some_and(|s| s == cert.serial) {
        return Verdict::StillPrevious;
    }
    let names = cert.names();
    let has = |n: &str| names.iter().any(|c| c.eq_ignore_ascii_case(n));
    if !has(&plan.common_name) {
        return Verdict::Reject(format!(
            "the billing's certificate is for {} but the spec asks for {}; adopt an order for the same common name",
            names.join(", "),
            plan.common_name
        ));
    }
    let wanted = plan.names();
    let allowed: Vec<String> = wanted.iter().chain(plan.tolerated_extra_names().iter()).cloned().collect();
    let missing = wanted.iter().any(|w| !has(w));
    let extra = names.iter().any(|c| !allowed.iter().any(|a| a.eq_ignore_ascii_case(c)));
    if missing || extra {
        return Verdict::Reissue(ReissueNeed::Names);
    }
    if cert.public_key_bits != key_bits {
        return Verdict::Reissue(ReissueNeed::Key);
    }
    if cert.not_after <= now {
        return Verdict::Reissue(ReissueNeed::Renewal);
    }
    Verdict::Accept
}

/// What the key Secret holds, as far as decisions go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMeta {
    pub algorithm: Option<KeyAlgorithm>,
    /// `cluster` or `billing`.
    pub source: String,
    /// The names the stored CSR covers.
    pub csr_names: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    Keep,
    /// Nothing stored yet: make key and CSR.
    Create,
    /// Same key, a CSR for the current names.
    NewCsr,
    /// A new key (algorithm changed, or a reissue with rotation).
    Replace,
}

/// Whether two name lists hold the same names, whatever their order and case.
pub fn same_names(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut x: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        x.sort();
        x.dedup();
        x
    };
    norm(a) == norm(b)
}

/// Decides what to do with the stored key before anything is sent. `ordered` tells whether the
/// billing already holds an order for this resource; `rotate` whether a reissue with key rotation
/// is about to happen.
pub fn key_action(plan: &Plan, stored: Option<&KeyMeta>, ordered: bool, rotate: bool) -> KeyAction {
    let Some(stored) = stored else { return KeyAction::Create };
    match &plan.key {
        KeyPlan::Secret(_) => KeyAction::Keep,
        KeyPlan::Billing => {
            // The billing's CSR is tied to the order; later name changes go through an
            // `altname` reissue, so a stored billing key is only remade before ordering.
            if stored.source != "billing" || (!ordered && !same_names(&stored.csr_names, &plan.names())) {
                KeyAction::Replace
            } else {
                KeyAction::Keep
            }
        }
        KeyPlan::Cluster { algorithm, .. } => {
            if stored.source != "cluster" || stored.algorithm != Some(*algorithm) || rotate {
                KeyAction::Replace
            } else if !same_names(&stored.csr_names, &plan.names()) {
                KeyAction::NewCsr
            } else {
                KeyAction::Keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::controller::plan::tests_support::plan_for;

    fn row(id: &str, item: Option<u32>, crt: Option<u32>) -> CertificateRow {
        CertificateRow { id: id.into(), item_status: item, crt_status: crt, ..Default::default() }
    }

    #[test]
    fn phases_from_raw_codes() {
        assert_eq!(billing_phase(None), BillingPhase::Gone);
        assert_eq!(billing_phase(Some(&row("1", Some(4), None))), BillingPhase::Gone);
        assert_eq!(billing_phase(Some(&row("1", Some(5), None))), BillingPhase::Pending("processing".into()));
        assert_eq!(
            billing_phase(Some(&row("1", Some(2), Some(4)))),
            BillingPhase::Pending("waiting for the CA".into())
        );
        assert_eq!(billing_phase(Some(&row("1", Some(2), None))), BillingPhase::Active);
        assert_eq!(billing_phase(Some(&row("1", Some(2), Some(6)))), BillingPhase::Failed);
        assert_eq!(billing_phase(Some(&row("1", Some(3), None))), BillingPhase::Suspended);
        assert_eq!(billing_phase(Some(&row("1", None, None))), BillingPhase::Active);
        assert_eq!(order_state(&row("1", Some(2), Some(5))), "active/issued");
    }

    #[test]
    fn our_order_is_found_by_tag_first_then_by_name() {
        let plan = plan_for("alphassl", "a.example.com", &[]);
        let since = jiff::civil::date(2026, 11, 30);
        let mut tagged = row("7", Some(1), None);
        tagged.remote_id = Some("tag".into());
        let mut other = row("8", Some(1), None);
        other.domain = "a.example.com".into();
        other.remote_id = Some("ispcert-another".into());
        let none = Claimed::default();
        let find = |rows: &[CertificateRow], claimed: &Claimed| find_order(rows, "tag", &plan, since, claimed, true);
        assert_eq!(find(&[other.clone(), tagged.clone()], &none), Recovery::Found("7".into()));
        // Another certificate's tag: not ours.
        assert_eq!(find(std::slice::from_ref(&other), &none), Recovery::NotFound);
        // Tags are shown, ours is absent, and an untagged order fits: it may be ours, so ask.
        let mut bare = row("11", Some(1), None);
        bare.domain = "a.example.com".into();
        assert_eq!(find(&[other, bare], &none), Recovery::Ambiguous(vec!["11".into()]));

        let mut untagged = row("9", Some(1), None);
        untagged.domain = "A.example.com".into();
        untagged.pricelist = Some("55324".into());
        untagged.created = Some("2026-11-30".into());
        let mut old = untagged.clone();
        old.id = "3".into();
        old.created = Some("2025-01-01".into());
        assert_eq!(find(&[untagged.clone(), old], &none), Recovery::Found("9".into()));
        let surely = Claimed { surely: ["9".to_string()].into(), ..Default::default() };
        assert_eq!(find(std::slice::from_ref(&untagged), &surely), Recovery::NotFound);
        // Perhaps another's (an older status without its account): never taken, always asked.
        let maybe = Claimed { maybe: ["9".to_string()].into(), ..Default::default() };
        assert_eq!(find(std::slice::from_ref(&untagged), &maybe), Recovery::Ambiguous(vec!["9".into()]));
        // A tenant that may not adopt what it cannot prove its own is asked too.
        let strict = find_order(std::slice::from_ref(&untagged), "tag", &plan, since, &none, false);
        assert_eq!(strict, Recovery::Ambiguous(vec!["9".into()]));
        let mut twin = untagged.clone();
        twin.id = "10".into();
        assert!(matches!(find(&[untagged.clone(), twin], &none), Recovery::Ambiguous(_)));
        // A journaled order whose answer was lost (no id) is never "found".
        let mut lost = tagged.clone();
        lost.id = String::new();
        assert_eq!(find(&[lost], &none), Recovery::NotFound);
    }

    #[test]
    fn orders_for_the_same_need_that_nobody_surely_claims_are_doubtful() {
        let plan = plan_for("alphassl", "a.example.com", &[]);
        let order = |id: &str, cn: &str, pricelist: &str, item: u32| CertificateRow {
            id: id.into(),
            domain: cn.into(),
            pricelist: Some(pricelist.into()),
            item_status: Some(item),
            ..Default::default()
        };
        let rows = [
            order("1", "a.example.com", "55324", 1),
            order("2", "A.EXAMPLE.COM", "55324", 2),
            order("3", "a.example.com", "55324", 4),
            order("4", "b.example.com", "55324", 2),
            order("5", "a.example.com", "55325", 2),
            order("6", "a.example.com", "55324", 5),
            order("", "a.example.com", "55324", 1),
        ];
        let claimed =
            Claimed { surely: ["6".to_string()].into(), maybe: ["2".to_string()].into(), ..Default::default() };
        assert_eq!(unclaimed_orders(&rows, &plan, &claimed), ["1", "2"]);
    }

    #[test]
    fn the_budget_counts_each_order_once_from_the_list_and_the_statuses() {
        let at =
            |id: &str, date: &str| CertificateRow { id: id.into(), created: Some(date.into()), ..Default::default() };
        let since = jiff::civil::date(2026, 11, 30);
        let rows = [at("1", "2026-11-29"), at("2", "2026-11-30"), at("3", "2026-12-01"), at("", "2026-12-01")];
        let recorded: BTreeSet<String> = ["3", "4"].map(String::from).into();
        // 2, 3 from the list; 4 only recorded (not listed yet); one lost answer.
        assert_eq!(orders_since(&rows, since, &recorded, 0), 4);
        assert_eq!(orders_since(&rows, since, &recorded, 1), 4, "the lost answer is the attempt: counted once");
        assert_eq!(orders_since(&rows, since, &recorded, 2), 5);
        assert_eq!(orders_since::<CertificateRow>(&[], since, &BTreeSet::new(), 0), 0);
    }

    fn cert(names: &[&str], key: &[u8], serial: &str, days_left: i64) -> CertInfo {
        let now = Timestamp::now();
        CertInfo {
            serial: serial.into(),
            not_before: now - SignedDuration::from_hours(240),
            not_after: now + SignedDuration::from_hours(24 * days_left),
            common_name: Some(names[0].into()),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            public_key_bits: key.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn downloads_are_judged_against_spec_key_and_reissue() {
        let plan = plan_for("globalsign-domainssl", "a.example.com", &["b.example.com"]);
        let now = Timestamp::now();
        let good = cert(&["a.example.com", "b.example.com"], b"K", "01", 90);
        assert_eq!(judge(&plan, &good, b"K", None, now), Verdict::Accept);
        assert_eq!(judge(&plan, &good, b"K", Some("01"), now), Verdict::StillPrevious);
        assert_eq!(judge(&plan, &good, b"other", None, now), Verdict::Reissue(ReissueNeed::Key));
        let fewer = cert(&["a.example.com"], b"K", "02", 90);
        assert_eq!(judge(&plan, &fewer, b"K", None, now), Verdict::Reissue(ReissueNeed::Names));
        let more = cert(&["a.example.com", "b.example.com", "c.example.com"], b"K", "03", 90);
        assert_eq!(judge(&plan, &more, b"K", None, now), Verdict::Reissue(ReissueNeed::Names));
        let expired = cert(&["a.example.com", "b.example.com"], b"K", "04", -1);
        assert_eq!(judge(&plan, &expired, b"K", None, now), Verdict::Reissue(ReissueNeed::Renewal));
        let foreign = cert(&["z.example.com"], b"K", "05", 90);
        assert!(matches!(judge(&plan, &foreign, b"K", None, now), Verdict::Reject(_)));
        let wildcard = plan_for("alphassl-wildcard", "*.example.com", &[]);
        let with_base = cert(&["*.example.com", "example.com"], b"K", "06", 90);
        assert_eq!(judge(&wildcard, &with_base, b"K", None, now), Verdict::Accept);
    }

    #[test]
    fn billing_dates_are_read_as_the_start_of_the_day_or_the_time_shown() {
        assert_eq!(billing_date("2027-12-01"), Some("2027-12-01T00:00:00Z".parse().unwrap()));
        assert_eq!(billing_date("2027-12-01 10:00:00"), Some("2027-12-01T10:00:00Z".parse().unwrap()));
        assert_eq!(billing_date("2027-12-01 late"), Some("2027-12-01T00:00:00Z".parse().unwrap()));
        assert_eq!(billing_date("yesterday"), None);
        assert_eq!(billing_date(""), None);
    }

    #[test]
    fn key_actions() {
        let plan = plan_for("alphassl", "a.example.com", &[]);
        let meta = KeyMeta {
            algorithm: Some(KeyAlgorithm::Rsa2048),
            source: "cluster".into(),
            csr_names: vec!["a.example.com".into()],
        };
        assert_eq!(key_action(&plan, None, false, false), KeyAction::Create);
        assert_eq!(key_action(&plan, Some(&meta), true, false), KeyAction::Keep);
        assert_eq!(key_action(&plan, Some(&meta), true, true), KeyAction::Replace);
        let ec = KeyMeta { algorithm: Some(KeyAlgorithm::EcdsaP256), ..meta.clone() };
        assert_eq!(key_action(&plan, Some(&ec), true, false), KeyAction::Replace);
        let renamed = KeyMeta { csr_names: vec!["old.example.com".into()], ..meta.clone() };
        assert_eq!(key_action(&plan, Some(&renamed), true, false), KeyAction::NewCsr);
        let mut billing = plan.clone();
        billing.key = KeyPlan::Billing;
        let bmeta = KeyMeta { algorithm: None, source: "billing".into(), csr_names: vec!["x.example.com".into()] };
        assert_eq!(key_action(&billing, Some(&bmeta), false, false), KeyAction::Replace);
        assert_eq!(key_action(&billing, Some(&bmeta), true, false), KeyAction::Keep);
    }
}
