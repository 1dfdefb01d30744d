//! Commands that look at the catalog and at a billing account.

use std::fmt::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::AccountArgs;
use crate::billing::{BillingClient, BillingError, Credentials, http_pool};
use crate::catalog::{self, MultiDomain, PRODUCTS, Region};

/// The catalog as a table.
pub fn catalog_table(region: Option<Region>) -> String {
    let mut out = String::new();
    let ids = match region {
        None => "RUSSIAN  FOREIGN".to_string(),
        Some(r) => format!("{:<8}", r.as_str().to_uppercase()),
    };
    let _ = writeln!(out, "{:<36} {ids}  {:<10} {:<4} {:<8} DOMAINS", "NAME", "BRAND", "VAL", "WILDCARD");
    for p in PRODUCTS.iter() {
        let ids = match region {
            None => format!("{:<8} {:<7}", p.pricelist_russian, p.pricelist_foreign),
            Some(r) => format!("{:<8}", p.pricelist(r)),
        };
        let domains = match p.multi_domain {
            MultiDomain::No => "1".to_string(),
            MultiDomain::Addon { code } => format!("1 + addon_{code}"),
            MultiDomain::Included { domains } => format!("{domains} included"),
        };
        let _ = writeln!(
            out,
            "{:<36} {ids}  {:<10} {:<4} {:<8} {domains}",
            p.name,
            p.brand.as_str(),
            p.validation.as_str(),
            if p.wildcard { "yes" } else { "no" },
        );
    }
    out
}

fn client(args: &AccountArgs) -> Result<BillingClient, String> {
    let password = std::fs::read_to_string(&args.password_file)
        .map_err(|e| format!("cannot read the password file {}: {e}", args.password_file.display()))?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(format!("the password file {} is empty", args.password_file.display()));
    }
    let credentials = Credentials::new(args.email.trim(), password);
    // With the causes: "builder error" alone hides a missing CA bundle.
    let http = http_pool(Duration::from_secs(args.timeout))
        .map_err(|e| format!("cannot set up HTTPS: {}", crate::billing::with_causes(&e)))?;
    BillingClient::new(http, &args.url, credentials).map_err(|e| e.to_string())
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn explain(e: &BillingError) -> String {
    match e {
        BillingError::Auth => format!("{e}. Check the email and the password file."),
        BillingError::Access { .. } => e.to_string(),
        BillingError::Transport { .. } => format!("{e}. Check --url and the network path to the billing."),
        other => other.to_string(),
    }
}

/// Prints the billing's country ids. Without `region` the account's price list is found by
/// trying the Russian one, then the foreign one (a refused price list costs nothing), and the
/// region that worked is said, for the issuer's `spec.region`.
pub async fn countries(args: &AccountArgs, product: &str, region: Option<Region>) -> ExitCode {
    let client = match client(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let Some(found) = catalog::lookup(product) else {
        return fail(format!("unknown product {product:?}; `ispcert catalog` lists them"));
    };
    let tries: Vec<Region> = match found.region_of_id.or(region) {
        Some(r) => vec![r],
        None => vec![Region::Russian, Region::Foreign],
    };
    let mut refused = None;
    for r in &tries {
        match client.countries(found.product.pricelist(*r), 12).await {
            Ok(list) => {
                if tries.len() > 1 {
                    eprintln!(
                        "the account buys from the {} price list (spec.region: {} in its issuer)",
                        r.as_str(),
                        r.as_str()
                    );
                }
                println!("{:<6} NAME", "ID");
                for c in list {
                    println!("{:<6} {}", c.id, c.name);
                }
                return ExitCode::SUCCESS;
            }
            Err(BillingError::InvalidField { field, .. }) if field == "pricelist" => refused = Some(*r),
            Err(e) => return fail(explain(&e)),
        }
    }
    let other = match refused {
        Some(Region::Russian) => "--region foreign",
        _ => "--region russian",
    };
    fail(match (region, found.region_of_id) {
        (Some(_), None) => format!(
            "the billing refused {product}'s price list for this account; it may buy from the other list: try {other}"
        ),
        _ => format!(
            "the billing refused {product}'s price lists for this account; check the product with `ispcert catalog`"
        ),
    })
}

pub async fn check(args: &AccountArgs) -> ExitCode {
    let client = match client(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let who = client.credentials().redacted_email();
    if let Err(e) = client.verify_access().await {
        return fail(format!("{who} at {}: {}", client.endpoint(), explain(&e)));
    }
    println!("ok: {who} can use the API of {} from this machine", client.endpoint());
    match client.list().await {
        Ok(rows) => {
            let active = rows.iter().filter(|r| r.item_status == Some(2)).count();
            println!("ok: the account has {} certificates ({active} active)", rows.len());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("listing certificates: {}", explain(&e))),
    }
}

pub async fn certificates(args: &AccountArgs) -> ExitCode {
    let client = match client(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client.list().await {
        Ok(rows) => {
            println!("{:<10} {:<40} {:<10} {:<12} {:<12} STATUS", "ID", "DOMAIN", "PRICELIST", "CREATED", "EXPIRES");
            for r in rows {
                let state = r
                    .item_status
                    .map(|c| match c {
                        1 => "ordered",
                        2 => "active",
                        3 => "suspended",
                        4 => "deleted",
                        5 => "processing",
                        _ => "unknown",
                    })
                    .unwrap_or("unknown");
                println!(
                    "{:<10} {:<40} {:<10} {:<12} {:<12} {state}{}",
                    r.id,
                    r.domain,
                    r.pricelist.unwrap_or_default(),
                    r.created.unwrap_or_default(),
                    r.expires.unwrap_or_default(),
                    r.status_msg.map(|m| format!(" ({m})")).unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(explain(&e)),
    }
}

/// Prints subject, issuer, names and validity of every certificate in a PEM file.
pub fn inspect(file: &std::path::Path) -> ExitCode {
    use std::io::Read;
    let mut text = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text).map(|_| ())
    } else {
        std::fs::read(file).map(|t| text = t)
    };
    if let Err(e) = read {
        return fail(format!("cannot read {}: {e}", file.display()));
    }
    let ders = crate::pki::chain::certificates_in_pem(&text);
    if ders.is_empty() {
        return fail("no PEM certificate in the input");
    }
    for (i, der) in ders.iter().enumerate() {
        match crate::pki::chain::CertInfo::from_der(der) {
            Ok(c) => {
                println!("certificate {}:", i + 1);
                println!("  subject:    {}", c.subject);
                println!("  issuer:     {}", c.issuer);
                if !c.dns_names.is_empty() {
                    println!("  names:      {}", c.dns_names.join(", "));
                }
                println!("  serial:     {}", c.serial);
                println!("  not before: {}", c.not_before.strftime("%Y-%m-%d %H:%M:%S UTC"));
                println!("  not after:  {}", c.not_after.strftime("%Y-%m-%d %H:%M:%S UTC"));
            }
            Err(e) => return fail(format!("certificate {} is not valid X.509: {e}", i + 1)),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_product_once() {
        let t = catalog_table(None);
        assert_eq!(t.lines().count(), 28);
        assert!(t.contains("globalsign-domainssl") && t.contains("1 + addon_55364"));
        let foreign = catalog_table(Some(Region::Foreign));
        assert!(foreign.contains("55347") && !foreign.contains("55325"));
    }
}
