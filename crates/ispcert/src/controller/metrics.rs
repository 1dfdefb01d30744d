//! Prometheus metrics: certificate readiness, expiry and renewal per certificate; reconciles and
//! failures by category; billing calls that spend money or poll.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: String,
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub ready: Family<CertificateLabels, Gauge>,
    pub expiration: Family<CertificateLabels, Gauge>,
    pub renewal: Family<CertificateLabels, Gauge>,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub orders: Family<OutcomeLabels, Counter>,
    pub reissues: Counter,
    pub list_calls: Counter,
    /// 1 while this replica holds the leader Lease (or runs without election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ispcert");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            ready: Family::default(),
            expiration: Family::default(),
            renewal: Family::default(),
            reconciles: Family::default(),
            failures: Family::default(),
            orders: Family::default(),
            reissues: Counter::default(),
            list_calls: Counter::default(),
            leader: Gauge::default(),
        };
        registry.register("certificate_ready_status", "1 when the certificate's Secret is Ready", m.ready.clone());
        registry.register(
            "certificate_expiration_timestamp_seconds",
            "notAfter of the stored certificate",
            m.expiration.clone(),
        );
        registry.register(
            "certificate_renewal_timestamp_seconds",
            "When the certificate will be reissued",
            m.renewal.clone(),
        );
        registry.register("reconciles", "Reconciles run", m.reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by error category", m.failures.clone());
        registry.register("orders", "Billing orders (money) by outcome: placed, refused, unknown", m.orders.clone());
        registry.register("reissues", "Free reissues requested at the billing", m.reissues.clone());
        registry.register("billing_list_calls", "Certificate list refreshes (batched polling)", m.list_calls.clone());
        registry.register("leader", "1 while this replica holds the leader Lease", m.leader.clone());
        Metrics { registry: Arc::new(registry), ..m }
    }
}

impl Metrics {
    /// The text exposition for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn forget_certificate(&self, namespace: &str, name: &str) {
        let l = CertificateLabels { namespace: namespace.into(), name: name.into() };
        self.ready.remove(&l);
        self.expiration.remove(&l);
        self.renewal.remove(&l);
    }
}
