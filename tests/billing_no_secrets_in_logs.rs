//! The client's log lines and the URLs and headers it sends never carry the password. Alone in
//! its test binary: tracing caches per call site whether anyone listens, and a test running in
//! parallel without a subscriber could make this one miss the lines it looks for.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ispcert::billing::{BillingClient, Credentials, http_pool};
use ispcert_sim::{self as sim, AccountSpec, Money, SimConfig};

use ispcert_tests::log_capture::LogCapture;
use ispcert_tests::orders;

const EMAIL: &str = "buyer@example.com";
const PASSWORD: &str = "pa55-w0rd-never-logged";

#[tokio::test]
async fn no_password_in_logs_or_urls() {
    // Every URL and header the client sends, seen by a server in front of the simulator.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sim = sim::start(
        SimConfig {
            accounts: vec![AccountSpec::new(EMAIL, PASSWORD, Money::from_units(1_000_000), "RUB")],
            issue_after: Duration::from_millis(300),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    )
    .await
    .unwrap();
    let upstream = sim.base_url();
    let seen_in = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen_in.clone();
        let upstream = upstream.clone();
        async move {
            let (parts, body) = req.into_parts();
            seen.lock().unwrap().push(format!("{} {:?}", parts.uri, parts.headers));
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let answer = reqwest::Client::new()
                .post(upstream)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            answer.to_vec()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("http://{}/billmgr", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber("trace"));

    let client =
        BillingClient::new(http_pool(Duration::from_secs(5)).unwrap(), &front, Credentials::new(EMAIL, PASSWORD))
            .unwrap();
    client.verify_access().await.unwrap();
    let (req, _) = orders::order(1011, &["log.example.com"], None);
    let id = client.order(&req).await.unwrap();
    let _ = client.download(&id).await;
    client.list().await.unwrap();
    let wrong = BillingClient::new(
        http_pool(Duration::from_secs(5)).unwrap(),
        &front,
        Credentials::new(EMAIL, format!("{PASSWORD}-typo")),
    )
    .unwrap();
    let e = wrong.verify_access().await.unwrap_err();
    assert!(!format!("{e} {e:?} {client:?} {wrong:?}").contains(PASSWORD));

    let logs = logs.text();
    assert!(logs.contains("billing request"), "the client logs its calls: {logs}");
    assert!(!logs.contains(PASSWORD), "a password in the logs: {logs}");
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 5);
    for line in seen.iter() {
        assert!(!line.contains(PASSWORD) && !line.contains("authinfo"), "credentials in a URL or header: {line}");
    }
}
