//! The simulator logs one debug line per billing request, and never a password: not from
//! `authinfo`, not from `func=auth`, not from the admin API's account creation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use ispcert_sim::{AccountSpec, Money, SimConfig, start};

use ispcert_tests::log_capture::LogCapture;

#[tokio::test]
async fn request_log_lines_never_contain_a_password() {
    let captured = LogCapture::default();
    // Global, because the server's tasks run on other threads; this file holds one test only.
    tracing::subscriber::set_global_default(captured.subscriber("trace")).unwrap();
    const SECRET: &str = "Pa55-w0rd-that-must-not-leak";
    let config = SimConfig {
        accounts: vec![AccountSpec::new("ops@example.com", SECRET, Money::from_units(10), "RUB")],
        ..SimConfig::default()
    };
    let sim = start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let authinfo = format!("ops@example.com:{SECRET}");
    let wrong = format!("ops@example.com:{SECRET}x");
    for form in [
        vec![("authinfo", authinfo.as_str()), ("out", "bjson"), ("func", "certificate")],
        vec![("authinfo", wrong.as_str()), ("out", "bjson"), ("func", "certificate.edit"), ("elid", "1")],
        vec![("func", "auth"), ("username", "ops@example.com"), ("password", SECRET)],
    ] {
        http.post(sim.base_url()).form(&form).send().await.unwrap().bytes().await.unwrap();
    }
    let url = format!("{}?authinfo={}&func=certificate", sim.base_url(), authinfo);
    http.get(url).send().await.unwrap().bytes().await.unwrap();
    sim.admin().add_account(&AccountSpec::new("new@example.com", SECRET, Money::ZERO, "USD")).await.unwrap();
    let logs = captured.text();
    assert!(logs.matches("billing request").count() >= 3, "one line per request:\n{logs}");
    assert!(logs.contains("ops@example.com"), "the account is logged");
    assert!(!logs.contains(SECRET), "a password leaked into the log:\n{logs}");
}
