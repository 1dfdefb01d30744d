//! The certificate products the ispmanager billing sells, as listed in its API reference.
//!
//! Every product has two price-list ids: one for Russian clients and one for foreign clients (the
//! same number for Comodo, DigiCert, GeoTrust, Thawte and RapidSSL). Users choose a product by a
//! stable name such as `alphassl-wildcard`, or by a raw price-list id of either region.
//!
//! Multi-domain ordering needs the billing's addon code for extra domains (`addon_<code>=<count>`).
//! The reference gives exactly one: 55364 for GlobalSign DomainSSL. Comodo PositiveSSL Multi Domain
//! includes three domains in its price, so up to two alt names need no addon. For any other product
//! the spec must give the addon code (`spec.multiDomain.addonCode`), taken from the account's order
//! form; without one, a multi-domain order is refused before anything is sent (see
//! [`Product::addon_for`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which of the two price lists an account buys from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Region {
    /// Russian clients: the first price-list column of the reference.
    Russian,
    /// Foreign clients: the second price-list column of the reference.
    Foreign,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Russian => "Russian",
            Region::Foreign => "Foreign",
        }
    }
}

/// The certificate authority brand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Brand {
    GlobalSign,
    AlphaSsl,
    Comodo,
    DigiCert,
    GeoTrust,
    Thawte,
    RapidSsl,
}

impl Brand {
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::GlobalSign => "GlobalSign",
            Brand::AlphaSsl => "AlphaSSL",
            Brand::Comodo => "Comodo",
            Brand::DigiCert => "DigiCert",
            Brand::GeoTrust => "GeoTrust",
            Brand::Thawte => "Thawte",
            Brand::RapidSsl => "RapidSSL",
        }
    }
}

/// How much the CA checks before issuing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Validation {
    /// Domain validation: control of the domain only.
    Dv,
    /// Organisation validation: the organisation is checked too.
    Ov,
    /// Extended validation.
    Ev,
}

impl Validation {
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Dv => "DV",
            Validation::Ov => "OV",
            Validation::Ev => "EV",
        }
    }
}

/// How a product covers more than one domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum MultiDomain {
    /// One name only (plus, for wildcards, the base domain the CA adds).
    No,
    /// Extra domains are bought as an addon whose code the reference gives.
    Addon { code: u32 },
    /// The price includes this many domains in all (common name included); more are not sold
    /// through any addon code we know.
    Included { domains: u32 },
}

/// One product of the billing's certificate catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Product {
    /// Stable name users write in manifests, for example `alphassl-wildcard`.
    pub name: &'static str,
    /// The product's name as the reference prints it.
    pub title: &'static str,
    pub brand: Brand,
    pub validation: Validation,
    pub wildcard: bool,
    pub multi_domain: MultiDomain,
    /// Price-list id for Russian clients.
    pub pricelist_russian: u32,
    /// Price-list id for foreign clients.
    pub pricelist_foreign: u32,
}

/// Why a product cannot take a set of alt names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AltNameError {
    #[error(
        "product {product} is single-domain and takes no alt names; choose a multi-domain product such as globalsign-domainssl or comodo-positivessl-multidomain"
    )]
    SingleDomain { product: &'static str },
    #[error("product {product} includes {included} domains in all (the common name and {} alt names), but {requested} alt names were given; the billing's addon code for more domains is not known: set spec.multiDomain.addonCode from your account's order form", included - 1)]
    TooManyForIncluded { product: &'static str, included: u32, requested: usize },
}

impl Product {
    pub fn pricelist(&self, region: Region) -> u32 {
        match region {
            Region::Russian => self.pricelist_russian,
            Region::Foreign => self.pricelist_foreign,
        }
    }

    /// The `addon_<code>=<count>` pair to send for `alt_names` extra domains, `None` when none is
    /// needed. `user_code` is the code the spec gives for products whose code the reference lacks;
    /// it is used only when the catalog has no code of its own.
    pub fn addon_for(&self, alt_names: usize, user_code: Option<u32>) -> Result<Option<(u32, usize)>, AltNameError> {
        if alt_names == 0 {
            return Ok(None);
        }
        match (self.multi_domain, user_code) {
            (MultiDomain::Addon { code }, _) => Ok(Some((code, alt_names))),
            (MultiDomain::Included { domains }, _) if alt_names < domains as usize => Ok(None),
            (MultiDomain::Included { .. } | MultiDomain::No, Some(code)) => Ok(Some((code, alt_names))),
            (MultiDomain::Included { domains }, None) => {
                Err(AltNameError::TooManyForIncluded { product: self.name, included: domains, requested: alt_names })
            }
            (MultiDomain::No, None) => Err(AltNameError::SingleDomain { product: self.name }),
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

macro_rules! product {
    ($name:literal, $title:literal, $brand:ident, $val:ident, wildcard = $wc:literal, $md:expr, $ru:literal, $fo:literal) => {
        Product {
            name: $name,
            title: $title,
            brand: Brand::$brand,
            validation: Validation::$val,
            wildcard: $wc,
            multi_domain: $md,
            pricelist_russian: $ru,
            pricelist_foreign: $fo,
        }
    };
}

/// The 27 products of the reference, in its order.
pub static PRODUCTS: [Product; 27] = [
    product!("globalsign-ev", "GlobalSign EV SSL", GlobalSign, Ev, wildcard = false, MultiDomain::No, 55330, 55352),
    product!(
        "globalsign-organizationssl-wildcard",
        "GlobalSign OrganizationSSL WildCard",
        GlobalSign,
        Ov,
        wildcard = true,
        MultiDomain::No,
        55329,
        55351
    ),
    product!(
        "globalsign-organizationssl",
        "GlobalSign OrganizationSSL",
        GlobalSign,
        Ov,
        wildcard = false,
        MultiDomain::No,
        55328,
        55350
    ),
    product!(
        "globalsign-domainssl-wildcard",
        "GlobalSign DomainSSL Wildcard",
        GlobalSign,
        Dv,
        wildcard = true,
        MultiDomain::No,
        55327,
        55349
    ),
    product!(
        "globalsign-domainssl",
        "GlobalSign DomainSSL",
        GlobalSign,
        Dv,
        wildcard = false,
        MultiDomain::Addon { code: 55364 },
        55326,
        55348
    ),
    product!("alphassl-wildcard", "AlphaSSL Wildcard", AlphaSsl, Dv, wildcard = true, MultiDomain::No, 55325, 55347),
    product!("alphassl", "AlphaSSL", AlphaSsl, Dv, wildcard = false, MultiDomain::No, 55324, 55346),
    product!("comodo-ev", "Comodo EV SSL certificate", Comodo, Ev, wildcard = false, MultiDomain::No, 55153, 55153),
    product!(
        "comodo-positivessl-wildcard",
        "Comodo PositiveSSL Wildcard",
        Comodo,
        Dv,
        wildcard = true,
        MultiDomain::No,
        27650,
        27650
    ),
    product!(
        "comodo-positivessl-multidomain",
        "Comodo PositiveSSL Multi Domain (3 domains included)",
        Comodo,
        Dv,
        wildcard = false,
        MultiDomain::Included { domains: 3 },
        27648,
        27648
    ),
    product!("comodo-positivessl", "Comodo Positive SSL", Comodo, Dv, wildcard = false, MultiDomain::No, 3033, 3033),
    product!(
        "comodo-premium-wildcard",
        "Comodo Premium WildCard",
        Comodo,
        Ov,
        wildcard = true,
        MultiDomain::No,
        2028,
        2028
    ),
    product!(
        "comodo-essentialssl-wildcard",
        "Comodo Essential SSL WildCard",
        Comodo,
        Dv,
        wildcard = true,
        MultiDomain::No,
        2027,
        2027
    ),
    product!("comodo-instantssl", "Comodo Instant SSL", Comodo, Ov, wildcard = false, MultiDomain::No, 2026, 2026),
    product!("comodo-essentialssl", "Comodo Essential SSL", Comodo, Dv, wildcard = false, MultiDomain::No, 2025, 2025),
    product!(
        "digicert-securesite-ev",
        "DigiCert Secure Site with EV",
        DigiCert,
        Ev,
        wildcard = false,
        MultiDomain::No,
        2023,
        2023
    ),
    product!(
        "digicert-securesite",
        "DigiCert Secure Site",
        DigiCert,
        Ov,
        wildcard = false,
        MultiDomain::No,
        2021,
        2021
    ),
    product!(
        "geotrust-truebusinessid-wildcard",
        "GeoTrust True BusinessID WildCard",
        GeoTrust,
        Ov,
        wildcard = true,
        MultiDomain::No,
        2020,
        2020
    ),
    product!(
        "geotrust-truebusinessid",
        "GeoTrust True BusinessID",
        GeoTrust,
        Ov,
        wildcard = false,
        MultiDomain::No,
        2019,
        2019
    ),
    product!("geotrust-dv", "GeoTrust DV SSL", GeoTrust, Dv, wildcard = false, MultiDomain::No, 2018, 2018),
    product!(
        "thawte-webserver-ev",
        "Thawte SSL Web Server with EV",
        Thawte,
        Ev,
        wildcard = false,
        MultiDomain::No,
        2015,
        2015
    ),
    product!("thawte-wildcard", "Thawte SSL Wildcard", Thawte, Ov, wildcard = true, MultiDomain::No, 2014, 2014),
    product!("thawte-webserver", "Thawte SSL Web Server", Thawte, Ov, wildcard = false, MultiDomain::No, 2012, 2012),
    product!(
        "geotrust-truebusinessid-ev",
        "GeoTrust True BusinessID with EV",
        GeoTrust,
        Ev,
        wildcard = false,
        MultiDomain::No,
        1032,
        1032
    ),
    product!("thawte-ssl123", "Thawte SSL123", Thawte, Dv, wildcard = false, MultiDomain::No, 1013, 1013),
    product!("rapidssl-wildcard", "RapidSSL Wildcard", RapidSsl, Dv, wildcard = true, MultiDomain::No, 1012, 1012),
    product!("rapidssl", "RapidSSL", RapidSsl, Dv, wildcard = false, MultiDomain::No, 1011, 1011),
];

/// A product found by name or id, and the region an id implies (a name implies none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub product: &'static Product,
    /// `Some` when the user gave a price-list id that exists in only one region's list.
    pub region_of_id: Option<Region>,
}

/// Finds a product by its stable name (case-insensitive) or by a raw price-list id of either region.
pub fn lookup(name_or_id: &str) -> Option<Lookup> {
    let wanted = name_or_id.trim();
    if let Ok(id) = wanted.parse::<u32>() {
        return PRODUCTS.iter().find_map(|p| {
            let region_of_id = match (p.pricelist_russian == id, p.pricelist_foreign == id) {
                (true, true) => None,
                (true, false) => Some(Region::Russian),
                (false, true) => Some(Region::Foreign),
                (false, false) => return None,
            };
            Some(Lookup { product: p, region_of_id })
        });
    }
    PRODUCTS.iter().find(|p| p.name.eq_ignore_ascii_case(wanted)).map(|product| Lookup { product, region_of_id: None })
}

/// Finds the product a price-list id belongs to and the region whose list holds that id.
pub fn by_pricelist(id: u32) -> Option<(&'static Product, Region)> {
    PRODUCTS.iter().find_map(|p| {
        if p.pricelist_russian == id {
            Some((p, Region::Russian))
        } else if p.pricelist_foreign == id {
            Some((p, Region::Foreign))
        } else {
            None
        }
    })
}

/// The closest stable names to a mistyped one, for "did you mean" messages.
pub fn suggestions(wrong: &str) -> Vec<&'static str> {
    let wrong = wrong.to_ascii_lowercase();
    let mut scored: Vec<(usize, &'static str)> =
        PRODUCTS.iter().map(|p| (strsim_distance(&wrong, p.name), p.name)).collect();
    scored.sort();
    scored.into_iter().take_while(|(d, _)| *d <= 4).take(3).map(|(_, n)| n).collect()
}

/// Levenshtein distance; the catalog is tiny, so the quadratic algorithm is fine.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_references_27_products_with_unique_names() {
        assert_eq!(PRODUCTS.len(), 27);
        let mut names: Vec<_> = PRODUCTS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 27);
    }

    #[test]
    fn price_list_ids_match_the_reference() {
        let gs = lookup("globalsign-domainssl").unwrap().product;
        assert_eq!((gs.pricelist_russian, gs.pricelist_foreign), (55326, 55348));
        assert_eq!(gs.pricelist(Region::Foreign), 55348);
        let rapid = lookup("RapidSSL").unwrap().product;
        assert_eq!((rapid.pricelist_russian, rapid.pricelist_foreign), (1011, 1011));
    }

    #[test]
    fn raw_ids_resolve_with_the_region_they_imply() {
        let l = lookup("55347").unwrap();
        assert_eq!(l.product.name, "alphassl-wildcard");
        assert_eq!(l.region_of_id, Some(Region::Foreign));
        assert_eq!(lookup("55325").unwrap().region_of_id, Some(Region::Russian));
        assert_eq!(lookup("2025").unwrap().region_of_id, None);
        assert!(lookup("99999").is_none());
        assert!(lookup("no-such-product").is_none());
        assert_eq!(by_pricelist(55352).unwrap().0.name, "globalsign-ev");
    }

    #[test]
    fn addon_codes_follow_the_documented_rules() {
        let gs = lookup("globalsign-domainssl").unwrap().product;
        assert_eq!(gs.addon_for(2, None), Ok(Some((55364, 2))));
        assert_eq!(gs.addon_for(0, None), Ok(None));
        let md = lookup("comodo-positivessl-multidomain").unwrap().product;
        assert_eq!(md.addon_for(2, None), Ok(None));
        assert!(matches!(md.addon_for(3, None), Err(AltNameError::TooManyForIncluded { .. })));
        assert_eq!(md.addon_for(3, Some(777)), Ok(Some((777, 3))));
        let single = lookup("rapidssl").unwrap().product;
        assert!(matches!(single.addon_for(1, None), Err(AltNameError::SingleDomain { .. })));
        assert_eq!(single.addon_for(1, Some(4242)), Ok(Some((4242, 1))));
    }

    #[test]
    fn suggestions_find_near_misses() {
        assert_eq!(suggestions("alphasll")[0], "alphassl");
        assert!(suggestions("completely-different-thing").is_empty());
    }
}
