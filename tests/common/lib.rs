//! What the end-to-end test binaries share: the repository's control plane, log capture, and
//! ready-made orders.

// Test support: a failed unwrap here is a failed test, as in the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod log_capture;
pub mod orders;

use std::path::{Path, PathBuf};

use ispcert_testbed::{ControlPlane, Options, TestbedError};

/// The repository root: this crate lives in `tests/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `hack/k8s-binaries`, which builds the Kubernetes binaries when needed and prints where they are.
pub fn bin_script() -> PathBuf {
    repo_root().join("hack/k8s-binaries")
}

/// The directory of kube-apiserver, etcd, kubectl and helm.
pub async fn k8s_bin_dir() -> Result<PathBuf, TestbedError> {
    ispcert_testbed::bin_dir(None, Some(&bin_script())).await
}

/// The control plane shared by this test binary, with the operator's CRDs installed.
pub async fn control_plane() -> Result<&'static ControlPlane, &'static TestbedError> {
    ispcert_testbed::shared(|| Options {
        bin_script: Some(bin_script()),
        crd_dirs: vec![repo_root().join("crds")],
        ..Options::default()
    })
    .await
}
