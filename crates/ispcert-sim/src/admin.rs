//! Introspection and control, off the billing path under `/_sim/`, and [`AdminClient`], the typed
//! client tests use to assert on what the billing saw and to steer it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

use super::faults::{ActiveFault, FaultSpec};
use super::money::Money;
use super::state::{Account, Cert};
use super::{AccountSpec, AddonCode, Sim};

/// What happened in one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStats {
    /// Paid orders (`skipbasket=on`), each charged.
    pub orders: u64,
    /// Orders put into the basket (no `skipbasket=on`): never paid, never issued.
    pub unpaid_orders: u64,
    /// Accepted reissues (all three forms).
    pub reissues: u64,
    /// Accepted prolongations, each charged.
    pub prolongs: u64,
    /// Deleted certificates.
    pub deletes: u64,
    /// Requests answered with an error document after authentication.
    pub refusals: u64,
    /// Money taken from the balance since start or the last counter reset.
    pub charged: Money,
    /// Current balance.
    pub balance: Money,
    /// Account currency.
    pub currency: String,
    /// `Russian` or `Foreign` price list.
    pub region: String,
    /// Authenticated requests per `func`.
    pub requests: BTreeMap<String, u64>,
    /// Whether every request of the account is answered `access`.
    pub access_denied: bool,
}

/// Counters of the whole simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Per account, keyed by email as created.
    pub accounts: BTreeMap<String, AccountStats>,
    /// All billing requests per `func`, authenticated or not.
    pub requests: BTreeMap<String, u64>,
    /// How many times an injected fault struck.
    pub faults_applied: u64,
}

impl Stats {
    /// The stats of `email` (case-insensitive), if the account exists.
    pub fn try_account(&self, email: &str) -> Option<&AccountStats> {
        self.accounts.iter().find(|(k, _)| k.eq_ignore_ascii_case(email)).map(|(_, v)| v)
    }

    /// The stats of `email`.
    ///
    /// # Panics
    /// When there is no such account: meant for test assertions.
    pub fn account(&self, email: &str) -> &AccountStats {
        self.try_account(email).unwrap_or_else(|| panic!("the simulator has no account {email:?}"))
    }

    /// Requests of `func` over all accounts and unauthenticated callers.
    pub fn requests_of(&self, func: &str) -> u64 {
        self.requests.get(func).copied().unwrap_or(0)
    }
}

/// A certificate as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Service id (`elid`).
    pub id: u64,
    /// Owner's email.
    pub account: String,
    /// The product's name as the billing's reference prints it.
    pub product: String,
    pub pricelist: u32,
    /// Subscription period in months.
    pub period: u32,
    /// `generate` or `manual` (a `manual` reissue turns a `generate` certificate into `manual`).
    pub crt_type: String,
    /// Common name.
    pub cn: String,
    /// Alt names in the billing's order.
    pub altnames: Vec<String>,
    /// Alt names paid for.
    pub paid_altnames: u32,
    /// `(code, count)` of the extra-domain addon.
    pub addon: Option<(u32, u32)>,
    pub approver_emails: Vec<String>,
    pub remoteid: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// Subscription end, RFC 3339.
    pub expires: String,
    /// Price of one period as last charged.
    pub cost: Money,
    pub paid: bool,
    pub deleted: bool,
    pub reissues: u32,
    /// The `crt_type` of each reissue, in order.
    pub reissue_forms: Vec<String>,
    pub prolongs: u32,
    /// Item status now (1 ordered, 2 active, 3 stopped, 4 deleted, 5 processing).
    pub item_status: u8,
    /// Certificate status now (3 requested, 4 enrolled, 5 issued, 6 failed).
    pub crt_status: u8,
    /// When the current enrollment is (or was) issued, RFC 3339.
    pub issue_at: String,
    /// Whether an earlier issued certificate is served until the current one is issued.
    pub has_previous: bool,
    /// Whether the billing generated and holds the key (`crt_type=generate`).
    pub billing_has_key: bool,
}

fn account_stats(a: &Account) -> AccountStats {
    AccountStats {
        orders: a.counters.orders,
        unpaid_orders: a.counters.unpaid_orders,
        reissues: a.counters.reissues,
        prolongs: a.counters.prolongs,
        deletes: a.counters.deletes,
        refusals: a.counters.refusals,
        charged: a.counters.charged,
        balance: a.balance,
        currency: a.currency.clone(),
        region: format!("{:?}", a.region),
        requests: a.counters.requests.clone(),
        access_denied: a.access_denied,
    }
}

fn cert_info(c: &Cert, email: String) -> CertInfo {
    let (item_status, crt_status) = c.statuses(jiff::Timestamp::now());
    CertInfo {
        id: c.id,
        account: email,
        product: c.product.title.clone(),
        pricelist: c.pricelist,
        period: c.period,
        crt_type: c.crt_type.as_str().to_owned(),
        cn: c.cn.clone(),
        altnames: c.altnames.clone(),
        paid_altnames: c.paid_altnames,
        addon: c.addon,
        approver_emails: c.approver_emails.clone(),
        remoteid: c.remoteid.clone(),
        created: rfc3339(c.created),
        expires: rfc3339(c.expires),
        cost: c.cost,
        paid: c.paid,
        deleted: c.deleted,
        reissues: c.reissues,
        reissue_forms: c.reissue_forms.clone(),
        prolongs: c.prolongs,
        item_status,
        crt_status,
        issue_at: rfc3339(c.current.issue_at),
        has_previous: c.previous.is_some(),
        billing_has_key: c.key.is_some(),
    }
}

/// The owner's email as created (certificates hold the lowercased key).
fn email_of(st: &super::state::State, c: &Cert) -> String {
    st.accounts.get(&c.account).map_or_else(|| c.account.clone(), |a| a.email.clone())
}

type Shared = State<Arc<Sim>>;

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset-counters", post(reset_counters))
        .route("/_sim/certificates", get(certificates))
        .route("/_sim/certificates/{id}", get(certificate))
        .route("/_sim/certificates/{id}/fail", post(fail))
        .route("/_sim/certificates/{id}/issue-now", post(issue_now))
        .route("/_sim/accounts", post(add_account))
        .route("/_sim/accounts/{email}/top-up", post(top_up))
        .route("/_sim/accounts/{email}/access", post(set_access))
        .route("/_sim/addon-codes", post(add_addon_code))
        .route("/_sim/settings", get(settings).post(set_settings))
        .route("/_sim/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_sim/faults/{id}", delete(remove_fault))
        .route("/_sim/root.pem", get(root_pem))
}

async fn stats(State(sim): Shared) -> Json<Stats> {
    let st = sim.lock();
    Json(Stats {
        accounts: st.accounts.values().map(|a| (a.email.clone(), account_stats(a))).collect(),
        requests: st.requests.clone(),
        faults_applied: st.faults_applied,
    })
}

async fn reset_counters(State(sim): Shared) -> StatusCode {
    let mut st = sim.lock();
    for a in st.accounts.values_mut() {
        a.counters = Default::default();
    }
    st.requests.clear();
    st.faults_applied = 0;
    StatusCode::NO_CONTENT
}

async fn certificates(State(sim): Shared) -> Json<Vec<CertInfo>> {
    let st = sim.lock();
    let mut v: Vec<CertInfo> = st.certs.values().map(|c| cert_info(c, email_of(&st, c))).collect();
    v.sort_by_key(|c| c.id);
    Json(v)
}

async fn certificate(State(sim): Shared, Path(id): Path<u64>) -> Response {
    let st = sim.lock();
    match st.certs.get(&id) {
        Some(c) => Json(cert_info(c, email_of(&st, c))).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no certificate {id}")),
    }
}

async fn fail(State(sim): Shared, Path(id): Path<u64>) -> Response {
    match sim.lock().certs.get_mut(&id) {
        Some(c) => {
            c.current.failed = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => err(StatusCode::NOT_FOUND, format!("no certificate {id}")),
    }
}

async fn issue_now(State(sim): Shared, Path(id): Path<u64>) -> Response {
    let now = jiff::Timestamp::now();
    match sim.lock().certs.get_mut(&id) {
        Some(c) => {
            c.current.failed = false;
            if c.current.issue_at > now {
                c.current.issue_at = now;
                c.current.started = c.current.started.min(now);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        None => err(StatusCode::NOT_FOUND, format!("no certificate {id}")),
    }
}

/// JSON form of [`AccountSpec`] (the password travels only in this request body).
#[derive(Serialize, Deserialize)]
struct AccountBody {
    email: String,
    password: String,
    balance: Money,
    currency: String,
}

async fn add_account(State(sim): Shared, Json(a): Json<AccountBody>) -> Response {
    if !super::is_currency(&a.currency) || !a.email.contains('@') || a.password.is_empty() {
        return err(StatusCode::BAD_REQUEST, "need an email, a password and a three-letter currency");
    }
    if sim.lock().add_account(&a.email, &a.password, a.balance, &a.currency) {
        StatusCode::CREATED.into_response()
    } else {
        err(StatusCode::CONFLICT, format!("account {} exists", a.email))
    }
}

#[derive(Serialize, Deserialize)]
struct TopUp {
    amount: Money,
}

#[derive(Serialize, Deserialize)]
struct Balance {
    balance: Money,
}

async fn top_up(State(sim): Shared, Path(email): Path<String>, Json(t): Json<TopUp>) -> Response {
    let mut st = sim.lock();
    match st.accounts.get_mut(&email.to_ascii_lowercase()) {
        Some(a) => match a.balance.checked_add(t.amount) {
            Some(b) => {
                a.balance = b;
                Json(Balance { balance: b }).into_response()
            }
            None => err(StatusCode::BAD_REQUEST, "balance out of range"),
        },
        None => err(StatusCode::NOT_FOUND, format!("no account {email}")),
    }
}

#[derive(Serialize, Deserialize)]
struct Access {
    denied: bool,
}

async fn set_access(State(sim): Shared, Path(email): Path<String>, Json(a): Json<Access>) -> Response {
    match sim.lock().accounts.get_mut(&email.to_ascii_lowercase()) {
        Some(acct) => {
            acct.access_denied = a.denied;
            StatusCode::NO_CONTENT.into_response()
        }
        None => err(StatusCode::NOT_FOUND, format!("no account {email}")),
    }
}

async fn add_addon_code(State(sim): Shared, Json(a): Json<AddonCode>) -> StatusCode {
    sim.set_addon_code(a.pricelist, a.code);
    StatusCode::NO_CONTENT
}

/// Switches of the simulated billing's behaviour that are not faults of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The certificate list leaves out `remoteid`.
    pub hide_remote_id: bool,
    /// Reissues are accepted but not issued until `issue-now` releases them (an approver email
    /// nobody answers).
    #[serde(default)]
    pub hold_reissues: bool,
    /// Orders keep their alt names in another order than given (reverse alphabetical), and
    /// `certificate.edit` lists them so: the reference indexes the approver emails of
    /// `oldrequest` and `manual` reissues by that list, not by the order the names were sent in.
    #[serde(default)]
    pub reorder_altnames: bool,
}

async fn settings(State(sim): Shared) -> Json<Settings> {
    let st = sim.lock();
    Json(Settings {
        hide_remote_id: st.hide_remote_id,
        hold_reissues: st.hold_reissues,
        reorder_altnames: st.reorder_altnames,
    })
}

async fn set_settings(State(sim): Shared, Json(s): Json<Settings>) -> StatusCode {
    let mut st = sim.lock();
    st.hide_remote_id = s.hide_remote_id;
    st.hold_reissues = s.hold_reissues;
    st.reorder_altnames = s.reorder_altnames;
    StatusCode::NO_CONTENT
}

async fn list_faults(State(sim): Shared) -> Json<Vec<ActiveFault>> {
    Json(sim.faults.list())
}

#[derive(Serialize, Deserialize)]
struct FaultId {
    id: u64,
}

async fn add_fault(State(sim): Shared, Json(spec): Json<FaultSpec>) -> Response {
    if let Some(problem) = spec.problem() {
        return err(StatusCode::BAD_REQUEST, problem);
    }
    Json(FaultId { id: sim.faults.add(spec) }).into_response()
}

async fn clear_faults(State(sim): Shared) -> StatusCode {
    sim.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(sim): Shared, Path(id): Path<u64>) -> Response {
    if sim.faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        err(StatusCode::NOT_FOUND, format!("no fault {id}"))
    }
}

async fn root_pem(State(sim): Shared) -> String {
    sim.ca.root_pem().to_owned()
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request did not complete.
    #[error("admin request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The simulator refused it.
    #[error("admin endpoint answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error text.
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("admin answer not understood: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Typed client of the `/_sim/` introspection API.
#[derive(Clone, Debug)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the simulator at `base` (`http://HOST:PORT`, without `/billmgr`).
    pub fn new(base: impl Into<String>) -> AdminClient {
        AdminClient { base: base.into().trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, AdminError> {
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.bytes().await?.to_vec();
        if !status.is_success() {
            return Err(AdminError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let body = self.send(self.http.get(format!("{}{path}", self.base))).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    async fn post_json(&self, path: &str, body: &impl Serialize) -> Result<Vec<u8>, AdminError> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body)?);
        self.send(req).await
    }

    /// Counters per account and per function.
    pub async fn stats(&self) -> Result<Stats, AdminError> {
        self.get_json("/_sim/stats").await
    }

    /// Zeroes every counter (balances stay).
    pub async fn reset_counters(&self) -> Result<(), AdminError> {
        self.post_json("/_sim/reset-counters", &()).await.map(drop)
    }

    /// Every certificate of every account, by id.
    pub async fn certificates(&self) -> Result<Vec<CertInfo>, AdminError> {
        self.get_json("/_sim/certificates").await
    }

    /// One certificate.
    pub async fn certificate(&self, id: u64) -> Result<CertInfo, AdminError> {
        self.get_json(&format!("/_sim/certificates/{id}")).await
    }

    /// Makes the certificate's current enrollment fail (certificate status 6).
    pub async fn fail_certificate(&self, id: u64) -> Result<(), AdminError> {
        self.post_json(&format!("/_sim/certificates/{id}/fail"), &()).await.map(drop)
    }

    /// Issues the certificate's current enrollment now.
    pub async fn issue_now(&self, id: u64) -> Result<(), AdminError> {
        self.post_json(&format!("/_sim/certificates/{id}/issue-now"), &()).await.map(drop)
    }

    /// Adds an account at runtime.
    pub async fn add_account(&self, spec: &AccountSpec) -> Result<(), AdminError> {
        let body = AccountBody {
            email: spec.email.clone(),
            password: spec.password.clone(),
            balance: spec.balance,
            currency: spec.currency.clone(),
        };
        self.post_json("/_sim/accounts", &body).await.map(drop)
    }

    /// Adds `amount` to the balance of `email`; returns the new balance.
    pub async fn top_up(&self, email: &str, amount: Money) -> Result<Money, AdminError> {
        let email: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
        let body = self.post_json(&format!("/_sim/accounts/{email}/top-up"), &TopUp { amount }).await?;
        Ok(serde_json::from_slice::<Balance>(&body)?.balance)
    }

    /// Makes every request of `email` fail with `access` (IP allow-list, two-factor login), or
    /// lifts that.
    pub async fn set_access_denied(&self, email: &str, denied: bool) -> Result<(), AdminError> {
        let email: String = url::form_urlencoded::byte_serialize(email.as_bytes()).collect();
        self.post_json(&format!("/_sim/accounts/{email}/access"), &Access { denied }).await.map(drop)
    }

    /// Makes the simulator accept `addon_<code>` for a price list.
    pub async fn add_addon_code(&self, addon: AddonCode) -> Result<(), AdminError> {
        self.post_json("/_sim/addon-codes", &addon).await.map(drop)
    }

    /// Changes the simulator's settings (for example whether the list shows `remoteid`).
    pub async fn set_settings(&self, settings: Settings) -> Result<(), AdminError> {
        self.post_json("/_sim/settings", &settings).await.map(drop)
    }

    /// Switches a fault on; returns its id.
    pub async fn add_fault(&self, spec: &FaultSpec) -> Result<u64, AdminError> {
        let body = self.post_json("/_sim/faults", spec).await?;
        Ok(serde_json::from_slice::<FaultId>(&body)?.id)
    }

    /// The faults switched on, with what remains of their counts.
    pub async fn faults(&self) -> Result<Vec<ActiveFault>, AdminError> {
        self.get_json("/_sim/faults").await
    }

    /// Switches one fault off.
    pub async fn remove_fault(&self, id: u64) -> Result<(), AdminError> {
        let url = format!("{}/_sim/faults/{id}", self.base);
        self.send(self.http.delete(url)).await.map(drop)
    }

    /// Switches every fault off.
    pub async fn clear_faults(&self) -> Result<(), AdminError> {
        let url = format!("{}/_sim/faults", self.base);
        self.send(self.http.delete(url)).await.map(drop)
    }

    /// The simulated root CA certificate, PEM.
    pub async fn root_pem(&self) -> Result<String, AdminError> {
        let body = self.send(self.http.get(format!("{}/_sim/root.pem", self.base))).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
