//! Finding etcd and kube-apiserver: an explicit directory, the environment, or whatever a build
//! script the caller names prints (`hack/k8s-binaries` builds them from Go modules; minutes when
//! cold, instant when cached).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::OnceCell;

use super::TestbedError;
use super::error::{LOG_TAIL_LINES, tail_lines};

/// Environment variable naming a directory that holds `etcd` and `kube-apiserver`.
pub const BIN_DIR_ENV: &str = "ISPCERT_K8S_BIN_DIR";

/// A cold build of kube-apiserver on two cores took about 11 minutes; leave ample room.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The binaries a control plane runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
}

/// The directory holding the Kubernetes binaries: `explicit` if given, else
/// `$ISPCERT_K8S_BIN_DIR` (which `hack/` scripts set), else the directory `script` prints (a script
/// such as `hack/k8s-binaries`, which builds the binaries when they are missing). kubectl and helm
/// are there too. The test bed knows no path of its own: callers say where things are.
pub async fn bin_dir(explicit: Option<&Path>, script: Option<&Path>) -> Result<PathBuf, TestbedError> {
    Ok(dir_and_source(explicit, script).await?.0)
}

async fn dir_and_source(explicit: Option<&Path>, script: Option<&Path>) -> Result<(PathBuf, String), TestbedError> {
    if let Some(dir) = explicit {
        return Ok((dir.to_path_buf(), "Options::bin_dir".to_string()));
    }
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok((PathBuf::from(dir), format!("${BIN_DIR_ENV}")));
    }
    let Some(script) = script else { return Err(TestbedError::BinDirUnknown) };
    // Tests run in parallel and several may ask at once; on a fresh machine that would start
    // concurrent cold builds writing the same files. One run per process; a failure is not
    // remembered, so a later caller tries again (and reports the error again).
    static BUILT: OnceCell<PathBuf> = OnceCell::const_new();
    let dir = BUILT.get_or_try_init(|| run_build_script(script, &[])).await?;
    Ok((dir.clone(), format!("printed by {}", script.display())))
}

/// Resolves the bin dir (option, then environment, then the build script) and checks the binaries.
pub(crate) async fn resolve(explicit: Option<&Path>, script: Option<&Path>) -> Result<Binaries, TestbedError> {
    let (dir, source_of_dir) = dir_and_source(explicit, script).await?;
    let find = |name: &'static str| {
        let path = dir.join(name);
        let executable = std::fs::metadata(&path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable.unwrap_or(false) {
            Ok(path)
        } else {
            Err(TestbedError::MissingBinary { name, path, source_of_dir: source_of_dir.clone() })
        }
    };
    Ok(Binaries { etcd: find("etcd")?, apiserver: find("kube-apiserver")? })
}

/// Runs `hack/k8s-binaries` and returns the directory it prints on its last line.
///
/// Its progress (stderr) is passed through to our stderr as it comes: a cold build takes minutes
/// and should not look like a hang. It is written with `io::stderr()` rather than `eprintln!`,
/// which libtest would capture until the test ends.
pub async fn run_build_script(script: &Path, env: &[(OsString, OsString)]) -> Result<PathBuf, TestbedError> {
    let fail = |reason: String, lines: &VecDeque<String>| TestbedError::BinariesScript {
        script: script.to_path_buf(),
        reason,
        output_tail: tail_lines(&lines.iter().cloned().collect::<Vec<_>>().join("\n"), LOG_TAIL_LINES),
    };
    let mut child = tokio::process::Command::new(script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("could not run it: {e}"), &VecDeque::new()))?;
    let mut stdout = child.stdout.take().ok_or_else(|| fail("no stdout pipe".into(), &VecDeque::new()))?;
    let stderr = child.stderr.take().ok_or_else(|| fail("no stderr pipe".into(), &VecDeque::new()))?;

    let mut last_lines = VecDeque::new();
    let mut printed = String::new();
    let run = async {
        let mut err_lines = BufReader::new(stderr).lines();
        let forward = async {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let _ = writeln!(std::io::stderr(), "{line}");
                if last_lines.len() == LOG_TAIL_LINES {
                    last_lines.pop_front();
                }
                last_lines.push_back(line);
            }
        };
        let (_, _, status) = tokio::join!(forward, stdout.read_to_string(&mut printed), child.wait());
        status
    };
    let status = match tokio::time::timeout(BUILD_TIMEOUT, run).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(fail(format!("waiting for it failed: {e}"), &last_lines)),
        Err(_) => {
            return Err(fail(format!("no result after {} minutes", BUILD_TIMEOUT.as_secs() / 60), &last_lines));
        }
    };
    for line in printed.lines() {
        last_lines.push_back(line.to_string());
    }
    if !status.success() {
        return Err(fail(format!("it exited with {status}"), &last_lines));
    }
    match printed.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir.trim())),
        None => Err(fail("it printed no directory".into(), &last_lines)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bin_dir_without_binaries_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let message = resolve(Some(dir.path()), None).await.unwrap_err().to_string();
        assert!(message.contains(&dir.path().join("etcd").display().to_string()), "{message}");
        assert!(message.contains("Options::bin_dir"), "{message}");
    }
}
