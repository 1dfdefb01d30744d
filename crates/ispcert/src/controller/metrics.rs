//! Prometheus metrics, named and labelled the way cert-manager's are where they mean the same
//! thing, so that existing alerts and dashboards translate: per certificate its readiness (one
//! series per condition value), expiry, renewal and subscription end; per issuer its readiness;
//! reconciles and errors by reason; billing requests by function and outcome with their latency;
//! the money calls. `docs/metrics.md` lists every series; a test checks the list against a scrape.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::billing::{Observer, Outcome};

/// A certificate and the issuer that pays for it. All of a certificate's series share one copy
/// of the names: seven series per certificate, each with its own strings, took 1.7 KiB.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CertificateLabels(Arc<CertificateNames>);

#[derive(Debug, Hash, PartialEq, Eq)]
struct CertificateNames {
    namespace: String,
    name: String,
    issuer_name: String,
    issuer_kind: &'static str,
}

impl CertificateLabels {
    pub fn new(namespace: &str, name: &str, issuer_name: &str, issuer_kind: crate::crd::IssuerKind) -> Self {
        let issuer_kind = match issuer_kind {
            crate::crd::IssuerKind::IspIssuer => "IspIssuer",
            crate::crd::IssuerKind::ClusterIspIssuer => "ClusterIspIssuer",
        };
        let (namespace, name, issuer_name) = (namespace.into(), name.into(), issuer_name.into());
        CertificateLabels(Arc::new(CertificateNames { namespace, name, issuer_name, issuer_kind }))
    }

    pub fn of(cert: &crate::crd::IspCertificate) -> Self {
        use kube::ResourceExt;
        let issuer = &cert.spec.issuer_ref;
        Self::new(&cert.namespace().unwrap_or_default(), &cert.name_any(), &issuer.name, issuer.kind)
    }

    /// The labels, with `condition` after the name when given.
    fn encode_with(&self, condition: Option<&str>, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let n = &*self.0;
        let mut labels = vec![("namespace", n.namespace.as_str()), ("name", n.name.as_str())];
        labels.extend(condition.map(|c| ("condition", c)));
        labels.extend([("issuer_name", n.issuer_name.as_str()), ("issuer_kind", n.issuer_kind)]);
        labels.as_slice().encode(encoder)
    }
}

impl EncodeLabelSet for CertificateLabels {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.encode_with(None, encoder)
    }
}

/// One value of a certificate's Ready condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CertificateConditionLabels {
    certificate: CertificateLabels,
    condition: &'static str,
}

impl EncodeLabelSet for CertificateConditionLabels {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.certificate.encode_with(Some(self.condition), encoder)
    }
}

/// One value of an issuer's Ready condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerConditionLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub condition: String,
}

/// An issuer, in the labels of the money metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    pub issuer_kind: String,
    pub issuer_namespace: String,
    pub issuer_name: String,
}

/// An object the operator cannot read.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnreadableLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl UnreadableLabels {
    pub fn certificate(namespace: &str, name: &str) -> Self {
        UnreadableLabels { kind: "IspCertificate".into(), namespace: namespace.into(), name: name.into() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub function: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

type Latency = Family<FunctionLabels, Histogram, fn() -> Histogram>;

/// Billing calls take milliseconds on a good day and up to the timeout on a bad one.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// The values a Ready condition takes, one series each.
const CONDITION_VALUES: [&str; 3] = ["True", "False", "Unknown"];

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub ready: Family<CertificateConditionLabels, Gauge>,
    pub expiration: Family<CertificateLabels, Gauge>,
    pub renewal: Family<CertificateLabels, Gauge>,
    pub subscription_end: Family<CertificateLabels, Gauge>,
    /// 1 while the certificate's `SubscriptionEnding` condition is True (the operator's own
    /// warning time, `--subscription-warning`).
    pub subscription_ending: Family<CertificateLabels, Gauge>,
    pub issuer_ready: Family<IssuerConditionLabels, Gauge>,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub billing_requests: Family<RequestLabels, Counter>,
    pub billing_latency: Latency,
    pub orders: Family<OutcomeLabels, Counter>,
    pub reissues: Counter,
    pub prolongs: Family<OutcomeLabels, Counter>,
    pub budget_exhausted: Family<IssuerLabels, Gauge>,
    pub list_calls: Counter,
    /// 1 for each object whose stored form the operator cannot read (left alone meanwhile).
    pub unreadable: Family<UnreadableLabels, Gauge>,
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
            subscription_end: Family::default(),
            subscription_ending: Family::default(),
            issuer_ready: Family::default(),
            reconciles: Family::default(),
            errors: Family::default(),
            billing_requests: Family::default(),
            billing_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            orders: Family::default(),
            reissues: Counter::default(),
            prolongs: Family::default(),
            budget_exhausted: Family::default(),
            list_calls: Counter::default(),
            unreadable: Family::default(),
            leader: Gauge::default(),
        };
        let r = &mut registry;
        r.register("certificate_ready_status", "1 for the current value of the Ready condition", m.ready.clone());
        r.register(
            "certificate_expiration_timestamp_seconds",
            "notAfter of the stored certificate",
            m.expiration.clone(),
        );
        r.register("certificate_renewal_timestamp_seconds", "When the certificate will be reissued", m.renewal.clone());
        r.register(
            "certificate_subscription_end_timestamp_seconds",
            "When the paid subscription ends (the billing's expiredate)",
            m.subscription_end.clone(),
        );
        r.register(
            "certificate_subscription_ending",
            "1 while the subscription ends within the operator's warning time or has ended",
            m.subscription_ending.clone(),
        );
        r.register(
            "issuer_ready_status",
            "1 for the current value of an issuer's Ready condition",
            m.issuer_ready.clone(),
        );
        r.register("reconciles", "Reconciles run, by controller", m.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Reconciles that ended in a failure, by controller and reason",
            m.errors.clone(),
        );
        r.register("billing_requests", "Billing API requests by function and outcome", m.billing_requests.clone());
        r.register(
            "billing_request_duration_seconds",
            "Billing API request latency by function",
            m.billing_latency.clone(),
        );
        r.register("orders", "Billing orders (money) by outcome: placed, refused, unknown", m.orders.clone());
        r.register("reissues", "Free reissues requested at the billing", m.reissues.clone());
        r.register("prolongs", "Subscription renewals (money) by outcome", m.prolongs.clone());
        r.register(
            "order_budget_exhausted",
            "1 while an issuer's order budget stops new orders",
            m.budget_exhausted.clone(),
        );
        r.register("billing_list_calls", "Certificate list refreshes (batched polling)", m.list_calls.clone());
        r.register(
            "unreadable_objects",
            "1 for each object the operator cannot read (a Warning event names the field)",
            m.unreadable.clone(),
        );
        r.register("leader", "1 while this replica holds the leader Lease", m.leader.clone());
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

    /// A certificate's Ready condition: 1 for `value`, 0 for the other values.
    pub fn set_ready(&self, labels: &CertificateLabels, value: &str) {
        for condition in CONDITION_VALUES {
            let series = CertificateConditionLabels { certificate: labels.clone(), condition };
            self.ready.get_or_create(&series).set(i64::from(condition == value));
        }
    }

    /// An issuer's Ready condition: 1 for `value`, 0 for the other values.
    pub fn set_issuer_ready(&self, kind: &str, namespace: &str, name: &str, value: &str) {
        for condition in CONDITION_VALUES {
            let series = IssuerConditionLabels {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                condition: condition.into(),
            };
            self.issuer_ready.get_or_create(&series).set(i64::from(condition == value));
        }
    }

    /// Drops every series of a deleted certificate.
    pub fn forget_certificate(&self, labels: &CertificateLabels) {
        for condition in CONDITION_VALUES {
            self.ready.remove(&CertificateConditionLabels { certificate: labels.clone(), condition });
        }
        self.expiration.remove(labels);
        self.renewal.remove(labels);
        self.subscription_end.remove(labels);
        self.subscription_ending.remove(labels);
    }

    /// Counts a reconcile that ended in a failure.
    pub fn error(&self, controller: &str, reason: &str) {
        self.errors.get_or_create(&ErrorLabels { controller: controller.into(), reason: reason.into() }).inc();
    }

    /// What billing clients report their requests to.
    pub fn billing_observer(&self) -> Arc<dyn Observer> {
        Arc::new(BillingMetrics { requests: self.billing_requests.clone(), latency: self.billing_latency.clone() })
    }
}

/// The billing-request series, as an [`Observer`] for billing clients.
struct BillingMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
}

impl Observer for BillingMetrics {
    fn observe(&self, function: &str, outcome: Outcome, elapsed: Duration) {
        let labels = RequestLabels { function: function.into(), outcome: outcome.as_str().into() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&FunctionLabels { function: function.into() }).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> CertificateLabels {
        CertificateLabels::new("ns", "www", "billing", crate::crd::IssuerKind::IspIssuer)
    }

    #[test]
    fn a_certificates_series_share_one_copy_of_its_names() {
        let m = Metrics::default();
        let labels = labels();
        m.set_ready(&labels, "True");
        m.expiration.get_or_create(&labels).set(1_900_000_000);
        assert_eq!(Arc::strong_count(&labels.0), 1 + 3 + 1, "three Ready series and the expiry hold the same names");
        m.forget_certificate(&labels);
        assert_eq!(Arc::strong_count(&labels.0), 1);
    }

    #[test]
    fn ready_is_one_series_per_condition_value_and_deleted_certificates_vanish() {
        let m = Metrics::default();
        m.set_ready(&labels(), "False");
        m.set_ready(&labels(), "True");
        m.expiration.get_or_create(&labels()).set(1_900_000_000);
        let text = m.encode();
        let series = |v: &str| {
            format!(
                "ispcert_certificate_ready_status{{namespace=\"ns\",name=\"www\",condition=\"{v}\",issuer_name=\"billing\",issuer_kind=\"IspIssuer\"}}"
            )
        };
        assert!(text.contains(&format!("{} 1", series("True"))), "{text}");
        assert!(text.contains(&format!("{} 0", series("False"))), "{text}");
        assert!(text.contains(&format!("{} 0", series("Unknown"))), "{text}");
        m.forget_certificate(&labels());
        let text = m.encode();
        assert!(!text.contains("name=\"www\""), "{text}");
    }

    #[test]
    fn billing_requests_are_counted_by_function_and_outcome_with_their_latency() {
        let m = Metrics::default();
        let o = m.billing_observer();
        o.observe("certificate", Outcome::Ok, Duration::from_millis(30));
        o.observe("certificate", Outcome::Unreachable, Duration::from_secs(5));
        let text = m.encode();
        assert!(text.contains("ispcert_billing_requests_total{function=\"certificate\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("ispcert_billing_requests_total{function=\"certificate\",outcome=\"unreachable\"} 1"));
        assert!(text.contains("ispcert_billing_request_duration_seconds_count{function=\"certificate\"} 2"), "{text}");
    }
}
