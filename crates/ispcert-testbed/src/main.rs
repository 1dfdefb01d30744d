//! `ispcert-testbed up|env|down`: the test bed's control plane for people and demos, in the
//! background. It runs the same code as the tests (`ispcert_testbed`), started detached.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ispcert_testbed::{ControlPlane, DetachedState, Options, TestbedError, stop_detached_control_plane};

#[derive(Parser)]
#[command(about = "A local kube-apiserver and etcd in the background, for demos and manual tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the control plane (or find the healthy one already up) and print `export KUBECONFIG=...`.
    Up {
        #[command(flatten)]
        state: StateDir,
        /// Directory of CRDs to install. Default: `crds` if it exists.
        #[arg(long)]
        crds: Option<PathBuf>,
        /// Directory holding etcd and kube-apiserver (`hack/control-plane` sets it to what
        /// `hack/k8s-binaries` prints).
        #[arg(long, env = ispcert_testbed::BIN_DIR_ENV)]
        bin_dir: PathBuf,
        /// Give up (and stop everything) if not ready within this many seconds.
        #[arg(long, default_value_t = 120)]
        start_timeout: u64,
    },
    /// Print `export KUBECONFIG=...` for the control plane that is up.
    Env {
        #[command(flatten)]
        state: StateDir,
    },
    /// Stop the control plane and remove its files. Does nothing if none is up.
    Down {
        #[command(flatten)]
        state: StateDir,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
}

#[derive(clap::Args)]
struct StateDir {
    /// Where the kubeconfig, the state file, certificates, etcd data and logs live.
    #[arg(long, default_value = "target/control-plane")]
    state_dir: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG=ispcert=debug shows the phases of a start and their timings.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let result = match cli.command {
        Command::Up { state, crds, bin_dir, start_timeout } => {
            up(&state.state_dir, crds, bin_dir, Duration::from_secs(start_timeout)).await
        }
        Command::Env { state } => env(&state.state_dir).await,
        Command::Down { state, grace } => down(&state.state_dir, Duration::from_secs(grace)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ispcert-testbed: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(
    state_dir: &Path,
    crds: Option<PathBuf>,
    bin_dir: PathBuf,
    start_timeout: Duration,
) -> Result<(), TestbedError> {
    let state_dir = absolute(state_dir)?;
    match DetachedState::load(&state_dir) {
        Ok(Some(state)) if state.is_healthy().await => {
            eprintln!("ispcert-testbed: already up at {} (state in {})", state.server_url, state_dir.display());
            print_export(&state.kubeconfig);
            return Ok(());
        }
        Ok(None) if !state_dir.exists() => {}
        // A dead or half-written control plane: clear it away and start afresh.
        _ => {
            eprintln!("ispcert-testbed: clearing a stale control plane in {}", state_dir.display());
            stop_detached_control_plane(&state_dir, Duration::from_secs(5))?;
        }
    }
    let crd_dirs = match crds {
        Some(dir) => vec![dir],
        None => [PathBuf::from("crds")].into_iter().filter(|d| d.is_dir()).collect(),
    };
    let started = Instant::now();
    let options = Options {
        bin_dir: Some(bin_dir),
        work_dir: Some(state_dir.clone()),
        crd_dirs,
        detach: true,
        start_timeout,
        ..Options::default()
    };
    let control_plane = ControlPlane::start(options).await?;
    let state = DetachedState::of(&control_plane);
    if let Err(e) = state.save(&state_dir) {
        // Without a state file nobody could stop them later.
        control_plane.stop();
        let _ = stop_detached_control_plane(&state_dir, Duration::from_secs(5));
        return Err(e);
    }
    eprintln!(
        "ispcert-testbed: up in {:.1}s at {} (logs in {})",
        started.elapsed().as_secs_f64(),
        state.server_url,
        state_dir.join("logs").display()
    );
    print_export(&state.kubeconfig);
    Ok(())
}

async fn env(state_dir: &Path) -> Result<(), TestbedError> {
    let state_dir = absolute(state_dir)?;
    match DetachedState::load(&state_dir)? {
        Some(state) if state.is_healthy().await => {
            print_export(&state.kubeconfig);
            Ok(())
        }
        Some(state) => Err(TestbedError::State {
            path: state_dir.join(ispcert_testbed::STATE_FILE),
            reason: format!("the control plane at {} is not running or not healthy; run `up`", state.server_url),
        }),
        None => Err(TestbedError::State {
            path: state_dir.join(ispcert_testbed::STATE_FILE),
            reason: "no control plane is up; run `up`".into(),
        }),
    }
}

fn down(state_dir: &Path, grace: Duration) -> Result<(), TestbedError> {
    let state_dir = absolute(state_dir)?;
    if stop_detached_control_plane(&state_dir, grace)? {
        eprintln!("ispcert-testbed: stopped the control plane in {}", state_dir.display());
    } else {
        eprintln!("ispcert-testbed: no control plane was running in {}", state_dir.display());
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, TestbedError> {
    std::path::absolute(path)
        .map_err(|e| TestbedError::Io { context: format!("resolving {}", path.display()), source: e })
}

/// Quoted for the shell only when needed, so the common case stays copy-pasteable as is.
fn print_export(kubeconfig: &Path) {
    let path = kubeconfig.display().to_string();
    if path.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        println!("export KUBECONFIG={path}");
    } else {
        println!("export KUBECONFIG='{}'", path.replace('\'', r"'\''"));
    }
}
