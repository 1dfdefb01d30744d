//! Every decoder of billing answers takes arbitrary bytes or arbitrary JSON and returns a value or
//! an error, never a panic. `ISPCERT_PROPTEST_CASES` sets the cases per decoder (CI: 7,000 for
//! each of the 16 properties, 112,000 in all).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use ispcert::billing::{decode, download};
use ispcert::pki::{chain, keys};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

fn config() -> Config {
    let cases = std::env::var("ISPCERT_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(512);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Keys the decoders look for, so that generated documents reach their deeper branches.
const KEYS: &[&str] = &[
    "doc",
    "error",
    "type",
    "$type",
    "object",
    "$object",
    "msg",
    "param",
    "name",
    "$name",
    "value",
    "$",
    "v",
    "ok",
    "id",
    "model",
    "csr",
    "key",
    "slist",
    "field_country",
    "country",
    "val",
    "k",
    "key",
    "elem",
    "p_elems",
    "CN",
    "domain",
    "altname",
    "item_status_orig",
    "crt_status_orig",
    "remoteid",
    "createdate",
    "expiredate",
    "status_msg",
    "auth",
    "amount",
    "have",
    "currency",
    "deficit",
    "crt",
];

const WORDS: &[&str] = &[
    "auth",
    "access",
    "value",
    "missed",
    "elid",
    "file",
    "not_enough_money",
    "182",
    "Russia",
    "2",
    "4",
    "6",
    "true",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----",
    "a.example b.example",
    "",
    "12345",
    "2026-11-30",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(str::to_string), 1 => "\\PC{0,8}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        prop::sample::select(WORDS).prop_map(|s| Value::String(s.to_string())),
        "\\PC{0,24}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Bytes that sometimes look like what the billing sends.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        json().prop_map(|v| {
            let mut b = serde_json::to_vec(&v).unwrap();
            b.truncate(b.len() / 2);
            b
        }),
        "\\PC{0,200}".prop_map(|s| format!(
            "<doc><error type=\"{s}\" object=\"x\"><msg>{s}</msg><param name=\"amount\">{s}</param></error></doc>"
        )
        .into_bytes()),
        "\\PC{0,200}"
            .prop_map(|s| format!("-----BEGIN CERTIFICATE-----\n{s}\n-----END CERTIFICATE-----\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|mut b| {
            let mut zip = b"PK\x03\x04".to_vec();
            zip.append(&mut b);
            zip
        }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|mut b| {
            let mut der = vec![0x30, 0x82];
            der.append(&mut b);
            der
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn answer_never_panics(b in body()) { let _ = decode::answer(&b); }

    #[test]
    fn xml_error_never_panics(b in body()) { let _ = decode::xml_error(&b); }

    #[test]
    fn html_detection_never_panics(b in body()) { let _ = decode::looks_like_html(&b); }

    #[test]
    fn download_never_panics(b in body()) { let _ = download::certificates(&b); }

    #[test]
    fn pkcs7_never_panics(b in body()) { let _ = download::from_pkcs7(&b); }

    #[test]
    fn pem_certificates_never_panic(b in body()) { let _ = chain::certificates_in_pem(&b); }

    #[test]
    fn chain_order_never_panics(parts in prop::collection::vec(body(), 0..4)) { let _ = chain::order(parts); }

    #[test]
    fn csr_inspection_never_panics(s in "\\PC{0,300}") {
        let _ = keys::inspect_csr(&s);
        let _ = keys::inspect_csr(&format!("-----BEGIN CERTIFICATE REQUEST-----\n{s}\n-----END CERTIFICATE REQUEST-----"));
    }

    #[test]
    fn scalar_and_error_never_panic(v in json()) {
        let _ = decode::scalar(&v);
        let _ = decode::error_of(&v);
        let _ = decode::unwrap_doc(v);
    }

    #[test]
    fn ok_never_panics(v in json()) { let _ = decode::ok(&v); }

    #[test]
    fn order_id_never_panics(v in json()) {
        if let Ok(id) = decode::order_id(&v) {
            prop_assert!(decode::is_plausible_id(&id), "an order id is passed on only when numeric: {id:?}");
        }
    }

    #[test]
    fn csr_and_key_never_panic(v in json()) { let _ = decode::csr_and_key(&v); }

    #[test]
    fn countries_never_panic(v in json()) { let _ = decode::countries(&v); }

    #[test]
    fn details_never_panic(v in json()) { let _ = decode::details(&v); }

    #[test]
    fn list_page_never_panics(v in json()) { let _ = decode::list_page(&v); }

    #[test]
    fn name_lists_never_panic(v in json()) { let _ = decode::name_list(Some(&v)); }
}
