//! The billing simulator over real HTTP: strictness with the balance checked through the admin
//! API, the life of an order, the issued chains, reissue, delete, paging, filters, faults, error
//! shapes and hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Read as _;
use std::time::{Duration, Instant};

use ispcert_sim::{
    AccountSpec, AddonCode, ErrorType, FaultKind, FaultSpec, Money, RunningSim, Settings, SimConfig, start,
};
use serde_json::Value;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

const RU: &str = "ru@example.com";
const EU: &str = "eu@example.com";
const PW: &str = "s3cret:pass";

async fn sim_with(issue_after: Duration, validity: Option<Duration>) -> RunningSim {
    let config = SimConfig {
        accounts: vec![
            AccountSpec::new(RU, PW, Money::from_units(200_000), "RUB"),
            AccountSpec::new(EU, PW, Money::from_units(100), "EUR"),
        ],
        issue_after,
        validity,
        ..SimConfig::default()
    };
    start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn sim() -> RunningSim {
    sim_with(Duration::from_secs(3600), None).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// POSTs a form as the client does: authinfo, out=bjson, lang=en, func and the parameters.
async fn post(sim: &RunningSim, email: &str, func: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let authinfo = format!("{email}:{PW}");
    let mut form: Vec<(&str, &str)> = vec![("authinfo", &authinfo), ("out", "bjson"), ("lang", "en"), ("func", func)];
    form.extend_from_slice(params);
    client().post(sim.base_url()).form(&form).send().await.unwrap()
}

async fn call(sim: &RunningSim, email: &str, func: &str, params: &[(&str, &str)]) -> Value {
    let r = post(sim, email, func, params).await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{func}: {e}: {}", String::from_utf8_lossy(&body)))
}

fn error_of(v: &Value) -> (String, String) {
    let e = &v["error"];
    assert!(e.is_object(), "expected an error, got {v}");
    (e["type"].as_str().unwrap().to_owned(), e["object"].as_str().unwrap().to_owned())
}

fn ok_id(v: &Value) -> String {
    assert_eq!(v["ok"], true, "{v}");
    v["id"]["v"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

async fn balance(sim: &RunningSim, email: &str) -> Money {
    sim.admin().stats().await.unwrap().account(email).balance
}

fn csr_for(names: &[&str]) -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    (p.serialize_request(&key).unwrap().pem().unwrap(), key)
}

const CONTACTS: [(&str, &str); 10] = [
    ("adm_fname", "Ivan"),
    ("adm_lname", "Petrov"),
    ("adm_jtitle", "CTO"),
    ("adm_email", "ivan@example.com"),
    ("adm_phone", "+7 495 000-00-00"),
    ("tech_fname", "Olga"),
    ("tech_lname", "Sidorova"),
    ("tech_jtitle", "SRE"),
    ("tech_email", "olga@example.com"),
    ("tech_phone", "+7 495 000-00-01"),
];

/// A valid manual order; tests edit it into the invalid variants.
fn manual_order(pricelist: &str, csr: &str, approver: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("sok", "ok"),
        ("skipbasket", "on"),
        ("crt_type", "manual"),
        ("period", "12"),
        ("pricelist", pricelist),
        ("csr", csr),
        ("approver_email_1", approver),
    ]
    .iter()
    .chain(CONTACTS.iter())
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    v.dedup();
    v
}

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn set(v: &mut Vec<(String, String)>, k: &str, val: &str) {
    v.retain(|(key, _)| key != k);
    v.push((k.to_owned(), val.to_owned()));
}

fn unset(v: &mut Vec<(String, String)>, k: &str) {
    v.retain(|(key, _)| key != k);
}

fn pem_certs(body: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(body).unwrap().into_iter().map(|p| p.into_contents()).collect()
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Parses leaf, intermediate, root and checks each signature up to the simulator's root.
fn verify_chain(ders: &[Vec<u8>], root_pem: &str) -> Vec<u8> {
    assert_eq!(ders.len(), 3);
    let certs: Vec<X509Certificate<'_>> = ders.iter().map(|d| X509Certificate::from_der(d).unwrap().1).collect();
    certs[0].verify_signature(Some(certs[1].public_key())).unwrap();
    certs[1].verify_signature(Some(certs[2].public_key())).unwrap();
    certs[2].verify_signature(None).unwrap();
    assert_eq!(ders[2], pem_certs(root_pem.as_bytes())[0], "the chain ends in the simulator's root");
    assert!(certs[1].is_ca() && !certs[0].is_ca());
    ders[0].clone()
}

async fn download(sim: &RunningSim, email: &str, id: &str) -> reqwest::Response {
    post(sim, email, "certificate.file", &[("elid", id), ("type", "crt")]).await
}

#[tokio::test]
async fn every_strict_refusal_has_its_type_and_object_and_charges_nothing() {
    let sim = sim().await;
    let (csr, _) = csr_for(&["a.example.com"]);
    let (wild, _) = csr_for(&["*.example.com"]);
    let base = manual_order("55324", &csr, "admin@a.example.com");
    type Edit = Box<dyn Fn(&mut Vec<(String, String)>)>;
    let cases: Vec<(&str, &str, Edit, &str, &str)> = vec![
        ("unknown price list", RU, Box::new(|p| set(p, "pricelist", "424242")), "value", "pricelist"),
        ("the foreign list on a RUB account", RU, Box::new(|p| set(p, "pricelist", "55346")), "value", "pricelist"),
        ("the Russian list on a EUR account", EU, Box::new(|p| set(p, "pricelist", "55324")), "value", "pricelist"),
        ("period 6", RU, Box::new(|p| set(p, "period", "6")), "value", "period"),
        ("no period", RU, Box::new(|p| unset(p, "period")), "missed", "period"),
        ("no csr", RU, Box::new(|p| unset(p, "csr")), "missed", "csr"),
        ("no admin first name", RU, Box::new(|p| unset(p, "adm_fname")), "missed", "adm_fname"),
        ("no tech phone", RU, Box::new(|p| set(p, "tech_phone", " ")), "missed", "tech_phone"),
        ("no approver", RU, Box::new(|p| unset(p, "approver_email_1")), "missed", "approver_email_1"),
        (
            "approver outside the five mailboxes",
            RU,
            Box::new(|p| set(p, "approver_email_1", "info@a.example.com")),
            "value",
            "approver_email_1",
        ),
        (
            "approver of another domain",
            RU,
            Box::new(|p| set(p, "approver_email_1", "admin@b.example.com")),
            "value",
            "approver_email_1",
        ),
        (
            "alt names on a single-domain product",
            RU,
            Box::new(|p| {
                set(p, "altname", "b.example.com");
                set(p, "altname_input", "b.example.com");
                set(p, "approver_email_2", "admin@b.example.com");
            }),
            "value",
            "altname",
        ),
        (
            "wildcard on a non-wildcard product",
            RU,
            {
                let w = wild.clone();
                Box::new(move |p| {
                    set(p, "csr", &w);
                    set(p, "approver_email_1", "admin@example.com");
                })
            },
            "value",
            "CN",
        ),
        ("non-wildcard on a wildcard product", RU, Box::new(|p| set(p, "pricelist", "55325")), "value", "CN"),
        ("unparsable csr", RU, Box::new(|p| set(p, "csr", "not a csr")), "value", "csr"),
    ];
    for (what, who, edit, kind, object) in cases {
        let before = balance(&sim, who).await;
        let mut p = base.clone();
        if who == EU {
            set(&mut p, "pricelist", "55346");
        }
        edit(&mut p);
        let v = call(&sim, who, "certificate.order.param", &refs(&p)).await;
        assert_eq!(error_of(&v), (kind.to_owned(), object.to_owned()), "{what}: {v}");
        assert_eq!(balance(&sim, who).await, before, "{what} changed the balance");
    }
    // Multi-domain: addon count and code.
    let (md_csr, _) = csr_for(&["a.example.com"]);
    let mut md = manual_order("55326", &md_csr, "admin@a.example.com");
    for (k, v) in [
        ("altname", "b.example.com c.example.com"),
        ("altname_input", "b.example.com c.example.com"),
        ("approver_email_2", "admin@b.example.com"),
        ("approver_email_3", "admin@c.example.com"),
        ("addon_55364", "1"),
    ] {
        set(&mut md, k, v);
    }
    let v = call(&sim, RU, "certificate.order.param", &refs(&md)).await;
    assert_eq!(error_of(&v), ("value".into(), "addon_55364".into()));
    unset(&mut md, "addon_55364");
    set(&mut md, "addon_999", "2");
    let v = call(&sim, RU, "certificate.order.param", &refs(&md)).await;
    assert_eq!(error_of(&v), ("value".into(), "addon_999".into()));
    // A wrong password, and money.
    let r = client()
        .post(sim.base_url())
        .form(&[("authinfo", format!("{RU}:wrong").as_str()), ("out", "bjson"), ("func", "certificate")])
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(error_of(&v).0, "auth");
    let mut eu = manual_order("55348", &csr, "admin@a.example.com");
    set(&mut eu, "period", "24");
    let v = call(&sim, EU, "certificate.order.param", &refs(&eu)).await;
    assert_eq!(error_of(&v).0, "not_enough_money");
    assert_eq!(v["error"]["param"]["have"], "100.00");
    assert_eq!(v["error"]["param"]["currency"], "EUR");
    assert_eq!(v["error"]["param"]["amount"], "302.10");
    assert_eq!(v["error"]["param"]["deficit"], "202.10");
    let stats = sim.admin().stats().await.unwrap();
    assert_eq!(stats.account(RU).orders, 0);
    assert_eq!(stats.account(RU).charged, Money::ZERO);
    assert_eq!(stats.account(EU).balance, Money::from_units(100));
    assert!(sim.admin().certificates().await.unwrap().is_empty());
    // The control: the unedited base order is accepted and charged.
    ok_id(&call(&sim, RU, "certificate.order.param", &refs(&base)).await);
    assert_eq!(balance(&sim, RU).await, Money::from_units(200_000 - 2_990));
}

#[tokio::test]
async fn elids_of_other_accounts_unknown_or_deleted_are_refused() {
    let sim = sim().await;
    sim.admin().top_up(EU, Money::from_units(10_000)).await.unwrap();
    let (csr, _) = csr_for(&["a.example.com"]);
    let id = ok_id(
        &call(&sim, RU, "certificate.order.param", &refs(&manual_order("2025", &csr, "admin@a.example.com"))).await,
    );
    for (who, elid) in [(EU, id.as_str()), (RU, "1"), (RU, "garbage")] {
        for func in [
            "certificate.edit",
            "certificate.delete",
            "certificate.file",
            "certificate.reissue.step2",
            "service.prolong",
        ] {
            let v = call(
                &sim,
                who,
                func,
                &[
                    ("elid", elid),
                    ("sok", "ok"),
                    ("type", "crt"),
                    ("period", "12"),
                    ("crt_type", "oldrequest"),
                    ("approver_method", "auth_email"),
                    ("approver_email_1", "admin@a.example.com"),
                ],
            )
            .await;
            assert_eq!(error_of(&v), ("value".into(), "elid".into()), "{func} {who} {elid}");
        }
    }
    let stats = sim.admin().stats().await.unwrap();
    assert_eq!((stats.account(EU).prolongs, stats.account(EU).deletes, stats.account(EU).charged), (0, 0, Money::ZERO));
    assert_eq!(call(&sim, RU, "certificate.delete", &[("elid", &id), ("sok", "ok")]).await["ok"], true);
    let v = call(&sim, RU, "certificate.edit", &[("elid", &id)]).await;
    assert_eq!(error_of(&v), ("value".into(), "elid".into()));
    let list = call(&sim, RU, "certificate", &[]).await;
    assert_eq!(list["elem"][0]["item_status_orig"], "4", "deleted rows stay listed as deleted");
    assert_eq!(sim.admin().stats().await.unwrap().account(RU).deletes, 1);
}

#[tokio::test]
async fn a_generated_multi_domain_globalsign_order_is_issued_as_a_zip_with_a_verifiable_chain() {
    let sim = sim_with(Duration::from_secs(3), None).await;
    let csr_form = call(
        &sim,
        RU,
        "certificate.order.csr",
        &[
            ("sok", "ok"),
            ("snext", "ok"),
            ("crt_type", "generate"),
            ("field_country", "182"),
            ("period", "12"),
            ("pricelist", "55326"),
            ("CN", "shop.example.com"),
            ("ST", "Moscow"),
            ("L", "Moscow"),
            ("O", "Shop LLC"),
            ("altname", "b.example.com c.example.com"),
        ],
    )
    .await;
    let csr = csr_form["model"]["csr"].as_str().unwrap().to_owned();
    let key = csr_form["model"]["key"].as_str().unwrap().to_owned();
    let mut order: Vec<(String, String)> = manual_order("55326", &csr, "postmaster@shop.example.com");
    for (k, v) in [
        ("crt_type", "generate"),
        ("key", key.as_str()),
        ("CN", "shop.example.com"),
        ("field_country", "182"),
        ("ST", "Moscow"),
        ("L", "Moscow"),
        ("O", "Shop LLC"),
        ("altname", "b.example.com c.example.com"),
        ("altname_input", "b.example.com c.example.com"),
        ("addon_55364", "2"),
        ("approver_email_2", "admin@b.example.com"),
        ("approver_email_3", "webmaster@c.example.com"),
        ("remoteid", "default/shop"),
    ] {
        set(&mut order, k, v);
    }
    let id = ok_id(&call(&sim, RU, "certificate.order.param", &refs(&order)).await);
    let stats = sim.admin().stats().await.unwrap();
    assert_eq!((stats.account(RU).orders, stats.account(RU).charged), (1, Money::from_units(12_900 + 2 * 1_900)));
    // Ordered, not yet issued.
    let row = &call(&sim, RU, "certificate", &[]).await["elem"][0];
    assert_eq!((row["id"].as_str().unwrap(), row["item_status_orig"].as_str().unwrap()), (id.as_str(), "1"));
    assert_eq!(row["remoteid"], "default/shop");
    let v: Value = serde_json::from_slice(&download(&sim, RU, &id).await.bytes().await.unwrap()).unwrap();
    assert_eq!(error_of(&v), ("missed".into(), "file".into()));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let row = &call(&sim, RU, "certificate", &[]).await["elem"][0];
    assert_eq!((row["item_status_orig"].as_str().unwrap(), row["crt_status_orig"].as_str().unwrap()), ("2", "5"));
    let edit = call(&sim, RU, "certificate.edit", &[("elid", &id)]).await;
    assert_eq!(edit["model"]["altname"], "b.example.com c.example.com");
    assert_eq!(edit["model"]["status"], "5");

    let r = download(&sim, RU, &id).await;
    assert_eq!(r.headers()["content-type"], "application/zip");
    let body = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["intermediate.crt", "root.crt", "shop.example.com.crt", "shop.example.com.p7b"]);
    let mut read = |name: &str| {
        let mut b = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut b).unwrap();
        b
    };
    let leaf = pem_certs(&read("shop.example.com.crt")).remove(0);
    let int = pem_certs(&read("intermediate.crt")).remove(0);
    let root = pem_certs(&read("root.crt")).remove(0);
    verify_chain(&[leaf.clone(), int, root], sim.root_pem());
    let p7b = read("shop.example.com.p7b");
    {
        use der::Decode as _;
        let ci = cms::content_info::ContentInfo::from_der(&p7b).unwrap();
        let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
        assert_eq!(sd.certificates.unwrap().0.len(), 3);
    }
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    assert_eq!(sans(&cert), ["shop.example.com", "b.example.com", "c.example.com"]);
    let csr_der = pem::parse(&csr).unwrap().into_contents();
    let (_, parsed_csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&csr_der).unwrap();
    assert_eq!(cert.public_key().raw, parsed_csr.certification_request_info.subject_pki.raw);
    assert!(cert.subject().iter_organization().next().is_none(), "DomainSSL is DV: no organisation in the subject");
    let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 200);
}

#[tokio::test]
async fn other_brands_answer_pem_and_validity_follows_the_setting() {
    let sim = sim_with(Duration::ZERO, Some(Duration::from_secs(120))).await;
    let (csr, key) = csr_for(&["*.example.org"]);
    let id = ok_id(
        &call(&sim, RU, "certificate.order.param", &refs(&manual_order("1012", &csr, "hostmaster@example.org"))).await,
    );
    let r = download(&sim, RU, &id).await;
    assert_eq!(r.headers()["content-type"], "application/x-pem-file");
    let ders = pem_certs(&r.bytes().await.unwrap());
    let leaf = verify_chain(&ders, sim.root_pem());
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    assert_eq!(sans(&cert), ["*.example.org", "example.org"]);
    assert_eq!(cert.public_key().raw, rcgen::PublicKeyData::subject_public_key_info(&key));
    assert_eq!(cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp(), 120);
}

#[tokio::test]
async fn reissue_in_three_forms_keeps_serving_the_old_certificate_until_the_new_one_is_issued() {
    let sim = sim().await;
    let admin = sim.admin();
    let (csr, key) = csr_for(&["a.example.com"]);
    let mut order = manual_order("55326", &csr, "admin@a.example.com");
    for (k, v) in [
        ("altname", "b.example.com c.example.com"),
        ("altname_input", "b.example.com c.example.com"),
        ("approver_email_2", "admin@b.example.com"),
        ("approver_email_3", "admin@c.example.com"),
        ("addon_55364", "2"),
    ] {
        set(&mut order, k, v);
    }
    let id = ok_id(&call(&sim, RU, "certificate.order.param", &refs(&order)).await);
    let nid: u64 = id.parse().unwrap();
    admin.issue_now(nid).await.unwrap();
    let leaf_of = |body: &[u8]| -> Vec<u8> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).unwrap();
        let mut b = Vec::new();
        zip.by_name("a.example.com.crt").unwrap().read_to_end(&mut b).unwrap();
        pem_certs(&b).remove(0)
    };
    let first = leaf_of(&download(&sim, RU, &id).await.bytes().await.unwrap());
    let reissue = |extra: Vec<(&'static str, String)>| {
        let mut p: Vec<(String, String)> = vec![
            ("elid".into(), id.clone()),
            ("sok".into(), "ok".into()),
            ("approver_method".into(), "auth_email".into()),
        ];
        p.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        p
    };

    // oldrequest: same key, approver indexes in edit's altname order.
    let p = reissue(vec![
        ("crt_type", "oldrequest".into()),
        ("approver_email_1", "admin@a.example.com".into()),
        ("approver_email_2", "admin@b.example.com".into()),
        ("approver_email_3", "admin@c.example.com".into()),
    ]);
    assert_eq!(call(&sim, RU, "certificate.reissue.step2", &refs(&p)).await["ok"], true);
    let row = &call(&sim, RU, "certificate", &[]).await["elem"][0];
    assert_eq!(row["crt_status_orig"], "3", "back to requested");
    assert_eq!(leaf_of(&download(&sim, RU, &id).await.bytes().await.unwrap()), first, "old one served meanwhile");
    admin.issue_now(nid).await.unwrap();
    let second = leaf_of(&download(&sim, RU, &id).await.bytes().await.unwrap());
    assert_ne!(second, first);
    let key_of = |der: &[u8]| X509Certificate::from_der(der).unwrap().1.public_key().raw.to_vec();
    assert_eq!(key_of(&second), key_of(&first));
    assert_eq!(key_of(&first), rcgen::PublicKeyData::subject_public_key_info(&key));

    // altname: new names, indexes by position in the altname parameter; more than paid refused.
    let p = reissue(vec![
        ("crt_type", "altname".into()),
        ("altname", "d.example.com b.example.com c.example.com".into()),
        ("approver_email_1", "admin@a.example.com".into()),
        ("approver_email_2", "admin@d.example.com".into()),
        ("approver_email_3", "admin@b.example.com".into()),
        ("approver_email_4", "admin@c.example.com".into()),
    ]);
    assert_eq!(
        error_of(&call(&sim, RU, "certificate.reissue.step2", &refs(&p)).await),
        ("value".into(), "altname".into())
    );
    let p = reissue(vec![
        ("crt_type", "altname".into()),
        ("altname", "d.example.com b.example.com".into()),
        ("approver_email_1", "admin@a.example.com".into()),
        ("approver_email_2", "admin@b.example.com".into()),
        ("approver_email_3", "admin@d.example.com".into()),
    ]);
    assert_eq!(
        error_of(&call(&sim, RU, "certificate.reissue.step2", &refs(&p)).await),
        ("value".into(), "approver_email_2".into())
    );
    let p = reissue(vec![
        ("crt_type", "altname".into()),
        ("altname", "d.example.com b.example.com".into()),
        ("approver_email_1", "admin@a.example.com".into()),
        ("approver_email_2", "admin@d.example.com".into()),
        ("approver_email_3", "admin@b.example.com".into()),
    ]);
    assert_eq!(call(&sim, RU, "certificate.reissue.step2", &refs(&p)).await["ok"], true);
    admin.issue_now(nid).await.unwrap();
    let third = leaf_of(&download(&sim, RU, &id).await.bytes().await.unwrap());
    assert_eq!(
        sans(&X509Certificate::from_der(&third).unwrap().1),
        ["a.example.com", "d.example.com", "b.example.com"]
    );
    assert_eq!(
        call(&sim, RU, "certificate.edit", &[("elid", &id)]).await["model"]["altname"],
        "d.example.com b.example.com"
    );

    // manual: a new key; indexes in edit's order (d, b) now.
    let (new_csr, new_key) = csr_for(&["a.example.com"]);
    let p = reissue(vec![
        ("crt_type", "manual".into()),
        ("csr", new_csr.clone()),
        ("approver_email_1", "admin@a.example.com".into()),
        ("approver_email_2", "admin@d.example.com".into()),
        ("approver_email_3", "admin@b.example.com".into()),
    ]);
    assert_eq!(call(&sim, RU, "certificate.reissue.step2", &refs(&p)).await["ok"], true);
    admin.issue_now(nid).await.unwrap();
    let fourth = leaf_of(&download(&sim, RU, &id).await.bytes().await.unwrap());
    assert_eq!(key_of(&fourth), rcgen::PublicKeyData::subject_public_key_info(&new_key));
    let info = admin.certificate(nid).await.unwrap();
    assert_eq!((info.reissues, info.crt_status), (3, 5));
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.account(RU).reissues, stats.account(RU).charged), (3, Money::from_units(12_900 + 2 * 1_900)));
}

#[tokio::test]
async fn paging_and_sticky_filters_work_over_get_and_post() {
    let sim = sim().await;
    for i in 0..30 {
        let cn = format!("host{i}.example.net");
        let (csr, _) = csr_for(&[&cn]);
        ok_id(
            &call(&sim, RU, "certificate.order.param", &refs(&manual_order("3033", &csr, &format!("admin@{cn}"))))
                .await,
        );
    }
    let page = call(&sim, RU, "certificate", &[("p_cnt", "7"), ("p_num", "5")]).await;
    assert_eq!(page["elem"].as_array().unwrap().len(), 2);
    assert_eq!(
        (page["p_elems"].as_str(), page["p_num"].as_str(), page["p_cnt"].as_str()),
        (Some("30"), Some("5"), Some("7"))
    );
    assert_eq!(call(&sim, RU, "certificate", &[]).await["elem"].as_array().unwrap().len(), 20, "default page");
    // The filter sticks across requests and silently shortens the list...
    assert_eq!(call(&sim, RU, "certificate.filter", &[("sok", "ok"), ("CN", "host2")]).await["ok"], true);
    let url = format!(
        "http://{}/manager/billmgr?authinfo={RU}:{}&out=bjson&lang=en&func=certificate&p_cnt=1000",
        sim.addr(),
        url::form_urlencoded::byte_serialize(PW.as_bytes()).collect::<String>()
    );
    let v: Value = serde_json::from_slice(&client().get(&url).send().await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(v["p_elems"], "11", "host2, host20..host29");
    assert_eq!(call(&sim, EU, "certificate", &[]).await["p_elems"], "0", "filters and lists are per account");
    // ...until a submit with empty fields resets it.
    assert_eq!(call(&sim, RU, "certificate.filter", &[("sok", "ok"), ("CN", "")]).await["ok"], true);
    assert_eq!(call(&sim, RU, "certificate", &[]).await["p_elems"], "30");
    call(&sim, RU, "certificate.filter", &[("sok", "ok"), ("item_status", "4")]).await;
    assert_eq!(call(&sim, RU, "certificate", &[]).await["p_elems"], "0");
    call(&sim, RU, "certificate.filter", &[("sok", "ok")]).await;
    assert_eq!(call(&sim, RU, "certificate", &[]).await["p_elems"], "30");
}

async fn order_once(sim: &RunningSim, cn: &str) -> reqwest::Response {
    let (csr, _) = csr_for(&[cn]);
    let order = manual_order("3033", &csr, &format!("admin@{cn}"));
    post(sim, RU, "certificate.order.param", &refs(&order)).await
}

#[tokio::test]
async fn faults_switch_on_and_off_and_respect_func_count_and_phase() {
    let sim = sim().await;
    let admin = sim.admin();
    let list = || post(&sim, RU, "certificate", &[]);

    let id = admin.add_fault(&FaultSpec::new(FaultKind::Status { status: 502 })).await.unwrap();
    assert_eq!(list().await.status(), 502);
    assert_eq!(list().await.status(), 502);
    admin.remove_fault(id).await.unwrap();
    assert_eq!(list().await.status(), 200);

    admin.add_fault(&FaultSpec::new(FaultKind::Html { status: 200 }).times(1)).await.unwrap();
    let r = list().await;
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<html>"));
    assert!(serde_json::from_slice::<Value>(&list().await.bytes().await.unwrap()).is_ok(), "count 1 ran out");

    admin.add_fault(&FaultSpec::new(FaultKind::MalformedJson).on_func("certificate").times(1)).await.unwrap();
    assert_eq!(call(&sim, RU, "certificate.filter", &[]).await["model"]["CN"], "", "other funcs unaffected");
    assert!(serde_json::from_slice::<Value>(&list().await.bytes().await.unwrap()).is_err());

    admin.add_fault(&FaultSpec::new(FaultKind::Auth).times(1)).await.unwrap();
    assert_eq!(error_of(&call(&sim, RU, "certificate", &[]).await).0, "auth");
    assert!(call(&sim, RU, "certificate", &[]).await["elem"].is_array());

    admin.add_fault(&FaultSpec::new(FaultKind::Slow { delay_ms: 400 }).times(1)).await.unwrap();
    let t = Instant::now();
    assert_eq!(list().await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(400));

    admin.add_fault(&FaultSpec::new(FaultKind::Timeout).times(1)).await.unwrap();
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let authinfo = format!("{RU}:{PW}");
    let err = quick
        .post(sim.base_url())
        .form(&[("authinfo", authinfo.as_str()), ("out", "bjson"), ("func", "certificate")])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(list().await.status(), 200);

    // Before commit: the order fails and nothing is charged.
    admin
        .add_fault(&FaultSpec::new(FaultKind::Status { status: 503 }).on_func("certificate.order.param").times(1))
        .await
        .unwrap();
    assert_eq!(order_once(&sim, "a.example.com").await.status(), 503);
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.account(RU).orders, stats.account(RU).charged), (0, Money::ZERO));
    // After commit: the order is placed and charged, but its answer is lost.
    admin
        .add_fault(
            &FaultSpec::new(FaultKind::Status { status: 504 })
                .on_func("certificate.order.param")
                .times(1)
                .after_commit(),
        )
        .await
        .unwrap();
    assert_eq!(order_once(&sim, "b.example.com").await.status(), 504);
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.account(RU).orders, stats.account(RU).charged), (1, Money::from_units(1_290)));
    let row = &call(&sim, RU, "certificate", &[]).await["elem"][0];
    assert_eq!(row["CN"], "b.example.com", "the lost order is in the list");
    admin
        .add_fault(&FaultSpec::new(FaultKind::Timeout).on_func("certificate.order.param").times(1).after_commit())
        .await
        .unwrap();
    let authinfo = format!("{RU}:{PW}");
    let (csr, _) = csr_for(&["c.example.com"]);
    let mut order = manual_order("3033", &csr, "admin@c.example.com");
    order.extend([
        ("authinfo".to_owned(), authinfo),
        ("out".to_owned(), "bjson".to_owned()),
        ("func".to_owned(), "certificate.order.param".to_owned()),
    ]);
    assert!(quick.post(sim.base_url()).form(&order).send().await.unwrap_err().is_timeout());
    assert_eq!(admin.stats().await.unwrap().account(RU).orders, 2);

    assert!(admin.add_fault(&FaultSpec::new(FaultKind::Auth).after_commit()).await.is_err());
    admin.add_fault(&FaultSpec::new(FaultKind::Status { status: 500 })).await.unwrap();
    admin.clear_faults().await.unwrap();
    assert!(admin.faults().await.unwrap().is_empty());
    assert_eq!(list().await.status(), 200);
    assert!(admin.stats().await.unwrap().faults_applied >= 10);
}

#[tokio::test]
async fn money_switches_error_types_before_and_after_commit_lists_without_elem_and_hidden_tags() {
    let sim = sim().await;
    let admin = sim.admin();
    let orders = || async { admin.stats().await.unwrap().account(RU).orders };

    // `access` on the order function only: refused, nothing charged, other functions work.
    let access = FaultSpec::new(FaultKind::Error { error: ErrorType::Access }).on_func("certificate.order.param");
    let id = admin.add_fault(&access).await.unwrap();
    let refused: Value =
        serde_json::from_slice(&order_once(&sim, "a.example.com").await.bytes().await.unwrap()).unwrap();
    assert_eq!(error_of(&refused).0, "access");
    assert_eq!(orders().await, 0);
    assert!(call(&sim, RU, "certificate", &[]).await["elem"].is_array(), "only the order function is refused");
    admin.remove_fault(id).await.unwrap();

    // An error type no client knows, after commit: charged, and the answer is that error.
    let unknown = FaultSpec::new(FaultKind::Error { error: ErrorType::Unknown })
        .on_func("certificate.order.param")
        .times(1)
        .after_commit();
    admin.add_fault(&unknown).await.unwrap();
    let answer: Value =
        serde_json::from_slice(&order_once(&sim, "b.example.com").await.bytes().await.unwrap()).unwrap();
    assert_eq!(error_of(&answer).0, "billmgr_processing_failed");
    assert_eq!(orders().await, 1, "the order went through although its answer is an error");

    // A list answer without its list markers.
    admin.add_fault(&FaultSpec::new(FaultKind::ListWithoutElem).on_func("certificate").times(1)).await.unwrap();
    let odd = call(&sim, RU, "certificate", &[]).await;
    assert!(odd.get("elem").is_none() && odd["doc"].is_object(), "{odd}");

    // The list shows `remoteid`, or hides it when told to; the order keeps it either way.
    let tagged = post(
        &sim,
        RU,
        "certificate.order.param",
        &{
            let (csr, _) = csr_for(&["c.example.com"]);
            let mut o = manual_order("3033", &csr, "admin@c.example.com");
            o.push(("remoteid".into(), "ispcert-tag".into()));
            o
        }
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(tagged.status(), 200);
    let rows = || async { call(&sim, RU, "certificate", &[]).await["elem"].as_array().unwrap().clone() };
    assert!(rows().await.iter().any(|r| r["remoteid"] == "ispcert-tag"));
    admin.set_settings(Settings { hide_remote_id: true, ..Default::default() }).await.unwrap();
    assert!(rows().await.iter().all(|r| r.get("remoteid").is_none()), "{:?}", rows().await);
    admin.set_settings(Settings { hide_remote_id: false, ..Default::default() }).await.unwrap();
    assert!(rows().await.iter().any(|r| r["remoteid"] == "ispcert-tag"));
}

#[tokio::test]
async fn errors_come_in_bjson_json_and_xml_and_without_out_in_xml() {
    let sim = sim().await;
    let send = |out: Option<&'static str>| {
        let url = sim.base_url();
        async move {
            let mut form = vec![("authinfo", "nobody@example.com:x"), ("func", "certificate")];
            if let Some(o) = out {
                form.push(("out", o));
            }
            client().post(url).form(&form).send().await.unwrap().text().await.unwrap()
        }
    };
    let b: Value = serde_json::from_str(&send(Some("bjson")).await).unwrap();
    assert_eq!(b["error"]["type"], "auth");
    let j: Value = serde_json::from_str(&send(Some("json")).await).unwrap();
    assert_eq!(j["doc"]["error"]["$type"], "auth");
    assert!(j["doc"]["error"]["msg"]["$"].is_string());
    for x in [send(Some("xml")).await, send(None).await] {
        assert!(x.contains("<doc><error type=\"auth\" object=\"\"><msg>"), "{x}");
    }
    // ok in xml, as the reference's delete example asks for.
    let (csr, _) = csr_for(&["a.example.com"]);
    let id = ok_id(
        &call(&sim, RU, "certificate.order.param", &refs(&manual_order("2025", &csr, "admin@a.example.com"))).await,
    );
    let url = format!("http://{}/manager/billmgr", sim.addr());
    let authinfo = format!("{RU}:{PW}");
    let x = client()
        .post(url)
        .form(&[
            ("authinfo", authinfo.as_str()),
            ("out", "xml"),
            ("func", "certificate.delete"),
            ("elid", &id),
            ("sok", "ok"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(x.contains("<doc><ok/></doc>"), "{x}");
}

#[tokio::test]
async fn hostile_input_gets_an_error_document_never_a_crash() {
    let sim = sim().await;
    let authinfo = format!("{RU}:{PW}");
    let raw = |body: Vec<u8>| {
        let url = sim.base_url();
        async move {
            client()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let mut bad_utf8 = format!("authinfo={authinfo}&out=bjson&func=certificate.order.param&sok=ok&csr=").into_bytes();
    bad_utf8.extend_from_slice(b"%FF%FE\xff\xfe&CN=%C3%28");
    let v: Value = serde_json::from_slice(&raw(bad_utf8).await.bytes().await.unwrap()).unwrap();
    assert!(v["error"].is_object());
    let mut huge = format!("authinfo={authinfo}&out=bjson&func=certificate&x=").into_bytes();
    huge.extend(std::iter::repeat_n(b'a', 3 << 20));
    // The simulator stops reading at 1 MiB and answers 413; a client still writing may instead
    // see the connection closed under it. Either way the server must go on serving.
    match client()
        .post(sim.base_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let big_field = format!(
        "authinfo={authinfo}&out=bjson&func=certificate.order.csr&sok=ok&crt_type=generate&pricelist=55324&period=12&field_country=182&ST=s&L=l&O=o&CN={}.com",
        "a".repeat(500_000)
    );
    let v: Value = serde_json::from_slice(&raw(big_field.into_bytes()).await.bytes().await.unwrap()).unwrap();
    assert_eq!(error_of(&v), ("value".into(), "CN".into()));
    for body in ["", "func=", "authinfo=&out=bjson", "authinfo=:&out=bjson&func=certificate", "%%%&&&==="] {
        let r = raw(body.as_bytes().to_vec()).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("error"), "{body}");
    }
    let v = call(&sim, RU, "no.such.func", &[]).await;
    assert_eq!(error_of(&v).1, "func");
    let v = call(&sim, RU, "certificate", &[("p_cnt", "-1")]).await;
    assert_eq!(error_of(&v), ("value".into(), "p_cnt".into()));
    assert!(call(&sim, RU, "certificate", &[]).await["elem"].is_array(), "still serving");
}

#[tokio::test]
async fn countries_sessions_basket_prolong_and_admin_controls() {
    let sim = sim().await;
    let admin = sim.admin();
    // The country list needs a product, as the reference's example passes one.
    let v = call(&sim, RU, "certificate.order.csr", &[("pricelist", "55324"), ("period", "12")]).await;
    let countries = v["slist"]["field_country"].as_array().unwrap();
    assert!(countries.len() >= 30);
    assert!(countries.iter().any(|c| c["k"] == "182" && c["v"] == "Russia"));
    assert_eq!(error_of(&call(&sim, RU, "certificate.order.csr", &[]).await), ("missed".into(), "pricelist".into()));
    // The order form shows the addon field, so a client can learn the code.
    let form = call(&sim, RU, "certificate.order.param", &[("pricelist", "55326")]).await;
    assert_eq!(form["model"]["addon_55364"], "0");
    admin.add_addon_code(AddonCode { pricelist: 27648, code: 90_001 }).await.unwrap();
    let form = call(&sim, RU, "certificate.order.param", &[("pricelist", "27648")]).await;
    assert_eq!(form["model"]["addon_90001"], "0");

    // func=auth gives a session usable instead of authinfo.
    let r = client()
        .post(sim.base_url())
        .form(&[("func", "auth"), ("out", "bjson"), ("username", RU), ("password", PW)])
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let session = v["auth"]["$id"].as_str().unwrap().to_owned();
    let r = client()
        .post(sim.base_url())
        .form(&[("auth", session.as_str()), ("out", "bjson"), ("func", "certificate")])
        .send()
        .await
        .unwrap();
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap()["elem"].is_array());

    // Without skipbasket the order waits in the basket, unpaid.
    let (csr, _) = csr_for(&["a.example.com"]);
    let mut order = manual_order("2025", &csr, "admin@a.example.com");
    unset(&mut order, "skipbasket");
    let unpaid = ok_id(&call(&sim, RU, "certificate.order.param", &refs(&order)).await);
    let stats = admin.stats().await.unwrap();
    assert_eq!(
        (stats.account(RU).orders, stats.account(RU).unpaid_orders, stats.account(RU).charged),
        (0, 1, Money::ZERO)
    );
    admin.issue_now(unpaid.parse().unwrap()).await.unwrap();
    assert_eq!(error_of(&call(&sim, RU, "certificate.file", &[("elid", &unpaid), ("type", "crt")]).await).1, "file");

    // Prolong charges and re-enrolls; a forced failure shows as status 6.
    set(&mut order, "skipbasket", "on");
    let id = ok_id(&call(&sim, RU, "certificate.order.param", &refs(&order)).await);
    let nid: u64 = id.parse().unwrap();
    admin.issue_now(nid).await.unwrap();
    let before = admin.certificate(nid).await.unwrap();
    assert_eq!(call(&sim, RU, "service.prolong", &[("elid", &id), ("period", "12"), ("sok", "ok")]).await["ok"], true);
    let after = admin.certificate(nid).await.unwrap();
    assert_ne!(after.expires, before.expires);
    assert_eq!((after.prolongs, after.crt_status, after.has_previous), (1, 3, true));
    admin.fail_certificate(nid).await.unwrap();
    let row = call(&sim, RU, "certificate", &[("p_cnt", "1000")]).await["elem"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["crt_status_orig"], "6");
    let r = download(&sim, RU, &id).await;
    assert_eq!(r.headers()["content-type"], "application/x-pem-file", "the previous certificate is still served");
    let stats = admin.stats().await.unwrap();
    assert_eq!((stats.account(RU).orders, stats.account(RU).prolongs), (1, 1));
    assert_eq!(stats.account(RU).charged, Money::from_units(2 * 2_490));
    assert!(stats.account(RU).requests["certificate"] >= 1);

    // An account that allows no authinfo access is refused with `access`, not `auth`.
    admin.set_access_denied(EU, true).await.unwrap();
    assert_eq!(error_of(&call(&sim, EU, "certificate", &[]).await), ("access".into(), "authinfo".into()));
    let wrong = client()
        .post(sim.base_url())
        .form(&[("authinfo", format!("{EU}:nope").as_str()), ("out", "bjson"), ("func", "certificate")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(&serde_json::from_slice(&wrong.bytes().await.unwrap()).unwrap()).0, "auth");
    assert!(admin.stats().await.unwrap().account(EU).access_denied);
    admin.set_access_denied(EU, false).await.unwrap();
    assert!(call(&sim, EU, "certificate", &[]).await["elem"].is_array());

    // Accounts at runtime, top-ups, counter resets.
    admin.add_account(&AccountSpec::new("new@example.com", "pw", Money::from_units(5), "USD")).await.unwrap();
    assert!(admin.add_account(&AccountSpec::new("NEW@example.com", "pw", Money::ZERO, "USD")).await.is_err());
    assert_eq!(admin.top_up("new@example.com", Money::from_cents(250)).await.unwrap(), Money::from_cents(750));
    let stats = admin.stats().await.unwrap();
    assert_eq!(
        (stats.account("new@example.com").region.as_str(), stats.account("new@example.com").currency.as_str()),
        ("Foreign", "USD")
    );
    admin.reset_counters().await.unwrap();
    let stats = admin.stats().await.unwrap();
    assert_eq!(
        (stats.account(RU).orders, stats.account(RU).charged, stats.requests_of("certificate")),
        (0, Money::ZERO, 0)
    );
    assert_eq!(stats.account(RU).balance, Money::from_units(200_000 - 2 * 2_490));
    assert_eq!(admin.root_pem().await.unwrap(), sim.root_pem());
}
