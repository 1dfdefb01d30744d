//! The per-certificate metric series (readiness, expiry, renewal, subscription end), computed at
//! each scrape from the certificate caches instead of kept as series of their own.
//!
//! Kept series cost every certificate seven hash-map entries, seven gauges and a copy of its
//! names (0.6 KiB per certificate, 6 MiB at 10,000) and a write of each on every reconcile; the
//! caches already hold every value, and a deleted certificate's series go with it. A scrape walks
//! the caches once per family: O(N) per scrape, as the exposition itself is.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::conditions;
use super::reasons::{READY, SUBSCRIPTION_ENDING};
use crate::crd::{CertificateStatus, IspCertificate};

/// The values a Ready condition takes, one series each.
pub const CONDITION_VALUES: [&str; 3] = ["True", "False", "Unknown"];

/// The caches being scraped, each with the id its [`Scraped`] guard removes it by.
type Caches = Vec<(u64, Store<IspCertificate>)>;

/// The certificate caches the series are read from: one per watched scope.
#[derive(Clone, Default)]
pub struct CertificateSeries {
    caches: Arc<Mutex<Caches>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for CertificateSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSeries").finish_non_exhaustive()
    }
}

/// Keeps a cache among the scraped ones until dropped (when its controller stops: an operator
/// started again in the same process must not report the stopped one's objects).
#[must_use = "the cache is scraped only while this is kept"]
pub struct Scraped {
    series: CertificateSeries,
    id: u64,
}

impl Drop for Scraped {
    fn drop(&mut self) {
        self.series.lock().retain(|(id, _)| *id != self.id);
    }
}

impl CertificateSeries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports the certificates of `cache` from now on, while the guard is kept.
    pub fn scrape(&self, cache: Store<IspCertificate>) -> Scraped {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().push((id, cache));
        Scraped { series: self.clone(), id }
    }

    fn certificates(&self) -> Vec<Arc<IspCertificate>> {
        let caches: Vec<Store<IspCertificate>> = self.lock().iter().map(|(_, c)| c.clone()).collect();
        let mut all: Vec<Arc<IspCertificate>> = caches.iter().flat_map(Store::state).collect();
        // A stable order, so that two scrapes of the same state read the same.
        all.sort_by(|a, b| {
            (a.metadata.namespace.as_deref(), a.name_any()).cmp(&(b.metadata.namespace.as_deref(), b.name_any()))
        });
        all
    }
}

/// A certificate's labels, borrowed from the cached object: namespace, name, the condition value
/// (Ready only), the issuer. The order is cert-manager's.
struct Labels<'a> {
    namespace: &'a str,
    name: &'a str,
    condition: Option<&'static str>,
    issuer_name: &'a str,
    issuer_kind: &'static str,
}

impl<'a> Labels<'a> {
    fn of(cert: &'a IspCertificate) -> Self {
        let issuer = &cert.spec.issuer_ref;
        Labels {
            namespace: cert.metadata.namespace.as_deref().unwrap_or_default(),
            name: cert.metadata.name.as_deref().unwrap_or_default(),
            condition: None,
            issuer_name: &issuer.name,
            issuer_kind: issuer.kind.as_str(),
        }
    }
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), fmt::Error> {
        let mut labels = vec![("namespace", self.namespace), ("name", self.name)];
        labels.extend(self.condition.map(|c| ("condition", c)));
        labels.extend([("issuer_name", self.issuer_name), ("issuer_kind", self.issuer_kind)]);
        labels.as_slice().encode(encoder)
    }
}

/// The value of the Ready condition: `Unknown` until the operator has written one.
fn ready(status: Option<&CertificateStatus>) -> &str {
    status.and_then(|s| conditions::get(&s.conditions, READY)).map_or("Unknown", |c| c.status.as_str())
}

/// A time of the status as Unix seconds.
type TimeOf = fn(&CertificateStatus) -> Option<&Time>;

/// The timestamp families: name, help, the status field.
const TIMES: [(&str, &str, TimeOf); 3] = [
    ("certificate_expiration_timestamp_seconds", "notAfter of the stored certificate", |s| s.not_after.as_ref()),
    ("certificate_renewal_timestamp_seconds", "When the certificate will be reissued", |s| s.renewal_time.as_ref()),
    (
        "certificate_subscription_end_timestamp_seconds",
        "When the paid subscription ends (the billing's expiredate)",
        |s| s.subscription_end.as_ref(),
    ),
];

fn gauge(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &Labels<'_>,
    value: i64,
) -> Result<(), fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_family(labels)?)
}

impl Collector for CertificateSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let certificates = self.certificates();
        let help = "1 for the current value of the Ready condition";
        {
            let mut family = encoder.encode_descriptor("certificate_ready_status", help, None, MetricType::Gauge)?;
            for cert in &certificates {
                let value = ready(cert.status.as_ref());
                for condition in CONDITION_VALUES {
                    let labels = Labels { condition: Some(condition), ..Labels::of(cert) };
                    gauge(&mut family, &labels, i64::from(condition == value))?;
                }
            }
        }
        for (name, help, time_of) in TIMES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for cert in &certificates {
                if let Some(t) = cert.status.as_ref().and_then(time_of) {
                    gauge(&mut family, &Labels::of(cert), t.0.as_second())?;
                }
            }
        }
        let help = "1 while the subscription ends within the operator's warning time or has ended";
        let mut ending = encoder.encode_descriptor("certificate_subscription_ending", help, None, MetricType::Gauge)?;
        for cert in &certificates {
            // Reported once the end is known.
            let Some(status) = cert.status.as_ref().filter(|s| s.subscription_end.is_some()) else { continue };
            let value = conditions::is_true(&status.conditions, SUBSCRIPTION_ENDING);
            gauge(&mut ending, &Labels::of(cert), i64::from(value))?;
        }
        Ok(())
    }
}
