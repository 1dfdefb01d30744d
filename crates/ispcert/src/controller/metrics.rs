//! Prometheus metrics, named and labelled the way cert-manager's are where they mean the same
//! thing, so that existing alerts and dashboards translate: per certificate its readiness (one
//! series per condition value), expiry, renewal and subscription end; per issuer its readiness;
//! reconciles and errors by reason; billing requests by function and outcome with their latency;
//! the money calls. `docs/metrics.md` lists every series; a test checks the list against a scrape.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::series::{CONDITION_VALUES, CertificateSeries};
use crate::billing::{Observer, Outcome};

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

/// Every metric the operator exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    /// Readiness, expiry, renewal and subscription end of every certificate, read from the
    /// caches at each scrape.
    pub certificates: CertificateSeries,
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
            certificates: CertificateSeries::default(),
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
        r.register_collector(Box::new(m.certificates.clone()));
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

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::runtime::{reflector, watcher};

    use crate::crd::{CertificateStatus, IspCertificate};

    fn certificate(name: &str, ready: Option<&str>, not_after: Option<i64>) -> IspCertificate {
        let mut cert: IspCertificate = serde_json::from_value(serde_json::json!({
            "apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"issuerRef": {"name": "billing"}, "product": "alphassl", "commonName": "a.example.com", "secretName": "s"},
        }))
        .unwrap();
        let condition = |status: &str| Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "Issued".into(),
            message: String::new(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        cert.status = ready.map(|r| CertificateStatus {
            conditions: vec![condition(r)],
            not_after: not_after.map(|s| Time(jiff::Timestamp::from_second(s).unwrap())),
            ..Default::default()
        });
        cert
    }

    fn series(name: &str, condition: &str) -> String {
        format!(
            "ispcert_certificate_ready_status{{namespace=\"ns\",name=\"{name}\",condition=\"{condition}\",issuer_name=\"billing\",issuer_kind=\"IspIssuer\"}}"
        )
    }

    #[test]
    fn certificate_series_are_read_from_the_cache_and_go_with_the_object_or_the_cache() {
        let m = Metrics::default();
        let (cache, mut writer) = reflector::store::<IspCertificate>();
        let scraped = m.certificates.scrape(cache);
        let (www, new) = (certificate("www", Some("True"), Some(1_900_000_000)), certificate("new", None, None));
        writer.apply_watcher_event(&watcher::Event::Apply(www.clone()));
        writer.apply_watcher_event(&watcher::Event::Apply(new));
        let text = m.encode();
        assert!(text.contains(&format!("{} 1", series("www", "True"))), "{text}");
        assert!(text.contains(&format!("{} 0", series("www", "False"))), "{text}");
        assert!(text.contains(&format!("{} 0", series("www", "Unknown"))), "{text}");
        assert!(text.contains(&format!("{} 1", series("new", "Unknown"))), "no condition yet: {text}");
        let expiry = "ispcert_certificate_expiration_timestamp_seconds{namespace=\"ns\",name=\"www\",issuer_name=\"billing\",issuer_kind=\"IspIssuer\"} 1900000000";
        assert!(text.contains(expiry), "{text}");
        assert!(
            !text.contains("expiration_timestamp_seconds{namespace=\"ns\",name=\"new\""),
            "no notAfter, no series: {text}"
        );

        writer.apply_watcher_event(&watcher::Event::Apply(certificate("www", Some("False"), Some(1_900_000_000))));
        assert!(m.encode().contains(&format!("{} 1", series("www", "False"))), "a status change shows at once");
        writer.apply_watcher_event(&watcher::Event::Delete(www));
        let text = m.encode();
        assert!(!text.contains("name=\"www\""), "a deleted certificate's series go: {text}");
        drop(scraped);
        let text = m.encode();
        assert!(!text.contains("name=\"new\""), "a stopped controller's cache is no longer read: {text}");
        assert!(text.contains("# TYPE ispcert_certificate_ready_status gauge"), "the families stay declared: {text}");
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
