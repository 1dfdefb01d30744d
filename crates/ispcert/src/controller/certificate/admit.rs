//! What must hold before anything is made or bought, from the caches alone: the issuer exists,
//! the spec makes a valid plan with it, no older certificate writes the same Secret, and the
//! issuer's credentials passed their check (unless the order exists already).

use std::time::Duration;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::flow::Stop;
use super::run::Run;
use crate::controller::conditions;
use crate::controller::issuers::IssuerView;
use crate::controller::plan::{Plan, plan};
use crate::controller::reasons as r;
use crate::crd::{CertificateStatus, IspCertificateSpec, IssuerKind};

/// The issuer and the plan, or why the certificate waits.
pub fn admit(run: &Run<'_>, status: &CertificateStatus) -> Result<(IssuerView, Plan), Stop> {
    let spec = &run.cert.spec;
    let issuer = run.ctx.issuer(&run.ns, &spec.issuer_ref).ok_or_else(|| issuer_missing(spec, &run.ns))?;
    if let Some(selector) = &issuer.tenancy.namespaces
        && !serves(selector, &run.ctx.namespace_labels(&run.ns))
    {
        return Err(not_served(&issuer, &run.ns));
    }
    let plan = plan(spec, &issuer.spec).map_err(|problems| invalid_spec(&problems))?;
    if let Some(owner) = run.ctx.secret_owner(&run.ns, &plan.secret_name)
        && owner.uid().as_deref() != Some(run.uid.as_str())
    {
        return Err(Stop::secret_in_use(&plan.secret_name, &owner.name_any()));
    }
    if !conditions::is_true(&issuer.status.conditions, r::READY) && status.order_id.is_none() {
        let wait = run.ctx.shared.settings.poll_interval.max(Duration::from_secs(5));
        return Err(issuer_not_ready(&issuer, wait));
    }
    Ok((issuer, plan))
}

/// A certificate still valid for this spec stays Ready; the trouble shows under Issuing.
fn issuer_missing(spec: &IspCertificateSpec, namespace: &str) -> Stop {
    let r = &spec.issuer_ref;
    let place = match r.kind {
        IssuerKind::IspIssuer => format!(" in namespace {namespace}"),
        IssuerKind::ClusterIspIssuer => String::new(),
    };
    Stop::blocked(
        r::ISSUER_NOT_FOUND,
        format!(
            "{:?} {}{place} does not exist; create it or fix spec.issuerRef. Nothing is ordered meanwhile",
            r.kind, r.name
        ),
        None,
    )
    .retrying()
    .keeping_ready()
}

/// Whether a namespace with `labels` matches a ClusterIspIssuer's namespace selector. A selector
/// that cannot be read serves nobody.
fn serves(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

fn not_served(issuer: &IssuerView, namespace: &str) -> Stop {
    Stop::blocked(
        r::ISSUER_NOT_ALLOWED,
        format!(
            "{} serves only namespaces matching its spec.namespaceSelector, and namespace {namespace} does not; ask its owner, or use an IspIssuer of this namespace. Nothing is ordered",
            issuer.key
        ),
        None,
    )
    .retrying()
}

fn invalid_spec(problems: &[String]) -> Stop {
    let n = problems.len();
    Stop::blocked(
        r::INVALID_SPEC,
        format!("fix the spec ({n} problem{}): {}", if n == 1 { "" } else { "s" }, problems.join("; ")),
        None,
    )
}

fn issuer_not_ready(issuer: &IssuerView, wait: Duration) -> Stop {
    let why = conditions::get(&issuer.status.conditions, r::READY).map(|c| c.message.clone()).unwrap_or_default();
    Stop::pending(
        r::ISSUER_NOT_READY,
        format!("{} is not ready ({why}); nothing is ordered until it is", issuer.key),
        wait,
    )
}
