//! The `ispcert` command line: the operator itself, the CRDs, and checks of a billing account.

mod account;
mod operator;
mod renew;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::catalog::Region;

#[derive(Parser, Debug)]
#[command(
    name = "ispcert",
    version,
    about = "Commercial TLS certificates from the ispmanager billing, as Kubernetes Secrets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Controller(Box<ControllerArgs>),
    /// Print the CRDs (apply with `ispcert crds | kubectl apply -f -`).
    Crds,
    /// Print the product catalog: names, price-list ids and what each product covers.
    Catalog {
        /// Show only this region's price-list id.
        #[arg(long, value_enum)]
        region: Option<RegionArg>,
    },
    /// Print the billing's country ids (for `subject.countryId`).
    Countries {
        #[command(flatten)]
        account: AccountArgs,
        /// A product whose order form lists the countries.
        #[arg(long, default_value = "alphassl")]
        product: String,
        /// The account's price list, as in the issuer's `spec.region`. Without it the account's
        /// list is found by trying both (a raw price-list id in `--product` decides by itself).
        #[arg(long, value_enum)]
        region: Option<RegionArg>,
    },
    /// Describe the certificates of a PEM file (`-` for stdin), such as a Secret's `tls.crt`.
    Inspect {
        /// The PEM file.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Ask for a free reissue now (by name, -l SELECTOR or --all; -n NS or -A), through the
    /// ispcert.dev/renew annotation. Safe to repeat.
    Renew(renew::RenewArgs),
    /// One view of a certificate: spec, conditions, order, subscription, renewal, its Secret
    /// (serial, names, notAfter, whether the key fits), issuer readiness and recent events.
    Status(status::StatusArgs),
    /// Check a billing account before deploying: login, API access from here, certificates.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Check that the credentials work for API calls from this machine.
    Check {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// List the account's certificates with their ids (for `spec.orderId`) and states.
    Certificates {
        #[command(flatten)]
        account: AccountArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct AccountArgs {
    /// The billing API endpoint.
    #[arg(long, default_value = crate::billing::DEFAULT_URL)]
    pub url: String,
    /// The account email.
    #[arg(long)]
    pub email: String,
    /// A file holding the password (never pass a password on the command line).
    #[arg(long)]
    pub password_file: PathBuf,
    /// Seconds to wait for each billing call.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RegionArg {
    Russian,
    Foreign,
}

impl From<RegionArg> for Region {
    fn from(r: RegionArg) -> Self {
        match r {
            RegionArg::Russian => Region::Russian,
            RegionArg::Foreign => Region::Foreign,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when the log does not go to a terminal (a container), text when it does.
    Auto,
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// A kubeconfig file; without it the in-cluster config, then ~/.kube/config, are used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces (repeat, or comma-separate); all when none is given.
    #[arg(long = "namespace", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// The operator's namespace: ClusterIspIssuer credentials are read only from here; the
    /// leader-election Lease lives here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "ispcert-system")]
    pub operator_namespace: String,
    /// Serve only the ClusterIspIssuers matching this label selector (for several operators in
    /// one cluster).
    #[arg(long)]
    pub cluster_issuer_selector: Option<String>,
    /// `auto` (default): JSON lines in a container, text in a terminal.
    #[arg(long, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    /// A tracing filter: a level (`info`) or directives (`ispcert=debug,kube=warn`).
    #[arg(long, env = "ISPCERT_LOG", default_value = "info")]
    pub log_level: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `off` disables it.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Run only while holding the Lease (on by default, for several replicas).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a Lease holder that stops renewing keeps it (how fast another replica takes over).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub lease_duration: Duration,
    /// How often one list call refreshes an account's pending orders.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub poll_interval: Duration,
    /// Shortest and longest wait of the per-certificate backoff after failures.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub backoff_min: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub backoff_max: Duration,
    /// Timeout of each billing call.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub billing_timeout: Duration,
    /// How long an order whose answer was lost is looked for before it counts as never placed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub order_grace: Duration,
    /// Minimum wait before credentials the billing refused are tried again (unless the Secret
    /// changes): repeated wrong logins can lock an account.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub wrong_credentials_retry: Duration,
    /// The least time between a certificate's start and its renewal, and the least a renewal must
    /// add before the subscription ends (no reissue cascade near the end).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
    pub renewal_floor: Duration,
    /// How far ahead of a subscription's end the SubscriptionEnding condition, Warning event and
    /// metric come.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30d")]
    pub subscription_warning: Duration,
    /// How long a reissue waits for approval (approver email, CA) before it is requested again.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3d")]
    pub reissue_timeout: Duration,
    /// Reissue requests for one need (the first and its repeats) before the certificate stops
    /// and asks a person.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub reissue_attempts: u32,
    /// How long the billing clean-up of a Delete certificate in a namespace being deleted waits
    /// for an issuer that went with the namespace; then the order is kept at the billing (with a
    /// Warning event) and the namespace goes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub namespace_cleanup_wait: Duration,
    /// Certificate reconciles running at once (a burst of new certificates queues).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
}

/// Runs the command line.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Controller(args) => operator::run(*args).await,
        Command::Crds => {
            print!("{}", crate::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Catalog { region } => {
            print!("{}", account::catalog_table(region.map(Region::from)));
            ExitCode::SUCCESS
        }
        Command::Countries { account: a, product, region } => {
            account::countries(&a, &product, region.map(Region::from)).await
        }
        Command::Inspect { file } => account::inspect(&file),
        Command::Renew(args) => renew::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Account { command: AccountCommand::Check { account: a } } => account::check(&a).await,
        Command::Account { command: AccountCommand::Certificates { account: a } } => account::certificates(&a).await,
    }
}
