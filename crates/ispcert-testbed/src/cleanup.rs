//! Teardown that does not depend on `Drop` running.
//!
//! The shared control plane lives in a `static` and is never dropped, and a test process can also
//! end by `exit()` with values still alive. Two mechanisms cover that:
//! - every attached child gets `PR_SET_PDEATHSIG` (see `process.rs`), so the kernel kills it when
//!   the test process dies, even by SIGKILL;
//! - an `atexit` hook kills the registered process groups, reaps them and then removes the
//!   registered work dirs, so an ordinary exit leaves no files behind.
//!
//! What neither covers (a test process killed by a signal leaves its temp dir) is swept at the next
//! start: temp work dirs carry their owner's pid in their name, and those of dead owners are removed.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, TryLockError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Prefix of the temp work dirs; followed by `<owner pid>-`.
pub(crate) const TEMP_PREFIX: &str = "ispcert-testbed-";

struct Registry {
    groups: Vec<i32>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { groups: Vec::new(), dirs: Vec::new() });
static HOOK: Once = Once::new();

fn with_registry(f: impl FnOnce(&mut Registry)) {
    HOOK.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` with no arguments is what atexit expects;
        // nix has no wrapper for atexit.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(run_at_exit)
        };
    });
    let mut registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut registry);
}

/// Kill this process group at exit unless it is unregistered first.
pub(crate) fn register_group(pgid: i32) {
    with_registry(|r| r.groups.push(pgid));
}

pub(crate) fn unregister_group(pgid: i32) {
    with_registry(|r| r.groups.retain(|g| *g != pgid));
}

/// Remove this directory at exit (after the groups are dead) unless it is unregistered first.
pub(crate) fn register_dir(dir: &Path) {
    with_registry(|r| r.dirs.push(dir.to_path_buf()));
}

pub(crate) fn unregister_dir(dir: &Path) {
    with_registry(|r| r.dirs.retain(|d| d != dir));
}

extern "C" fn run_at_exit() {
    // Unwinding out of an `extern "C"` function aborts; nothing here should panic, but be sure.
    let _ = std::panic::catch_unwind(|| {
        // Another thread may hold the lock while the process exits; waiting could hang the exit.
        // PDEATHSIG still kills the children, and the next start sweeps the directory.
        let registry = match REGISTRY.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        for &pgid in &registry.groups {
            kill_group_and_reap(pgid, Duration::from_secs(5));
        }
        for dir in &registry.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}

/// SIGKILLs a process group whose leader is our child, then reaps the leader so that its files
/// are closed before anything removes its directory.
pub(crate) fn kill_group_and_reap(pgid: i32, timeout: Duration) {
    // A group that is already gone yields ESRCH, a leader already reaped ECHILD: both are done.
    let leader = Pid::from_raw(pgid);
    let _ = killpg(leader, Signal::SIGKILL);
    let deadline = Instant::now() + timeout;
    loop {
        let still_running = matches!(waitpid(leader, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive));
        if !still_running || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process exists and is not a zombie.
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // No signal (`None`) only checks for existence and permission.
    let exists = matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM));
    if !exists {
        return false;
    }
    // A zombie still answers kill(0) but will never do anything again.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(true),
        Err(_) => false,
    }
}

/// Removes temp work dirs under `parent` whose owning process is gone.
pub(crate) fn sweep_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        if !pid_alive(owner) {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), owner, "removed stale test bed work dir")
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove stale test bed work dir")
                }
            }
        }
    }
}

fn owner_pid(dir_name: &str) -> Option<i32> {
    let rest = dir_name.strip_prefix(TEMP_PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_is_read_from_the_dir_name() {
        assert_eq!(owner_pid("ispcert-testbed-1234-abcd"), Some(1234));
        assert_eq!(owner_pid("ispcert-testbed-x-abcd"), None);
        assert_eq!(owner_pid("something-else-1234-abcd"), None);
    }

    #[test]
    fn this_process_is_alive_and_an_unused_pid_is_not() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(i32::MAX - 1));
        assert!(!pid_alive(0));
    }

    #[test]
    fn sweep_removes_dirs_of_dead_owners_only() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join(format!("{TEMP_PREFIX}{}-x", i32::MAX - 1));
        let alive = parent.path().join(format!("{TEMP_PREFIX}{}-y", std::process::id()));
        let unrelated = parent.path().join("unrelated-1-z");
        for d in [&dead, &alive, &unrelated] {
            std::fs::create_dir(d).unwrap();
        }
        sweep_stale_dirs(parent.path());
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(unrelated.exists());
    }
}
