//! The admin kubeconfig: written to a file for kubectl and people, and turned into clients.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::TestbedError;
use super::fsutil::write_private;
use super::pki::Pki;

const NAME: &str = "ispcert-testbed";

/// Renders a self-contained kubeconfig (certificates inline) for the admin user.
pub(crate) fn render(server_url: &str, pki: &Pki) -> String {
    let b64 = |pem: &str| STANDARD.encode(pem.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": NAME,
            "cluster": { "server": server_url, "certificate-authority-data": b64(&pki.serving_ca_pem) },
        }],
        "users": [{
            "name": "admin",
            "user": {
                "client-certificate-data": b64(&pki.admin_cert_pem),
                "client-key-data": b64(&pki.admin_key_pem),
            },
        }],
        "contexts": [{ "name": NAME, "context": { "cluster": NAME, "user": "admin" } }],
        "current-context": NAME,
    });
    // A json! value always serialises; an empty string would only fail loudly when parsed.
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Writes the kubeconfig and returns it parsed, checking that what kubectl reads is what we use.
pub(crate) fn write(path: &Path, text: &str) -> Result<Kubeconfig, TestbedError> {
    write_private(path, text)?;
    Kubeconfig::read_from(path)
        .map_err(|e| TestbedError::Kubeconfig { path: path.to_path_buf(), reason: e.to_string() })
}

/// A new client for a kubeconfig. Each call builds its own: a `kube::Client` is bound to the tokio
/// runtime it was first used on, and every `#[tokio::test]` has its own runtime.
pub(crate) async fn client(kubeconfig: &Kubeconfig, path: &Path) -> Result<kube::Client, TestbedError> {
    let invalid = |reason: String| TestbedError::Kubeconfig { path: path.to_path_buf(), reason };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default())
        .await
        .map_err(|e| invalid(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| invalid(e.to_string()))
}
