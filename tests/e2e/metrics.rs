//! `/metrics` of the real binary during a run that orders, issues and reissues: every series
//! `docs/metrics.md` lists is exported, every exported series is listed there, and the ones this
//! run exercises carry the values it implies.

use std::collections::BTreeSet;

use serde_json::json;

use crate::support::*;

/// The series names of the table in docs/metrics.md.
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(ispcert_tests::repo_root().join("docs/metrics.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `ispcert_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("ispcert_{name}"))
        .collect()
}

/// The metric families a scrape declares (`# TYPE`), with the names their samples carry.
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (family, kind) = (parts.next()?, parts.next()?);
            Some(if kind == "counter" { format!("{family}_total") } else { family.to_string() })
        })
        .collect()
}

/// The value of the first sample of `series` whose labels include every `labels` pair.
fn sample(scrape: &str, series: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().filter(|l| l.starts_with(&format!("{series}{{")) || l.starts_with(&format!("{series} "))).find_map(
        |l| {
            let has_all = labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")));
            has_all.then(|| l.rsplit(' ').next()?.parse().ok()).flatten()
        },
    )
}

#[tokio::test]
async fn every_documented_series_is_exported_with_the_values_of_the_run() {
    let env = Env::without_operator("metrics", Env::default_sim()).await;
    let kubeconfig = ispcert_tests::control_plane().await.unwrap().kubeconfig_path().to_path_buf();
    let operator = OperatorProcess::start(&env, &kubeconfig, "metrics");
    env.ready_issuer().await;
    let spec = json!({
        "issuerRef": {"name": "billing"}, "product": "globalsign-domainssl", "commonName": "a.example.com",
        "altNames": ["b.example.com"], "approverMailbox": "admin", "secretName": "multi-tls",
    });
    env.apply_certificate("multi", spec.clone()).await.unwrap();
    env.wait_ready("multi").await;
    // A changed alt name is a free reissue.
    env.apply_certificate("multi", with(spec, json!({"altNames": ["c.example.com"]}))).await.unwrap();
    env.wait_cert("multi", |s| {
        is(&s.conditions, "Ready", "True") && s.dns_names.contains(&"c.example.com".to_string())
    })
    .await;

    let (ok, scrape) = get(operator.port, "/metrics").await.expect("the metrics endpoint answers");
    assert!(ok);
    let (documented, exported) = (documented(), exported(&scrape));
    assert!(documented.len() >= 15, "the table lists the series: {documented:?}");
    let missing: Vec<_> = documented.difference(&exported).collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(missing.is_empty(), "documented but not exported: {missing:?}\n{scrape}");
    assert!(undocumented.is_empty(), "exported but not in docs/metrics.md: {undocumented:?}");

    let cert =
        [("namespace", env.ns.as_str()), ("name", "multi"), ("issuer_name", "billing"), ("issuer_kind", "IspIssuer")];
    let with_condition = |c| {
        let mut l = cert.to_vec();
        l.push(("condition", c));
        l
    };
    assert_eq!(sample(&scrape, "ispcert_certificate_ready_status", &with_condition("True")), Some(1.0));
    assert_eq!(sample(&scrape, "ispcert_certificate_ready_status", &with_condition("False")), Some(0.0));
    let now = jiff::Timestamp::now().as_second() as f64;
    let at = |series| sample(&scrape, series, &cert).unwrap_or_else(|| panic!("{series} for the certificate"));
    assert!(at("ispcert_certificate_expiration_timestamp_seconds") > now);
    assert!(at("ispcert_certificate_renewal_timestamp_seconds") > now);
    assert!(
        at("ispcert_certificate_subscription_end_timestamp_seconds")
            > at("ispcert_certificate_expiration_timestamp_seconds") - 86_400.0
    );
    let issuer = [("kind", "IspIssuer"), ("namespace", env.ns.as_str()), ("name", "billing"), ("condition", "True")];
    assert_eq!(sample(&scrape, "ispcert_issuer_ready_status", &issuer), Some(1.0));
    assert_eq!(sample(&scrape, "ispcert_orders_total", &[("outcome", "placed")]), Some(1.0));
    assert_eq!(sample(&scrape, "ispcert_reissues_total", &[]), Some(1.0));
    assert_eq!(sample(&scrape, "ispcert_leader", &[]), Some(1.0));
    assert!(sample(&scrape, "ispcert_reconciles_total", &[("controller", "certificate")]).unwrap_or(0.0) >= 2.0);
    let order = [("function", "certificate.order.param"), ("outcome", "ok")];
    assert_eq!(sample(&scrape, "ispcert_billing_requests_total", &order), Some(1.0));
    let downloads = [("function", "certificate.file")];
    assert!(sample(&scrape, "ispcert_billing_request_duration_seconds_count", &downloads).unwrap_or(0.0) >= 1.0);
    assert_eq!(env.orders().await, 1, "the reissue bought nothing");
}
