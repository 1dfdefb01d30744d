//! A strict stand-in for the ispmanager billing (BILLmanager) certificate API, for tests and the
//! demo. It speaks the wire format of `docs/billing-wire.md` over real HTTP, keeps accounts with
//! balances, moves orders through the billing's states over time, issues real X.509 chains from a
//! simulated PKI, injects faults on demand, and reports what happened through an introspection API
//! under `/_sim/` (see [`AdminClient`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ispcert_sim::{AccountSpec, Money, SimConfig, start};
//! let config = SimConfig {
//!     accounts: vec![AccountSpec::new("ops@example.com", "secret", Money::from_units(50_000), "RUB")],
//!     ..SimConfig::default()
//! };
//! let sim = start(config, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("billing at {}", sim.base_url());
//! # Ok(()) }
//! ```

mod admin;
mod ca;
mod countries;
mod faults;
mod funcs;
#[cfg(test)]
mod funcs_tests;
mod http;
mod money;
mod params;
mod pricing;
pub mod products;
mod render;
mod state;
mod time;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

pub use admin::{AccountStats, AdminClient, AdminError, CertInfo, Settings, Stats};
pub use faults::{ActiveFault, ErrorType, FaultKind, FaultSpec};
pub use money::{Money, ParseMoneyError};

/// Certificates never live longer than this (CA/Browser Forum ballot SC-081, from 2026-03-15).
pub const MAX_VALIDITY: Duration = Duration::from_secs(200 * 24 * 3600);

/// A billing account to create at start.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// Login email.
    pub email: String,
    /// Password (never logged; `Debug` redacts it).
    pub password: String,
    /// Starting balance.
    pub balance: Money,
    /// `RUB` buys from the Russian price list, any other currency from the foreign one.
    pub currency: String,
}

impl AccountSpec {
    /// An account with the given balance and currency.
    pub fn new(
        email: impl Into<String>,
        password: impl Into<String>,
        balance: Money,
        currency: impl Into<String>,
    ) -> Self {
        AccountSpec { email: email.into(), password: password.into(), balance, currency: currency.into() }
    }

    /// Parses the command line form `EMAIL:PASSWORD[:BALANCE[:CURRENCY]]` (balance defaults to 0,
    /// currency to RUB). A password that itself contains `:` must be followed by a balance.
    pub fn parse(spec: &str) -> Result<AccountSpec, String> {
        let (email, rest) = spec.split_once(':').ok_or("expected EMAIL:PASSWORD[:BALANCE[:CURRENCY]]")?;
        if email.is_empty() || !email.contains('@') {
            return Err("the account must start with an email address".into());
        }
        let mut parts: Vec<&str> = rest.split(':').collect();
        let mut currency = "RUB".to_owned();
        let mut balance = Money::ZERO;
        if parts.len() >= 3 && is_currency(parts[parts.len() - 1]) {
            currency = parts.pop().unwrap_or("RUB").to_owned();
            let b = parts.pop().unwrap_or("0");
            balance = b.parse().map_err(|e: ParseMoneyError| e.to_string())?;
        } else if parts.len() >= 2
            && let Ok(b) = parts[parts.len() - 1].parse::<Money>()
        {
            balance = b;
            parts.pop();
        }
        let password = parts.join(":");
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        Ok(AccountSpec::new(email, password, balance, currency))
    }
}

fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

impl fmt::Debug for AccountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountSpec")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("balance", &self.balance)
            .field("currency", &self.currency)
            .finish()
    }
}

/// An extra-domain addon code the simulator accepts for a price list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddonCode {
    /// Price-list id of the product.
    pub pricelist: u32,
    /// The addon code (`addon_<code>=<count>`).
    pub code: u32,
}

/// The simulator's configuration.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Accounts that exist from the start.
    pub accounts: Vec<AccountSpec>,
    /// How long an order, reissue or prolongation takes to be issued.
    pub issue_after: Duration,
    /// Leaf validity; `None` means [`MAX_VALIDITY`], and it is always capped at that.
    pub validity: Option<Duration>,
    /// Addon codes per price list. The default holds the reference's one code (GlobalSign
    /// DomainSSL, both price lists); others are the simulator's configuration, as the reference
    /// does not give them.
    pub addon_codes: Vec<AddonCode>,
    /// Seed for certificate serial numbers (reproducible runs).
    pub seed: u64,
    /// Serve the introspection API under `/_sim/`.
    pub admin: bool,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The certificate list leaves out `remoteid`, as a billing may that does not show the
    /// caller's own id (whether the real one shows it is unknown). Also switchable at run time.
    pub hide_remote_id: bool,
    /// Subscription length of new orders and prolongations instead of their months, for tests of
    /// subscription ends in minutes. The list then shows `expiredate` with its time of day
    /// (`YYYY-MM-DD HH:MM:SS`), since a date alone cannot say "in three minutes".
    pub subscription: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            accounts: Vec::new(),
            issue_after: Duration::from_secs(3),
            validity: None,
            addon_codes: default_addon_codes(),
            seed: 0,
            admin: true,
            max_body_bytes: 1 << 20,
            hide_remote_id: false,
            subscription: None,
        }
    }
}

/// The addon codes the reference gives (GlobalSign DomainSSL's 55364), on both price lists of
/// their product.
pub fn default_addon_codes() -> Vec<AddonCode> {
    let mut codes = Vec::new();
    for p in products::all() {
        for (pricelist, code) in p.addon_code.iter().flat_map(|&c| [(p.pricelist_russian, c), (p.pricelist_foreign, c)])
        {
            if !codes.contains(&AddonCode { pricelist, code }) {
                codes.push(AddonCode { pricelist, code });
            }
        }
    }
    codes
}

/// The shared simulator core.
pub(crate) struct Sim {
    pub issue_after: jiff::SignedDuration,
    pub validity: jiff::SignedDuration,
    /// See [`SimConfig::subscription`].
    pub subscription: Option<jiff::SignedDuration>,
    pub seed: u64,
    pub admin: bool,
    pub max_body_bytes: usize,
    addon_codes: Mutex<HashMap<u32, u32>>,
    state: Mutex<state::State>,
    pub ca: ca::Ca,
    pub faults: faults::Faults,
    pub shutdown: watch::Receiver<bool>,
}

impl Sim {
    /// The state, even if a panicking thread poisoned the lock (every mutation is completed
    /// before anything that could panic, so the data stays consistent).
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_addon_code(&self, pricelist: u32, code: u32) {
        self.addon_codes.lock().unwrap_or_else(|e| e.into_inner()).insert(pricelist, code);
    }

    pub(crate) fn addon_code(&self, pricelist: u32) -> Option<u32> {
        self.addon_codes.lock().unwrap_or_else(|e| e.into_inner()).get(&pricelist).copied()
    }
}

fn to_signed(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

/// A running simulator. Dropping it stops the server.
pub struct RunningSim {
    addr: SocketAddr,
    root_pem: String,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The billing base URL, `http://ADDR/billmgr`.
    pub fn base_url(&self) -> String {
        format!("http://{}/billmgr", self.addr)
    }

    /// A client for the introspection API.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(format!("http://{}", self.addr))
    }

    /// The simulated root CA certificate (PEM) that every chain ends in.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Stops the server and waits until it has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSim").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Builds the simulator core from `config`.
fn build(config: SimConfig) -> std::io::Result<(Arc<Sim>, watch::Sender<bool>)> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    products::load().map_err(|e| std::io::Error::other(format!("product table: {e}")))?;
    let mut st = state::State::new();
    st.hide_remote_id = config.hide_remote_id;
    for a in &config.accounts {
        if !is_currency(&a.currency) {
            return Err(invalid(format!("currency of {} must be three capital letters", a.email)));
        }
        if !st.add_account(&a.email, &a.password, a.balance, &a.currency) {
            return Err(invalid(format!("account {} is given twice", a.email)));
        }
    }
    let ca = ca::Ca::new().map_err(|e| std::io::Error::other(format!("simulated CA: {e}")))?;
    // Far-future instants would overflow date arithmetic; ten years is "never" for any test.
    let issue_after = config.issue_after.min(Duration::from_secs(10 * 365 * 24 * 3600));
    let validity = config.validity.unwrap_or(MAX_VALIDITY).min(MAX_VALIDITY).max(Duration::from_secs(1));
    let (tx, rx) = watch::channel(false);
    let sim = Arc::new(Sim {
        issue_after: to_signed(issue_after),
        validity: to_signed(validity),
        subscription: config.subscription.map(|d| to_signed(d.min(Duration::from_secs(10 * 365 * 24 * 3600)))),
        seed: config.seed,
        admin: config.admin,
        max_body_bytes: config.max_body_bytes,
        addon_codes: Mutex::new(config.addon_codes.iter().map(|a| (a.pricelist, a.code)).collect()),
        state: Mutex::new(st),
        ca,
        faults: faults::Faults::default(),
        shutdown: rx,
    });
    Ok((sim, tx))
}

/// Binds `listen` (port 0 picks a free port) and serves the simulator in a tokio task.
pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let (sim, tx) = build(config)?;
    let root_pem = sim.ca.root_pem().to_owned();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let mut stop = sim.shutdown.clone();
    let app = http::router(sim);
    let task = tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
            tracing::warn!(error = %e, "simulator server stopped with an error");
        }
    });
    Ok(RunningSim { addr, root_pem, shutdown: tx, task: Some(task) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_specs_parse_from_the_command_line_form() {
        let a = AccountSpec::parse("a@b.c:pw").unwrap();
        assert_eq!((a.password.as_str(), a.balance, a.currency.as_str()), ("pw", Money::ZERO, "RUB"));
        let a = AccountSpec::parse("a@b.c:pw:1500.50").unwrap();
        assert_eq!(a.balance, Money::from_cents(150_050));
        let a = AccountSpec::parse("a@b.c:p:w:100:EUR").unwrap();
        assert_eq!((a.password.as_str(), a.balance, a.currency.as_str()), ("p:w", Money::from_units(100), "EUR"));
        assert!(AccountSpec::parse("nobody").is_err());
        assert!(AccountSpec::parse("a@b.c:").is_err());
        assert!(!format!("{a:?}").contains("p:w"));
    }
}
