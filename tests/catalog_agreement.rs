//! The operator's catalog and the simulator's product table are written apart, each from the
//! billing's reference; here they must agree on every price-list id, wildcard and multi-domain
//! flag. A wrong id on either side fails this test instead of passing both sides unnoticed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use ispcert::catalog::{MultiDomain, PRODUCTS};
use ispcert_sim::products;

#[test]
fn the_catalog_and_the_simulator_sell_the_same_products() {
    let sim = products::load().expect("the simulator's product table parses");
    assert_eq!(PRODUCTS.len(), sim.len(), "both list every product of the reference");
    for p in &PRODUCTS {
        let Some(s) = sim.iter().find(|s| s.pricelist_russian == p.pricelist_russian) else {
            panic!("{}: the simulator sells nothing under Russian price list {}", p.name, p.pricelist_russian);
        };
        assert_eq!(s.pricelist_foreign, p.pricelist_foreign, "{}: foreign price list", p.name);
        assert_eq!(s.wildcard, p.wildcard, "{}: wildcard", p.name);
        let (multi, included, addon) = match p.multi_domain {
            MultiDomain::No => (false, 1, None),
            MultiDomain::Addon { code } => (true, 1, Some(code)),
            MultiDomain::Included { domains } => (true, domains, None),
        };
        assert_eq!(s.multi_domain(), multi, "{}: multi-domain", p.name);
        assert_eq!(s.domains_included, included, "{}: domains included", p.name);
        assert_eq!(s.addon_code, addon, "{}: addon code", p.name);
    }
    for s in sim {
        assert!(
            PRODUCTS
                .iter()
                .any(|p| p.pricelist_russian == s.pricelist_russian && p.pricelist_foreign == s.pricelist_foreign),
            "the catalog lacks {} ({}/{})",
            s.title,
            s.pricelist_russian,
            s.pricelist_foreign
        );
    }
}
