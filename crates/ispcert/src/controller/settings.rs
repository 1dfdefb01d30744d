//! Operator settings: what to watch and how often to talk to the billing.

use std::time::Duration;

/// How the operator runs. Defaults suit production; tests shorten the intervals.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces whose `IspCertificate`s and `IspIssuer`s are watched; empty means all.
    pub namespaces: Vec<String>,
    /// The operator's own namespace: `ClusterIspIssuer` credentials are read only from here.
    pub operator_namespace: String,
    /// A label selector limiting the `ClusterIspIssuer`s this operator serves, so that several
    /// operators (one per tenant, or per test) can share a cluster without fighting over them.
    pub cluster_issuer_selector: Option<String>,
    /// How often one list call refreshes the state of an account's pending orders.
    pub poll_interval: Duration,
    /// First and longest wait of the per-object backoff after a failure.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Timeout of each billing call.
    pub billing_timeout: Duration,
    /// How long an order attempt whose outcome is unknown is looked for in the billing's list
    /// before it is considered never placed. Longer than any billing call can take.
    pub order_grace: Duration,
    /// How often a Ready issuer's credentials are checked again.
    pub issuer_recheck: Duration,
    /// The smallest wait between two checks of credentials the billing refused, unless the
    /// Secret changes: repeated wrong logins can lock an account.
    pub wrong_credentials_retry: Duration,
    /// The least time between a certificate's start and its renewal, and the least a reissue must
    /// add before the subscription ends (see `renewal`).
    pub renewal_floor: Duration,
    /// How far ahead of a subscription's end `SubscriptionEnding` is reported.
    pub subscription_warning: Duration,
    /// How old a list may be that a certificate near its subscription's end reads it from (one
    /// list per account, shared by all such certificates).
    pub subscription_recheck: Duration,
    /// How long a reissue may wait for approval before it is requested again.
    pub reissue_timeout: Duration,
    /// Reissue requests for one need before the certificate stops and asks a person.
    pub reissue_attempts: u32,
    /// How long the billing clean-up of a `Delete` certificate in a namespace being deleted waits
    /// for an issuer that went with the namespace, before it gives up, keeps the order at the
    /// billing and lets the namespace go.
    pub namespace_cleanup_wait: Duration,
    /// Certificate reconciles running at once. A burst of new certificates waits in the
    /// controller's queue (an object reference each) instead of in half-done reconciles.
    pub concurrency: u16,
    /// Name reported on events and used as the server-side apply field manager.
    pub manager: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: vec![],
            operator_namespace: "ispcert-system".into(),
            cluster_issuer_selector: None,
            poll_interval: Duration::from_secs(30),
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            billing_timeout: Duration::from_secs(30),
            order_grace: Duration::from_secs(300),
            issuer_recheck: Duration::from_secs(600),
            wrong_credentials_retry: Duration::from_secs(300),
            renewal_floor: Duration::from_secs(7 * 24 * 3600),
            subscription_warning: Duration::from_secs(30 * 24 * 3600),
            subscription_recheck: Duration::from_secs(3600),
            // Approver emails are answered within days, not hours.
            reissue_timeout: Duration::from_secs(3 * 24 * 3600),
            reissue_attempts: 3,
            namespace_cleanup_wait: Duration::from_secs(600),
            concurrency: 32,
            manager: "ispcert".into(),
        }
    }
}

impl Settings {
    /// Short intervals for tests and the demo.
    pub fn fast() -> Self {
        Settings {
            poll_interval: Duration::from_millis(500),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            billing_timeout: Duration::from_secs(5),
            order_grace: Duration::from_secs(8),
            issuer_recheck: Duration::from_secs(60),
            wrong_credentials_retry: Duration::from_secs(2),
            renewal_floor: Duration::from_secs(2),
            subscription_recheck: Duration::from_secs(1),
            namespace_cleanup_wait: Duration::from_secs(3),
            ..Settings::default()
        }
    }
}
