//! The test bed against a real kube-apiserver and etcd: what tests of the operator will rely on
//! (CRDs, the status subresource, server-side apply), and how it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ispcert_testbed::{self as testbed, ControlPlane, Options, TestbedError};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

/// The repository's script that builds the Kubernetes binaries and prints where they are.
fn bin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/k8s-binaries")
}

async fn control_plane() -> &'static ControlPlane {
    testbed::shared(|| Options { bin_script: Some(bin_script()), ..Options::default() })
        .await
        .expect("the shared control plane starts")
}

fn widget_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testbed-crd")
}

fn widgets(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "testbed.ispcert.dev".into(),
        version: "v1alpha1".into(),
        api_version: "testbed.ispcert.dev/v1alpha1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client, namespace, &resource)
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn status_subresource_keeps_spec_and_status_apart() {
    let cp = control_plane().await;
    let installed = cp.install_crds(&widget_crd_dir()).await.expect("the widget CRD installs");
    assert_eq!(installed, ["widgets.testbed.ispcert.dev"]);
    let ns = cp.create_namespace("widgets").await.unwrap();
    let api = widgets(cp.client().await.unwrap(), &ns);

    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testbed.ispcert.dev/v1alpha1",
        "kind": "Widget",
        "metadata": { "name": "w" },
        "spec": { "size": 1, "colour": "blue", "notInSchema": true },
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &widget).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["spec"], json!({ "size": 1, "colour": "blue" }), "unknown fields are pruned");

    // Through /status, only status changes: the spec part of the patch is ignored.
    let status_patch = json!({ "spec": { "size": 99 }, "status": { "phase": "Ready", "observedGeneration": 1 } });
    let after_status = api.patch_status("w", &PatchParams::default(), &Patch::Merge(&status_patch)).await.unwrap();
    assert_eq!(after_status.data["status"], json!({ "phase": "Ready", "observedGeneration": 1 }));
    assert_eq!(after_status.data["spec"], json!({ "size": 1, "colour": "blue" }));
    assert_eq!(after_status.metadata.generation, Some(1), "a status change does not bump the generation");

    // Through the main resource, only spec changes, and the generation moves.
    let spec_patch = json!({ "spec": { "size": 2 }, "status": { "phase": "Overwritten" } });
    let after_spec = api.patch("w", &PatchParams::default(), &Patch::Merge(&spec_patch)).await.unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2), "a spec change bumps the generation");
    assert_eq!(after_spec.data["spec"]["size"], 2);
    assert_eq!(after_spec.data["status"]["phase"], "Ready");

    let stored = api.get("w").await.unwrap();
    assert_eq!(stored.data["spec"], json!({ "size": 2, "colour": "blue" }));
    assert_eq!(stored.data["status"], json!({ "phase": "Ready", "observedGeneration": 1 }));

    // The schema is enforced: size has a minimum of 1.
    let invalid = json!({ "spec": { "size": 0 } });
    let status = api_error(api.patch("w", &PatchParams::default(), &Patch::Merge(&invalid)).await);
    assert_eq!(status.code, 422, "{status:?}");
}

fn managed_by<'a>(entries: &'a [ManagedFieldsEntry], manager: &str) -> Option<&'a ManagedFieldsEntry> {
    entries.iter().find(|e| e.manager.as_deref() == Some(manager))
}

fn owns(entry: &ManagedFieldsEntry, path: &[&str]) -> bool {
    let mut fields = entry.fields_v1.as_ref().map(|f| &f.0);
    for key in path {
        fields = fields.and_then(|f| f.get(*key));
    }
    fields.is_some()
}

#[tokio::test]
async fn secret_server_side_apply_tracks_field_owners() {
    let cp = control_plane().await;
    let ns = cp.create_namespace("ssa").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(cp.client().await.unwrap(), &ns);
    let secret = |owner: &str, username: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "credentials", "labels": { "owner": owner } },
            "type": "Opaque",
            // "alice" and "alice2", base64
            "data": { "username": if username == "alice" { "YWxpY2U=" } else { "YWxpY2Uy" } },
        })
    };

    let created = secrets
        .patch("credentials", &PatchParams::apply("ispcert-a"), &Patch::Apply(secret("a", "alice")))
        .await
        .unwrap();
    let read = secrets.get("credentials").await.unwrap();
    assert_eq!(read.data.as_ref().unwrap()["username"].0, b"alice");
    assert_eq!(read.metadata.uid, created.metadata.uid);
    let managed = read.metadata.managed_fields.clone().unwrap_or_default();
    let a = managed_by(&managed, "ispcert-a").expect("ispcert-a is a field manager");
    assert_eq!(a.operation.as_deref(), Some("Apply"));
    assert!(owns(a, &["f:data", "f:username"]) && owns(a, &["f:metadata", "f:labels", "f:owner"]), "{a:?}");

    // The same manager updates its own fields freely.
    let updated = secrets
        .patch("credentials", &PatchParams::apply("ispcert-a"), &Patch::Apply(secret("a", "alice2")))
        .await
        .unwrap();
    assert_eq!(updated.data.as_ref().unwrap()["username"].0, b"alice2");

    // Another manager setting the same field conflicts, and is told who owns it.
    let label_only = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "credentials", "labels": { "owner": "b" } },
    });
    let conflict =
        api_error(secrets.patch("credentials", &PatchParams::apply("ispcert-b"), &Patch::Apply(&label_only)).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"), "{conflict:?}");
    assert!(conflict.message.contains("ispcert-a"), "{}", conflict.message);

    // Forcing takes the field over; the first manager keeps what it still alone sets.
    let forced = secrets
        .patch("credentials", &PatchParams::apply("ispcert-b").force(), &Patch::Apply(&label_only))
        .await
        .unwrap();
    assert_eq!(forced.metadata.labels.as_ref().unwrap()["owner"], "b");
    assert_eq!(forced.data.as_ref().unwrap()["username"].0, b"alice2");
    let managed = forced.metadata.managed_fields.unwrap_or_default();
    let a = managed_by(&managed, "ispcert-a").expect("ispcert-a still manages data");
    let b = managed_by(&managed, "ispcert-b").expect("ispcert-b manages the label");
    assert!(owns(b, &["f:metadata", "f:labels", "f:owner"]), "{b:?}");
    assert!(!owns(a, &["f:metadata", "f:labels", "f:owner"]), "{a:?}");
    assert!(owns(a, &["f:data", "f:username"]), "{a:?}");
}

#[tokio::test]
async fn every_namespace_is_new_and_labelled() {
    let cp = control_plane().await;
    let first = cp.create_namespace("same").await.unwrap();
    let second = cp.create_namespace("same").await.unwrap();
    assert_ne!(first, second);
    assert!(first.starts_with("same-") && second.starts_with("same-"), "{first} {second}");
    let namespaces: Api<Namespace> = Api::all(cp.client().await.unwrap());
    for name in [first, second] {
        let labels = namespaces.get(&name).await.unwrap().metadata.labels.unwrap_or_default();
        assert!(labels.contains_key(testbed::NAMESPACE_LABEL), "{labels:?}");
    }
}

#[tokio::test]
async fn kubeconfig_file_reaches_the_pinned_api_server_as_admin() {
    let cp = control_plane().await;
    let kubeconfig = kube::config::Kubeconfig::read_from(cp.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    assert_eq!(config.cluster_url.to_string().trim_end_matches('/'), cp.server_url());
    let client = kube::Client::try_from(config).unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().git_version, "v1.36.3");
    // Admin: may do anything, cluster-wide.
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "verb": "delete", "resource": "customresourcedefinitions", "group": "apiextensions.k8s.io" } },
    });
    let request = http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).unwrap())
        .unwrap();
    let answer: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
}

// ---- failure paths: each starts (or fails to start) a control plane of its own ----

/// Processes whose command line mentions `marker` (a work dir): what a failed start left running.
fn processes_mentioning(marker: &Path) -> Vec<String> {
    let marker = marker.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&marker))
        .collect()
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A bin dir holding the real binaries (linked) except where a test replaces one.
async fn bin_dir_with_real_binaries() -> tempfile::TempDir {
    let real = testbed::bin_dir(None, Some(&bin_script())).await.expect("the real binaries are available");
    let dir = tempfile::tempdir().unwrap();
    for name in ["etcd", "kube-apiserver"] {
        std::os::unix::fs::symlink(real.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn options(bin_dir: &Path, work_dir: &Path, start_timeout: Duration) -> Options {
    Options {
        bin_dir: Some(bin_dir.to_path_buf()),
        work_dir: Some(work_dir.to_path_buf()),
        start_timeout,
        ..Options::default()
    }
}

#[tokio::test]
async fn a_missing_bin_dir_is_named() {
    let missing = Path::new("/nonexistent/ispcert-k8s-bin");
    let err = ControlPlane::start(Options { bin_dir: Some(missing.into()), ..Options::default() }).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::MissingBinary { name: "etcd", .. }), "{message}");
    assert!(message.contains("/nonexistent/ispcert-k8s-bin/etcd"), "{message}");
    assert!(message.contains("hack/k8s-binaries"), "says how to get it: {message}");
}

#[tokio::test]
async fn a_crashing_etcd_is_reported_with_its_last_log_lines() {
    let bin = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    write_script(
        &bin.path().join("etcd"),
        "for i in $(seq 1 30); do echo \"etcd log line $i\"; done\necho 'fatal: simulated crash: cannot open database' >&2\nexit 1\n",
    );
    write_script(&bin.path().join("kube-apiserver"), "exit 1\n");
    let err = ControlPlane::start(options(bin.path(), work.path(), Duration::from_secs(30))).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::ComponentExited { component: "etcd", .. }), "{message}");
    assert!(message.contains("exit status: 1"), "{message}");
    assert!(message.contains("simulated crash") && message.contains("etcd log line 30"), "{message}");
    assert!(!message.contains("etcd log line 11\n"), "only the last lines: {message}");
    assert!(processes_mentioning(work.path()).is_empty());
}

#[tokio::test]
async fn a_crashing_api_server_stops_its_etcd_and_shows_its_log() {
    let bin = bin_dir_with_real_binaries().await;
    let work = tempfile::tempdir().unwrap();
    std::fs::remove_file(bin.path().join("kube-apiserver")).unwrap();
    write_script(
        &bin.path().join("kube-apiserver"),
        "echo 'E0101 run.go:72] \"command failed\" err=\"simulated: unable to load server certificate\"' >&2\nexit 1\n",
    );
    let err = ControlPlane::start(options(bin.path(), work.path(), Duration::from_secs(60))).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::ComponentExited { component: "kube-apiserver", .. }), "{message}");
    assert!(message.contains("unable to load server certificate"), "{message}");
    assert_eq!(processes_mentioning(work.path()), Vec::<String>::new(), "etcd was stopped");
    assert!(work.path().join("logs/etcd.log").exists(), "a given work dir keeps its logs");
}

#[tokio::test]
async fn an_api_server_that_never_gets_ready_times_out_and_is_killed() {
    let bin = bin_dir_with_real_binaries().await;
    let work = tempfile::tempdir().unwrap();
    std::fs::remove_file(bin.path().join("kube-apiserver")).unwrap();
    write_script(&bin.path().join("kube-apiserver"), "echo 'pretending to start'\nwhile :; do sleep 1; done\n");
    let err = ControlPlane::start(options(bin.path(), work.path(), Duration::from_secs(10))).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::Timeout { .. }), "{message}");
    assert!(message.contains("kube-apiserver /healthz") && message.contains("pretending to start"), "{message}");
    assert_eq!(processes_mentioning(work.path()), Vec::<String>::new(), "nothing is left running");
}

/// An etcd wrapper that, while `taken` lists a port, adds a client URL on that port (which the
/// test holds) the first `times` times it is run, and counts its runs in `runs`.
fn etcd_colliding(bin: &Path, real_etcd: &Path, held_port: u16, times: u32) -> PathBuf {
    let runs = bin.join("runs");
    let etcd = bin.join("etcd");
    std::fs::remove_file(&etcd).unwrap();
    write_script(
        &etcd,
        &format!(
            "echo run >> {runs}\nif [ $(wc -l < {runs}) -le {times} ]; then\n  exec {real} \"$@\" --listen-client-urls=http://127.0.0.1:{held_port}\nfi\nexec {real} \"$@\"\n",
            runs = runs.display(),
            real = real_etcd.display(),
        ),
    );
    runs
}

#[tokio::test]
async fn a_port_taken_at_start_is_retried_with_other_ports() {
    let bin = bin_dir_with_real_binaries().await;
    let work = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let real_etcd = std::fs::read_link(bin.path().join("etcd")).unwrap();
    let runs = etcd_colliding(bin.path(), &real_etcd, held.local_addr().unwrap().port(), 1);

    let cp = ControlPlane::start(options(bin.path(), work.path(), Duration::from_secs(90)))
        .await
        .expect("starts on the second try");
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 2);
    assert!(std::fs::read_to_string(work.path().join("logs/etcd.log")).unwrap().contains("address already in use"));
    let namespaces: Api<Namespace> = Api::all(cp.client().await.unwrap());
    assert!(namespaces.get_opt("default").await.unwrap().is_some());

    drop(cp);
    assert_eq!(processes_mentioning(work.path()), Vec::<String>::new(), "dropping stops both processes");
}

#[tokio::test]
async fn a_port_that_stays_taken_gives_a_clear_error() {
    let bin = bin_dir_with_real_binaries().await;
    let work = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let real_etcd = std::fs::read_link(bin.path().join("etcd")).unwrap();
    let runs = etcd_colliding(bin.path(), &real_etcd, port, u32::MAX);

    let err = ControlPlane::start(options(bin.path(), work.path(), Duration::from_secs(60))).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::PortInUse { component: "etcd", attempts: 3, .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("address already in use"), "{message}");
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 3);
    assert_eq!(processes_mentioning(work.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_crd_the_api_server_rejects_is_named_with_the_reason() {
    let cp = control_plane().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("broken.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata: {name: gadgets.testbed.ispcert.dev}\n\
         spec:\n  group: testbed.ispcert.dev\n  scope: Namespaced\n  names: {plural: gadgets, kind: Gadget}\n\
         \x20 versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: not-a-type}}}]\n",
    )
    .unwrap();
    let err = cp.install_crds(dir.path()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::Crd { .. }), "{message}");
    assert!(message.contains("broken.yaml") && message.contains("rejected"), "{message}");
    assert!(message.contains("not-a-type"), "the API server's reason is kept: {message}");
}

#[tokio::test]
async fn a_missing_crd_dir_fails_before_anything_starts() {
    let work = tempfile::tempdir().unwrap();
    let options = Options {
        work_dir: Some(work.path().to_path_buf()),
        crd_dirs: vec!["/nonexistent/ispcert-crds".into()],
        ..Options::default()
    };
    let message = ControlPlane::start(options).await.unwrap_err().to_string();
    assert!(message.contains("/nonexistent/ispcert-crds"), "{message}");
    assert!(!work.path().join("logs").exists(), "no process was started");
}
