//! The one error type of the test bed. Every failure names the component or file involved and,
//! where a process was running, carries the last lines of its log: a test that fails in CI must be
//! diagnosable from its output alone.

use std::path::PathBuf;
use std::time::Duration;

/// How many log lines a failure carries.
pub(crate) const LOG_TAIL_LINES: usize = 20;

/// Why the test bed could not start, or could not do what a test asked of it.
#[derive(thiserror::Error)]
pub enum TestbedError {
    /// A binary the control plane needs is not where it was looked for.
    #[error(
        "{name} not found or not executable at {} (bin dir from {}); run hack/k8s-binaries to build it, or point ${} at a directory holding etcd and kube-apiserver",
        path.display(), source_of_dir, super::BIN_DIR_ENV
    )]
    MissingBinary {
        /// File name of the binary, e.g. `etcd`.
        name: &'static str,
        /// Full path that was checked.
        path: PathBuf,
        /// Where the bin dir came from (an option, the environment or the build script).
        source_of_dir: String,
    },

    /// Nothing says where the binaries are: no option, no environment variable, no script.
    #[error(
        "where etcd and kube-apiserver are is not known: set ${} to the directory `hack/k8s-binaries` prints (hack/test and hack/control-plane do), or pass Options::bin_dir",
        super::BIN_DIR_ENV
    )]
    BinDirUnknown,

    /// `hack/k8s-binaries` failed or could not be run (Go missing, the module proxy failing, ...).
    #[error("{} failed: {reason}; its last output lines:\n{output_tail}", script.display())]
    BinariesScript {
        /// The script that was run.
        script: PathBuf,
        /// Exit status, or why it could not be run or waited for.
        reason: String,
        /// The last lines it printed to stderr and stdout.
        output_tail: String,
    },

    /// A component exited while it was starting.
    #[error("{component} exited during start-up ({status}); last lines of {}:\n{log_tail}", log.display())]
    ComponentExited {
        /// `etcd` or `kube-apiserver`.
        component: &'static str,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A component could not listen on its port because something else holds it.
    #[error(
        "{component} could not listen: a port was already in use (ports tried: {ports}; {attempts} attempt(s)); last lines of {}:\n{log_tail}",
        log.display()
    )]
    PortInUse {
        /// `etcd` or `kube-apiserver`.
        component: &'static str,
        /// The ports of the last attempt.
        ports: String,
        /// How many sets of ports were tried.
        attempts: u32,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// Something did not become ready in time.
    #[error("timed out after {:.1}s waiting for {what}; last lines of {}:\n{log_tail}", after.as_secs_f64(), log.display())]
    Timeout {
        /// What was waited for, e.g. `kube-apiserver /healthz`.
        what: String,
        /// How long was waited.
        after: Duration,
        /// The log of the component that was waited for.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A process could not be spawned at all.
    #[error("could not start {component} from {}: {source}", path.display())]
    Spawn {
        /// `etcd` or `kube-apiserver`.
        component: &'static str,
        /// The binary.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// A file-system or OS operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// Certificates or keys could not be made.
    #[error("making the test bed's certificates: {0}")]
    Pki(#[from] rcgen::Error),

    /// The kubeconfig could not be built or turned into a client.
    #[error("kubeconfig {}: {reason}", path.display())]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A request to the API server failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The client's error.
        source: kube::Error,
    },

    /// A CRD manifest could not be read or was rejected.
    #[error("CRD {}: {reason}", path.display())]
    Crd {
        /// The manifest file (or the CRD's name where no file is involved).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The state of a detached control plane (`ispcert-testbed up`) is missing or unreadable.
    #[error("control plane state {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// `Debug` prints the `Display` text: tests `expect()` on results, and a failure should show the
/// log tail as lines rather than as one escaped string.
impl std::fmt::Debug for TestbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl TestbedError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TestbedError::Io { context: context.into(), source }
    }

    pub(crate) fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        TestbedError::Kube { context: context.into(), source }
    }
}

/// The last `n` lines of a text, or a note saying it was empty.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "    (empty)".to_string();
    }
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// The last lines of a log file; a file that cannot be read says so instead.
pub(crate) fn log_tail(path: &std::path::Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            // Logs can be megabytes; only the end matters.
            let from = bytes.len().saturating_sub(64 * 1024);
            tail_lines(&String::from_utf8_lossy(&bytes[from..]), LOG_TAIL_LINES)
        }
        Err(e) => format!("    (could not read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_indented() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let tail = tail_lines(&text, 3);
        assert_eq!(tail, "    line 28\n    line 29\n    line 30");
    }

    #[test]
    fn tail_of_empty_text_says_so() {
        assert_eq!(tail_lines("", 5), "    (empty)");
    }
}
