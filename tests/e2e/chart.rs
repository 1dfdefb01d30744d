//! The Helm chart (`deploy/helm/ispcert`) and the static manifests (`deploy/manifests`): they lint
//! and render with several value sets, their schema refuses typos, the rendered objects pass the
//! real API server's strict server-side dry run and kubeconform's strict schema check, `helm
//! install` creates every object, the alerts pass Prometheus's own rule checks, and the RBAC
//! grants exactly what the operator calls: the
//! operator, run as a process with nothing but the chart's ServiceAccount token and the chart's
//! flags, issues a certificate; with `watchNamespaces` it can neither see nor read anything in
//! other namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::*;

// ----------------------------------------------------------------------------------------------
// helm, kubectl and the repository's scripts

/// What a command printed and whether it succeeded.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The output of a command that must succeed.
    fn expect_ok(self, what: &str) -> String {
        assert!(self.ok, "{what} failed:\n{}\n{}", self.stderr, self.stdout);
        self.stdout
    }
}

/// Runs a program without blocking the runtime: the simulator of the test serves on it.
async fn run(program: &Path, args: &[String], stdin: Option<&str>) -> Out {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // helm keeps caches and settings under these; a test must not touch the user's.
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        command.env(var, helm_home().join(var));
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().await.unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// helm's home for these tests, in cargo's scratch directory for this package's tests.
fn helm_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

async fn bin(name: &str) -> PathBuf {
    ispcert_tests::k8s_bin_dir().await.expect("the Kubernetes binaries").join(name)
}

async fn helm(args: &[String]) -> Out {
    run(&bin("helm").await, args, None).await
}

/// kubectl as the admin of a control plane.
async fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut all = vec![format!("--kubeconfig={}", kubeconfig.display())];
    all.extend(strings(args));
    run(&bin("kubectl").await, &all, stdin).await
}

fn chart_dir() -> String {
    ispcert_tests::repo_root().join("deploy/helm/ispcert").display().to_string()
}

/// A values file for helm (JSON is YAML), kept as long as the test needs it.
fn values_file(values: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_string_pretty(values).unwrap()).unwrap();
    file
}

/// `helm template` of the chart: the text, or helm's complaint.
async fn template_text(release: &str, namespace: &str, values: &Value) -> Result<String, String> {
    let file = values_file(values);
    let out = helm(&strings(&[
        "template",
        release,
        &chart_dir(),
        "--namespace",
        namespace,
        "--values",
        &file.path().display().to_string(),
    ]))
    .await;
    if out.ok { Ok(out.stdout) } else { Err(out.stderr) }
}

/// `helm template` of the chart, as objects.
async fn template(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let text = template_text(release, namespace, values).await.unwrap_or_else(|e| panic!("helm template: {e}"));
    documents(&text)
}

/// The objects of a multi-document YAML text.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("rendered YAML parses: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

async fn lint(values: &Value) {
    let file = values_file(values);
    helm(&strings(&["lint", "--strict", &chart_dir(), "--values", &file.path().display().to_string()]))
        .await
        .expect_ok("helm lint --strict");
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in objects {
        *counts.entry(o["kind"].as_str().unwrap().to_string()).or_default() += 1;
    }
    counts
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}: {found:#?}");
    found[0]
}

fn container(objects: &[Value]) -> &Value {
    &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(objects: &[Value]) -> Vec<String> {
    container(objects)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// The directory of the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs
/// (`hack/monitoring-crds` fetches them once into the cache).
async fn monitoring_crds() -> PathBuf {
    let script = ispcert_tests::repo_root().join("hack/monitoring-crds");
    let out = run(&script, &[], None).await.expect_ok("hack/monitoring-crds");
    PathBuf::from(out.lines().last().expect("hack/monitoring-crds prints a directory").trim())
}

fn ha() -> Value {
    json!({
        "replicaCount": 3,
        "podDisruptionBudget": {"enabled": true},
        "prometheus": {"servicemonitor": {"enabled": true}, "prometheusRule": {"enabled": true}},
        "networkPolicy": {"enabled": true},
    })
}

fn namespaced(a: &str, b: &str) -> Value {
    json!({"watchNamespaces": [a, b]})
}

// ----------------------------------------------------------------------------------------------
// What the RBAC grants

/// The operator's API calls, as the RBAC must allow them: (API group, resource, verbs).
type Rules = &'static [(&'static str, &'static str, &'static [&'static str])];

/// In every namespace the operator watches.
const WATCHED: Rules = &[
    ("ispcert.dev", "ispcertificates", &["get", "list", "watch", "patch"]),
    ("ispcert.dev", "ispcertificates/status", &["get", "patch"]),
    ("ispcert.dev", "ispcertificates/finalizers", &["update"]),
    ("ispcert.dev", "ispissuers", &["get", "list", "watch"]),
    ("ispcert.dev", "ispissuers/status", &["patch"]),
    ("", "secrets", &["get", "list", "watch", "create", "update", "patch", "delete"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];
/// Cluster-scoped.
const CLUSTER: Rules = &[
    ("ispcert.dev", "clusterispissuers", &["get", "list", "watch"]),
    ("ispcert.dev", "clusterispissuers/status", &["patch"]),
    ("ispcert.dev", "ispcertificates", &["list", "watch"]),
    ("", "namespaces", &["list", "watch"]),
];
/// In the operator's namespace: the Lease and the ClusterIspIssuers' credentials.
const OPERATOR: Rules = &[
    ("coordination.k8s.io", "leases", &["get", "list", "watch", "create", "update", "patch"]),
    ("", "secrets", &["get"]),
];
/// Events about cluster-scoped objects (ClusterIspIssuers) go to "default".
const CLUSTER_EVENTS: Rules = &[("events.k8s.io", "events", &["create", "patch"])];

/// One permission: where ("*" for every namespace and the cluster), group, resource, verb.
type Grant = (String, String, String, String);

fn expand(scope: &str, rules: Rules) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (group, resource, verbs) in rules {
        for verb in *verbs {
            out.insert((scope.to_string(), group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

/// Everything the rendered roles grant the ServiceAccount through the rendered bindings.
fn grants(objects: &[Value], sa_namespace: &str, sa_name: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for binding in objects.iter().filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding") {
        let subjects = binding["subjects"].as_array().unwrap();
        assert_eq!(subjects.len(), 1, "one subject: {binding:#}");
        assert_eq!(subjects[0], json!({"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}));
        let role_ref = &binding["roleRef"];
        let namespace = binding["metadata"]["namespace"].as_str();
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == role_ref["kind"]
                    && o["metadata"]["name"] == role_ref["name"]
                    && o["metadata"]["namespace"].as_str() == namespace
            })
            .unwrap_or_else(|| panic!("the role a binding names is rendered: {binding:#}"));
        let scope = namespace.unwrap_or("*");
        for rule in role["rules"].as_array().unwrap() {
            let keys: BTreeSet<&str> = rule.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["apiGroups", "resources", "verbs"]), "plain rules only: {rule}");
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let grant =
                            (scope, group.as_str().unwrap(), resource.as_str().unwrap(), verb.as_str().unwrap());
                        assert!(![grant.1, grant.2, grant.3].contains(&"*"), "no wildcard: {rule}");
                        out.insert((grant.0.into(), grant.1.into(), grant.2.into(), grant.3.into()));
                    }
                }
            }
        }
    }
    out
}

fn assert_grants(have: BTreeSet<Grant>, want: BTreeSet<Grant>) {
    let extra: Vec<_> = have.difference(&want).collect();
    let missing: Vec<_> = want.difference(&have).collect();
    assert!(extra.is_empty() && missing.is_empty(), "RBAC grants too much: {extra:#?}\nand lacks: {missing:#?}");
}

// ----------------------------------------------------------------------------------------------
// Rendering

#[tokio::test]
async fn chart_crds_are_the_generated_ones() {
    let path = ispcert_tests::repo_root().join("deploy/helm/ispcert/files/crds.yaml");
    let copy = std::fs::read_to_string(&path).expect("the chart holds files/crds.yaml");
    assert!(
        copy == ispcert::crd::crds_yaml(),
        "deploy/helm/ispcert/files/crds.yaml differs from `ispcert crds`: run hack/chart-sync and commit the result"
    );
    // What the chart renders is those CRDs, with only labels and the keep annotation added.
    let rendered: Vec<Value> = template("ispcert", "ispcert-system", &json!({}))
        .await
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let generated: Vec<Value> = ispcert::crd::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
    assert_eq!(rendered.len(), generated.len());
    for (mut r, g) in rendered.into_iter().zip(generated) {
        let meta = r["metadata"].as_object_mut().unwrap();
        assert_eq!(meta.remove("annotations"), Some(json!({"helm.sh/resource-policy": "keep"})));
        let labels = meta.remove("labels").unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "ispcert");
        // Helm's YAML round trip writes `minimum: 0.0` as `minimum: 0`: the same number.
        assert_eq!(numbers_as_floats(r), numbers_as_floats(g), "the chart renders the generated CRD");
    }
}

fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_floats(v))).collect()),
        other => other,
    }
}

#[tokio::test]
async fn chart_defaults_render_a_hardened_cluster_wide_operator() {
    lint(&json!({})).await;
    let objects = template("ispcert", "ispcert-system", &json!({})).await;
    assert_eq!(
        kinds(&objects),
        BTreeMap::from([
            ("ClusterRole".to_string(), 1),
            ("ClusterRoleBinding".to_string(), 1),
            ("CustomResourceDefinition".to_string(), 3),
            ("Deployment".to_string(), 1),
            ("Role".to_string(), 1),
            ("RoleBinding".to_string(), 1),
            ("Service".to_string(), 1),
            ("ServiceAccount".to_string(), 1),
        ])
    );
    for o in objects
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition" && !o["kind"].as_str().unwrap().starts_with("Cluster"))
    {
        assert_eq!(o["metadata"]["namespace"], "ispcert-system", "namespaced objects name their namespace: {o:#}");
    }
    let mut want = expand("*", CLUSTER);
    want.extend(expand("*", WATCHED));
    want.extend(expand("ispcert-system", OPERATOR));
    assert_grants(grants(&objects, "ispcert-system", "ispcert"), want);

    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ispcert");
    assert!(pod.get("topologySpreadConstraints").is_none(), "nothing to spread with one replica");
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let c = container(&objects);
    assert_eq!(c["image"], "ghcr.io/ispcert/ispcert:0.1.0", "the tag defaults to the appVersion");
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "http-metrics"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "http-metrics"}));
    assert_eq!(c["ports"], json!([{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}]));
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        c["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])
    );
    assert_eq!(
        args_of(&objects),
        [
            "controller",
            "--log-level=info",
            "--log-format=json",
            "--metrics-addr=0.0.0.0:8080",
            "--leader-elect=true",
            "--lease-duration=30s"
        ]
    );
    let service = one(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["name"], "http-metrics");
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);

    // The switches around the CRDs and the image.
    let no_keep = template("ispcert", "ispcert-system", &json!({"crds": {"keep": false}})).await;
    let crd = no_keep.iter().find(|o| o["kind"] == "CustomResourceDefinition").unwrap();
    assert!(crd["metadata"].get("annotations").is_none(), "{:#}", crd["metadata"]);
    let no_crds = template("ispcert", "ispcert-system", &json!({"crds": {"enabled": false}})).await;
    assert!(!kinds(&no_crds).contains_key("CustomResourceDefinition"));
    let digest = format!("sha256:{}", "ab".repeat(32));
    let pinned = template("ispcert", "ispcert-system", &json!({"image": {"tag": "9.9.9", "digest": digest}})).await;
    assert_eq!(container(&pinned)["image"], format!("ghcr.io/ispcert/ispcert@{digest}"));
}

#[tokio::test]
async fn chart_with_watch_namespaces_grants_roles_only_there() {
    let values = namespaced("team-a", "team-b");
    lint(&values).await;
    let objects = template("ispcert", "ispcert-system", &values).await;
    let mut want = expand("*", CLUSTER);
    want.extend(expand("team-a", WATCHED));
    want.extend(expand("team-b", WATCHED));
    want.extend(expand("default", CLUSTER_EVENTS));
    want.extend(expand("ispcert-system", OPERATOR));
    assert_grants(grants(&objects, "ispcert-system", "ispcert"), want);
    assert!(args_of(&objects).contains(&"--namespace=team-a,team-b".to_string()), "{:?}", args_of(&objects));

    // A watched "default" needs no Role of its own for events; the operator's namespace may be
    // watched too.
    let values = json!({"watchNamespaces": ["default", "ispcert-system"], "clusterIssuerSelector": "team=a"});
    let objects = template("ispcert", "ispcert-system", &values).await;
    let mut want = expand("*", CLUSTER);
    want.extend(expand("default", WATCHED));
    want.extend(expand("ispcert-system", WATCHED));
    want.extend(expand("ispcert-system", OPERATOR));
    assert_grants(grants(&objects, "ispcert-system", "ispcert"), want);
    assert!(args_of(&objects).contains(&"--cluster-issuer-selector=team=a".to_string()));
}

/// The metric names the operator exports; the alerts may use only these.
const METRICS: &[&str] = &[
    "ispcert_certificate_ready_status",
    "ispcert_certificate_expiration_timestamp_seconds",
    "ispcert_certificate_renewal_timestamp_seconds",
    "ispcert_certificate_subscription_end_timestamp_seconds",
    "ispcert_issuer_ready_status",
    "ispcert_reconciles_total",
    "ispcert_reconcile_errors_total",
    "ispcert_billing_requests_total",
    "ispcert_billing_request_duration_seconds",
    "ispcert_orders_total",
    "ispcert_reissues_total",
    "ispcert_prolongs_total",
    "ispcert_order_budget_exhausted",
    "ispcert_leader",
];

fn alerts(objects: &[Value]) -> BTreeMap<String, Value> {
    let groups = one(objects, "PrometheusRule")["spec"]["groups"].as_array().unwrap().clone();
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r))
        .collect()
}

#[tokio::test]
async fn chart_for_ha_spreads_replicas_and_monitors_them() {
    lint(&ha()).await;
    let objects = template("ispcert", "ispcert-system", &ha()).await;
    for kind in ["PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "NetworkPolicy"] {
        one(&objects, kind);
    }
    let deployment = one(&objects, "Deployment");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"];
    assert_eq!(spread[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread[0]["labelSelector"]["matchLabels"], *selector);
    assert!(
        deployment["spec"]["template"]["metadata"].get("annotations").is_none(),
        "a ServiceMonitor scrapes: no prometheus.io annotations"
    );

    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"], json!({"selector": {"matchLabels": selector}, "minAvailable": 1}));
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], *selector);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!(["ispcert-system"]));

    let policy = one(&objects, "NetworkPolicy");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], *selector);
    assert_eq!(policy["spec"]["ingress"], json!([{"ports": [{"port": "http-metrics", "protocol": "TCP"}]}]));
    let egress_ports: Vec<Value> =
        policy["spec"]["egress"].as_array().unwrap().iter().map(|r| r["ports"].clone()).collect();
    assert_eq!(
        egress_ports,
        [
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]),
            json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]),
            json!([{"port": 443, "protocol": "TCP"}]),
        ]
    );

    let rules = alerts(&objects);
    assert_eq!(
        rules.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "IspcertBillingErrors",
            "IspcertCertificateExpiringSoon",
            "IspcertCertificateNotReady",
            "IspcertOrderBudgetReached",
            "IspcertSubscriptionEnding"
        ]
    );
    let metric_names: BTreeSet<&str> = METRICS.iter().copied().collect();
    for (name, rule) in &rules {
        let expr = rule["expr"].as_str().unwrap();
        let used: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("ispcert_"))
            .collect();
        assert!(
            !used.is_empty() && used.iter().all(|m| metric_names.contains(m)),
            "{name} uses unknown metrics: {expr}"
        );
        assert!(rule["labels"]["severity"].is_string() && rule["for"].is_string(), "{rule:#}");
    }
    assert!(rules["IspcertCertificateExpiringSoon"]["expr"].as_str().unwrap().ends_with("< 1209600"));
    assert!(rules["IspcertCertificateNotReady"]["expr"].as_str().unwrap().contains(r#"condition!="True""#));

    // Thresholds come from the values; an alert can be switched off.
    let mut tuned = ha();
    tuned["prometheus"]["prometheusRule"]["alerts"] = json!({
        "certificateExpiringSoon": {"days": 7, "for": "2h"},
        "billingErrors": {"threshold": 5, "window": "30m"},
        "subscriptionEnding": {"enabled": false},
    });
    let rules = alerts(&template("ispcert", "ispcert-system", &tuned).await);
    let soon = &rules["IspcertCertificateExpiringSoon"];
    assert!(soon["expr"].as_str().unwrap().ends_with("< 604800") && soon["for"] == "2h", "{soon:#}");
    let billing = rules["IspcertBillingErrors"]["expr"].as_str().unwrap();
    assert!(billing.contains("[30m]") && billing.ends_with("> 5"), "{billing}");
    assert!(!rules.contains_key("IspcertSubscriptionEnding"));
}

/// Prometheus's own checks of rule files (`hack/go-tool promrules`, what `promtool check rules`
/// runs): YAML shape, PromQL, durations, labels and annotation templates.
async fn check_rules(rules: &Value) -> Out {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), serde_yaml::to_string(rules).unwrap()).unwrap();
    let script = ispcert_tests::repo_root().join("hack/go-tool");
    run(&script, &["promrules".to_string(), file.path().display().to_string()], None).await
}

#[tokio::test]
async fn alerts_pass_prometheus_rule_checks() {
    let mut tuned = ha();
    tuned["prometheus"]["prometheusRule"]["alerts"]["billingErrors"] = json!({"threshold": 2.5, "window": "1h"});
    for values in [ha(), tuned] {
        let objects = template("ispcert", "ispcert-system", &values).await;
        let out = check_rules(&one(&objects, "PrometheusRule")["spec"]).await;
        assert!(out.ok, "Prometheus refuses the chart's rules:\n{}{}", out.stdout, out.stderr);
    }
    // The check can fail: a broken expression and a broken template are refused.
    let mut broken = ha();
    broken["prometheus"]["prometheusRule"]["additionalRules"] = json!([
        {"alert": "Broken", "expr": "sum(ispcert_leader", "for": "5m"},
        {"alert": "BadTemplate", "expr": "ispcert_leader == 0", "annotations": {"summary": "{{ $labels.x }"}},
    ]);
    let objects = template("ispcert", "ispcert-system", &broken).await;
    let out = check_rules(&one(&objects, "PrometheusRule")["spec"]).await;
    assert!(!out.ok && out.stdout.contains("\"Broken\": could not parse expression"), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("\"BadTemplate\": annotation \"summary\""), "{}", out.stdout);
}

#[tokio::test]
async fn values_schema_refuses_typos_and_wrong_types() {
    for (values, complaint) in [
        (json!({"replicaCont": 2}), "'replicaCont' not allowed"),
        (json!({"prometheus": {"servicemonitor": {"enable": true}}}), "'enable' not allowed"),
        (json!({"global": {"leaderElection": {"namespace": "kube-system"}}}), "'namespace' not allowed"),
        (json!({"securityContext": {"runAsNonroot": true}}), "'runAsNonroot' not allowed"),
        (json!({"resources": {"request": {"cpu": "1"}}}), "'request' not allowed"),
        (json!({"image": {"tag": 1}}), "want string"),
        (json!({"replicaCount": "3"}), "want integer"),
        (json!({"watchNamespaces": "team-a"}), "want array"),
        (json!({"watchNamespaces": ["Team_A"]}), "does not match pattern"),
        (json!({"global": {"logFormat": "yaml"}}), "value must be one of"),
        (json!({"podDisruptionBudget": {"enabled": true, "minAvailable": 1, "maxUnavailable": 1}}), "'not' failed"),
        (
            json!({"prometheus": {"prometheusRule": {"alerts": {"certificateExpiringSoon": {"days": "14"}}}}}),
            "want integer",
        ),
    ] {
        let err = template_text("ispcert", "ispcert-system", &values)
            .await
            .expect_err(&format!("the schema refuses {values}"));
        assert!(
            err.contains("values don't meet the specifications of the schema") && err.contains(complaint),
            "{values}: {err}"
        );
    }

    // Every object of the schema that lists its properties refuses others; the only open ones are
    // maps of strings and Kubernetes objects the API server checks.
    let text =
        std::fs::read_to_string(ispcert_tests::repo_root().join("deploy/helm/ispcert/values.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let mut open = BTreeSet::new();
    walk_schema(&schema, "", &mut open);
    assert_eq!(
        open,
        BTreeSet::from([
            "/$defs/kubernetesObject".to_string(),
            "/$defs/stringMap".to_string(),
            "/properties/resources/properties/limits".to_string(),
            "/properties/resources/properties/requests".to_string(),
        ]),
        "schema objects that accept any key"
    );
}

/// Collects the paths of object schemas that accept keys they do not list.
fn walk_schema(node: &Value, path: &str, open: &mut BTreeSet<String>) {
    let Some(obj) = node.as_object() else { return };
    if obj.get("type") == Some(&json!("object")) && obj.get("additionalProperties") != Some(&json!(false)) {
        open.insert(path.to_string());
    }
    for (key, value) in obj {
        match key.as_str() {
            "properties" | "$defs" => {
                for (name, sub) in value.as_object().unwrap() {
                    walk_schema(sub, &format!("{path}/{key}/{name}"), open);
                }
            }
            "items" | "not" | "additionalProperties" => walk_schema(value, &format!("{path}/{key}"), open),
            "oneOf" | "anyOf" | "allOf" => {
                for (i, sub) in value.as_array().unwrap().iter().enumerate() {
                    walk_schema(sub, &format!("{path}/{key}/{i}"), open);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn static_manifests_are_the_rendered_chart() {
    let root = ispcert_tests::repo_root();
    let committed = std::fs::read_to_string(root.join("deploy/manifests/ispcert.yaml")).unwrap();
    let rendered = template_text("ispcert", "ispcert-system", &json!({})).await.unwrap();
    let head = committed.strip_suffix(rendered.as_str()).unwrap_or_else(|| {
        panic!("deploy/manifests/ispcert.yaml is not the chart rendered with its defaults: run hack/chart-sync and commit the result")
    });
    assert_eq!(
        documents(head),
        [json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ispcert-system", "labels": {
            "app.kubernetes.io/name": "ispcert", "pod-security.kubernetes.io/enforce": "restricted"}}})],
        "before the chart, the manifests hold only the Namespace"
    );

    // The kustomize base is the same objects.
    let kubeconfig = ispcert_tests::control_plane().await.unwrap().kubeconfig_path().to_path_buf();
    let built = kubectl(&kubeconfig, &["kustomize", &root.join("deploy/manifests").display().to_string()], None)
        .await
        .expect_ok("kubectl kustomize deploy/manifests");
    let ids = |objects: Vec<Value>| -> BTreeSet<String> {
        objects
            .iter()
            .map(|o| format!("{} {} {}", o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]))
            .collect()
    };
    assert_eq!(ids(documents(&built)), ids(documents(&committed)));
}

// ----------------------------------------------------------------------------------------------
// On the real API server

/// `kubectl apply --server-side --dry-run=server --validate=strict` of a YAML text.
async fn dry_run(kubeconfig: &Path, yaml: &str) -> Out {
    kubectl(
        kubeconfig,
        &["apply", "--server-side", "--dry-run=server", "--validate=strict", "--field-manager=chart-test", "-f", "-"],
        Some(yaml),
    )
    .await
}

#[tokio::test]
async fn rendered_objects_pass_a_strict_server_side_dry_run() {
    let cp = ispcert_tests::control_plane().await.unwrap();
    cp.install_crds(&monitoring_crds().await).await.unwrap();
    let kubeconfig = cp.kubeconfig_path();
    let ns = cp.create_namespace("chart-dry").await.unwrap();
    let a = cp.create_namespace("chart-dry-a").await.unwrap();
    let b = cp.create_namespace("chart-dry-b").await.unwrap();
    for (name, values) in [("defaults", json!({})), ("namespaced", namespaced(&a, &b)), ("ha", ha())] {
        let yaml = template_text(&ns, &ns, &values).await.unwrap();
        let out = dry_run(kubeconfig, &yaml).await.expect_ok(&format!("the dry run of the {name} value set"));
        assert_eq!(
            out.lines().filter(|l| l.ends_with("serverside-applied (server dry run)")).count(),
            documents(&yaml).len(),
            "every object of {name} is accepted: {out}"
        );
    }

    // The static manifests, as kustomize builds them, into their own namespace.
    let _ = kubectl(kubeconfig, &["create", "namespace", "ispcert-system"], None).await;
    let manifests = ispcert_tests::repo_root().join("deploy/manifests");
    let out = kubectl(
        kubeconfig,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=chart-test",
            "-k",
            &manifests.display().to_string(),
        ],
        None,
    )
    .await
    .expect_ok("the dry run of deploy/manifests");
    assert!(out.contains("deployment.apps/ispcert serverside-applied (server dry run)"), "{out}");

    // The dry run is strict: a field the API does not know is refused.
    let bad =
        template_text(&ns, &ns, &json!({"extraEnv": [{"name": "X", "valueFrom": {"secretKeyRef": {"nam": "x"}}}]}))
            .await
            .unwrap();
    let out = dry_run(kubeconfig, &bad).await;
    assert!(!out.ok && out.stderr.contains("secretKeyRef.nam: field not declared in schema"), "{}", out.stderr);
}

/// Where kubeconform finds the schemas this test writes: one file per group, version and kind.
const SCHEMA_LOCATION: &str = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json";

/// The JSON schemas of the kinds `wanted` (group, version, kind) from the API server's OpenAPI v2
/// document, in the layout of [`SCHEMA_LOCATION`] under `dir`, each self-contained (the
/// definitions it refers to inlined). They are made strict the way kubernetes-json-schema's
/// `-strict` schemas are: an object that lists its properties refuses others, unless the API
/// preserves unknown fields there. Int-or-string and quantity values take numbers too, as the API
/// server does. Returns the kinds written.
fn write_schemas(
    openapi: &Value,
    dir: &Path,
    wanted: &BTreeSet<(String, String, String)>,
) -> BTreeSet<(String, String, String)> {
    let definitions = openapi["definitions"].as_object().expect("an OpenAPI v2 document");
    let mut written = BTreeSet::new();
    for definition in definitions.values() {
        let Some(gvks) = definition.get("x-kubernetes-group-version-kind").and_then(Value::as_array) else { continue };
        for gvk in gvks {
            let key = (
                gvk["group"].as_str().unwrap().to_string(),
                gvk["version"].as_str().unwrap().to_string(),
                gvk["kind"].as_str().unwrap().to_string(),
            );
            if !wanted.contains(&key) {
                continue;
            }
            let mut referenced = serde_json::Map::new();
            collect_refs(definition, definitions, &mut referenced);
            for schema in referenced.values_mut() {
                make_strict(schema);
            }
            let mut schema = definition.clone();
            make_strict(&mut schema);
            schema["$schema"] = json!("http://json-schema.org/draft-04/schema#");
            schema["definitions"] = Value::Object(referenced);
            let group_dir = if key.0.is_empty() { key.1.clone() } else { key.0.clone() };
            let path = dir.join(group_dir).join(format!("{}_{}.json", key.2.to_lowercase(), key.1));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_vec(&schema).unwrap()).unwrap();
            written.insert(key);
        }
    }
    written
}

/// Copies every definition `node` refers to, transitively, into `into`.
fn collect_refs(node: &Value, definitions: &serde_json::Map<String, Value>, into: &mut serde_json::Map<String, Value>) {
    match node {
        Value::Object(obj) => {
            if let Some(name) = obj.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/definitions/"))
                && !into.contains_key(name)
            {
                let mut target = definitions[name].clone();
                if name.ends_with(".apimachinery.pkg.api.resource.Quantity") {
                    target = json!({"type": ["string", "number"]});
                }
                into.insert(name.to_string(), target.clone());
                collect_refs(&target, definitions, into);
            }
            obj.values().for_each(|v| collect_refs(v, definitions, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, definitions, into)),
        _ => {}
    }
}

fn make_strict(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else { return };
    let int_or_string = obj.get("format") == Some(&json!("int-or-string"))
        || obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if int_or_string {
        obj.remove("format");
        obj.insert("type".into(), json!(["integer", "string"]));
    }
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if let Some(Value::Object(properties)) = obj.get_mut("properties") {
        properties.values_mut().for_each(make_strict);
        if !preserves && !obj.contains_key("additionalProperties") {
            obj.insert("additionalProperties".into(), json!(false));
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = obj.get_mut(key) {
            match sub {
                Value::Array(items) => items.iter_mut().for_each(make_strict),
                other => make_strict(other),
            }
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            items.iter_mut().for_each(make_strict);
        }
    }
}

/// The API server's OpenAPI v2 document once it describes every kind of `wanted` (CRDs are
/// published a moment after they are served).
async fn openapi_with(kubeconfig: &Path, wanted: &BTreeSet<(String, String, String)>) -> Value {
    let start = Instant::now();
    loop {
        let text = kubectl(kubeconfig, &["get", "--raw", "/openapi/v2"], None).await.expect_ok("GET /openapi/v2");
        let doc: Value = serde_json::from_str(&text).unwrap();
        let described: BTreeSet<(String, String, String)> = doc["definitions"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|d| d.get("x-kubernetes-group-version-kind").and_then(Value::as_array))
            .flatten()
            .map(|g| {
                (
                    g["group"].as_str().unwrap().into(),
                    g["version"].as_str().unwrap().into(),
                    g["kind"].as_str().unwrap().into(),
                )
            })
            .collect();
        let missing: Vec<_> = wanted.difference(&described).collect();
        if missing.is_empty() {
            return doc;
        }
        assert!(start.elapsed() < WAIT, "the OpenAPI document never described {missing:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn gvk(object: &Value) -> (String, String, String) {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    (group.to_string(), version.to_string(), object["kind"].as_str().unwrap().to_string())
}

/// kubeconform's verdict on some files, with the schemas of `dir`.
async fn kubeconform(dir: &Path, files: &[PathBuf]) -> (bool, Value) {
    let script = ispcert_tests::repo_root().join("hack/go-tool");
    let mut args = strings(&["kubeconform", "-strict", "-summary", "-output", "json", "-kubernetes-version", "1.36.3"]);
    args.push("-schema-location".into());
    args.push(format!("{}/{SCHEMA_LOCATION}", dir.display()));
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = run(&script, &args, None).await;
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("kubeconform's report ({e}): {}{}", out.stdout, out.stderr));
    (out.ok, report)
}

#[tokio::test]
async fn rendered_objects_pass_kubeconform_with_the_servers_schemas() {
    let cp = ispcert_tests::control_plane().await.unwrap();
    cp.install_crds(&monitoring_crds().await).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut files = vec![];
    let mut objects = vec![];
    for (name, values) in [("defaults", json!({})), ("namespaced", namespaced("team-a", "team-b")), ("ha", ha())] {
        let yaml = template_text("ispcert", "ispcert-system", &values).await.unwrap();
        objects.extend(documents(&yaml));
        let file = work.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        files.push(file);
    }
    // The examples too: the CRDs' own schemas, as the API server publishes them.
    for entry in std::fs::read_dir(ispcert_tests::repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        objects.extend(documents(&std::fs::read_to_string(&path).unwrap()));
        files.push(path);
    }
    let mut wanted: BTreeSet<_> = objects.iter().map(gvk).collect();
    for (group, kind) in [("apps", "Deployment"), ("", "Service"), ("ispcert.dev", "IspCertificate")] {
        wanted.insert((
            group.into(),
            if group == "apps" || group.is_empty() { "v1" } else { "v1alpha1" }.into(),
            kind.into(),
        ));
    }
    let openapi = openapi_with(cp.kubeconfig_path(), &wanted).await;
    let schemas = work.path().join("schemas");
    assert_eq!(write_schemas(&openapi, &schemas, &wanted), wanted);

    let (ok, report) = kubeconform(&schemas, &files).await;
    assert!(ok, "kubeconform refuses the chart: {report:#}");
    assert_eq!(
        report["summary"],
        json!({"valid": objects.len(), "invalid": 0, "errors": 0, "skipped": 0}),
        "every object is checked against a schema: {report:#}"
    );

    // The schemas are strict: unknown fields and wrong types are refused.
    let bad = work.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i, imagePullPolicyy: Always}]
---
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: [{port: eighty}]
---
apiVersion: ispcert.dev/v1alpha1
kind: IspCertificate
metadata: {name: x}
spec: {issuerRef: {name: billing}, product: alphassl, commonName: a.example.com, secretName: a, approverMailbox: admin, colour: blue}
"#,
    )
    .unwrap();
    let (ok, report) = kubeconform(&schemas, &[bad]).await;
    assert!(!ok, "{report:#}");
    assert_eq!(report["summary"]["invalid"], 3, "{report:#}");
}

// ----------------------------------------------------------------------------------------------
// Installed, and the operator with the chart's RBAC

/// A kubeconfig for the chart's ServiceAccount: the control plane's server and CA, and a token
/// from the TokenRequest API.
async fn service_account_kubeconfig(admin: &Path, namespace: &str, name: &str, dir: &Path) -> PathBuf {
    let token = kubectl(admin, &["create", "token", name, "-n", namespace, "--duration=2h"], None)
        .await
        .expect_ok("kubectl create token");
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    config["users"] = json!([{"name": name, "user": {"token": token.trim()}}]);
    for context in config["contexts"].as_array_mut().unwrap() {
        context["context"]["user"] = json!(name);
    }
    let path = dir.join(format!("{namespace}-{name}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

/// `kubectl auth can-i` as the ServiceAccount.
async fn can_i(admin: &Path, sa: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    let who = format!("--as={sa}");
    all.push(&who);
    let out = kubectl(admin, &all, None).await;
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?}: {other} {}", out.stderr),
    }
}

/// The operator as a process with the chart's flags and environment, talking to the API server
/// with `kubeconfig` only; shorter intervals so that the test is quick.
struct Operator {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    async fn start(deployment: &Value, kubeconfig: &Path, namespace: &str, log: PathBuf) -> Operator {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let mut args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .filter(|a| !a.starts_with("--metrics-addr="))
            .collect();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        args.extend([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr=127.0.0.1:{port}"),
            "--poll-interval=500ms".into(),
            "--backoff-min=200ms".into(),
            "--backoff-max=2s".into(),
            "--billing-timeout=5s".into(),
            "--order-grace=8s".into(),
        ]);
        // The downward API's values, as the kubelet would fill them in.
        let mut command = std::process::Command::new(operator_binary());
        command.args(&args).env_remove("KUBECONFIG").env_remove("ISPCERT_LOG");
        for var in container["env"].as_array().unwrap() {
            let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => format!("{}-0", deployment["metadata"]["name"].as_str().unwrap()),
                Some("metadata.namespace") => namespace.to_string(),
                other => panic!("an environment variable the test cannot fill in: {other:?}"),
            };
            command.env(var["name"].as_str().unwrap(), value);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the operator starts");
        let mut operator = Operator { child, port, log };
        operator.wait_ready().await;
        operator
    }

    async fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port)).await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the operator exited ({status}):\n{}", self.log_text());
            }
            assert!(start.elapsed() < WAIT, "the operator never became ready:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines that say the API server refused the operator something.
    fn forbidden(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .map(str::to_string)
            .collect()
    }
}

/// Issues one certificate through a namespaced issuer: the happy path.
async fn issue_one(env: &Env, operator: &Operator) {
    env.ready_issuer().await;
    env.apply_certificate("www", cert_spec("alphassl", "www.example.com", "www-tls")).await.unwrap();
    let start = Instant::now();
    while !env
        .certificates()
        .get("www")
        .await
        .ok()
        .and_then(|c| c.status)
        .is_some_and(|s| is(&s.conditions, "Ready", "True"))
    {
        assert!(
            start.elapsed() < WAIT,
            "not Ready: {:#?}\noperator log:\n{}",
            env.certificates().get("www").await.ok(),
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    verify_tls_secret(&env.secrets().get("www-tls").await.unwrap(), &["www.example.com"]);
}

#[tokio::test]
async fn helm_install_creates_everything_and_the_operator_runs_with_its_rbac_alone() {
    // A control plane of its own: the chart installs CRDs, and the operator watches all namespaces.
    let cp = ispcert_testbed::ControlPlane::start(ispcert_testbed::Options {
        bin_script: Some(ispcert_tests::bin_script()),
        ..ispcert_testbed::Options::default()
    })
    .await
    .expect("a control plane without CRDs");
    cp.install_crds(&monitoring_crds().await).await.unwrap();
    let admin = cp.kubeconfig_path();
    let env = Env::on(&cp, "chart-install", Env::default_sim()).await;
    let work = tempfile::tempdir().unwrap();

    let mut values = ha();
    values["clusterIssuerSelector"] = json!(format!("ispcert.dev/test={}", env.ns));
    let file = values_file(&values);
    helm(&strings(&[
        "install",
        "ispcert",
        &chart_dir(),
        "--namespace",
        "ispcert-system",
        "--create-namespace",
        "--values",
        &file.path().display().to_string(),
        &format!("--kubeconfig={}", admin.display()),
    ]))
    .await
    .expect_ok("helm install");

    // Every object of the release exists.
    let manifest = helm(&strings(&[
        "get",
        "manifest",
        "ispcert",
        "-n",
        "ispcert-system",
        &format!("--kubeconfig={}", admin.display()),
    ]))
    .await
    .expect_ok("helm get manifest");
    let released = documents(&manifest);
    assert_eq!(
        kinds(&released).into_keys().collect::<Vec<_>>(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    let got = kubectl(admin, &["get", "-f", "-", "-o", "json"], Some(&manifest)).await.expect_ok("kubectl get -f");
    let got: Value = serde_json::from_str(&got).unwrap();
    let id = |o: &Value| format!("{} {} {}", o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]);
    let want: BTreeSet<String> = released.iter().map(id).collect();
    let have: BTreeSet<String> = got["items"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(have, want);

    // The operator with nothing but the ServiceAccount's token and the Deployment's flags.
    let sa = "system:serviceaccount:ispcert-system:ispcert";
    assert!(
        can_i(admin, sa, &["list", "secrets", "--all-namespaces"]).await,
        "cluster-wide, it watches Secrets everywhere"
    );
    assert!(!can_i(admin, sa, &["delete", "ispcertificates", "-n", &env.ns]).await);
    assert!(!can_i(admin, sa, &["get", "configmaps", "-n", "ispcert-system"]).await);
    let kubeconfig = service_account_kubeconfig(admin, "ispcert-system", "ispcert", work.path()).await;
    let operator =
        Operator::start(one(&released, "Deployment"), &kubeconfig, "ispcert-system", work.path().join("operator.log"))
            .await;
    issue_one(&env, &operator).await;
    assert_eq!(env.orders().await, 1, "exactly one order");
    let lease = kubectl(
        admin,
        &["get", "lease", "ispcert-leader", "-n", "ispcert-system", "-o", "jsonpath={.spec.holderIdentity}"],
        None,
    )
    .await
    .expect_ok("the Lease");
    assert_eq!(lease, "ispcert-0", "the operator leads with the Lease in its namespace");
    assert_eq!(operator.forbidden(), Vec::<String>::new(), "nothing was refused:\n{}", operator.log_text());
    drop(operator);

    // Uninstalling keeps the CRDs and so the certificates.
    helm(&strings(&["uninstall", "ispcert", "-n", "ispcert-system", &format!("--kubeconfig={}", admin.display())]))
        .await
        .expect_ok("helm uninstall");
    kubectl(
        admin,
        &["get", "crd", "ispcertificates.ispcert.dev", "clusterispissuers.ispcert.dev", "ispissuers.ispcert.dev"],
        None,
    )
    .await
    .expect_ok("the CRDs are kept");
    env.certificates().get("www").await.expect("the certificate outlives the release");
    let gone = kubectl(admin, &["get", "deployment", "ispcert", "-n", "ispcert-system"], None).await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{}", gone.stderr);
}

#[tokio::test]
async fn with_watch_namespaces_the_operator_sees_only_those() {
    let cp = ispcert_tests::control_plane().await.unwrap();
    let admin = cp.kubeconfig_path();
    let env = Env::without_operator("chart-watched", Env::default_sim()).await;
    let second = cp.create_namespace("chart-watched-b").await.unwrap();
    let operator_ns = cp.create_namespace("chart-operator").await.unwrap();
    let other = cp.create_namespace("chart-unwatched").await.unwrap();
    let work = tempfile::tempdir().unwrap();

    // The release namespace is unique, and so is the release name: its ClusterRole is cluster-wide.
    let values = json!({
        "crds": {"enabled": false},
        "watchNamespaces": [env.ns, second],
        "clusterIssuerSelector": format!("ispcert.dev/test={}", env.ns),
    });
    let file = values_file(&values);
    let kc = format!("--kubeconfig={}", admin.display());
    let release = operator_ns.clone();
    let values_path = file.path().display().to_string();
    helm(&strings(&["install", &release, &chart_dir(), "--namespace", &operator_ns, "--values", &values_path, &kc]))
        .await
        .expect_ok("helm install");
    let released = documents(
        &helm(&strings(&["get", "manifest", &release, "-n", &operator_ns, &kc])).await.expect_ok("helm get manifest"),
    );
    let sa_name = one(&released, "ServiceAccount")["metadata"]["name"].as_str().unwrap().to_string();
    let sa = format!("system:serviceaccount:{operator_ns}:{sa_name}");

    assert!(can_i(admin, &sa, &["get", "secrets", "-n", &env.ns]).await, "it reads Secrets in a watched namespace");
    assert!(can_i(admin, &sa, &["list", "secrets", "-n", &second]).await);
    assert!(!can_i(admin, &sa, &["get", "secrets", "-n", &other]).await, "no Secret of another namespace");
    // Which order each certificate claims is read everywhere (read-only); nothing else of theirs.
    assert!(can_i(admin, &sa, &["list", "ispcertificates", "-n", &other]).await);
    assert!(!can_i(admin, &sa, &["get", "ispcertificates", "-n", &other]).await);
    assert!(!can_i(admin, &sa, &["patch", "ispcertificates", "-n", &other]).await);
    assert!(!can_i(admin, &sa, &["list", "ispissuers", "-n", &other]).await);
    assert!(!can_i(admin, &sa, &["list", "secrets", "--all-namespaces"]).await);
    assert!(can_i(admin, &sa, &["get", "secrets", "-n", &operator_ns]).await, "ClusterIspIssuer credentials");
    assert!(!can_i(admin, &sa, &["list", "secrets", "-n", &operator_ns]).await, "only get in its own namespace");
    assert!(!can_i(admin, &sa, &["create", "leases.coordination.k8s.io", "-n", &env.ns]).await);

    let kubeconfig = service_account_kubeconfig(admin, &operator_ns, &sa_name, work.path()).await;
    let operator =
        Operator::start(one(&released, "Deployment"), &kubeconfig, &operator_ns, work.path().join("operator.log"))
            .await;
    issue_one(&env, &operator).await;

    // A ClusterIspIssuer with its credentials in the operator's namespace serves the second
    // watched namespace; its events go to "default".
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cluster-credentials", "namespace": operator_ns},
                        "stringData": {"email": EMAIL, "password": PASSWORD}});
    let issuer_name = format!("chart-{}", env.ns);
    let issuer = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "ClusterIspIssuer",
                        "metadata": {"name": issuer_name, "labels": {"ispcert.dev/test": env.ns}},
                        "spec": env.issuer_spec("cluster-credentials")});
    let certificate = json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate",
                             "metadata": {"name": "api", "namespace": second},
                             "spec": with(cert_spec("alphassl", "api.example.com", "api-tls"),
                                          json!({"issuerRef": {"name": issuer_name, "kind": "ClusterIspIssuer"}}))});
    for object in [&secret, &issuer, &certificate] {
        kubectl(admin, &["apply", "--server-side", "-f", "-"], Some(&object.to_string()))
            .await
            .expect_ok("kubectl apply");
    }
    let start = Instant::now();
    loop {
        let ready = kubectl(
            admin,
            &[
                "get",
                "ispcertificate",
                "api",
                "-n",
                &second,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ],
            None,
        )
        .await
        .expect_ok("kubectl get");
        if ready == "True" {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the certificate of the ClusterIspIssuer is not Ready\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events =
        kubectl(admin, &["get", "events.events.k8s.io", "-n", "default", "-o", "json"], None).await.expect_ok("events");
    let events: Value = serde_json::from_str(&events).unwrap();
    assert!(
        events["items"].as_array().unwrap().iter().any(|e| e["regarding"]["name"] == issuer_name.as_str()),
        "the ClusterIspIssuer's events are recorded in default"
    );

    // Outside the list: an issuer and a certificate that nobody serves, and no order.
    let outside = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "billing-credentials", "namespace": other},
               "stringData": {"email": EMAIL, "password": PASSWORD}}),
        json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspIssuer", "metadata": {"name": "billing", "namespace": other},
               "spec": env.issuer_spec("billing-credentials")}),
        json!({"apiVersion": "ispcert.dev/v1alpha1", "kind": "IspCertificate", "metadata": {"name": "www", "namespace": other},
               "spec": cert_spec("alphassl", "outside.example.com", "www-tls")}),
    ];
    for object in &outside {
        kubectl(admin, &["apply", "--server-side", "-f", "-"], Some(&object.to_string()))
            .await
            .expect_ok("kubectl apply");
    }
    // Many poll intervals and backoffs of the operator.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for kind in ["ispissuer/billing", "ispcertificate/www"] {
        let status = kubectl(admin, &["get", kind, "-n", &other, "-o", "jsonpath={.status}"], None)
            .await
            .expect_ok("kubectl get");
        assert_eq!(status, "", "{kind} outside the watched namespaces was left alone");
    }
    let secrets =
        kubectl(admin, &["get", "secrets", "-n", &other, "-o", "name"], None).await.expect_ok("kubectl get secrets");
    assert_eq!(secrets.trim(), "secret/billing-credentials", "nothing was written outside the watched namespaces");
    assert_eq!(env.orders().await, 2, "one order for each certificate in a watched namespace, none for the other");
    assert_eq!(operator.forbidden(), Vec::<String>::new(), "nothing was refused:\n{}", operator.log_text());
    drop(operator);
    kubectl(admin, &["delete", "clusterispissuer", &issuer_name], None).await.expect_ok("kubectl delete");
}
