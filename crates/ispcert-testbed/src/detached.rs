//! A control plane that outlives the command that started it (`ispcert-testbed up`), found again
//! through a state file in its work dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fsutil::write_private;
use super::{ControlPlane, TestbedError, WORK_DIR_ENTRIES, process, ready};

/// Name of the state file inside the state dir.
pub const STATE_FILE: &str = "state.json";

/// What `ispcert-testbed up` records about the control plane it started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DetachedState {
    /// Process id (and process group id) of etcd.
    pub etcd_pid: u32,
    /// Process id (and process group id) of kube-apiserver.
    pub apiserver_pid: u32,
    /// etcd's client URL.
    pub etcd_url: String,
    /// The API server's URL.
    pub server_url: String,
    /// The work dir, which is also the state dir.
    pub work_dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl DetachedState {
    /// The state of a running control plane.
    pub fn of(control_plane: &ControlPlane) -> DetachedState {
        let (etcd_pid, apiserver_pid) = control_plane.pids();
        DetachedState {
            etcd_pid,
            apiserver_pid,
            etcd_url: control_plane.etcd_url().to_string(),
            server_url: control_plane.server_url().to_string(),
            work_dir: control_plane.work_dir().to_path_buf(),
            kubeconfig: control_plane.kubeconfig_path().to_path_buf(),
        }
    }

    /// Writes `<dir>/state.json`.
    pub fn save(&self, dir: &Path) -> Result<(), TestbedError> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| TestbedError::State { path: path.clone(), reason: e.to_string() })?;
        write_private(&path, &text)
    }

    /// Reads `<dir>/state.json`; `None` if there is none.
    pub fn load(dir: &Path) -> Result<Option<DetachedState>, TestbedError> {
        let path = dir.join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| TestbedError::State { path, reason: format!("unreadable ({e}); run `down` to clean up") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TestbedError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Whether both processes are still ours and running and the API server answers `/healthz`.
    pub async fn is_healthy(&self) -> bool {
        let ours =
            |pid: u32| super::cleanup::pid_alive(pid as i32) && process::cmdline_mentions(pid as i32, &self.work_dir);
        if !ours(self.etcd_pid) || !ours(self.apiserver_pid) {
            return false;
        }
        let Ok(ca) = std::fs::read_to_string(self.work_dir.join("pki/serving-ca.crt")) else {
            return false;
        };
        let Ok(https) = ready::https_client(&ca) else {
            return false;
        };
        ready::apiserver_healthy(&https, &self.server_url).await
    }
}

/// Stops the control plane recorded in `state_dir` (SIGTERM, SIGKILL after `grace`) and removes
/// its files: the state file and the work dir entries, then the dir itself if that left it empty.
/// Idempotent; returns whether any process was running.
pub fn stop_detached_control_plane(state_dir: &Path, grace: Duration) -> Result<bool, TestbedError> {
    let mut was_running = false;
    // An unreadable state file still gets its files removed; there is just nothing to signal.
    if let Ok(Some(state)) = DetachedState::load(state_dir) {
        // The API server first: it would only log errors while its etcd is gone.
        was_running |= process::stop_detached(state.apiserver_pid, &state.work_dir, grace);
        was_running |= process::stop_detached(state.etcd_pid, &state.work_dir, grace);
    }
    for entry in WORK_DIR_ENTRIES.iter().chain([&STATE_FILE]) {
        let path = state_dir.join(entry);
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TestbedError::io(format!("removing {}", path.display()), e)),
        }
    }
    // Only if empty: the user may have pointed the state dir at a directory of their own.
    let _ = std::fs::remove_dir(state_dir);
    Ok(was_running)
}
