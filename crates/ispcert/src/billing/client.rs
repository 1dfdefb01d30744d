//! The billing client: one method per certificate function, POST form bodies, typed errors.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use secrecy::SecretString;
use serde_json::Value;
use tracing::debug;
use url::Url;

use super::credentials::Credentials;
use super::decode::{self, CertificateDetails, CertificateRow, Country};
use super::download;
use super::error::{BillingError, TransportKind};
use super::request::{Approvers, BillingKeyPair, CsrRequest, OrderRequest, Reissue};
use crate::pki::chain::{self, Chain};

/// The production billing.
pub const DEFAULT_URL: &str = "https://api.ispmanager.com/billmgr";

/// Rows asked for per list page; the list is paged until `p_elems` rows are read.
const PAGE_SIZE: usize = 1000;
/// A bound on paging, so a billing that never stops answering pages cannot loop us forever.
const MAX_PAGES: usize = 1000;
/// The largest answer read: a full list page of 1,000 rows or a certificate bundle is far below it.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Builds the one HTTP connection pool every billing client of a process shares. Fails only when
/// the TLS backend cannot initialise.
pub fn http_pool(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("ispcert/", env!("CARGO_PKG_VERSION")))
        // A redirect would re-send the form (credentials included) somewhere we did not choose.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// How a billing request ended, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer the caller can use (including "not issued yet", the normal answer while the CA works).
    Ok,
    /// The billing answered with an error document.
    Error,
    /// No usable answer: no connection, a timeout, a 5xx, an HTML page, garbage.
    Unreachable,
}

impl Outcome {
    pub fn of<T>(result: &Result<T, BillingError>) -> Outcome {
        match result {
            Ok(_) | Err(BillingError::NotIssuedYet) => Outcome::Ok,
            Err(BillingError::Transport { .. }) => Outcome::Unreachable,
            Err(_) => Outcome::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Unreachable => "unreachable",
        }
    }
}

/// Told about every billing request a client makes: its function, outcome and duration.
pub trait Observer: Send + Sync {
    fn observe(&self, function: &str, outcome: Outcome, elapsed: Duration);
}

/// An error and what caused it, outermost first. reqwest's own message ("error sending request")
/// leaves out why; its causes say it: a refused connection, a name that does not resolve, a
/// certificate that no CA in the bundle signed ("invalid peer certificate: UnknownIssuer").
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        // Some layers repeat their cause's text in their own.
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// A client of one billing account.
#[derive(Clone)]
pub struct BillingClient {
    http: reqwest::Client,
    endpoint: Url,
    credentials: Credentials,
    observer: Option<std::sync::Arc<dyn Observer>>,
}

impl std::fmt::Debug for BillingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingClient")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Checks a billing URL: http(s), no user info and no query (credentials go in the body only).
pub fn parse_endpoint(url: &str) -> Result<Url, String> {
    let u = Url::parse(url.trim()).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err(format!("the billing URL must be https, not {}", u.scheme()));
    }
    // Plain http would send the password in clear: only to this machine (a local simulator).
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if u.scheme() == "http" && !loopback {
        return Err("the billing URL must be https: http would send the password in clear (http is accepted only for localhost)".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("the billing URL must not carry credentials; put them in the credentials Secret".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("the billing URL must not have a query or fragment".into());
    }
    if u.host_str().is_none() {
        return Err(format!("the billing URL {url:?} has no host"));
    }
    Ok(u)
}

impl BillingClient {
    pub fn new(http: reqwest::Client, endpoint: &str, credentials: Credentials) -> Result<Self, BillingError> {
        let endpoint = parse_endpoint(endpoint).map_err(BillingError::InvalidRequest)?;
        Ok(BillingClient { http, endpoint, credentials, observer: None })
    }

    /// The same client, reporting every request to `observer`.
    pub fn observed_by(self, observer: std::sync::Arc<dyn Observer>) -> Self {
        BillingClient { observer: Some(observer), ..self }
    }

    /// Runs one request, telling the observer how it went.
    async fn observe<T>(
        &self,
        func: &str,
        request: impl Future<Output = Result<T, BillingError>>,
    ) -> Result<T, BillingError> {
        let started = std::time::Instant::now();
        let result = request.await;
        if let Some(o) = &self.observer {
            o.observe(func, Outcome::of(&result), started.elapsed());
        }
        result
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sends one function call and returns the raw body.
    async fn send(&self, func: &str, params: Vec<(String, String)>) -> Result<Vec<u8>, BillingError> {
        let mut form: Vec<(String, String)> = Vec::with_capacity(params.len() + 4);
        form.push(("authinfo".into(), self.credentials.authinfo()));
        form.push(("out".into(), "bjson".into()));
        form.push(("lang".into(), "en".into()));
        form.push(("func".into(), func.into()));
        form.extend(params);
        let elid = form.iter().find(|(k, _)| k == "elid").map(|(_, v)| v.clone()).unwrap_or_default();
        debug!(func, elid = %elid, endpoint = %self.endpoint, "billing request");

        let response = self
            .http
            .post(self.endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| self.scrub(self.transport(e)))?;
        let status = response.status();
        let is_html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("text/html"));
        let body = self.read_body(response).await?;
        debug!(func, status = status.as_u16(), bytes = body.len(), "billing answer");
        if !status.is_success() {
            return Err(BillingError::transport(TransportKind::Status(status.as_u16()), ""));
        }
        if is_html && decode::looks_like_html(&body) {
            return Err(BillingError::transport(TransportKind::Html, ""));
        }
        Ok(body)
    }

    /// Reads an answer of at most [`MAX_ANSWER_BYTES`]: a broken billing or proxy that streams
    /// without end must not take the operator's memory.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, BillingError> {
        let too_large = || {
            BillingError::transport(
                TransportKind::Unparsable,
                format!("an answer larger than {} MiB", MAX_ANSWER_BYTES >> 20),
            )
        };
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.scrub(self.transport(e)))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, e: reqwest::Error) -> BillingError {
        let kind = if e.is_timeout() {
            TransportKind::Timeout
        } else if e.is_connect() {
            TransportKind::Connect
        } else {
            TransportKind::Body
        };
        // The URL holds no credentials, but the message is scrubbed anyway in case a proxy
        // echoes the form.
        BillingError::transport(kind, with_causes(&e.without_url()))
    }

    /// Keeps billing-supplied text free of the credentials, then short.
    fn scrub(&self, e: BillingError) -> BillingError {
        e.map_text(|t| self.credentials.scrub(&t)).clipped()
    }

    async fn call(&self, func: &str, params: Vec<(String, String)>) -> Result<Value, BillingError> {
        self.observe(func, async {
            let body = self.send(func, params).await?;
            decode::answer(&body).map_err(|e| self.scrub(e))
        })
        .await
    }

    /// Checks that the credentials work for API calls from here (IP allow-list, two-factor login)
    /// with the cheapest authenticated read: one row of the certificate list. An answer without
    /// an error is enough; the list's shape matters where orders are decided (see [`Self::list`]).
    pub async fn verify_access(&self) -> Result<(), BillingError> {
        self.call("certificate", vec![("p_cnt".into(), "1".into()), ("p_num".into(), "1".into())]).await.map(drop)
    }

    /// The billing makes a key and CSR (`certificate.order.csr`, `crt_type=generate`).
    pub async fn generate_key_and_csr(&self, request: &CsrRequest) -> Result<BillingKeyPair, BillingError> {
        let answer = self.call("certificate.order.csr", request.params()).await?;
        let (csr, key) = decode::csr_and_key(&answer)?;
        Ok(BillingKeyPair { csr, key: SecretString::from(key) })
    }

    /// The billing's country list (the `certificate.order.csr` form without `sok`).
    pub async fn countries(&self, pricelist: u32, period: u32) -> Result<Vec<Country>, BillingError> {
        let params = vec![("pricelist".into(), pricelist.to_string()), ("period".into(), period.to_string())];
        let answer = self.call("certificate.order.csr", params).await?;
        decode::countries(&answer)
    }

    /// Orders a certificate and returns the new service id. This spends money: the caller must
    /// have recorded its intent first, and must treat [`BillingError::may_have_charged`] errors
    /// as a possibly placed order.
    pub async fn order(&self, request: &OrderRequest) -> Result<String, BillingError> {
        let params = request.params()?;
        let answer = self.call("certificate.order.param", params).await.map_err(BillingError::in_paid_call)?;
        decode::order_id(&answer).map_err(BillingError::in_paid_call)
    }

    /// Downloads the issued certificate (`certificate.file`, `type=crt`), leaf first.
    pub async fn download(&self, elid: &str) -> Result<Chain, BillingError> {
        let params = vec![elid_param(elid)?, ("type".into(), "crt".into())];
        self.observe("certificate.file", async {
            let body = self.send("certificate.file", params).await?;
            let ders = download::certificates(&body).map_err(|e| self.scrub(e))?;
            chain::order(ders).map_err(|e| BillingError::transport(TransportKind::Unparsable, e.to_string()))
        })
        .await
    }

    /// What the billing knows of one certificate (`certificate.edit`).
    pub async fn details(&self, elid: &str) -> Result<CertificateDetails, BillingError> {
        let answer = self.call("certificate.edit", vec![elid_param(elid)?]).await?;
        decode::details(&answer)
    }

    /// Reissues a certificate for free (`certificate.reissue.step2`). Approver emails are indexed
    /// as the reference says: for `oldrequest` and `manual` by the alt-name order that
    /// `certificate.edit` shows (fetched here), for `altname` by the order of the new alt names.
    pub async fn reissue(&self, elid: &str, form: &Reissue, approvers: &Approvers) -> Result<(), BillingError> {
        let details = self.details(elid).await?;
        let mut names: Vec<&str> = vec![details.common_name.as_str()];
        match form {
            Reissue::AltNames { alt_names } => names.extend(alt_names.iter().map(String::as_str)),
            Reissue::OldRequest | Reissue::Manual { .. } => names.extend(details.alt_names.iter().map(String::as_str)),
        }
        let mut params = vec![
            elid_param(elid)?,
            ("crt_type".into(), form.crt_type().into()),
            ("approver_method".into(), "auth_email".into()),
            ("sok".into(), "ok".into()),
        ];
        match form {
            Reissue::OldRequest => {}
            Reissue::Manual { csr } => params.push(("csr".into(), csr.clone())),
            Reissue::AltNames { alt_names } => params.push(("altname".into(), alt_names.join(" "))),
        }
        params.extend(approvers.params(&names)?);
        let answer = self.call("certificate.reissue.step2", params).await?;
        decode::ok(&answer)
    }

    /// Deletes a certificate at the billing (`certificate.delete`).
    pub async fn delete(&self, elid: &str) -> Result<(), BillingError> {
        let answer = self.call("certificate.delete", vec![elid_param(elid)?, ("sok".into(), "ok".into())]).await?;
        decode::ok(&answer)
    }

    /// Renews a subscription (`service.prolong`). This spends money.
    pub async fn prolong(&self, elid: &str, period: u32) -> Result<(), BillingError> {
        let params = vec![elid_param(elid)?, ("period".into(), period.to_string()), ("sok".into(), "ok".into())];
        let answer = self.call("service.prolong", params).await.map_err(BillingError::in_paid_call)?;
        decode::ok(&answer).map_err(BillingError::in_paid_call)
    }

    /// Clears the account's sticky list filter, which would otherwise silently shorten the list.
    pub async fn reset_list_filter(&self) -> Result<(), BillingError> {
        let answer = self.call("certificate.filter", vec![("sok".into(), "ok".into())]).await?;
        decode::ok(&answer)
    }

    /// Every certificate of the account: resets the sticky filter, then reads all pages.
    pub async fn list(&self) -> Result<Vec<CertificateRow>, BillingError> {
        self.reset_list_filter().await?;
        let mut rows: Vec<CertificateRow> = Vec::new();
        for page in 1..=MAX_PAGES {
            let params = vec![("p_cnt".into(), PAGE_SIZE.to_string()), ("p_num".into(), page.to_string())];
            let answer = self.call("certificate", params).await?;
            let got = decode::list_page(&answer)?;
            let n = got.rows.len();
            rows.extend(got.rows);
            let done = match got.total {
                Some(total) => rows.len() >= total,
                None => n < PAGE_SIZE,
            };
            if done || n == 0 {
                break;
            }
        }
        // Pages can shift while we read them (a new order lands on page 1): keep each id once.
        let mut seen = std::collections::HashSet::new();
        rows.retain(|r| seen.insert(r.id.clone()));
        Ok(rows)
    }
}

fn elid_param(elid: &str) -> Result<(String, String), BillingError> {
    if decode::is_plausible_id(elid) {
        Ok(("elid".into(), elid.to_string()))
    } else {
        Err(BillingError::InvalidRequest(format!("{elid:?} is not a billing certificate id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_say_why() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<std::io::Error>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_ref().map(|e| e as _)
            }
        }
        let tls = || std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid peer certificate: UnknownIssuer");
        assert_eq!(
            with_causes(&Layer("error sending request", Some(tls()))),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
        // A layer that already quotes its cause does not say it twice.
        assert_eq!(
            with_causes(&Layer("connect: invalid peer certificate: UnknownIssuer", Some(tls()))),
            "connect: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(with_causes(&Layer("timed out", None)), "timed out");
    }

    #[test]
    fn endpoints_carry_no_credentials() {
        assert!(parse_endpoint("https://api.ispmanager.com/billmgr").is_ok());
        assert!(parse_endpoint("https://u:p@api.ispmanager.com/billmgr").is_err());
        assert!(parse_endpoint("https://api.ispmanager.com/billmgr?authinfo=a:b").is_err());
        assert!(parse_endpoint("ftp://x/billmgr").is_err());
        assert!(parse_endpoint("http://api.ispmanager.com/billmgr").is_err(), "no clear-text password on the network");
        assert!(parse_endpoint("http://127.0.0.1:18080/billmgr").is_ok());
        assert!(parse_endpoint("http://localhost/billmgr").is_ok());
        assert!(parse_endpoint("not a url").is_err());
    }

    #[test]
    fn elids_must_be_numeric() {
        assert!(elid_param("123").is_ok());
        assert!(elid_param("1&func=x").is_err());
        assert!(elid_param("").is_err());
    }
}
