//! One billing account as the operator sees it: its certificate list, shared by every
//! certificate of the account; the orders this process placed since the list was read; and the
//! lock that makes "decide to order, then order" one step per account.
//!
//! The list is read once for everyone who needs it: reconciles asking for a list no older than
//! the poll interval share the last one, and those needing one taken after a moment ("a list
//! fetched since my order attempt") share the next fetch instead of each reading every page.
//! Orders placed by this process are journaled, so that a decision made under the account's lock
//! sees them even before the billing lists them; the journal forgets an order once a list read
//! after it shows it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use prometheus_client::metrics::counter::Counter;

use crate::billing::{BillingClient, BillingError, CertificateRow};

/// The account's certificate list at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// When the fetch began: every order placed before this is in it (if the billing lists it).
    pub started: Timestamp,
    taken: Instant,
    /// How long the fetch took (every page of the list).
    took: Duration,
    pub rows: Vec<CertificateRow>,
    by_id: HashMap<String, usize>,
}

impl Snapshot {
    pub fn new(started: Timestamp, rows: Vec<CertificateRow>) -> Self {
        let by_id = rows.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
        Snapshot { started, taken: Instant::now(), took: Duration::ZERO, rows, by_id }
    }

    pub fn row(&self, id: &str) -> Option<&CertificateRow> {
        self.by_id.get(id).map(|&i| &self.rows[i])
    }
}

/// An order this process placed (or whose answer it lost), as a list row would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The billing's id, when its answer arrived.
    pub id: Option<String>,
    pub common_name: String,
    pub pricelist: u32,
    pub remote_id: String,
    pub at: Timestamp,
}

/// The shortest time between two fetches of one account's list.
const FETCH_GAP: Duration = Duration::from_secs(1);
/// The gap between two fetches is at least this many times the last fetch's duration.
const FETCH_SHARE: u32 = 4;

/// How long a placed order is remembered at most, even if no list ever shows it.
const JOURNAL_KEEP: SignedDuration = SignedDuration::from_hours(24);

/// One account's shared state.
#[derive(Debug, Default)]
pub struct Account {
    /// The last list. Read without waiting for a fetch under way: a decision that is content
    /// with a recent list (an order in a burst) does not queue behind one.
    last: Mutex<Option<Arc<Snapshot>>>,
    /// Held while a list is fetched, so that those who need a newer list share the next fetch.
    fetching: tokio::sync::Mutex<()>,
    /// When the list last changed by our own doing in a way the journal does not show (a
    /// deletion), in microseconds: a snapshot fetched before that is not reused.
    changed_at: AtomicI64,
    journal: Mutex<Vec<Placed>>,
    /// Held from the last look at the list before an order until the order is recorded.
    ordering: tokio::sync::Mutex<()>,
    /// List refreshes made (`ispcert_billing_list_calls_total`, shared by every account).
    refreshes: Counter,
    /// The account's key, recorded beside order ids (`status.account`).
    key: String,
}

impl Account {
    pub fn new(refreshes: Counter, key: String) -> Self {
        Account { refreshes, key, ..Default::default() }
    }

    /// The account's key: order ids are unique within one account only.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A snapshot no older than `max_age` (and not invalidated since).
    pub async fn snapshot(&self, client: &BillingClient, max_age: Duration) -> Result<Arc<Snapshot>, BillingError> {
        self.snapshot_since(client, max_age, None).await
    }

    /// The same, and fetched at or after `since` ("a list taken after my change"): everyone
    /// waiting meanwhile shares one fetch, so N changes in a burst cost a few lists, not N.
    pub async fn snapshot_since(
        &self,
        client: &BillingClient,
        max_age: Duration,
        since: Option<Timestamp>,
    ) -> Result<Arc<Snapshot>, BillingError> {
        let good_enough = |s: &Snapshot| {
            s.taken.elapsed() < max_age
                && s.started.as_microsecond() > self.changed_at.load(Ordering::SeqCst)
                && since.is_none_or(|t| s.started >= t)
        };
        self.shared_fetch(client, good_enough).await
    }

    /// The last list if `good_enough` says so, else the next one: whoever waited for a fetch
    /// under way looks again when it ends, and fetches only if that one does not do either.
    async fn shared_fetch(
        &self,
        client: &BillingClient,
        good_enough: impl Fn(&Snapshot) -> bool,
    ) -> Result<Arc<Snapshot>, BillingError> {
        if let Some(s) = self.last().filter(|s| good_enough(s)) {
            return Ok(s);
        }
        let _fetching = self.fetching.lock().await;
        if let Some(s) = self.last().filter(|s| good_enough(s)) {
            return Ok(s);
        }
        // At most one fetch per gap: those who need a newer list meanwhile (a burst of orders)
        // queue behind this one and share what it reads. The gap grows with the time a fetch
        // takes, so that lists take at most a fifth of the account's time however long the list
        // is: a burst of N orders then costs list pages in proportion to N, not N squared.
        if let Some(last) = self.last() {
            let gap = FETCH_GAP.max(last.took.saturating_mul(FETCH_SHARE));
            tokio::time::sleep(gap.saturating_sub(last.taken.elapsed())).await;
        }
        let (started, clock) = (Timestamp::now(), Instant::now());
        let rows = client.list().await?;
        self.refreshes.inc();
        let fresh = Arc::new(Snapshot { took: clock.elapsed(), ..Snapshot::new(started, rows) });
        self.forget_listed(&fresh);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    fn last(&self) -> Option<Arc<Snapshot>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks the cached list stale after a deletion: a list fetched before now (even one being
    /// fetched) is not reused. Orders and reissues do not: the journal shows orders, and their
    /// followers ask for a list read after their change (`snapshot_since`).
    pub fn invalidate(&self) {
        self.changed_at.fetch_max(Timestamp::now().as_microsecond(), Ordering::SeqCst);
    }

    /// The lock to hold from the last look at the list before an order until it is recorded.
    pub async fn ordering(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ordering.lock().await
    }

    /// Remembers an order placed (or attempted with its answer lost) by this process.
    pub fn journal(&self, placed: Placed) {
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let now = Timestamp::now();
        j.retain(|p| now.duration_since(p.at) < JOURNAL_KEEP);
        j.push(placed);
    }

    /// Journaled orders a list fetched after them shows are known to the billing: forgotten.
    fn forget_listed(&self, snapshot: &Snapshot) {
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        j.retain(|p| p.at >= snapshot.started || p.id.as_deref().is_none_or(|id| snapshot.row(id).is_none()));
    }

    /// The rows decisions look at: the snapshot's, plus journaled orders it does not show yet
    /// (as the billing would list them: without our tag when its rows show none, so that a lost
    /// answer is not matched twice, by the journal's tag and by the billing's row; one whose
    /// answer was lost has no id). An empty list says nothing about tags: the tag stays.
    /// The snapshot's rows are borrowed, not copied: each order reads them, and copying every
    /// row for each of N orders was quadratic.
    pub fn rows<'s>(&self, snapshot: &'s Snapshot) -> Vec<Cow<'s, CertificateRow>> {
        let tags_hidden = !snapshot.rows.is_empty() && snapshot.rows.iter().all(|r| r.remote_id.is_none());
        let j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let missing = j.iter().filter(|p| p.id.as_deref().is_none_or(|id| snapshot.row(id).is_none()));
        let extra: Vec<Cow<'s, CertificateRow>> = missing
            .map(|p| CertificateRow {
                id: p.id.clone().unwrap_or_default(),
                domain: p.common_name.clone(),
                pricelist: Some(p.pricelist.to_string()),
                created: Some(p.at.strftime("%Y-%m-%d").to_string()),
                item_status: Some(1),
                remote_id: (!tags_hidden).then(|| p.remote_id.clone()),
                ..Default::default()
            })
            .map(Cow::Owned)
            .collect();
        snapshot.rows.iter().map(Cow::Borrowed).chain(extra).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fifty certificates that each changed their order just now all need a list read after
    /// their change: they share one fetch instead of reading fifty.
    #[tokio::test]
    async fn those_who_need_a_newer_list_share_one_fetch() {
        let (email, password) = ("team@example.com", "pa55-word");
        let config = ispcert_sim::SimConfig {
            accounts: vec![ispcert_sim::AccountSpec::new(email, password, ispcert_sim::Money::from_units(1), "RUB")],
            ..ispcert_sim::SimConfig::default()
        };
        let sim = ispcert_sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = crate::billing::http_pool(Duration::from_secs(5)).unwrap();
        let credentials = crate::billing::Credentials::new(email, password);
        let client = BillingClient::new(http, &sim.base_url(), credentials).unwrap();
        let account = Account::default();
        let lists = || async { sim.admin().stats().await.unwrap().requests_of("certificate") };

        let old = account.snapshot(&client, Duration::from_secs(60)).await.unwrap();
        assert_eq!(lists().await, 1);
        let changed = Timestamp::now();
        let max_age = Duration::from_secs(60);
        let waits = (0..50).map(|_| account.snapshot_since(&client, max_age, Some(changed)));
        let snapshots = futures::future::join_all(waits).await;
        assert!(snapshots.iter().all(|s| s.as_ref().is_ok_and(|s| s.started >= changed)));
        assert_eq!(lists().await, 2, "one fetch for all fifty");
        // Content with a recent list: no fetch at all.
        let recent = account.snapshot(&client, max_age).await.unwrap();
        assert!(recent.started > old.started);
        assert_eq!(lists().await, 2);
    }

    fn row(id: &str) -> CertificateRow {
        CertificateRow { id: id.into(), domain: "a.example.com".into(), ..Default::default() }
    }

    fn placed(id: Option<&str>, at: Timestamp) -> Placed {
        Placed {
            id: id.map(String::from),
            common_name: "b.example.com".into(),
            pricelist: 3033,
            remote_id: "t".into(),
            at,
        }
    }

    #[test]
    fn journaled_orders_are_seen_until_a_later_list_shows_them() {
        let account = Account::default();
        let t0 = Timestamp::now();
        let before = Snapshot::new(t0, vec![row("1")]);
        account.journal(placed(Some("2"), t0 + SignedDuration::from_secs(1)));
        account.journal(placed(None, t0 + SignedDuration::from_secs(2)));
        let rows = account.rows(&before);
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1", "2", ""]);
        assert_eq!(rows[1].domain, "b.example.com");
        assert_eq!(rows[1].item_status, Some(1));
        assert_eq!(rows[1].remote_id, None, "a list without tags gets none from the journal either");
        let tagged = Snapshot::new(t0, vec![CertificateRow { remote_id: Some("x".into()), ..row("1") }]);
        assert_eq!(account.rows(&tagged)[1].remote_id.as_deref(), Some("t"));
        // An empty list (read before the account's first order) tells nothing: the tag stays.
        let empty = Snapshot::new(t0, vec![]);
        assert_eq!(account.rows(&empty)[0].remote_id.as_deref(), Some("t"));

        // A list read after the orders shows order 2: it is forgotten; the lost one stays.
        let after = Snapshot::new(t0 + SignedDuration::from_secs(5), vec![row("1"), row("2")]);
        account.forget_listed(&after);
        let rows = account.rows(&after);
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["1", "2", ""]);
        assert_eq!(account.journal.lock().unwrap().len(), 1);

        // A list read before an order does not make it forgotten, even if it shows its id.
        account.journal(placed(Some("3"), t0 + SignedDuration::from_secs(9)));
        account.forget_listed(&Snapshot::new(t0 + SignedDuration::from_secs(6), vec![row("3")]));
        assert_eq!(account.journal.lock().unwrap().len(), 2);
    }
}
