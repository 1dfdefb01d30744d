//! `ispcert-testbed up|env|down` end to end, with kubectl of the pinned version as the client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where the Kubernetes binaries are, as `hack/control-plane` finds them.
async fn bin_dir() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/k8s-binaries");
    ispcert_testbed::bin_dir(None, Some(&script)).await.expect("the Kubernetes binaries")
}

fn testbed(args: &[&str], state_dir: &Path, bin_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ispcert-testbed"))
        .args(args)
        .env(ispcert_testbed::BIN_DIR_ENV, bin_dir)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("ispcert-testbed runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn kubectl(bin_dir: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let output =
        Command::new(bin_dir.join("kubectl")).args(args).env("KUBECONFIG", kubeconfig).output().expect("kubectl runs");
    stdout(&output)
}

/// Command lines of the processes that mention `marker` (a state dir).
fn processes_mentioning(marker: &Path) -> Vec<String> {
    let marker = marker.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&marker))
        .collect()
}

#[tokio::test]
async fn up_env_down_with_kubectl() {
    let bin_dir = bin_dir().await;
    let parent = tempfile::tempdir().unwrap();
    let state_dir = parent.path().join("control-plane");

    let up = stdout(&testbed(&["up"], &state_dir, &bin_dir));
    let state_dir = state_dir.canonicalize().unwrap();
    let kubeconfig = state_dir.join("kubeconfig");
    assert_eq!(up, format!("export KUBECONFIG={}\n", kubeconfig.display()));
    assert!(std::fs::read_to_string(state_dir.join("state.json")).unwrap().contains("apiserver_pid"));

    // Detached: the processes outlived the command that started them.
    assert_eq!(processes_mentioning(&state_dir).len(), 2);
    let version = kubectl(&bin_dir, &kubeconfig, &["version"]);
    assert!(version.contains("Server Version: v1.36.3"), "{version}");
    let default = kubectl(&bin_dir, &kubeconfig, &["get", "ns", "default", "-o", "name"]);
    assert_eq!(default.trim(), "namespace/default");

    assert_eq!(stdout(&testbed(&["env"], &state_dir, &bin_dir)), up);
    let again = testbed(&["up"], &state_dir, &bin_dir);
    assert_eq!(stdout(&again), up, "a second up finds the running control plane");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));

    assert!(testbed(&["down"], &state_dir, &bin_dir).status.success());
    assert_eq!(processes_mentioning(&state_dir), Vec::<String>::new());
    assert!(!state_dir.exists(), "down removes the state dir");
    assert!(testbed(&["down"], &state_dir, &bin_dir).status.success(), "down is idempotent");
    let env = testbed(&["env"], &state_dir, &bin_dir);
    assert!(!env.status.success());
    assert!(String::from_utf8_lossy(&env.stderr).contains("no control plane is up"));
}

#[tokio::test]
async fn up_replaces_a_control_plane_that_died() {
    let bin_dir = bin_dir().await;
    let parent = tempfile::tempdir().unwrap();
    let state_dir: PathBuf = parent.path().join("control-plane");
    let first = stdout(&testbed(&["up"], &state_dir, &bin_dir));
    let state_dir = state_dir.canonicalize().unwrap();
    let state = ispcert_testbed::DetachedState::load(&state_dir).unwrap().unwrap();
    // Kill it behind the test bed's back, as a reboot or an OOM kill would.
    for pid in [state.apiserver_pid, state.etcd_pid] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&state_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let env = testbed(&["env"], &state_dir, &bin_dir);
    assert!(!env.status.success(), "env notices the dead control plane");
    let second = testbed(&["up"], &state_dir, &bin_dir);
    assert_eq!(stdout(&second), first);
    assert!(String::from_utf8_lossy(&second.stderr).contains("clearing a stale control plane"));
    let restarted = ispcert_testbed::DetachedState::load(&state_dir).unwrap().unwrap();
    assert_ne!(restarted.apiserver_pid, state.apiserver_pid);
    assert!(restarted.is_healthy().await);

    assert!(testbed(&["down"], &state_dir, &bin_dir).status.success());
    assert_eq!(processes_mentioning(&state_dir), Vec::<String>::new());
}
