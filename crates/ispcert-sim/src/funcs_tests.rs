//! Unit tests of the billing functions: the state machine over (simulated) time and the strict
//! refusals, called directly without HTTP so that time can be passed in.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::render::{Answer, Refusal};
use super::state::{Lang, crt, item};
use super::{AccountSpec, Money, Sim, SimConfig, build, ca, funcs};

const RU: &str = "ru@example.com";
const EU: &str = "eu@example.com";

fn sim() -> Arc<Sim> {
    let config = SimConfig {
        accounts: vec![
            AccountSpec::new(RU, "pw", Money::from_units(100_000), "RUB"),
            AccountSpec::new(EU, "pw", Money::from_units(100), "EUR"),
        ],
        issue_after: Duration::from_secs(9),
        ..SimConfig::default()
    };
    build(config).unwrap().0
}

fn call(sim: &Sim, account: &str, func: &str, pairs: &[(String, String)], now: Timestamp) -> Answer {
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = super::params::Params::from_pairs(&refs);
    funcs::call(sim, account, func, &p, Lang::En, now)
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn csr_for(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    ca::generate_key_and_csr(&names, &ca::Subject::default()).unwrap()
}

/// A change to an order's form.
type Edit = Box<dyn Fn(&mut Vec<(String, String)>)>;

/// Turns a manual order of a.example.com into `crt_type=generate` with `csr` and `key` and a full
/// subject, then applies `changes` (an empty value leaves the field empty).
fn generate(csr: &str, key: &str, changes: &'static [(&'static str, &'static str)]) -> Edit {
    let (csr, key) = (csr.to_owned(), key.to_owned());
    Box::new(move |p| {
        let fields = [
            ("crt_type", "generate"),
            ("csr", csr.as_str()),
            ("key", key.as_str()),
            ("CN", "a.example.com"),
            ("field_country", "182"),
            ("ST", "s"),
            ("L", "l"),
            ("O", "o"),
        ];
        for (k, v) in fields.iter().chain(changes) {
            set(p, k, v);
        }
    })
}

/// A CSR for a.example.com with a key of `algorithm`, and an IP address SAN if `with_ip`.
fn odd_csr(algorithm: &'static rcgen::SignatureAlgorithm, with_ip: bool) -> String {
    let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "a.example.com");
    if with_ip {
        params.subject_alt_names.push(rcgen::SanType::IpAddress("203.0.113.5".parse().unwrap()));
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// An `oldrequest` reissue of certificate `id`, ordered for a.example.com.
fn oldrequest_reissue(id: &str) -> Vec<(String, String)> {
    kv(&[
        ("elid", id),
        ("sok", "ok"),
        ("approver_method", "auth_email"),
        ("crt_type", "oldrequest"),
        ("approver_email_1", "admin@a.example.com"),
    ])
}

/// A valid manual order of `pricelist` for `cn`.
fn manual_order(pricelist: &str, cn: &str) -> Vec<(String, String)> {
    let (csr, _) = csr_for(&[cn]);
    let mut v = kv(&[
        ("sok", "ok"),
        ("skipbasket", "on"),
        ("crt_type", "manual"),
        ("period", "12"),
        ("pricelist", pricelist),
        ("csr", &csr),
        ("approver_email_1", &format!("admin@{}", cn.trim_start_matches("*."))),
    ]);
    v.extend(funcs::contact_pairs().into_iter().map(|(k, v)| (k.to_owned(), v)));
    v
}

fn set(pairs: &mut Vec<(String, String)>, k: &str, v: &str) {
    pairs.retain(|(key, _)| key != k);
    pairs.push((k.to_owned(), v.to_owned()));
}

fn unset(pairs: &mut Vec<(String, String)>, k: &str) {
    pairs.retain(|(key, _)| key != k);
}

fn refused(a: Answer) -> Refusal {
    match a {
        Answer::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn ordered_id(a: Answer) -> String {
    match a {
        Answer::Ok { id: Some(id) } => id,
        other => panic!("expected an order id, got {other:?}"),
    }
}

fn balance(sim: &Sim, account: &str) -> Money {
    sim.lock().accounts[account].balance
}

fn model(a: &Answer, key: &str) -> String {
    match a {
        Answer::Form(f) => f.model.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default(),
        other => panic!("expected a form, got {other:?}"),
    }
}

#[test]
fn a_generated_order_is_charged_and_issued_over_time() {
    let s = sim();
    let t0 = Timestamp::now();
    let generated = call(
        &s,
        RU,
        "certificate.order.csr",
        &kv(&[
            ("sok", "ok"),
            ("crt_type", "generate"),
            ("pricelist", "55326"),
            ("period", "12"),
            ("CN", "Shop.Example.com"),
            ("field_country", "182"),
            ("ST", "Moscow"),
            ("L", "Moscow"),
            ("O", "Shop"),
        ]),
        t0,
    );
    let (csr, key) = (model(&generated, "csr"), model(&generated, "key"));
    assert!(csr.contains("CERTIFICATE REQUEST") && key.contains("PRIVATE KEY"));
    let mut order = kv(&[
        ("sok", "ok"),
        ("skipbasket", "on"),
        ("crt_type", "generate"),
        ("period", "12"),
        ("pricelist", "55326"),
        ("CN", "shop.example.com"),
        ("field_country", "182"),
        ("ST", "Moscow"),
        ("L", "Moscow"),
        ("O", "Shop"),
        ("approver_email_1", "WEBMASTER@shop.example.com"),
        ("csr", &csr),
        ("key", &key),
        ("remoteid", "ns/cert-1"),
    ]);
    order.extend(funcs::contact_pairs().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let id = ordered_id(call(&s, RU, "certificate.order.param", &order, t0));
    assert_eq!(balance(&s, RU), Money::from_units(100_000 - 12_900));
    let at = |secs: i64| t0 + SignedDuration::from_secs(secs);
    let statuses = |now| s.lock().certs[&id.parse::<u64>().unwrap()].statuses(now);
    assert_eq!(statuses(at(0)), (item::ORDERED, crt::REQUESTED));
    assert_eq!(statuses(at(4)), (item::PROCESSING, crt::ENROLLED));
    assert_eq!(statuses(at(7)), (item::ACTIVE, crt::ENROLLED));
    assert_eq!(statuses(at(9)), (item::ACTIVE, crt::ISSUED));
    let elid = kv(&[("elid", &id), ("type", "crt")]);
    let early = refused(call(&s, RU, "certificate.file", &elid, at(8)));
    assert_eq!((early.kind, early.object.as_str()), ("missed", "file"));
    match call(&s, RU, "certificate.file", &elid, at(9)) {
        Answer::File(f) => assert_eq!(f.content_type, "application/zip"),
        other => panic!("{other:?}"),
    }
    let edit = call(&s, RU, "certificate.edit", &kv(&[("elid", &id)]), at(9));
    assert_eq!(model(&edit, "CN"), "shop.example.com");
    assert_eq!(model(&edit, "status"), "5");
    assert_eq!(s.lock().accounts[RU].counters.orders, 1);
}

#[test]
fn every_strictness_case_is_refused_with_its_type_and_object_and_charges_nothing() {
    let s = sim();
    let now = Timestamp::now();
    let base = manual_order("55324", "a.example.com");
    let (other_csr, other_key) = csr_for(&["a.example.com"]);
    let (_, foreign_key) = csr_for(&["a.example.com"]);
    let (wild_csr, _) = csr_for(&["*.example.com"]);
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        ("unknown price list", Box::new(|p| set(p, "pricelist", "1")), "value", "pricelist"),
        ("foreign price list on a RUB account", Box::new(|p| set(p, "pricelist", "55346")), "value", "pricelist"),
        ("period 36", Box::new(|p| set(p, "period", "36")), "value", "period"),
        ("no period", Box::new(|p| unset(p, "period")), "missed", "period"),
        ("no pricelist", Box::new(|p| unset(p, "pricelist")), "missed", "pricelist"),
        ("no csr", Box::new(|p| unset(p, "csr")), "missed", "csr"),
        ("no crt_type", Box::new(|p| unset(p, "crt_type")), "missed", "crt_type"),
        ("bad crt_type", Box::new(|p| set(p, "crt_type", "magic")), "value", "crt_type"),
        ("no approver", Box::new(|p| unset(p, "approver_email_1")), "missed", "approver_email_1"),
        ("no admin phone", Box::new(|p| unset(p, "adm_phone")), "missed", "adm_phone"),
        ("no tech email", Box::new(|p| set(p, "tech_email", "")), "missed", "tech_email"),
        (
            "approver of another domain",
            Box::new(|p| set(p, "approver_email_1", "admin@other.com")),
            "value",
            "approver_email_1",
        ),
        (
            "approver mailbox not allowed",
            Box::new(|p| set(p, "approver_email_1", "ceo@a.example.com")),
            "value",
            "approver_email_1",
        ),
        (
            "approver for a name not ordered",
            Box::new(|p| set(p, "approver_email_2", "admin@b.example.com")),
            "value",
            "approver_email_2",
        ),
        (
            "a CSR that asks for an IP address",
            {
                let c = odd_csr(&rcgen::PKCS_ECDSA_P256_SHA256, true);
                Box::new(move |p| set(p, "csr", &c))
            },
            "value",
            "csr",
        ),
        (
            "a CSR with an Ed25519 key, which public CAs refuse",
            {
                let c = odd_csr(&rcgen::PKCS_ED25519, false);
                Box::new(move |p| set(p, "csr", &c))
            },
            "value",
            "csr",
        ),
        (
            "garbage csr",
            Box::new(|p| set(p, "csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----")),
            "value",
            "csr",
        ),
        (
            "alt names on a single-domain product",
            Box::new(|p| {
                set(p, "altname", "b.example.com");
                set(p, "altname_input", "b.example.com");
                set(p, "approver_email_2", "admin@b.example.com");
            }),
            "value",
            "altname",
        ),
        ("altname without altname_input", Box::new(|p| set(p, "altname", "b.example.com")), "missed", "altname_input"),
        (
            "wildcard CN on a non-wildcard product",
            {
                let c = wild_csr.clone();
                Box::new(move |p| {
                    set(p, "csr", &c);
                    set(p, "approver_email_1", "admin@example.com");
                })
            },
            "value",
            "CN",
        ),
        ("CN that differs from the CSR", Box::new(|p| set(p, "CN", "z.example.com")), "value", "CN"),
        ("generate with a key of another CSR", generate(&other_csr, &foreign_key, &[]), "value", "csr"),
        ("generate without O", generate(&other_csr, &other_key, &[("O", "")]), "missed", "O"),
        (
            "generate with an unknown country",
            generate(&other_csr, &other_key, &[("field_country", "9999")]),
            "value",
            "field_country",
        ),
    ];
    for (what, edit, kind, object) in cases {
        let mut p = base.clone();
        edit(&mut p);
        let r = refused(call(&s, RU, "certificate.order.param", &p, now));
        assert_eq!((r.kind, r.object.as_str()), (kind, object), "{what}: {}", r.msg);
        assert_eq!(balance(&s, RU), Money::from_units(100_000), "{what} charged");
        assert!(s.lock().certs.is_empty(), "{what} created a certificate");
    }
    // The control: the unedited order passes.
    ordered_id(call(&s, RU, "certificate.order.param", &base, now));
}

#[test]
fn wildcard_products_need_a_wildcard_and_the_base_domain_gets_the_approver() {
    let s = sim();
    let now = Timestamp::now();
    let r = refused(call(&s, RU, "certificate.order.param", &manual_order("55325", "plain.example.com"), now));
    assert_eq!((r.kind, r.object.as_str()), ("value", "CN"));
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("55325", "*.example.com"), now));
    assert_eq!(s.lock().certs[&id.parse::<u64>().unwrap()].current.names, vec!["*.example.com", "example.com"]);
}

#[test]
fn a_low_balance_is_refused_with_the_amounts() {
    let s = sim();
    let r = refused(call(&s, EU, "certificate.order.param", &manual_order("55348", "a.example.com"), Timestamp::now()));
    assert_eq!(r.kind, "not_enough_money");
    let param = |k: &str| r.params.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(
        (param("amount").as_str(), param("have").as_str(), param("currency").as_str(), param("deficit").as_str()),
        ("159.00", "100.00", "EUR", "59.00")
    );
    assert_eq!(balance(&s, EU), Money::from_units(100));
}

fn multi_domain_order(s: &Sim) -> String {
    let (csr, _) = csr_for(&["a.example.com"]);
    let mut p = manual_order("55326", "a.example.com");
    set(&mut p, "csr", &csr);
    for (k, v) in [
        ("altname", "b.example.com c.example.com"),
        ("altname_input", "b.example.com c.example.com"),
        ("addon_55364", "2"),
        ("approver_email_2", "admin@b.example.com"),
        ("approver_email_3", "hostmaster@c.example.com"),
    ] {
        set(&mut p, k, v);
    }
    ordered_id(call(s, RU, "certificate.order.param", &p, Timestamp::now()))
}

#[test]
fn multi_domain_orders_check_addon_counts_and_codes() {
    let s = sim();
    let (csr, _) = csr_for(&["a.example.com"]);
    let mut p = manual_order("55326", "a.example.com");
    set(&mut p, "csr", &csr);
    for (k, v) in [
        ("altname", "b.example.com c.example.com"),
        ("altname_input", "b.example.com c.example.com"),
        ("approver_email_2", "admin@b.example.com"),
        ("approver_email_3", "admin@c.example.com"),
    ] {
        set(&mut p, k, v);
    }
    let now = Timestamp::now();
    let mut wrong_count = p.clone();
    set(&mut wrong_count, "addon_55364", "1");
    assert_eq!(refused(call(&s, RU, "certificate.order.param", &wrong_count, now)).object, "addon_55364");
    let mut wrong_code = p.clone();
    set(&mut wrong_code, "addon_12345", "2");
    assert_eq!(refused(call(&s, RU, "certificate.order.param", &wrong_code, now)).object, "addon_12345");
    // Field names match literally, as form fields do.
    let mut padded = p.clone();
    set(&mut padded, "addon_055364", "2");
    assert_eq!(refused(call(&s, RU, "certificate.order.param", &padded, now)).object, "addon_055364");
    let mut too_many = p.clone();
    let names: Vec<String> = (0..251).map(|i| format!("n{i}.example.com")).collect();
    set(&mut too_many, "altname", &names.join(" "));
    set(&mut too_many, "altname_input", &names.join(" "));
    assert_eq!(refused(call(&s, RU, "certificate.order.param", &too_many, now)).object, "altname");
    let mut differing = p.clone();
    set(&mut differing, "addon_55364", "2");
    set(&mut differing, "altname_input", "c.example.com b.example.com");
    assert_eq!(refused(call(&s, RU, "certificate.order.param", &differing, now)).object, "altname_input");
    assert_eq!(balance(&s, RU), Money::from_units(100_000));
    multi_domain_order(&s);
    assert_eq!(balance(&s, RU), Money::from_units(100_000 - 12_900 - 2 * 1_900));
}

#[test]
fn reissues_follow_the_index_rules_of_each_form() {
    let s = sim();
    let id = multi_domain_order(&s);
    let now = Timestamp::now();
    let later = now + SignedDuration::from_secs(10);
    let base = kv(&[("elid", &id), ("sok", "ok"), ("approver_method", "auth_email")]);
    // oldrequest: indexes follow certificate.edit's altname order (b, c).
    let mut old = base.clone();
    old.extend(kv(&[
        ("crt_type", "oldrequest"),
        ("approver_email_1", "admin@a.example.com"),
        ("approver_email_2", "admin@c.example.com"),
        ("approver_email_3", "admin@b.example.com"),
    ]));
    assert_eq!(refused(call(&s, RU, "certificate.reissue.step2", &old, later)).object, "approver_email_2");
    set(&mut old, "approver_email_2", "admin@b.example.com");
    set(&mut old, "approver_email_3", "admin@c.example.com");
    assert!(matches!(call(&s, RU, "certificate.reissue.step2", &old, later), Answer::Ok { .. }));
    // altname: indexes follow the new altname parameter; more names than paid are refused.
    let mut alt = base.clone();
    alt.extend(kv(&[
        ("crt_type", "altname"),
        ("altname", "d.example.com b.example.com"),
        ("approver_email_1", "admin@a.example.com"),
        ("approver_email_2", "admin@d.example.com"),
        ("approver_email_3", "admin@b.example.com"),
    ]));
    assert!(matches!(call(&s, RU, "certificate.reissue.step2", &alt, later), Answer::Ok { .. }));
    let edit = call(&s, RU, "certificate.edit", &kv(&[("elid", &id)]), later);
    assert_eq!(model(&edit, "altname"), "d.example.com b.example.com");
    let mut too_many = base.clone();
    too_many.extend(kv(&[
        ("crt_type", "altname"),
        ("altname", "d.example.com b.example.com e.example.com"),
        ("approver_email_1", "admin@a.example.com"),
        ("approver_email_2", "admin@d.example.com"),
        ("approver_email_3", "admin@b.example.com"),
        ("approver_email_4", "admin@e.example.com"),
    ]));
    assert_eq!(refused(call(&s, RU, "certificate.reissue.step2", &too_many, later)).object, "altname");
    // manual: a new key for the same names; a CSR for another common name is refused.
    let (wrong, _) = csr_for(&["x.example.com"]);
    let mut manual = base.clone();
    manual.extend(kv(&[
        ("crt_type", "manual"),
        ("csr", &wrong),
        ("approver_email_1", "admin@a.example.com"),
        ("approver_email_2", "admin@d.example.com"),
        ("approver_email_3", "admin@b.example.com"),
    ]));
    assert_eq!(refused(call(&s, RU, "certificate.reissue.step2", &manual, later)).object, "csr");
    let (right, _) = csr_for(&["a.example.com"]);
    set(&mut manual, "csr", &right);
    assert!(matches!(call(&s, RU, "certificate.reissue.step2", &manual, later), Answer::Ok { .. }));
    let (reissues, status) = {
        let st = s.lock();
        let c = &st.certs[&id.parse::<u64>().unwrap()];
        (c.reissues, c.current.crt_status(later))
    };
    assert_eq!((reissues, status), (3, crt::REQUESTED));
    assert_eq!(s.lock().accounts[RU].counters.reissues, 3);
    assert_eq!(balance(&s, RU), Money::from_units(100_000 - 12_900 - 2 * 1_900), "reissues are free");
}

#[test]
fn with_reorder_altnames_an_order_keeps_its_names_in_another_order_and_reissues_index_by_it() {
    let s = sim();
    s.lock().reorder_altnames = true;
    // Ordered as b, c (approvers validated in that order); kept and listed as c, b.
    let id = multi_domain_order(&s);
    let later = Timestamp::now() + SignedDuration::from_secs(10);
    let edit = call(&s, RU, "certificate.edit", &kv(&[("elid", &id)]), later);
    assert_eq!(model(&edit, "altname"), "c.example.com b.example.com");
    let mut old = kv(&[("elid", &id), ("sok", "ok"), ("approver_method", "auth_email"), ("crt_type", "oldrequest")]);
    old.extend(kv(&[
        ("approver_email_1", "admin@a.example.com"),
        ("approver_email_2", "admin@b.example.com"),
        ("approver_email_3", "admin@c.example.com"),
    ]));
    assert_eq!(refused(call(&s, RU, "certificate.reissue.step2", &old, later)).object, "approver_email_2");
    set(&mut old, "approver_email_2", "admin@c.example.com");
    set(&mut old, "approver_email_3", "admin@b.example.com");
    assert!(matches!(call(&s, RU, "certificate.reissue.step2", &old, later), Answer::Ok { .. }));
    assert_eq!(s.lock().certs[&id.parse::<u64>().unwrap()].reissue_forms, ["oldrequest"]);
}

#[test]
fn a_reissue_serves_the_previous_certificate_until_the_new_one_is_issued() {
    let s = sim();
    let t0 = Timestamp::now();
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "a.example.com"), t0));
    let at = |secs| t0 + SignedDuration::from_secs(secs);
    let get = |now| match call(&s, RU, "certificate.file", &kv(&[("elid", &id), ("type", "crt")]), now) {
        Answer::File(f) => f.bytes,
        other => panic!("{other:?}"),
    };
    let first = get(at(10));
    assert!(first.starts_with(b"-----BEGIN CERTIFICATE-----"), "PEM for Comodo");
    let reissue = oldrequest_reissue(&id);
    assert!(matches!(call(&s, RU, "certificate.reissue.step2", &reissue, at(20)), Answer::Ok { .. }));
    assert_eq!(get(at(25)), first);
    assert_ne!(get(at(29)), first);
}

#[test]
fn a_late_reissue_ends_with_the_paid_period() {
    let s = sim();
    let t0 = Timestamp::now();
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "a.example.com"), t0));
    let late = t0 + SignedDuration::from_hours(24 * 300);
    let reissue = oldrequest_reissue(&id);
    assert!(matches!(call(&s, RU, "certificate.reissue.step2", &reissue, late), Answer::Ok { .. }));
    let pem = match call(
        &s,
        RU,
        "certificate.file",
        &kv(&[("elid", &id), ("type", "crt")]),
        late + SignedDuration::from_secs(60),
    ) {
        Answer::File(f) => f.bytes,
        other => panic!("{other:?}"),
    };
    let der = pem::parse(&pem).unwrap().into_contents();
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let validity = leaf.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let expires = s.lock().certs[&id.parse::<u64>().unwrap()].expires;
    assert!(not_before >= late.as_second(), "the reissued certificate is served");
    assert!(not_after <= expires.as_second(), "{not_after} outlives the service ({expires})");
}

#[test]
fn delete_hides_the_certificate_from_every_call_but_the_list_shows_it_deleted() {
    let s = sim();
    let now = Timestamp::now();
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "a.example.com"), now));
    let without_sok = call(&s, RU, "certificate.delete", &kv(&[("elid", &id)]), now);
    assert!(matches!(without_sok, Answer::Form(_)));
    assert!(matches!(call(&s, RU, "certificate.delete", &kv(&[("elid", &id), ("sok", "ok")]), now), Answer::Ok { .. }));
    for func in ["certificate.edit", "certificate.file", "certificate.delete", "service.prolong"] {
        let r =
            refused(call(&s, RU, func, &kv(&[("elid", &id), ("type", "crt"), ("sok", "ok"), ("period", "12")]), now));
        assert_eq!((r.kind, r.object.as_str()), ("value", "elid"), "{func}");
    }
    match call(&s, RU, "certificate", &[], now) {
        Answer::List(page) => assert_eq!(page.rows[0].item_status, item::DELETED),
        other => panic!("{other:?}"),
    }
    // Another account cannot see it either, deleted or not.
    let id2 = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "b.example.com"), now));
    assert_eq!(refused(call(&s, EU, "certificate.edit", &kv(&[("elid", &id2)]), now)).object, "elid");
}

#[test]
fn an_order_without_skipbasket_goes_into_the_basket_unpaid_and_never_issues() {
    let s = sim();
    let now = Timestamp::now();
    let mut p = manual_order("2025", "a.example.com");
    unset(&mut p, "skipbasket");
    let id = ordered_id(call(&s, RU, "certificate.order.param", &p, now));
    assert_eq!(balance(&s, RU), Money::from_units(100_000));
    let much_later = now + SignedDuration::from_hours(30 * 24);
    assert_eq!(s.lock().certs[&id.parse::<u64>().unwrap()].statuses(much_later), (item::ORDERED, crt::REQUESTED));
    let r = refused(call(&s, RU, "certificate.file", &kv(&[("elid", &id), ("type", "crt")]), much_later));
    assert_eq!(r.object, "file");
    assert_eq!(s.lock().accounts[RU].counters.unpaid_orders, 1);
}

#[test]
fn prolong_charges_extends_and_re_enrolls() {
    let s = sim();
    let t0 = Timestamp::now();
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "a.example.com"), t0));
    let before = s.lock().certs[&id.parse::<u64>().unwrap()].expires;
    let later = t0 + SignedDuration::from_secs(20);
    let bad = refused(call(&s, RU, "service.prolong", &kv(&[("elid", &id), ("sok", "ok"), ("period", "6")]), later));
    assert_eq!(bad.object, "period");
    assert!(matches!(
        call(&s, RU, "service.prolong", &kv(&[("elid", &id), ("sok", "ok"), ("period", "24")]), later),
        Answer::Ok { .. }
    ));
    let (expires, statuses) = {
        let st = s.lock();
        let c = &st.certs[&id.parse::<u64>().unwrap()];
        (c.expires, c.statuses(later))
    };
    assert_eq!(expires, crate::time::add_months(before, 24));
    assert_eq!(statuses, (item::PROCESSING, crt::REQUESTED));
    assert_eq!(
        balance(&s, RU),
        Money::from_units(100_000 - 2_490).checked_sub(Money::from_cents(2_490 * 190)).unwrap()
    );
}

#[test]
fn the_list_pages_and_the_sticky_filter_shortens_it_until_reset() {
    let s = sim();
    let now = Timestamp::now();
    for i in 0..25 {
        ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", &format!("h{i}.example.com")), now));
    }
    let page = |pairs: &[(&str, &str)]| match call(&s, RU, "certificate", &kv(pairs), now) {
        Answer::List(p) => p,
        other => panic!("{other:?}"),
    };
    let first = page(&[]);
    assert_eq!((first.rows.len(), first.p_elems, first.p_cnt), (20, 25, 20));
    let second = page(&[("p_num", "2")]);
    assert_eq!(second.rows.len(), 5);
    assert_eq!(page(&[("p_cnt", "5000")]).p_cnt, 1000);
    assert_eq!(refused(call(&s, RU, "certificate", &kv(&[("p_num", "0")]), now)).object, "p_num");
    call(&s, RU, "certificate.filter", &kv(&[("sok", "ok"), ("CN", "h1")]), now);
    assert_eq!(page(&[]).p_elems, 11, "h1, h10..h19");
    call(&s, RU, "certificate.filter", &kv(&[("sok", "ok"), ("CN", "")]), now);
    assert_eq!(page(&[]).p_elems, 25);
}

#[test]
fn subscription_periods_are_calendar_months_with_the_day_clamped() {
    let s = sim();
    let t = |text: &str| text.parse::<Timestamp>().unwrap();
    let row = |id: &str| {
        let st = s.lock();
        let fields = &st.certs[&id.parse::<u64>().unwrap()].row.fields;
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap();
        (get("createdate"), get("expiredate"))
    };
    let edit = |id: &str, now| call(&s, RU, "certificate.edit", &kv(&[("elid", id)]), now);
    let prolong = |id: &str, period: &str, now| {
        let answer = call(&s, RU, "service.prolong", &kv(&[("elid", id), ("sok", "ok"), ("period", period)]), now);
        assert!(matches!(answer, Answer::Ok { .. }), "{answer:?}");
    };

    // Ordered late on a leap day: the dates are UTC calendar dates, and a year later has no
    // February 29, so the period ends on the 28th; it stays clamped after a prolongation.
    let leap = t("2024-02-29T23:30:00Z");
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "a.example.com"), leap));
    assert_eq!(row(&id), ("2024-02-29".into(), "2025-02-28".into()));
    let answer = edit(&id, leap);
    assert_eq!(
        (model(&answer, "createdate"), model(&answer, "expiredate")),
        ("2024-02-29".into(), "2025-02-28".into())
    );
    assert_eq!(s.lock().certs[&id.parse::<u64>().unwrap()].expires, t("2025-02-28T23:30:00Z"), "time of day kept");
    prolong(&id, "24", leap + SignedDuration::from_secs(60));
    assert_eq!(row(&id).1, "2027-02-28");
    let form = call(&s, RU, "service.prolong", &kv(&[("elid", &id)]), leap);
    assert_eq!(model(&form, "expiredate"), "2027-02-28");

    // A lapsed subscription is prolonged from now, not from its old end.
    let jan = t("2025-01-31T08:00:00Z");
    let id = ordered_id(call(&s, RU, "certificate.order.param", &manual_order("2025", "b.example.com"), jan));
    assert_eq!(row(&id), ("2025-01-31".into(), "2026-01-31".into()));
    prolong(&id, "12", t("2026-03-31T12:00:00Z"));
    assert_eq!(row(&id).1, "2027-03-31");
}

#[test]
fn the_list_of_functions_is_what_call_dispatches() {
    let s = sim();
    let unknown = |func: &str| matches!(call(&s, RU, func, &[], Timestamp::now()), Answer::Refused(r) if r.kind == "missed" && r.object == "func");
    for func in funcs::FUNCS.into_iter().filter(|f| *f != "auth") {
        assert!(!unknown(func), "{func} is listed but not dispatched");
    }
    assert!(unknown("certificate.nonesuch"));
}
