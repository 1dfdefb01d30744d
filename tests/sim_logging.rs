//! The simulator logs one debug line per billing request, and never a password: not from
//! `authinfo`, not from `func=auth`, not from the admin API's account creation.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ispcert::sim::{AccountSpec, Money, SimConfig, start};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_log_lines_never_contain_a_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global, because the server's tasks run on other threads; this file holds one test only.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
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
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.matches("billing request").count() >= 3, "one line per request:\n{logs}");
    assert!(logs.contains("ops@example.com"), "the account is logged");
    assert!(!logs.contains(SECRET), "a password leaked into the log:\n{logs}");
}
