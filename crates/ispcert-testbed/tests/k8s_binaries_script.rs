//! `hack/k8s-binaries`, run the way the test bed runs a bin-dir script: its failures reach the
//! caller with the script's own words.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ispcert_testbed::{TestbedError, run_build_script};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/k8s-binaries")
}

/// A PATH holding only what the script needs besides Go, so "Go missing" is real wherever the
/// test runs (Go may live in /usr/bin on another machine).
fn path_without_go(dir: &Path) -> OsString {
    for tool in ["bash", "dirname", "cat", "sha256sum", "cut", "mkdir", "env", "grep", "tail", "date", "mktemp", "rm"] {
        let found = ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists());
        if let Some(target) = found {
            std::os::unix::fs::symlink(target, dir.join(tool)).unwrap();
        }
    }
    dir.as_os_str().to_owned()
}

#[tokio::test]
async fn go_missing_is_named_with_the_scripts_output() {
    let tools = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let env = [
        (OsString::from("PATH"), path_without_go(tools.path())),
        (OsString::from("ISPCERT_CACHE_DIR"), cache.path().as_os_str().to_owned()),
    ];
    let err = run_build_script(&script(), &env).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, TestbedError::BinariesScript { .. }), "{message}");
    assert!(message.contains("hack/k8s-binaries failed"), "{message}");
    assert!(message.contains("Go is not installed"), "{message}");
}

#[tokio::test]
async fn a_failing_module_proxy_is_reported() {
    let tools = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = path_without_go(tools.path());
    // A stand-in `go` that fails the way an unreachable module proxy does.
    let go = tools.path().join("go");
    std::fs::write(
        &go,
        "#!/bin/sh\nif [ \"$1\" = env ]; then echo https://proxy.invalid; exit 0; fi\n\
         echo 'go: k8s.io/kubernetes@v1.36.3: Get \"https://proxy.invalid/k8s.io/kubernetes/@v/v1.36.3.zip\": dial tcp: lookup proxy.invalid: no such host' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env =
        [(OsString::from("PATH"), path), (OsString::from("ISPCERT_CACHE_DIR"), cache.path().as_os_str().to_owned())];
    let message = run_build_script(&script(), &env).await.unwrap_err().to_string();
    assert!(message.contains("no such host"), "{message}");
    assert!(message.contains("Go module proxy"), "{message}");
}
