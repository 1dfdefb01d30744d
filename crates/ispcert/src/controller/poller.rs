//! Batched polling of the billing: one list call serves every pending certificate of an account.
//!
//! Reconciles of pending certificates ask for a snapshot no older than the poll interval. The
//! first caller after the interval refreshes it while the others wait on the lock and then reuse
//! the fresh list, so N pending certificates cost one list call per interval, not N.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Mutex;

use crate::billing::{BillingClient, BillingError, CertificateRow};

/// The account's certificate list at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub taken: Instant,
    pub rows: Vec<CertificateRow>,
    by_id: HashMap<String, usize>,
}

impl Snapshot {
    pub fn new(rows: Vec<CertificateRow>) -> Self {
        let by_id = rows.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
        Snapshot { taken: Instant::now(), rows, by_id }
    }

    pub fn row(&self, id: &str) -> Option<&CertificateRow> {
        self.by_id.get(id).map(|&i| &self.rows[i])
    }
}

/// One account's list cache.
#[derive(Debug, Default)]
pub struct AccountPoller {
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// Bumped by [`AccountPoller::invalidate`]; a snapshot taken before the bump is stale.
    epoch: AtomicU64,
    snapshot_epoch: AtomicU64,
    /// List refreshes made (`ispcert_billing_list_calls_total`, shared by every account).
    refreshes: Counter,
}

impl AccountPoller {
    pub fn new(refreshes: Counter) -> Self {
        AccountPoller { refreshes, ..Default::default() }
    }

    /// A snapshot no older than `max_age` (zero forces a fresh list).
    pub async fn snapshot(&self, client: &BillingClient, max_age: Duration) -> Result<Arc<Snapshot>, BillingError> {
        let mut guard = self.snapshot.lock().await;
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some(s) = guard.as_ref()
            && s.taken.elapsed() < max_age
            && self.snapshot_epoch.load(Ordering::SeqCst) == epoch
        {
            return Ok(s.clone());
        }
        let rows = client.list().await?;
        self.refreshes.inc();
        let fresh = Arc::new(Snapshot::new(rows));
        self.snapshot_epoch.store(epoch, Ordering::SeqCst);
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Marks the cached list stale, for example after an order changed it.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}
