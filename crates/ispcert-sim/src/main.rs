//! `ispcert-sim`: the billing simulator as a standalone server, for the demo and for manual
//! testing of the operator against a strict stand-in of the ispmanager billing.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ispcert_sim::{AccountSpec, AddonCode, SimConfig, default_addon_codes, start};

/// A strict simulator of the ispmanager billing's certificate API.
#[derive(Parser, Debug)]
#[command(name = "ispcert-sim", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// An account: EMAIL:PASSWORD[:BALANCE[:CURRENCY]]; currency RUB (default) buys from the
    /// Russian price list, EUR or USD from the foreign one. Repeatable.
    #[arg(long = "account", value_parser = AccountSpec::parse)]
    accounts: Vec<AccountSpec>,
    /// Seconds from an order (reissue, prolongation) to the issued certificate.
    #[arg(long, default_value_t = 3.0)]
    issue_after: f64,
    /// Validity of issued certificates in seconds (always capped at 200 days).
    #[arg(long)]
    validity: Option<u64>,
    /// An extra-domain addon code the billing accepts for a price list: PRICELIST:CODE.
    /// Repeatable; GlobalSign DomainSSL's 55364 is always known.
    #[arg(long = "addon", value_parser = parse_addon)]
    addons: Vec<AddonCode>,
    /// Seed of certificate serial numbers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not serve the introspection API under /_sim/.
    #[arg(long)]
    no_admin: bool,
    /// Leave `remoteid` out of the certificate list, as a billing might that does not show the
    /// caller's own id.
    #[arg(long)]
    hide_remote_id: bool,
    /// Subscription length of orders and prolongations in seconds instead of their months (the
    /// list then shows expiredate with its time of day).
    #[arg(long)]
    subscription: Option<u64>,
    /// Log filter (tracing `EnvFilter` syntax); `debug` logs one line per request.
    #[arg(long, env = "ISPCERT_SIM_LOG", default_value = "info")]
    log: String,
}

fn parse_addon(s: &str) -> Result<AddonCode, String> {
    let (p, c) = s.split_once(':').ok_or("expected PRICELIST:CODE")?;
    Ok(AddonCode {
        pricelist: p.trim().parse().map_err(|_| "price list must be a number")?,
        code: c.trim().parse().map_err(|_| "code must be a number")?,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Ok(issue_after) = Duration::try_from_secs_f64(args.issue_after) else {
        eprintln!("--issue-after must be a number of seconds >= 0");
        std::process::exit(2);
    };
    let mut addon_codes = default_addon_codes();
    addon_codes.extend(args.addons);
    let config = SimConfig {
        accounts: args.accounts,
        issue_after,
        validity: args.validity.map(Duration::from_secs),
        addon_codes,
        seed: args.seed,
        admin: !args.no_admin,
        hide_remote_id: args.hide_remote_id,
        subscription: args.subscription.map(Duration::from_secs),
        ..SimConfig::default()
    };
    for a in &config.accounts {
        tracing::info!(email = %a.email, balance = %a.balance, currency = %a.currency, "account");
    }
    let sim = start(config, args.listen).await?;
    tracing::info!(url = %sim.base_url(), "ispcert-sim listening");
    // Scripts read the URL from stdout to find a port-0 simulator.
    println!("{}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}
