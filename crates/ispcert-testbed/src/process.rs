//! Spawning etcd and kube-apiserver, and making sure they die.
//!
//! Attached processes (tests) get their own process group and `PR_SET_PDEATHSIG=SIGKILL`. The
//! kernel sends that signal when the *thread* that forked the child exits, not the process: libtest
//! runs every test on its own thread, so a control plane spawned from a test's thread would be killed
//! when that test finishes, under the feet of the other tests sharing it. All attached children are
//! therefore forked by one spawner thread that lives as long as the process.
//!
//! Detached processes (`ispcert-testbed up`) start a new session instead and outlive us.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::TestbedError;
use super::cleanup;

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

/// Forks `cmd` from the long-lived spawner thread, starting that thread on first use.
fn spawn_from_keeper_thread(cmd: Command) -> io::Result<Child> {
    let sender = {
        let mut slot = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            std::thread::Builder::new().name("testbed-spawner".into()).spawn(move || {
                // The sender lives in a static, so this loop (and thread) ends only with the process.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
            *slot = Some(tx);
        }
        slot.as_ref().cloned().ok_or_else(|| io::Error::other("spawner thread missing"))?
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    sender.send((cmd, reply_tx)).map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("spawner thread did not answer"))?
}

/// One running component: its child handle and its log file. Killed (with its process group) when
/// dropped, unless [`Proc::disarm`] was called because it is meant to outlive us.
#[derive(Debug)]
pub(crate) struct Proc {
    pub component: &'static str,
    pub log: PathBuf,
    child: Child,
    armed: bool,
    attached: bool,
}

/// Starts `program` with `args`, stdout and stderr appended to `log`.
pub(crate) fn spawn(
    component: &'static str,
    program: &Path,
    args: &[String],
    log: &Path,
    detach: bool,
) -> Result<Proc, TestbedError> {
    let mut log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| TestbedError::io(format!("opening {}", log.display()), e))?;
    // Retries append to the same log; a header keeps the attempts apart.
    let _ = writeln!(log_file, "=== ispcert-testbed: {} {}", program.display(), args.join(" "));
    let stderr = log_file.try_clone().map_err(|e| TestbedError::io(format!("opening {}", log.display()), e))?;

    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(log_file).stderr(stderr);

    let spawned = if detach {
        // SAFETY (pre_exec): the closure runs in the forked child before exec and only calls
        // setsid, which is async-signal-safe and allocates nothing. It makes the child a session
        // and group leader, out of reach of the terminal's signals and of our exit.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
        }
        cmd.spawn()
    } else {
        let parent = nix::unistd::getpid();
        cmd.process_group(0);
        // SAFETY (pre_exec): in the forked child only prctl and getppid run, both
        // async-signal-safe and allocation-free.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
                // If the parent died before prctl, the signal will never come: give up now.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from(Errno::ESRCH));
                }
                Ok(())
            });
        }
        spawn_from_keeper_thread(cmd)
    };
    let child = spawned.map_err(|source| TestbedError::Spawn { component, path: program.to_path_buf(), source })?;
    if !detach {
        cleanup::register_group(child.id() as i32);
    }
    Ok(Proc { component, log: log.to_path_buf(), child, armed: true, attached: !detach })
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Leaves the process running when this handle is dropped.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Kills the process when this handle is dropped (the default).
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// The error for a component that exited while we waited for it.
    pub fn exited_error(&self, status: ExitStatus) -> TestbedError {
        TestbedError::ComponentExited {
            component: self.component,
            status: status.to_string(),
            log: self.log.clone(),
            log_tail: super::error::log_tail(&self.log),
        }
    }

    /// Whether its log says a port was taken.
    pub fn log_says_port_in_use(&self) -> bool {
        std::fs::read_to_string(&self.log).map(|l| l.contains("address already in use")).unwrap_or(false)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        if self.armed {
            // SIGKILL, not SIGTERM: the data is thrown away anyway, and kube-apiserver's graceful
            // shutdown can hang for a long time once etcd is gone.
            cleanup::kill_group_and_reap(pgid, Duration::from_secs(5));
            let _ = self.child.try_wait();
        }
        if self.attached {
            cleanup::unregister_group(pgid);
        }
    }
}

/// Stops a detached process group led by `pid`: SIGTERM, then SIGKILL after `grace`. Only if the
/// process's command line mentions `marker` (its work dir): a pid from an old state file may
/// belong to something else by now. Returns whether it was running.
pub fn stop_detached(pid: u32, marker: &Path, grace: Duration) -> bool {
    let pid = pid as i32;
    if !cleanup::pid_alive(pid) || !cmdline_mentions(pid, marker) {
        return false;
    }
    // Plain signals to a process group we started; one already gone answers ESRCH.
    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    if wait_gone(pid, grace) {
        return true;
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(5));
    true
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !cleanup::pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !cleanup::pid_alive(pid)
}

/// Whether a process's command line contains `marker`.
pub(crate) fn cmdline_mentions(pid: i32, marker: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
    cmdline.contains(&*marker.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_an_attached_process_kills_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleeper.log");
        let marker = dir.path().join("marker");
        // The shell forks a grandchild; killing only the shell would leave it running.
        let args = vec!["-c".to_string(), format!("sleep 300 & echo started; wait # {}", marker.display())];
        let proc = spawn("sleeper", Path::new("/bin/sh"), &args, &log, false).unwrap();
        let pid = proc.pid() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&log).unwrap().contains("started") {
            assert!(Instant::now() < deadline, "the shell did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let sleeper = find_child_of(pid).expect("sleep runs");
        drop(proc);
        assert!(!cleanup::pid_alive(pid));
        assert!(wait_gone(sleeper, Duration::from_secs(2)), "the grandchild was killed with its group");
    }

    #[test]
    fn stop_detached_refuses_a_process_that_is_not_ours() {
        // Our own pid does not mention this marker: it must not be signalled.
        let me = std::process::id();
        assert!(!stop_detached(me, Path::new("/nonexistent/ispcert-marker"), Duration::from_millis(10)));
    }

    #[test]
    fn a_crashing_process_reports_its_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("crash.log");
        let args = vec!["-c".to_string(), "for i in $(seq 1 30); do echo line $i; done; exit 3".to_string()];
        let mut proc = spawn("crasher", Path::new("/bin/sh"), &args, &log, false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = proc.exit_status() {
                break s;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        };
        let message = proc.exited_error(status).to_string();
        assert!(message.contains("crasher exited during start-up"), "{message}");
        assert!(message.contains("line 30") && message.contains("line 11"), "{message}");
        assert!(!message.contains("line 10"), "only the last 20 lines: {message}");
    }

    fn find_child_of(parent: i32) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            for entry in std::fs::read_dir("/proc").ok()?.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let ppid =
                    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
                if ppid == Some(parent) {
                    return Some(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}
