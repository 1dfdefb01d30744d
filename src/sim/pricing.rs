//! The simulator's invented price table. The reference publishes no prices; these keep the real
//! proportions (DV cheap, OV more, EV most, wildcard more) so tests of "balance too low" and of
//! charging have realistic magnitudes.

use crate::catalog::{Product, Region};

use super::money::Money;

/// Prices of one product for 12 months, in whole roubles (Russian list) and in whole euros or
/// dollars (foreign list; the simulator prices EUR and USD accounts with the same numbers).
struct Row {
    name: &'static str,
    rub: i64,
    foreign: i64,
}

const fn row(name: &'static str, rub: i64, foreign: i64) -> Row {
    Row { name, rub, foreign }
}

static TABLE: [Row; 27] = [
    row("globalsign-ev", 39_900, 499),
    row("globalsign-organizationssl-wildcard", 49_900, 599),
    row("globalsign-organizationssl", 19_900, 249),
    row("globalsign-domainssl-wildcard", 29_900, 379),
    row("globalsign-domainssl", 12_900, 159),
    row("alphassl-wildcard", 9_900, 129),
    row("alphassl", 2_990, 39),
    row("comodo-ev", 14_900, 189),
    row("comodo-positivessl-wildcard", 8_900, 109),
    row("comodo-positivessl-multidomain", 4_900, 59),
    row("comodo-positivessl", 1_290, 16),
    row("comodo-premium-wildcard", 19_900, 249),
    row("comodo-essentialssl-wildcard", 9_900, 119),
    row("comodo-instantssl", 5_900, 75),
    row("comodo-essentialssl", 2_490, 32),
    row("digicert-securesite-ev", 79_900, 995),
    row("digicert-securesite", 39_900, 499),
    row("geotrust-truebusinessid-wildcard", 39_900, 499),
    row("geotrust-truebusinessid", 14_900, 189),
    row("geotrust-dv", 3_900, 49),
    row("thawte-webserver-ev", 29_900, 379),
    row("thawte-wildcard", 34_900, 439),
    row("thawte-webserver", 12_900, 159),
    row("geotrust-truebusinessid-ev", 24_900, 319),
    row("thawte-ssl123", 3_490, 45),
    row("rapidssl-wildcard", 6_900, 89),
    row("rapidssl", 1_190, 15),
];

/// Price of one extra domain (addon unit) for 12 months: whole roubles, whole euros/dollars.
const ADDON_RUB: i64 = 1_900;
const ADDON_FOREIGN: i64 = 24;

/// Scales a 12-month price to `period` months: 24 months cost 1.9 × 12 months (a small discount,
/// as billings usually give for longer terms).
fn for_period(twelve: Money, period: u32) -> Money {
    match period {
        24 => Money::from_cents(twelve.cents() * 19 / 10),
        _ => twelve,
    }
}

/// The price of `product` for `period` months (12 or 24) in the given region's list.
pub(crate) fn product_price(product: &Product, region: Region, period: u32) -> Money {
    let row = TABLE
        .iter()
        .find(|r| r.name == product.name)
        .expect("the price table covers every catalog product (unit-tested)");
    let units = match region {
        Region::Russian => row.rub,
        Region::Foreign => row.foreign,
    };
    for_period(Money::from_units(units), period)
}

/// The price of `count` extra domains for `period` months.
pub(crate) fn addon_price(region: Region, period: u32, count: u32) -> Money {
    let unit = match region {
        Region::Russian => ADDON_RUB,
        Region::Foreign => ADDON_FOREIGN,
    };
    for_period(Money::from_units(unit * i64::from(count)), period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{PRODUCTS, Validation};

    #[test]
    fn every_product_has_a_price_and_the_proportions_hold() {
        for p in &PRODUCTS {
            for region in [Region::Russian, Region::Foreign] {
                let twelve = product_price(p, region, 12);
                let twenty_four = product_price(p, region, 24);
                assert!(twelve > Money::ZERO);
                assert!(twenty_four > twelve && twenty_four < twelve.checked_mul(2).unwrap());
            }
        }
        let dv = product_price(crate::catalog::lookup("alphassl").unwrap().product, Region::Russian, 12);
        let wc = product_price(crate::catalog::lookup("alphassl-wildcard").unwrap().product, Region::Russian, 12);
        assert!(wc > dv);
        let ev = PRODUCTS.iter().filter(|p| p.validation == Validation::Ev);
        for p in ev {
            assert!(product_price(p, Region::Russian, 12) > dv);
        }
        assert_eq!(addon_price(Region::Foreign, 12, 2), Money::from_units(48));
    }
}
