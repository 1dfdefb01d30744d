//! Installing CustomResourceDefinitions and waiting until they can be used.
//!
//! A CRD that was created is not yet usable: the API server first checks its names (`Established`),
//! and only then starts serving it, which clients discover through the group's discovery document.
//! A test that creates an object before discovery lists the plural gets a 404, so both are awaited.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;

use super::TestbedError;
use super::error::log_tail;

/// Field manager of everything the test bed applies.
pub(crate) const FIELD_MANAGER: &str = "ispcert-testbed";

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Reads every CRD from the `*.yaml`/`*.yml` files of `dir` (sorted by name; a file may hold
/// several documents). Anything that is not a CustomResourceDefinition is an error, so that a
/// manifest put in the wrong directory is noticed rather than skipped.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<CrdFile>, TestbedError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| TestbedError::io(format!("reading CRD directory {}", dir.display()), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| TestbedError::io(format!("reading {}", file.display()), e))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let invalid = |reason: String| TestbedError::Crd { path: file.clone(), reason };
            let value = serde_yaml::Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("<none>");
            if kind != "CustomResourceDefinition" {
                return Err(invalid(format!("holds a {kind}, not a CustomResourceDefinition")));
            }
            let crd: CustomResourceDefinition = serde_yaml::from_value(value).map_err(|e| invalid(e.to_string()))?;
            if crd.metadata.name.is_none() {
                return Err(invalid("a CustomResourceDefinition without metadata.name".into()));
            }
            crds.push((file.clone(), crd));
        }
    }
    Ok(crds)
}

/// A CRD manifest and the file it came from.
pub(crate) type CrdFile = (PathBuf, CustomResourceDefinition);

/// Applies CRDs (server-side, so installing twice is harmless) and waits until each is
/// Established and its plural is listed by discovery for every served version. Returns their names.
pub(crate) async fn install(
    client: &kube::Client,
    crds: &[CrdFile],
    timeout: Duration,
    apiserver_log: &Path,
) -> Result<Vec<String>, TestbedError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for (path, crd) in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd)).await.map_err(|e| TestbedError::Crd {
            path: path.clone(),
            reason: format!("the API server rejected it: {e}"),
        })?;
        names.push(name);
    }
    let started = Instant::now();
    let deadline = started + timeout;
    for (path, crd) in crds {
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        wait_established(&api, name, path, started, deadline, apiserver_log).await?;
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let group_version = format!("{}/{}", crd.spec.group, version.name);
            let plural = &crd.spec.names.plural;
            poll(&format!("discovery of {plural} in {group_version}"), started, deadline, apiserver_log, || async {
                match client.list_api_group_resources(&group_version).await {
                    Ok(list) => Ok(list.resources.iter().any(|r| &r.name == plural)),
                    Err(_) => Ok(false), // 404 until the group is served
                }
            })
            .await?;
        }
    }
    Ok(names)
}

async fn wait_established(
    api: &Api<CustomResourceDefinition>,
    name: &str,
    path: &Path,
    started: Instant,
    deadline: Instant,
    apiserver_log: &Path,
) -> Result<(), TestbedError> {
    poll(&format!("CRD {name} to be Established"), started, deadline, apiserver_log, || async {
        let Ok(crd) = api.get(name).await else {
            return Ok(false);
        };
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        if let Some(rejected) = conditions.iter().find(|c| c.type_ == "NamesAccepted" && c.status == "False") {
            return Err(TestbedError::Crd {
                path: path.to_path_buf(),
                reason: format!("names not accepted: {}", rejected.message.as_deref().unwrap_or("no message")),
            });
        }
        Ok(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"))
    })
    .await
}

async fn poll<F, Fut>(
    what: &str,
    started: Instant,
    deadline: Instant,
    log: &Path,
    mut probe: F,
) -> Result<(), TestbedError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, TestbedError>>,
{
    loop {
        let budget = deadline.saturating_duration_since(Instant::now());
        if let Ok(done) = tokio::time::timeout(budget, probe()).await
            && done?
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TestbedError::Timeout {
                what: what.to_string(),
                after: started.elapsed(),
                log: log.to_path_buf(),
                log_tail: log_tail(log),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_document_and_rejects_other_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let crd = |plural: &str| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.example.com\n\
                 spec:\n  group: example.com\n  scope: Namespaced\n  names: {{plural: {plural}, kind: K{plural}}}\n\
                 \x20 versions: [{{name: v1, served: true, storage: true, schema: {{openAPIV3Schema: {{type: object}}}}}}]\n"
            )
        };
        std::fs::write(dir.path().join("b.yaml"), format!("{}---\n{}", crd("bs"), crd("cs"))).unwrap();
        std::fs::write(dir.path().join("a.yml"), format!("---\n{}", crd("as"))).unwrap();
        std::fs::write(dir.path().join("README.md"), "not a manifest").unwrap();
        let names: Vec<String> =
            read_dir(dir.path()).unwrap().into_iter().filter_map(|(_, c)| c.metadata.name).collect();
        assert_eq!(names, ["as.example.com", "bs.example.com", "cs.example.com"]);

        std::fs::write(dir.path().join("c.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap();
        let message = read_dir(dir.path()).unwrap_err().to_string();
        assert!(message.contains("c.yaml") && message.contains("holds a ConfigMap"), "{message}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let message = read_dir(Path::new("/nonexistent/crds")).unwrap_err().to_string();
        assert!(message.contains("/nonexistent/crds"), "{message}");
    }
}
