//! The directory holding a control plane's certificates, etcd data, logs and kubeconfig.

use std::path::{Path, PathBuf};

use super::{TestbedError, WORK_DIR_ENTRIES, cleanup, fsutil};

/// The work dir and whether it is ours to remove.
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub path: PathBuf,
    /// Made by us in the temp dir (rather than given by the caller).
    pub temp: bool,
    pub remove_on_drop: bool,
}

impl WorkDir {
    pub fn prepare(given: Option<&Path>, detach: bool) -> Result<WorkDir, TestbedError> {
        if let Some(dir) = given {
            fsutil::create_dir(dir)?;
            let path = dir.canonicalize().map_err(|e| TestbedError::io(format!("resolving {}", dir.display()), e))?;
            if let Some(existing) = WORK_DIR_ENTRIES.iter().find(|e| path.join(e).exists()) {
                return Err(TestbedError::io(
                    format!("work dir {} already holds a control plane's {existing}", path.display()),
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ));
            }
            return Ok(WorkDir { path, temp: false, remove_on_drop: false });
        }
        let tmp = std::env::temp_dir();
        cleanup::sweep_stale_dirs(&tmp);
        let path = tempfile::Builder::new()
            .prefix(&format!("{}{}-", cleanup::TEMP_PREFIX, std::process::id()))
            .tempdir_in(&tmp)
            .map_err(|e| TestbedError::io(format!("creating a work dir in {}", tmp.display()), e))?
            .keep();
        if !detach {
            cleanup::register_dir(&path);
        }
        Ok(WorkDir { path, temp: true, remove_on_drop: true })
    }

    /// Leaves the dir in place when dropped (the processes using it outlive us).
    pub fn keep(&mut self) {
        if self.remove_on_drop {
            cleanup::unregister_dir(&self.path);
        }
        self.remove_on_drop = false;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.path);
            cleanup::unregister_dir(&self.path);
        }
    }
}
