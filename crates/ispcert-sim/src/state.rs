//! Accounts, certificates and their state machine. Statuses are computed lazily from timestamps
//! (no background ticker): an enrollment (order, reissue or prolongation) started at `started`
//! is requested for the first third of the way to `issue_at`, enrolled after that, issued from
//! `issue_at` on. The item (service) status moves ordered → processing → active over the first
//! two thirds of an order, so "active" comes before "issued", as with real CA modules.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use crate::products::{Product, Region, Validation};

use super::ca::{IssuedChain, LeafSpec, Subject};
use super::money::Money;
use super::render::{ListPage, ListRow, push_json_str};

/// Item (service) status codes of the billing.
pub(crate) mod item {
    pub const ORDERED: u8 = 1;
    pub const ACTIVE: u8 = 2;
    pub const STOPPED: u8 = 3;
    pub const DELETED: u8 = 4;
    pub const PROCESSING: u8 = 5;
}

/// Certificate (CA progress) status codes of the billing.
pub(crate) mod crt {
    pub const REQUESTED: u8 = 3;
    pub const ENROLLED: u8 = 4;
    pub const ISSUED: u8 = 5;
    pub const FAILED: u8 = 6;
}

/// Interface language (`lang=`): translated labels in lists. The billing's default is Russian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Ru,
}

impl Lang {
    pub(crate) fn from_param(lang: Option<&str>) -> Lang {
        match lang {
            Some("en") => Lang::En,
            _ => Lang::Ru,
        }
    }
}

pub(crate) fn item_label(code: u8, lang: Lang) -> &'static str {
    match (code, lang) {
        (item::ORDERED, Lang::En) => "Ordered",
        (item::ORDERED, Lang::Ru) => "Заказан",
        (item::ACTIVE, Lang::En) => "Active",
        (item::ACTIVE, Lang::Ru) => "Активен",
        (item::STOPPED, Lang::En) => "Stopped",
        (item::STOPPED, Lang::Ru) => "Остановлен",
        (item::DELETED, Lang::En) => "Deleted",
        (item::DELETED, Lang::Ru) => "Удален",
        (_, Lang::En) => "Processing",
        (_, Lang::Ru) => "Обрабатывается",
    }
}

fn status_msg(paid: bool, crt_status: u8, lang: Lang) -> &'static str {
    match (paid, crt_status, lang) {
        (false, _, Lang::En) => "Awaiting payment",
        (false, _, Lang::Ru) => "Ожидает оплаты",
        (_, crt::REQUESTED, Lang::En) => "Requested from the certificate authority",
        (_, crt::REQUESTED, Lang::Ru) => "Запрошен в центре сертификации",
        (_, crt::ENROLLED, Lang::En) => "Awaiting validation",
        (_, crt::ENROLLED, Lang::Ru) => "Ожидает подтверждения",
        (_, crt::ISSUED, Lang::En) => "Issued",
        (_, crt::ISSUED, Lang::Ru) => "Выпущен",
        (_, _, Lang::En) => "Issue failed",
        (_, _, Lang::Ru) => "Ошибка выпуска",
    }
}

/// Why an enrollment was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnrollKind {
    Order,
    Reissue,
    Prolong,
}

/// A lazily signed chain, shared so that signing can happen outside the state lock.
pub(crate) type ChainCell = Arc<OnceLock<Result<Arc<IssuedChain>, String>>>;

/// One request to the CA: what the resulting certificate will be, and when it is issued.
#[derive(Clone, Debug)]
pub(crate) struct Enrollment {
    pub kind: EnrollKind,
    /// 1 for the order, then one more per reissue or prolongation: makes serials unique.
    pub seq: u32,
    pub started: Timestamp,
    pub issue_at: Timestamp,
    pub failed: bool,
    /// The leaf's DNS names: common name first (then the wildcard's base domain), then alt names.
    pub names: Vec<String>,
    pub spki: Arc<Vec<u8>>,
    pub chain: ChainCell,
}

impl Enrollment {
    pub(crate) fn issued(&self, now: Timestamp) -> bool {
        !self.failed && now >= self.issue_at
    }

    fn fraction_passed(&self, now: Timestamp, thirds: i32) -> bool {
        let span = self.issue_at.duration_since(self.started);
        now >= self.started + span * thirds / 3
    }

    pub(crate) fn crt_status(&self, now: Timestamp) -> u8 {
        if self.failed {
            crt::FAILED
        } else if self.issued(now) {
            crt::ISSUED
        } else if self.fraction_passed(now, 1) {
            crt::ENROLLED
        } else {
            crt::REQUESTED
        }
    }

    fn item_status(&self, now: Timestamp) -> u8 {
        let done = self.issued(now) || self.failed;
        match self.kind {
            EnrollKind::Reissue => item::ACTIVE,
            _ if done || self.fraction_passed(now, 2) => item::ACTIVE,
            EnrollKind::Order if !self.fraction_passed(now, 1) => item::ORDERED,
            _ => item::PROCESSING,
        }
    }
}

/// The parts of a list row that change only when the certificate changes, pre-rendered.
#[derive(Debug, Default)]
pub(crate) struct RowFixed {
    pub fields: Vec<(&'static str, String)>,
    /// The same fields as bjson object members, without braces.
    pub bjson: String,
    /// The same without `remoteid`, for a billing that does not show it.
    pub bjson_untagged: String,
}

/// Contact and subject data of an order, kept for `certificate.edit`.
#[derive(Clone, Debug, Default)]
pub(crate) struct OrderData {
    /// `adm_*` and `tech_*` fields, in the reference's order.
    pub contacts: Vec<(&'static str, String)>,
    pub subject: Subject,
    /// The billing's country id, as sent or as mapped from the CSR's `C`.
    pub field_country: Option<String>,
}

/// `crt_type` of the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrtType {
    Generate,
    Manual,
}

impl CrtType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CrtType::Generate => "generate",
            CrtType::Manual => "manual",
        }
    }
}

/// One certificate service.
#[derive(Debug)]
pub(crate) struct Cert {
    pub id: u64,
    /// Key of the owning account (lowercased email).
    pub account: String,
    pub product: &'static Product,
    pub region: Region,
    pub pricelist: u32,
    pub period: u32,
    pub crt_type: CrtType,
    pub cn: String,
    /// Alt names in the billing's order (as ordered, or as the last `altname` reissue gave them).
    pub altnames: Vec<String>,
    /// How many alt names were paid for (addon count, or those a product includes).
    pub paid_altnames: u32,
    pub addon: Option<(u32, u32)>,
    pub approver_emails: Vec<String>,
    pub data: OrderData,
    pub csr: String,
    /// The key, when the billing generated it (`crt_type=generate`) and it still matches the CSR.
    pub key: Option<String>,
    pub remoteid: Option<String>,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// The list shows `expiredate` with its time of day (see `SimConfig::subscription`).
    pub exact_expiry: bool,
    /// Price of one period (what an order or a prolongation charged last).
    pub cost: Money,
    pub paid: bool,
    pub deleted: bool,
    pub reissues: u32,
    /// The `crt_type` of each reissue, in order.
    pub reissue_forms: Vec<String>,
    pub prolongs: u32,
    pub current: Enrollment,
    /// The last enrollment that was issued before `current` started: what `certificate.file`
    /// serves until `current` is issued.
    pub previous: Option<Enrollment>,
    pub row: Arc<RowFixed>,
}

impl Cert {
    /// (item status, certificate status) at `now`.
    pub(crate) fn statuses(&self, now: Timestamp) -> (u8, u8) {
        let crt_status = self.current.crt_status(now);
        let item_status = if self.deleted {
            item::DELETED
        } else if !self.paid {
            item::ORDERED
        } else if now >= self.expires {
            item::STOPPED
        } else {
            self.current.item_status(now)
        };
        let crt_status = if self.paid { crt_status } else { crt::REQUESTED };
        (item_status, crt_status)
    }

    /// Rebuilds the cached row after a change to a listed field.
    pub(crate) fn refresh_row(&mut self) {
        let mut fields: Vec<(&'static str, String)> = vec![
            ("id", self.id.to_string()),
            ("CN", self.cn.clone()),
            ("pricelist", self.pricelist.to_string()),
            ("period", self.period.to_string()),
            ("createdate", crate::time::ymd(self.created)),
            ("expiredate", crate::time::expiredate(self.expires, self.exact_expiry)),
            ("cost", self.cost.to_string()),
        ];
        if let Some(r) = &self.remoteid {
            fields.push(("remoteid", r.clone()));
        }
        let members = |with_tag: bool| {
            let mut b = Vec::with_capacity(200);
            for (k, v) in fields.iter().filter(|(k, _)| with_tag || *k != "remoteid") {
                if !b.is_empty() {
                    b.push(b',');
                }
                push_json_str(&mut b, k);
                b.push(b':');
                push_json_str(&mut b, v);
            }
            // serde_json writes UTF-8, so nothing is replaced here.
            String::from_utf8_lossy(&b).into_owned()
        };
        let (bjson, bjson_untagged) = (members(true), members(false));
        self.row = Arc::new(RowFixed { fields, bjson, bjson_untagged });
    }

    /// The enrollment `certificate.file` serves at `now`, if any was issued.
    pub(crate) fn served(&self, now: Timestamp) -> Option<&Enrollment> {
        if self.current.issued(now) { Some(&self.current) } else { self.previous.as_ref() }
    }

    /// Starts a reissue or prolongation at `now`: the certificate served so far stays served until
    /// the new one is issued, `issue_after` later.
    pub(crate) fn enroll(
        &mut self,
        kind: EnrollKind,
        names: Vec<String>,
        spki: Arc<Vec<u8>>,
        now: Timestamp,
        issue_after: SignedDuration,
    ) {
        self.previous = self.last_issued(now);
        self.current = Enrollment {
            kind,
            seq: self.current.seq + 1,
            started: now,
            issue_at: now + issue_after,
            failed: false,
            names,
            spki,
            chain: Default::default(),
        };
    }

    /// The enrollment to keep as "previous" when a new one starts at `now`.
    pub(crate) fn last_issued(&self, now: Timestamp) -> Option<Enrollment> {
        self.served(now).cloned()
    }

    /// What the leaf of `e` is made of.
    pub(crate) fn leaf_spec(&self, e: &Enrollment, validity: SignedDuration, seed: u64) -> LeafSpec {
        use sha2::Digest as _;
        let subject = match self.product.validation {
            Validation::Dv => Subject::default(),
            _ => Subject {
                o: self.data.subject.o.clone(),
                l: self.data.subject.l.clone(),
                st: self.data.subject.st.clone(),
                c: self.data.subject.c.clone(),
                ..Subject::default()
            },
        };
        let digest = sha2::Sha256::new()
            .chain_update(seed.to_be_bytes())
            .chain_update(self.id.to_be_bytes())
            .chain_update(e.seq.to_be_bytes())
            .finalize();
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&digest[..16]);
        let months_days = SignedDuration::from_hours(i64::from(self.period) * 30 * 24);
        LeafSpec {
            brand: self.product.brand.clone(),
            zip: self.product.delivers_zip(),
            names: e.names.clone(),
            subject,
            spki: e.spki.as_ref().clone(),
            not_before: e.issue_at,
            // A certificate never outlives the paid service (a reissue late in the period too).
            not_after: (e.issue_at + validity.min(months_days)).min(self.expires).max(e.issue_at),
            serial,
            file_stem: self.cn.replace('*', "star"),
        }
    }
}

/// Names that go into a leaf: the common name, the base domain of a wildcard, then alt names.
pub(crate) fn leaf_names(cn: &str, altnames: &[String]) -> Vec<String> {
    let mut names = vec![cn.to_owned()];
    if let Some(base) = cn.strip_prefix("*.")
        && !altnames.iter().any(|a| a == base)
    {
        names.push(base.to_owned());
    }
    names.extend(altnames.iter().cloned());
    names
}

/// Sticky per-account list filter (`certificate.filter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ListFilter {
    /// Case-insensitive substring of the common name.
    pub cn: Option<String>,
    pub item_status: Option<u8>,
    pub pricelist: Option<u32>,
}

/// What happened in one account, for the introspection endpoint.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub orders: u64,
    pub unpaid_orders: u64,
    pub reissues: u64,
    pub prolongs: u64,
    pub deletes: u64,
    pub refusals: u64,
    pub charged: Money,
    pub requests: BTreeMap<String, u64>,
}

/// A billing account.
#[derive(Debug)]
pub(crate) struct Account {
    pub email: String,
    pub password: String,
    pub balance: Money,
    pub currency: String,
    pub region: Region,
    /// Certificate ids in creation order.
    pub certs: Vec<u64>,
    pub filter: ListFilter,
    pub counters: Counters,
    /// Answer `access` to every request of this account, as the billing does for an IP outside
    /// the account's allow-list or a two-factor account using `authinfo`.
    pub access_denied: bool,
}

struct Session {
    account: String,
    last_used: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) > SESSION_IDLE
    }
}

/// A session lives one hour after its last use, as the billing's `auth` sessions do.
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The fewest sessions at which opening one first sweeps out the expired ones.
const SESSION_SWEEP_MIN: usize = 64;

/// Distinct `func` names one request counter map keeps. Once it has this many, further unknown
/// names are counted together under [`OTHER_FUNCS`]; the simulator's own functions
/// ([`super::funcs::FUNCS`]) are always counted under their own names.
const MAX_FUNC_KEYS: usize = 48;
/// The counter of unknown `func` names beyond [`MAX_FUNC_KEYS`].
const OTHER_FUNCS: &str = "(other)";
/// The counter of `func` names longer than [`MAX_FUNC_LEN`].
const TOO_LONG_FUNC: &str = "(too long)";
const MAX_FUNC_LEN: usize = 64;

/// Counts one request of `func` in `counts`, which thus never holds more than
/// `MAX_FUNC_KEYS + FUNCS.len() + 2` names: a client sending random names cannot grow it.
fn count_func(counts: &mut BTreeMap<String, u64>, func: &str) {
    let key = if func.len() > MAX_FUNC_LEN {
        TOO_LONG_FUNC
    } else if counts.len() < MAX_FUNC_KEYS || counts.contains_key(func) || super::funcs::FUNCS.contains(&func) {
        func
    } else {
        OTHER_FUNCS
    };
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}

/// Certificates by id. Ids are handed out consecutively from [`FIRST_ID`], so a vector indexed by
/// `id - FIRST_ID` finds one without hashing: the list walks 10,000 of them per request.
#[derive(Debug, Default)]
pub(crate) struct Certs(Vec<Cert>);

impl Certs {
    fn slot(id: u64) -> Option<usize> {
        id.checked_sub(FIRST_ID).and_then(|i| usize::try_from(i).ok())
    }

    pub(crate) fn get(&self, id: &u64) -> Option<&Cert> {
        Self::slot(*id).and_then(|i| self.0.get(i))
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut Cert> {
        Self::slot(*id).and_then(|i| self.0.get_mut(i))
    }

    /// Stores a certificate whose id came from [`State::next_id`] (so it is the next slot).
    pub(crate) fn insert(&mut self, id: u64, cert: Cert) {
        debug_assert_eq!(Self::slot(id), Some(self.0.len()));
        self.0.push(cert);
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Cert> {
        self.0.iter()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Tests read certificates by id; the simulator's own code asks with [`Certs::get`].
#[cfg(test)]
impl std::ops::Index<&u64> for Certs {
    type Output = Cert;

    fn index(&self, id: &u64) -> &Cert {
        self.get(id).expect("no certificate with this id")
    }
}

/// The whole mutable state, behind one mutex (no `.await` while it is held).
#[derive(Default)]
pub(crate) struct State {
    pub accounts: HashMap<String, Account>,
    pub certs: Certs,
    next_id: u64,
    sessions: HashMap<String, Session>,
    /// Opening a session sweeps out the expired ones once there are this many; the mark then
    /// moves to twice the live sessions, so sweeping costs O(1) per session opened on average.
    session_sweep_at: usize,
    /// Requests per `func`, authenticated or not.
    pub requests: BTreeMap<String, u64>,
    pub faults_applied: u64,
    /// The list leaves out `remoteid`: a billing that does not show the caller's tag.
    pub hide_remote_id: bool,
    /// Reissues are accepted but never issued (an approver who does not answer) until released
    /// through `/_sim/certificates/{id}/issue-now`.
    pub hold_reissues: bool,
    /// Orders keep their alt names in another order than given (see [`Settings`]).
    ///
    /// [`Settings`]: crate::Settings
    pub reorder_altnames: bool,
}

/// Ids start at a realistic magnitude for BILLmanager service ids.
const FIRST_ID: u64 = 3_100_001;

impl State {
    pub(crate) fn new() -> State {
        State { next_id: FIRST_ID, ..State::default() }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds an account; `false` when the email is taken.
    pub(crate) fn add_account(&mut self, email: &str, password: &str, balance: Money, currency: &str) -> bool {
        let key = email.to_ascii_lowercase();
        if self.accounts.contains_key(&key) {
            return false;
        }
        let region = region_of_currency(currency);
        self.accounts.insert(
            key,
            Account {
                email: email.to_owned(),
                password: password.to_owned(),
                balance,
                currency: currency.to_ascii_uppercase(),
                region,
                certs: Vec::new(),
                filter: ListFilter::default(),
                counters: Counters::default(),
                access_denied: false,
            },
        );
        true
    }

    /// Whether the account behind `key` is refused with `access`.
    pub(crate) fn access_denied(&self, key: &str) -> bool {
        self.accounts.get(key).is_some_and(|a| a.access_denied)
    }

    /// The account key for `authinfo` credentials.
    pub(crate) fn check_password(&self, email: &str, password: &str) -> Option<String> {
        let key = email.to_ascii_lowercase();
        self.accounts.get(&key).filter(|a| a.password == password).map(|_| key)
    }

    /// Opens session `id` at `now`. Expired sessions are swept out here too, not only when
    /// someone uses them: sessions nobody comes back for would otherwise pile up forever.
    pub(crate) fn open_session(&mut self, account: String, id: String, now: Instant) {
        if self.sessions.len() >= self.session_sweep_at {
            self.sessions.retain(|_, s| !s.expired(now));
            self.session_sweep_at = self.sessions.len().saturating_mul(2).max(SESSION_SWEEP_MIN);
        }
        self.sessions.insert(id, Session { account, last_used: now });
    }

    /// The account of a live session at `now`, refreshing its idle timer.
    pub(crate) fn session_account(&mut self, id: &str, now: Instant) -> Option<String> {
        let s = self.sessions.get_mut(id)?;
        if s.expired(now) {
            self.sessions.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.account.clone())
    }

    /// A live certificate of `account`: not another account's, not deleted.
    pub(crate) fn cert_of(&self, account: &str, elid: &str) -> Option<&Cert> {
        let id: u64 = elid.trim().parse().ok()?;
        self.certs.get(&id).filter(|c| c.account == account && !c.deleted)
    }

    pub(crate) fn cert_of_mut(&mut self, account: &str, elid: &str) -> Option<&mut Cert> {
        let id: u64 = elid.trim().parse().ok()?;
        self.certs.get_mut(&id).filter(|c| c.account == account && !c.deleted)
    }

    /// One page of `account`'s list through its sticky filter. Statuses are computed only for the
    /// rows on the page unless the filter itself is by status.
    pub(crate) fn list(&self, account: &str, p_cnt: usize, p_num: usize, now: Timestamp, lang: Lang) -> ListPage {
        let Some(acct) = self.accounts.get(account) else {
            return ListPage { rows: Vec::new(), p_elems: 0, p_num, p_cnt, hide_remote_id: self.hide_remote_id };
        };
        let skip = (p_num - 1).saturating_mul(p_cnt);
        let by_status = acct.filter.item_status.is_some();
        let cn = acct.filter.cn.as_ref().map(|c| c.to_ascii_lowercase());
        let mut rows = Vec::with_capacity(p_cnt.min(acct.certs.len()));
        let mut total = 0usize;
        for id in &acct.certs {
            let Some(cert) = self.certs.get(id) else {
                continue;
            };
            if cn.as_ref().is_some_and(|c| !cert.cn.contains(c.as_str()))
                || acct.filter.pricelist.is_some_and(|p| p != cert.pricelist)
            {
                continue;
            }
            let on_page = total >= skip && rows.len() < p_cnt;
            if by_status || on_page {
                let (item_status, crt_status) = cert.statuses(now);
                if acct.filter.item_status.is_some_and(|s| s != item_status) {
                    continue;
                }
                if on_page {
                    rows.push(ListRow {
                        fixed: Arc::clone(&cert.row),
                        item_status,
                        crt_status,
                        item_label: item_label(item_status, lang),
                        status_msg: status_msg(cert.paid, crt_status, lang),
                    });
                }
            }
            total += 1;
        }
        ListPage { rows, p_elems: total, p_num, p_cnt, hide_remote_id: self.hide_remote_id }
    }

    /// Counts a request of `func` (and, when known, for its account).
    pub(crate) fn count_request(&mut self, func: &str, account: Option<&str>) {
        count_func(&mut self.requests, func);
        if let Some(a) = account.and_then(|a| self.accounts.get_mut(a)) {
            count_func(&mut a.counters.requests, func);
        }
    }
}

/// RUB accounts buy from the Russian list; every other currency from the foreign one.
pub(crate) fn region_of_currency(currency: &str) -> Region {
    if currency.eq_ignore_ascii_case("RUB") { Region::Russian } else { Region::Foreign }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(kind: EnrollKind, started: Timestamp, secs: i64) -> Enrollment {
        Enrollment {
            kind,
            seq: 1,
            started,
            issue_at: started + SignedDuration::from_secs(secs),
            failed: false,
            names: vec!["a.example.com".into()],
            spki: Arc::new(Vec::new()),
            chain: ChainCell::default(),
        }
    }

    #[test]
    fn an_order_moves_ordered_processing_active_while_the_certificate_is_requested_enrolled_issued() {
        let t0 = Timestamp::now();
        let e = enrollment(EnrollKind::Order, t0, 9);
        let at = |s| t0 + SignedDuration::from_secs(s);
        assert_eq!((e.item_status(at(0)), e.crt_status(at(0))), (item::ORDERED, crt::REQUESTED));
        assert_eq!((e.item_status(at(4)), e.crt_status(at(4))), (item::PROCESSING, crt::ENROLLED));
        // Active before issued: the trap real CA modules set.
        assert_eq!((e.item_status(at(7)), e.crt_status(at(7))), (item::ACTIVE, crt::ENROLLED));
        assert_eq!((e.item_status(at(9)), e.crt_status(at(9))), (item::ACTIVE, crt::ISSUED));
        let r = enrollment(EnrollKind::Reissue, t0, 9);
        assert_eq!((r.item_status(at(0)), r.crt_status(at(0))), (item::ACTIVE, crt::REQUESTED));
        let p = enrollment(EnrollKind::Prolong, t0, 9);
        assert_eq!(p.item_status(at(0)), item::PROCESSING);
        let mut f = enrollment(EnrollKind::Order, t0, 9);
        f.failed = true;
        assert_eq!((f.item_status(at(10)), f.crt_status(at(10))), (item::ACTIVE, crt::FAILED));
        let instant = enrollment(EnrollKind::Order, t0, 0);
        assert_eq!((instant.item_status(t0), instant.crt_status(t0)), (item::ACTIVE, crt::ISSUED));
    }

    #[test]
    fn labels_need_no_json_escaping_because_the_list_copies_them_raw() {
        for lang in [Lang::En, Lang::Ru] {
            for code in 0..=9u8 {
                for label in [item_label(code, lang), status_msg(true, code, lang), status_msg(false, code, lang)] {
                    assert!(!label.chars().any(|c| c == '"' || c == '\\' || c.is_control()), "{label}");
                }
            }
        }
    }

    #[test]
    fn request_counters_keep_a_bounded_number_of_func_names_but_always_their_own() {
        use crate::funcs::FUNCS;
        const A: &str = "a@example.com";
        let mut st = State::new();
        assert!(st.add_account(A, "pw", Money::ZERO, "RUB"));
        for i in 0..1000 {
            st.count_request(&format!("junk{i}"), Some(A));
        }
        st.count_request(&"x".repeat(MAX_FUNC_LEN + 1), Some(A));
        for func in FUNCS {
            st.count_request(func, Some(A));
        }
        let bound = MAX_FUNC_KEYS + FUNCS.len() + 2;
        for counts in [&st.requests, &st.accounts[A].counters.requests] {
            assert!(counts.len() <= bound, "{} names kept", counts.len());
            for func in FUNCS {
                assert_eq!(counts.get(func), Some(&1), "{func}");
            }
            assert_eq!(counts.get("junk0"), Some(&1), "the first unknown names keep their own");
            assert_eq!(counts.get(OTHER_FUNCS), Some(&(1000 - MAX_FUNC_KEYS as u64)));
            assert_eq!(counts.get(TOO_LONG_FUNC), Some(&1));
            assert_eq!(counts.values().sum::<u64>(), 1000 + 1 + FUNCS.len() as u64, "none lost");
        }
    }

    #[test]
    fn expired_sessions_are_swept_out_when_new_ones_open() {
        let mut st = State::new();
        let t0 = Instant::now();
        let minutes = |m: u64| std::time::Duration::from_secs(60 * m);
        for i in 0..200 {
            st.open_session("a".into(), format!("old{i}"), t0);
        }
        // One old session is used again and so stays alive; the others are never used again.
        assert_eq!(st.session_account("old7", t0 + minutes(50)).as_deref(), Some("a"));
        let later = t0 + minutes(70);
        for i in 0..200 {
            st.open_session("a".into(), format!("new{i}"), later);
        }
        let mut old: Vec<&String> = st.sessions.keys().filter(|k| k.starts_with("old")).collect();
        old.sort();
        assert_eq!(old, ["old7"], "expired sessions are gone without being used");
        assert_eq!(st.sessions.len(), 201);
        assert_eq!(st.session_account("new0", later + minutes(59)).as_deref(), Some("a"));
        assert_eq!(st.session_account("new1", later + minutes(61)), None);
    }

    #[test]
    fn leaf_names_add_the_wildcard_base_once() {
        assert_eq!(leaf_names("*.d.com", &[]), vec!["*.d.com", "d.com"]);
        assert_eq!(leaf_names("a.com", &["b.com".into(), "c.com".into()]), vec!["a.com", "b.com", "c.com"]);
    }
}
