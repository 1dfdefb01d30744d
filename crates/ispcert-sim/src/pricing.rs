//! What orders cost. The reference publishes no prices; the 12-month prices of `products.tsv`
//! keep the real proportions (DV cheap, OV more, EV most, wildcard more) so tests of "balance too
//! low" and of charging have realistic magnitudes.

use crate::products::{Product, Region};

use super::money::Money;

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
    for_period(product.twelve_months(region), period)
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
    use crate::products::{self, Validation};

    #[test]
    fn every_product_has_a_price_and_the_proportions_hold() {
        for p in products::all() {
            for region in [Region::Russian, Region::Foreign] {
                let twelve = product_price(p, region, 12);
                let twenty_four = product_price(p, region, 24);
                assert!(twelve > Money::ZERO);
                assert!(twenty_four > twelve && twenty_four < twelve.checked_mul(2).unwrap());
            }
        }
        let dv = product_price(products::titled("AlphaSSL").unwrap(), Region::Russian, 12);
        let wc = product_price(products::titled("AlphaSSL Wildcard").unwrap(), Region::Russian, 12);
        assert!(wc > dv);
        let ev = products::all().iter().filter(|p| p.validation == Validation::Ev);
        for p in ev {
            assert!(product_price(p, Region::Russian, 12) > dv);
        }
        assert_eq!(addon_price(Region::Foreign, 12, 2), Money::from_units(48));
    }
}
