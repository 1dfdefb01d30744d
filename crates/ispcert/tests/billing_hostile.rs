//! The client against a broken or hostile billing over real HTTP: answers the simulator would never
//! give, served by a small server of this test's own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use ispcert::billing::{BillingClient, BillingError, Credentials, TransportKind, http_pool};

const EMAIL: &str = "buyer@example.com";
const PASSWORD: &str = "Zq8&echoed-and-never-shown";

/// Serves `answer` to every request and returns the billing URL.
async fn serve(answer: fn() -> Body) -> String {
    let app = axum::Router::new().fallback(move || async move { answer() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).await.unwrap();
    let url = format!("http://{}/billmgr", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn client(url: &str, timeout: Duration) -> BillingClient {
    BillingClient::new(http_pool(timeout).unwrap(), url, Credentials::new(EMAIL, PASSWORD)).unwrap()
}

#[tokio::test]
async fn an_answer_that_never_ends_is_cut_off_not_buffered() {
    // 64 KiB of spaces, forever, as a broken proxy might stream.
    let url = serve(|| {
        let chunk = axum::body::Bytes::from(vec![b' '; 64 << 10]);
        Body::from_stream(futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone())))
    })
    .await;
    // The timeout is far longer than reading the cap takes, so only the cap can end this.
    let e = client(&url, Duration::from_secs(60)).verify_access().await.unwrap_err();
    assert!(
        matches!(&e, BillingError::Transport { kind: TransportKind::Unparsable, detail, .. } if detail.contains("larger than")),
        "{e:?}"
    );
}

#[tokio::test]
async fn echoed_credentials_are_removed_before_a_long_message_is_cut() {
    // The billing echoes the request in its message, the password straddling the point where
    // the message is cut.
    let url = serve(|| {
        // The cut keeps MAX_MESSAGE bytes with its 3-byte `…`: six bytes of the password before it.
        let filler = "x".repeat(ispcert::billing::MAX_MESSAGE - 3 - 6 - "authinfo=".len() - EMAIL.len() - 1);
        let msg = format!("{filler}authinfo={EMAIL}:{PASSWORD}&func=certificate and more text after it");
        Body::from(
            serde_json::json!({"doc": {"error": {"type": "value", "object": "pricelist", "msg": msg}}}).to_string(),
        )
    })
    .await;
    let e = client(&url, Duration::from_secs(5)).verify_access().await.unwrap_err();
    let BillingError::InvalidField { field, message } = &e else { panic!("{e:?}") };
    assert_eq!(field, "pricelist");
    assert!(message.chars().count() <= ispcert::billing::MAX_MESSAGE + 1, "the message is cut: {message}");
    assert!(message.contains("[authinfo redacted]") || message.ends_with('…'), "{message}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(&PASSWORD[..4]), "a piece of the password survived: {shown}");
    }
}

#[tokio::test]
async fn an_xml_error_with_entities_is_read_whole_and_scrubbed() {
    // The password's `&` travels as `&amp;` in XML. Were the entity dropped, what is left
    // (`Zq8echoed-...`) would no longer match the password and slip past the scrubber.
    let url = serve(|| {
        Body::from(
            "<?xml version=\"1.0\"?><doc><error type=\"access\" object=\"authinfo\">\
             <msg>refused buyer@example.com:Zq8&amp;echoed-and-never-shown from 10.0.0.1 &amp; 10.0.0.2 &#8212; see &lt;help&gt;</msg>\
             </error></doc>",
        )
    })
    .await;
    let e = client(&url, Duration::from_secs(5)).verify_access().await.unwrap_err();
    let BillingError::Access { message, .. } = &e else { panic!("{e:?}") };
    assert!(!message.contains("echoed-and-never-shown"), "{message}");
    assert!(message.ends_with("from 10.0.0.1 & 10.0.0.2 — see <help>"), "entities are resolved in place: {message}");
}
