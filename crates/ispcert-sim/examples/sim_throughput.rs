//! Measures the billing simulator's throughput on loopback, over real HTTP with concurrency, for
//! the requests that dominate the 10,000-certificate benchmark: orders, full list pages over
//! 10,000 certificates, and billing-made keys.
//!
//! `cargo run --release --example sim_throughput [ORDERS] [LIST_REQUESTS]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ispcert_sim::{AccountSpec, Money, SimConfig, start};

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench";

/// Runs `total` requests made by `make(i)` with `concurrency` workers; returns (requests/s, bytes).
async fn drive<F>(client: &reqwest::Client, url: &str, total: usize, concurrency: usize, make: F) -> (f64, usize)
where
    F: Fn(usize) -> Vec<(String, String)> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, make, next, bytes) =
            (client.clone(), url.to_owned(), Arc::clone(&make), Arc::clone(&next), Arc::clone(&bytes));
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let form = make(i);
                let resp = client.post(&url).form(&form).send().await.expect("request");
                assert!(resp.status().is_success());
                let body = resp.bytes().await.expect("body");
                assert!(!body.starts_with(b"{\"error\""), "{}", String::from_utf8_lossy(&body));
                bytes.fetch_add(body.len(), Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let secs = started.elapsed().as_secs_f64();
    (total as f64 / secs, bytes.load(Ordering::Relaxed))
}

/// Sends `total` list requests (pages cycling through `pages`) over `concurrency` keep-alive
/// connections, reading each answer by its Content-Length and throwing it away.
async fn drive_raw(
    addr: std::net::SocketAddr,
    form: &str,
    pages: usize,
    total: usize,
    concurrency: usize,
) -> (f64, usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, form) = (Arc::clone(&next), form.to_owned());
        workers.push(tokio::spawn(async move {
            let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = format!("{form}&p_num={}", i % pages + 1);
                let req = format!(
                    "POST /billmgr HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(req.as_bytes()).await.expect("write");
                // Read the head, then exactly Content-Length bytes of body.
                let mut head = Vec::new();
                let header_end = loop {
                    let n = conn.read(&mut buf).await.expect("read");
                    assert!(n > 0, "connection closed");
                    head.extend_from_slice(&buf[..n]);
                    if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let text = String::from_utf8_lossy(&head[..header_end]).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                let mut left = len - (head.len() - header_end);
                while left > 0 {
                    let n = conn.read(&mut buf[..left.min(1 << 16)]).await.expect("read");
                    assert!(n > 0, "connection closed");
                    left -= n;
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    (total as f64 / started.elapsed().as_secs_f64(), 0)
}

fn base(func: &str) -> Vec<(String, String)> {
    [("authinfo", format!("{EMAIL}:{PASSWORD}")), ("out", "bjson".into()), ("lang", "en".into()), ("func", func.into())]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let orders = args.first().copied().unwrap_or(10_000);
    let lists = args.get(1).copied().unwrap_or(2_000);
    let config = SimConfig {
        accounts: vec![AccountSpec::new(EMAIL, PASSWORD, Money::from_units(1_000_000_000), "RUB")],
        issue_after: Duration::ZERO,
        ..SimConfig::default()
    };
    let sim = start(config, "127.0.0.1:0".parse().unwrap()).await.expect("start");
    let url = sim.base_url();
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    // One client-made CSR, as the operator sends for crt_type=manual.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["bench.example.com".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "bench.example.com");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let mut order = base("certificate.order.param");
    for (k, v) in [
        ("sok", "ok"),
        ("skipbasket", "on"),
        ("crt_type", "manual"),
        ("period", "12"),
        ("pricelist", "3033"),
        ("csr", csr.as_str()),
        ("approver_email_1", "admin@bench.example.com"),
        ("adm_fname", "A"),
        ("adm_lname", "B"),
        ("adm_jtitle", "C"),
        ("adm_email", "a@example.com"),
        ("adm_phone", "1"),
        ("tech_fname", "A"),
        ("tech_lname", "B"),
        ("tech_jtitle", "C"),
        ("tech_email", "a@example.com"),
        ("tech_phone", "1"),
    ] {
        order.push((k.to_owned(), v.to_owned()));
    }
    let (order_rps, _) = drive(&client, &url, orders, 32, move |i| {
        let mut o = order.clone();
        o.push(("remoteid".into(), format!("bench-{i}")));
        o
    })
    .await;
    println!("orders:       {orders:>6} requests, concurrency 32: {order_rps:>8.0} requests/s");

    let mut list = base("certificate");
    list.push(("p_cnt".into(), "1000".into()));
    let pages = orders.div_ceil(1000).max(1);
    let (list_rps, bytes) = drive(&client, &url, lists, 8, move |i| {
        let mut l = list.clone();
        l.push(("p_num".into(), (i % pages + 1).to_string()));
        l
    })
    .await;
    println!(
        "list p_cnt=1000 over {orders} certificates: {lists:>6} requests, concurrency 8: {list_rps:>8.0} requests/s ({:.0} KiB per page)",
        bytes as f64 / lists as f64 / 1024.0
    );

    // The same pages read by a minimal keep-alive HTTP/1.1 client that discards the body: what the
    // simulator itself can serve when the client costs (almost) nothing.
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(base("certificate"))
        .append_pair("p_cnt", "1000")
        .finish();
    let (raw_rps, _) = drive_raw(sim.addr(), &form, pages, lists, 8).await;
    println!(
        "list p_cnt=1000, body discarded by a raw HTTP/1.1 client: {lists:>6} requests, concurrency 8: {raw_rps:>8.0} requests/s"
    );

    let mut generate = base("certificate.order.csr");
    for (k, v) in [
        ("sok", "ok"),
        ("crt_type", "generate"),
        ("pricelist", "3033"),
        ("period", "12"),
        ("CN", "gen.example.com"),
        ("field_country", "182"),
        ("ST", "Moscow"),
        ("L", "Moscow"),
        ("O", "Bench"),
    ] {
        generate.push((k.to_owned(), v.to_owned()));
    }
    let n = 2_000.min(orders);
    let (gen_rps, _) = drive(&client, &url, n, 16, move |_| generate.clone()).await;
    println!("key + CSR (crt_type=generate): {n:>6} requests, concurrency 16: {gen_rps:>8.0} requests/s");

    let (file_rps, _) = drive(&client, &url, n, 16, move |i| {
        let mut f = base("certificate.file");
        f.push(("elid".into(), (3_100_001 + i).to_string()));
        f.push(("type".into(), "crt".into()));
        f
    })
    .await;
    println!("first downloads (signing): {n:>6} requests, concurrency 16: {file_rps:>8.0} requests/s");
    sim.shutdown().await;
}
