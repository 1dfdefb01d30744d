//! The products the simulated billing sells, read from `products.tsv`: the reference's table of
//! price-list ids, plus what a CA module knows about each product (brand, validation, wildcard,
//! domains included) and the simulator's invented prices.
//!
//! This table is the simulator's own, written from the reference, and not the operator's
//! catalog: a billing that trusted the operator's idea of the products could not catch a wrong
//! price-list id in it. A test of the `ispcert-tests` crate compares the two.

use std::fmt;
use std::sync::OnceLock;

use crate::money::Money;

/// Which of the two price lists an account buys from: the Russian clients' (the reference's first
/// column) or the foreign clients' (the second). Its `Debug` form is the name messages use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    Russian,
    Foreign,
}

/// The brands whose CA module stores issued certificates as a ZIP (a `.p7b` plus `.crt` files);
/// the others store PEM text, so the client meets both shapes.
const ZIP_BRANDS: [&str; 2] = ["GlobalSign", "AlphaSSL"];

/// How much the CA checks before issuing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Validation {
    /// Domain validation: the certificate names domains only.
    Dv,
    /// Organisation validation: the certificate carries the organisation.
    Ov,
    /// Extended validation.
    Ev,
}

/// One product of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// The product's name as the reference prints it.
    pub title: String,
    /// Price-list id for Russian clients.
    pub pricelist_russian: u32,
    /// Price-list id for foreign clients.
    pub pricelist_foreign: u32,
    /// The issuing CA brand, as the table names it: each has a simulated intermediate of its own.
    pub brand: String,
    pub validation: Validation,
    /// The common name must be `*.domain`.
    pub wildcard: bool,
    /// Domains the price includes, the common name counted (1 for single-domain products).
    pub domains_included: u32,
    /// The extra-domain addon code the reference gives for this product, if any.
    pub addon_code: Option<u32>,
    /// 12-month price in whole roubles (Russian list) and whole euros or dollars (foreign list).
    price_rub: i64,
    price_foreign: i64,
}

impl Product {
    pub fn pricelist(&self, region: Region) -> u32 {
        match region {
            Region::Russian => self.pricelist_russian,
            Region::Foreign => self.pricelist_foreign,
        }
    }

    /// Whether the product covers more than one domain at all: domains included in its price,
    /// or an addon code the reference gives. (The simulator can be told further addon codes.)
    pub fn multi_domain(&self) -> bool {
        self.domains_included > 1 || self.addon_code.is_some()
    }

    /// Whether issued certificates come as a ZIP rather than PEM text.
    pub fn delivers_zip(&self) -> bool {
        ZIP_BRANDS.contains(&self.brand.as_str())
    }

    /// The 12-month price in the region's list.
    pub(crate) fn twelve_months(&self, region: Region) -> Money {
        Money::from_units(match region {
            Region::Russian => self.price_rub,
            Region::Foreign => self.price_foreign,
        })
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

const SOURCE: &str = include_str!("products.tsv");

static TABLE: OnceLock<Result<Vec<Product>, String>> = OnceLock::new();

/// The table, parsed once; an error names the line that does not parse.
pub fn load() -> Result<&'static [Product], &'static str> {
    TABLE.get_or_init(|| parse(SOURCE)).as_deref().map_err(String::as_str)
}

/// The table; empty if it does not parse (the simulator refuses to start then, see [`load`]).
pub fn all() -> &'static [Product] {
    load().unwrap_or(&[])
}

/// Whether any product is sold under price list `id`, in either region's list.
pub fn is_pricelist(id: u32) -> bool {
    all().iter().any(|p| p.pricelist_russian == id || p.pricelist_foreign == id)
}

/// The product sold under `id` in `region`'s list.
pub fn in_region(id: u32, region: Region) -> Option<&'static Product> {
    all().iter().find(|p| p.pricelist(region) == id)
}

/// Every brand of the table, once, in table order.
pub fn brands() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in all() {
        if !out.contains(&p.brand.as_str()) {
            out.push(&p.brand);
        }
    }
    out
}

/// The first product whose title contains `part` (case-insensitive), for tests and examples.
pub fn titled(part: &str) -> Option<&'static Product> {
    let part = part.to_lowercase();
    all()
        .iter()
        .find(|p| p.title.to_lowercase() == part)
        .or_else(|| all().iter().find(|p| p.title.to_lowercase().contains(&part)))
}

fn parse(source: &str) -> Result<Vec<Product>, String> {
    let mut out = Vec::new();
    let rows = source.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    for (n, line) in rows.skip(1) {
        out.push(parse_row(line).map_err(|e| format!("products.tsv line {}: {e}", n + 1))?);
    }
    Ok(out)
}

fn parse_row(line: &str) -> Result<Product, String> {
    let f: Vec<&str> = line.split('\t').map(str::trim).collect();
    let [title, ru, fo, brand, validation, wildcard, domains, addon, rub, foreign] = f.as_slice() else {
        return Err(format!("expected 10 tab-separated columns, found {}", f.len()));
    };
    let number = |s: &str, what: &str| s.parse::<u32>().map_err(|_| format!("{what} {s:?} is not a number"));
    let price = |s: &str| s.parse::<i64>().map_err(|_| format!("price {s:?} is not a number"));
    Ok(Product {
        title: title.to_string(),
        pricelist_russian: number(ru, "price list")?,
        pricelist_foreign: number(fo, "price list")?,
        brand: brand.to_string(),
        validation: match *validation {
            "DV" => Validation::Dv,
            "OV" => Validation::Ov,
            "EV" => Validation::Ev,
            other => return Err(format!("validation {other:?} is not DV, OV or EV")),
        },
        wildcard: match *wildcard {
            "yes" => true,
            "no" => false,
            other => return Err(format!("wildcard {other:?} is not yes or no")),
        },
        domains_included: number(domains, "domains")?,
        addon_code: match *addon {
            "-" => None,
            code => Some(number(code, "addon code")?),
        },
        price_rub: price(rub)?,
        price_foreign: price(foreign)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_references_27_products() {
        let all = load().unwrap();
        assert_eq!(all.len(), 27);
        let gs = titled("GlobalSign DomainSSL").unwrap();
        assert_eq!((gs.pricelist_russian, gs.pricelist_foreign, gs.addon_code), (55326, 55348, Some(55364)));
        assert!(gs.delivers_zip() && gs.multi_domain() && !gs.wildcard);
        assert!(!titled("RapidSSL").unwrap().delivers_zip());
        assert_eq!(brands(), ["GlobalSign", "AlphaSSL", "Comodo", "DigiCert", "GeoTrust", "Thawte", "RapidSSL"]);
        let md = titled("Multi Domain").unwrap();
        assert_eq!((md.pricelist_russian, md.domains_included), (27648, 3));
        assert_eq!(in_region(55347, Region::Foreign).map(|p| p.title.as_str()), Some("AlphaSSL Wildcard"));
        assert!(is_pricelist(55347) && !is_pricelist(55331));
        assert_eq!(in_region(55324, Region::Foreign), None);
        assert_eq!(in_region(1011, Region::Foreign).map(|p| p.title.as_str()), Some("RapidSSL"));
    }

    #[test]
    fn every_id_is_unique_within_its_list() {
        for region in [Region::Russian, Region::Foreign] {
            let mut ids: Vec<u32> = all().iter().map(|p| p.pricelist(region)).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 27, "{region:?}");
        }
    }

    #[test]
    fn bad_rows_are_named() {
        assert!(parse("h\nX\t1\t2\tComodo\tDV\tmaybe\t1\t-\t1\t1").unwrap_err().contains("line 2: wildcard"));
        assert!(parse("h\nX\t1").unwrap_err().contains("expected 10"));
        assert!(parse("h\nX\t1\t2\tComodo\tXV\tno\t1\t-\t1\t1").unwrap_err().contains("validation"));
    }
}
