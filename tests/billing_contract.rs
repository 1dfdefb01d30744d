//! The billing client against the simulator over real HTTP: every function works, every error
//! class comes back typed, and every refusal leaves the balance alone. (That no password is
//! logged or put in a URL is `billing_no_secrets_in_logs.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;

use std::time::Duration;

use ispcert::billing::{
    Approvers, BillingClient, BillingError, Credentials, CsrRequest, OrderKey, OrderRequest, Reissue, Retry,
    TransportKind, http_pool,
};
use ispcert::pki::keys::{self, CsrSubject, KeyAlgorithm};
use ispcert_sim::{self as sim, AccountSpec, ErrorType, FaultKind, FaultSpec, Money, RunningSim, SimConfig};

use ispcert_tests::orders::{contact, order, subject};

const EMAIL: &str = "buyer@example.com";
const PASSWORD: &str = "pa55-w0rd-never-logged";
const OTHER: &str = "other@example.com";

async fn simulator(balance: i64) -> RunningSim {
    sim::start(
        SimConfig {
            accounts: vec![
                AccountSpec::new(EMAIL, PASSWORD, Money::from_units(balance), "RUB"),
                AccountSpec::new(OTHER, "other-password", Money::from_units(1_000_000), "EUR"),
            ],
            issue_after: Duration::from_millis(300),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap()
}

fn client_for(sim: &RunningSim, email: &str, password: &str) -> BillingClient {
    BillingClient::new(http_pool(Duration::from_secs(5)).unwrap(), &sim.base_url(), Credentials::new(email, password))
        .unwrap()
}

async fn until_issued(client: &BillingClient, id: &str) -> ispcert::pki::chain::Chain {
    for _ in 0..100 {
        match client.download(id).await {
            Ok(chain) => return chain,
            Err(BillingError::NotIssuedYet) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("download: {e}"),
        }
    }
    panic!("certificate {id} was never issued");
}

#[tokio::test]
async fn every_function_works() {
    let sim = simulator(1_000_000).await;
    let client = client_for(&sim, EMAIL, PASSWORD);
    client.verify_access().await.unwrap();

    let countries = client.countries(55324, 12).await.unwrap();
    assert!(countries.iter().any(|c| c.id == "182" && c.name == "Russia"));

    // The billing makes key and CSR; the order carries both back.
    let pair = client
        .generate_key_and_csr(&CsrRequest {
            pricelist: 1011,
            period: 12,
            common_name: "gen.example.com".into(),
            alt_names: vec![],
            subject: subject(),
        })
        .await
        .unwrap();
    let mut approvers = Approvers::new();
    approvers.set("gen.example.com", "webmaster@gen.example.com");
    let generated = client
        .order(&OrderRequest {
            pricelist: 1011,
            period: 24,
            common_name: "gen.example.com".into(),
            alt_names: vec![],
            addon: None,
            approvers,
            subject: subject(),
            admin: contact(),
            tech: contact(),
            key: OrderKey::Billing(pair.clone()),
            remote_id: None,
        })
        .await
        .unwrap();
    let chain = until_issued(&client, &generated).await;
    assert_eq!(chain.leaf_info().public_key_bits, keys::public_key_bits(&pair.key).unwrap());
    assert!(chain.root.is_some() && chain.intermediates.len() == 1, "PEM (RapidSSL) leaf, intermediate, root");

    // Multi-domain with our CSR; GlobalSign answers a ZIP.
    let (mut req, key) = order(55326, &["a.example.com", "b.example.org", "c.example.net"], Some((55364, 2)));
    req.remote_id = Some("contract".into());
    let multi = client.order(&req).await.unwrap();
    let details = client.details(&multi).await.unwrap();
    assert_eq!(details.common_name, "a.example.com");
    assert_eq!(details.alt_names, ["b.example.org", "c.example.net"], "the billing's order");
    let chain = until_issued(&client, &multi).await;
    let leaf = chain.leaf_info();
    assert_eq!(leaf.public_key_bits, keys::public_key_bits(&key).unwrap());
    assert_eq!(leaf.names(), ["a.example.com", "b.example.org", "c.example.net"]);

    // The three reissue forms, each free, each a new certificate under the same id.
    let mut approvers = Approvers::new();
    for n in ["a.example.com", "b.example.org", "c.example.net", "d.example.com"] {
        approvers.set(n, format!("hostmaster@{n}"));
    }
    let mut serial = leaf.serial.clone();
    let fresh_key = keys::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let forms = [
        Reissue::OldRequest,
        Reissue::Manual {
            csr: keys::csr(
                &fresh_key,
                "a.example.com",
                &["b.example.org".into(), "c.example.net".into()],
                &CsrSubject::default(),
            )
            .unwrap(),
        },
        Reissue::AltNames { alt_names: vec!["d.example.com".into(), "b.example.org".into()] },
    ];
    for form in &forms {
        client.reissue(&multi, form, &approvers).await.unwrap();
        let mut next = until_issued(&client, &multi).await.leaf_info();
        for _ in 0..50 {
            if next.serial != serial {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            next = until_issued(&client, &multi).await.leaf_info();
        }
        assert_ne!(next.serial, serial, "{form:?} makes a new certificate");
        if let Reissue::Manual { .. } = form {
            assert_eq!(next.public_key_bits, keys::public_key_bits(&fresh_key).unwrap());
        }
        if let Reissue::AltNames { .. } = form {
            assert_eq!(next.names(), ["a.example.com", "d.example.com", "b.example.org"]);
            assert_eq!(client.details(&multi).await.unwrap().alt_names, ["d.example.com", "b.example.org"]);
        }
        serial = next.serial;
    }

    let rows = client.list().await.unwrap();
    assert_eq!(rows.len(), 2);
    let row = rows.iter().find(|r| r.id == multi).unwrap();
    assert_eq!((row.domain.as_str(), row.item_status), ("a.example.com", Some(2)));
    assert_eq!(row.remote_id.as_deref(), Some("contract"));

    let before = sim.admin().stats().await.unwrap().account(EMAIL).clone();
    client.prolong(&multi, 12).await.unwrap();
    let after = sim.admin().stats().await.unwrap().account(EMAIL).clone();
    assert_eq!(after.prolongs, before.prolongs + 1);
    assert!(after.balance < before.balance, "a prolongation is paid");

    client.delete(&generated).await.unwrap();
    assert!(matches!(client.details(&generated).await, Err(BillingError::NotFound { .. })));
    let rows = client.list().await.unwrap();
    assert_eq!(rows.iter().find(|r| r.id == generated).and_then(|r| r.item_status), Some(4), "listed as deleted");
    let stats = sim.admin().stats().await.unwrap().account(EMAIL).clone();
    assert_eq!((stats.orders, stats.reissues, stats.deletes), (2, 3, 1));
}

#[tokio::test]
async fn lists_are_paged_and_sticky_filters_reset() {
    let sim = simulator(100_000_000).await;
    let client = client_for(&sim, EMAIL, PASSWORD);
    let (req, _) = order(1011, &["page.example.com"], None);
    for _ in 0..1003 {
        client.order(&req).await.unwrap();
    }
    // A filter set in the web panel silently shortens the list...
    let http = reqwest::Client::new();
    let form = [
        ("authinfo", format!("{EMAIL}:{PASSWORD}")),
        ("out", "bjson".into()),
        ("func", "certificate.filter".into()),
        ("sok", "ok".into()),
        ("CN", "nothing-matches".into()),
    ];
    let answer = http.post(sim.base_url()).form(&form).send().await.unwrap().text().await.unwrap();
    assert!(answer.contains("ok"), "{answer}");
    // ...and the client resets it before reading every page.
    let rows = client.list().await.unwrap();
    assert_eq!(rows.len(), 1003);
    let stats = sim.admin().stats().await.unwrap();
    assert!(stats.account(EMAIL).requests["certificate"] >= 2, "more than one page was read");
}

#[tokio::test]
async fn every_error_class_is_typed() {
    let sim = simulator(10).await;
    let client = client_for(&sim, EMAIL, PASSWORD);

    assert_eq!(client_for(&sim, EMAIL, "wrong").verify_access().await, Err(BillingError::Auth));

    let (req, _) = order(55328, &["www.example.com"], None);
    match client.order(&req).await {
        Err(BillingError::NotEnoughMoney(s)) => {
            assert_eq!(s.currency.as_deref(), Some("RUB"));
            assert!(s.deficit.is_some() && s.amount.is_some() && s.balance.is_some(), "{s:?}");
        }
        other => panic!("{other:?}"),
    }

    let mut bad_period = req.clone();
    bad_period.period = 36;
    assert!(
        matches!(client.order(&bad_period).await, Err(BillingError::InvalidField { field, .. }) if field == "period")
    );
    let mut no_contact = req.clone();
    no_contact.admin.first_name.clear();
    assert!(
        matches!(client.order(&no_contact).await, Err(BillingError::MissingField { field, .. }) if field == "adm_fname")
    );
    assert!(matches!(client.details("999999").await, Err(BillingError::NotFound { .. })));

    sim.admin().top_up(EMAIL, Money::from_units(1_000_000)).await.unwrap();
    let id = client.order(&req).await.unwrap();
    assert_eq!(client.download(&id).await.err(), Some(BillingError::NotIssuedYet));
    // Another account's certificate is not found, never shown.
    assert!(matches!(client_for(&sim, OTHER, "other-password").details(&id).await, Err(BillingError::NotFound { .. })));

    let admin = sim.admin();
    type Check = fn(&BillingError) -> bool;
    let cases: Vec<(FaultKind, Check)> = vec![
        (FaultKind::Status { status: 502 }, |e| {
            matches!(e, BillingError::Transport { kind: TransportKind::Status(502), sent: true, .. })
        }),
        (FaultKind::Html { status: 200 }, |e| matches!(e, BillingError::Transport { kind: TransportKind::Html, .. })),
        (FaultKind::MalformedJson, |e| matches!(e, BillingError::Transport { kind: TransportKind::Unparsable, .. })),
        (FaultKind::Auth, |e| *e == BillingError::Auth),
    ];
    for (kind, check) in cases {
        admin.add_fault(&FaultSpec::new(kind.clone()).times(1)).await.unwrap();
        let e = client.verify_access().await.unwrap_err();
        assert!(check(&e), "{kind:?} gave {e:?}");
        assert!(!e.to_string().contains(PASSWORD));
    }
    // An account that refuses authinfo from here (IP allow-list, two-factor login).
    admin.set_access_denied(EMAIL, true).await.unwrap();
    let e = client.verify_access().await.unwrap_err();
    assert!(matches!(e, BillingError::Access { .. }), "{e:?}");
    admin.set_access_denied(EMAIL, false).await.unwrap();

    let quick = BillingClient::new(
        http_pool(Duration::from_millis(500)).unwrap(),
        &sim.base_url(),
        Credentials::new(EMAIL, PASSWORD),
    )
    .unwrap();
    admin.add_fault(&FaultSpec::new(FaultKind::Timeout).times(1)).await.unwrap();
    let e = quick.verify_access().await.unwrap_err();
    assert!(matches!(e, BillingError::Transport { kind: TransportKind::Timeout, sent: true, .. }), "{e:?}");
    assert!(!e.may_have_charged() && e.retry() == Retry::Soon, "a read that timed out spent nothing: {e:?}");
    // An order whose answer is lost after the billing charged: never to be simply repeated.
    let orders_before = admin.stats().await.unwrap().account(EMAIL).orders;
    admin
        .add_fault(&FaultSpec::new(FaultKind::Timeout).on_func("certificate.order.param").after_commit().times(1))
        .await
        .unwrap();
    let e = quick.order(&req).await.unwrap_err();
    assert!(e.may_have_charged() && e.retry() == Retry::CheckFirst, "{e:?}");
    assert_eq!(admin.stats().await.unwrap().account(EMAIL).orders, orders_before + 1, "the lost order was placed");
    admin.add_fault(&FaultSpec::new(FaultKind::Slow { delay_ms: 100 }).times(1)).await.unwrap();
    quick.verify_access().await.unwrap();

    let closed = BillingClient::new(
        http_pool(Duration::from_secs(1)).unwrap(),
        "http://127.0.0.1:9/billmgr",
        Credentials::new(EMAIL, PASSWORD),
    )
    .unwrap();
    let e = closed.verify_access().await.unwrap_err();
    assert!(matches!(e, BillingError::Transport { kind: TransportKind::Connect, sent: false, .. }), "{e:?}");
    assert!(!e.may_have_charged());
}

/// The answers a money decision must not trust: an order answered with an error type that does
/// not prove a refusal may have charged, and a list without its markers is an error, not empty.
#[tokio::test]
async fn doubtful_answers_are_never_taken_for_nothing_happened() {
    let sim = simulator(1_000_000).await;
    let client = client_for(&sim, EMAIL, PASSWORD);
    let admin = sim.admin();
    let orders = || async { admin.stats().await.unwrap().account(EMAIL).orders };
    for error in [ErrorType::Exists, ErrorType::Xml, ErrorType::Unknown] {
        let fault =
            FaultSpec::new(FaultKind::Error { error }).on_func("certificate.order.param").after_commit().times(1);
        admin.add_fault(&fault).await.unwrap();
        let before = orders().await;
        let (req, _) = order(3033, &["doubt.example.com"], None);
        let e = client.order(&req).await.unwrap_err();
        assert!(e.may_have_charged() && e.retry() == Retry::CheckFirst, "{error:?}: {e:?}");
        assert_eq!(orders().await, before + 1, "{error:?}: the order went through");
    }
    // access on the order function alone, before anything happens: a refusal, nothing charged.
    let access =
        FaultSpec::new(FaultKind::Error { error: ErrorType::Access }).on_func("certificate.order.param").times(1);
    admin.add_fault(&access).await.unwrap();
    let before = orders().await;
    let (req, _) = order(3033, &["access.example.com"], None);
    let e = client.order(&req).await.unwrap_err();
    assert!(matches!(e, BillingError::Access { .. }) && !e.may_have_charged(), "{e:?}");
    assert_eq!(orders().await, before);
    // A list without `elem` is an error, whatever page it is on.
    admin.add_fault(&FaultSpec::new(FaultKind::ListWithoutElem).on_func("certificate").times(1)).await.unwrap();
    let e = client.list().await.unwrap_err();
    assert!(matches!(e, BillingError::Transport { kind: TransportKind::Unparsable, .. }), "{e:?}");
    assert_eq!(client.list().await.unwrap().len(), 3, "the list itself is whole: the three charged orders");
}

/// Each invalid order is refused with its error type and costs nothing.
#[tokio::test]
async fn the_simulator_is_strict_and_charges_nothing_for_refusals() {
    let sim = simulator(1_000_000).await;
    let client = client_for(&sim, EMAIL, PASSWORD);
    let admin = sim.admin();
    let balance = || async { admin.stats().await.unwrap().account(EMAIL).balance };
    let start = balance().await;

    let (base, _) = order(55326, &["a.example.com", "b.example.com"], Some((55364, 1)));
    type Check = fn(&BillingError) -> bool;
    let mut cases: Vec<(&str, OrderRequest, Check)> = vec![];
    let mut r = base.clone();
    r.pricelist = 99999;
    cases.push((
        "unknown price list",
        r,
        |e| matches!(e, BillingError::InvalidField { field, .. } if field == "pricelist"),
    ));
    let mut r = base.clone();
    r.pricelist = 55348;
    cases.push((
        "the other region's price list",
        r,
        |e| matches!(e, BillingError::InvalidField { field, .. } if field == "pricelist"),
    ));
    let mut r = base.clone();
    r.period = 6;
    cases.push(("period 6", r, |e| matches!(e, BillingError::InvalidField { field, .. } if field == "period")));
    let mut r = base.clone();
    r.tech.phone.clear();
    cases.push((
        "missing tech phone",
        r,
        |e| matches!(e, BillingError::MissingField { field, .. } if field == "tech_phone"),
    ));
    let mut r = base.clone();
    r.addon = Some((55364, 2));
    cases.push((
        "addon count off by one",
        r,
        |e| matches!(e, BillingError::InvalidField { field, .. } if field == "addon_55364"),
    ));
    let mut r = base.clone();
    r.addon = Some((12345, 1));
    cases.push((
        "wrong addon code",
        r,
        |e| matches!(e, BillingError::InvalidField { field, .. } if field.starts_with("addon_")),
    ));
    let (mut r, _) = order(55324, &["*.example.com"], None);
    r.pricelist = 55324;
    cases.push((
        "wildcard on a non-wildcard product",
        r,
        |e| matches!(e, BillingError::InvalidField { field, .. } if field == "CN"),
    ));
    for (what, req, check) in cases {
        let e = client.order(&req).await.expect_err(what);
        assert!(check(&e), "{what}: {e:?}");
        assert_eq!(balance().await, start, "{what} charged money");
    }

    // Approver rules are checked by the client before sending, and by the billing: send one
    // past the client to see the billing refuse it too.
    let http = reqwest::Client::new();
    let mut form: Vec<(String, String)> = vec![];
    for (k, v) in [
        ("authinfo", format!("{EMAIL}:{PASSWORD}")),
        ("out", "bjson".into()),
        ("lang", "en".into()),
        ("func", "certificate.order.param".into()),
    ] {
        form.push((k.into(), v));
    }
    let (valid, _) = order(1011, &["x.example.com"], None);
    let mut params = serde_urlencoded::to_string(valid.params().unwrap()).unwrap();
    params = params.replace("admin%40x.example.com", "root%40x.example.com");
    let body = format!("{}&{params}", serde_urlencoded::to_string(&form).unwrap());
    let answer = http
        .post(sim.base_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        matches!(ispcert::billing::decode::answer(&answer), Err(BillingError::InvalidField { field, .. }) if field == "approver_email_1")
    );
    assert_eq!(balance().await, start);

    // Wrong password, elids of other accounts and of deleted certificates.
    assert_eq!(client_for(&sim, EMAIL, "nope").order(&valid).await, Err(BillingError::Auth));
    let id = client.order(&valid).await.unwrap();
    let paid = balance().await;
    assert!(paid < start);
    let other = client_for(&sim, OTHER, "other-password");
    assert!(matches!(
        other.reissue(&id, &Reissue::OldRequest, &valid.approvers).await,
        Err(BillingError::NotFound { .. })
    ));
    assert!(matches!(other.prolong(&id, 12).await, Err(BillingError::NotFound { .. })));
    client.delete(&id).await.unwrap();
    assert!(matches!(client.prolong(&id, 12).await, Err(BillingError::NotFound { .. })));
    assert_eq!(balance().await, paid);

    // Too little money.
    let poor = simulator(1).await;
    let poor_client = client_for(&poor, EMAIL, PASSWORD);
    assert!(matches!(poor_client.order(&valid).await, Err(BillingError::NotEnoughMoney(_))));
    assert_eq!(poor.admin().stats().await.unwrap().account(EMAIL).balance, Money::from_units(1));
}
