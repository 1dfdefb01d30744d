//! The country list of the order form (`slist.field_country`). The billing numbers countries with
//! its own ids; only 182 = Russia is documented. The other ids follow the same scheme (position in
//! the alphabetical ISO 3166 list, which puts Russia at 182) and are the simulator's invention.

/// One selectable country: the billing's id, the English name and the ISO 3166-1 alpha-2 code that
/// goes into the `C` attribute of a subject.
pub(crate) struct Country {
    pub id: u32,
    pub name: &'static str,
    pub iso: &'static str,
}

const fn c(id: u32, name: &'static str, iso: &'static str) -> Country {
    Country { id, name, iso }
}

pub(crate) static COUNTRIES: [Country; 44] = [
    c(3, "Albania", "AL"),
    c(11, "Argentina", "AR"),
    c(12, "Armenia", "AM"),
    c(14, "Australia", "AU"),
    c(15, "Austria", "AT"),
    c(16, "Azerbaijan", "AZ"),
    c(21, "Belarus", "BY"),
    c(22, "Belgium", "BE"),
    c(31, "Brazil", "BR"),
    c(35, "Bulgaria", "BG"),
    c(39, "Canada", "CA"),
    c(45, "China", "CN"),
    c(57, "Cyprus", "CY"),
    c(58, "Czechia", "CZ"),
    c(59, "Denmark", "DK"),
    c(68, "Estonia", "EE"),
    c(74, "Finland", "FI"),
    c(75, "France", "FR"),
    c(81, "Georgia", "GE"),
    c(82, "Germany", "DE"),
    c(85, "Greece", "GR"),
    c(100, "Hungary", "HU"),
    c(102, "India", "IN"),
    c(110, "Israel", "IL"),
    c(111, "Italy", "IT"),
    c(113, "Japan", "JP"),
    c(116, "Kazakhstan", "KZ"),
    c(121, "Kyrgyzstan", "KG"),
    c(123, "Latvia", "LV"),
    c(129, "Lithuania", "LT"),
    c(146, "Moldova", "MD"),
    c(157, "Netherlands", "NL"),
    c(166, "Norway", "NO"),
    c(177, "Poland", "PL"),
    c(178, "Portugal", "PT"),
    c(182, "Russia", "RU"),
    c(197, "Serbia", "RS"),
    c(209, "Spain", "ES"),
    c(215, "Sweden", "SE"),
    c(216, "Switzerland", "CH"),
    c(227, "Turkey", "TR"),
    c(233, "Ukraine", "UA"),
    c(235, "United Kingdom", "GB"),
    c(236, "United States", "US"),
];

/// The country with the billing id `id` (as the decimal string the form sends).
pub(crate) fn by_id(id: &str) -> Option<&'static Country> {
    let id: u32 = id.trim().parse().ok()?;
    COUNTRIES.iter().find(|c| c.id == id)
}

/// The country whose ISO code is `iso` (from a CSR's `C` attribute).
pub(crate) fn by_iso(iso: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.iso.eq_ignore_ascii_case(iso.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russia_is_182_and_ids_and_codes_are_unique() {
        assert_eq!(by_id("182").unwrap().iso, "RU");
        assert_eq!(by_iso("ru").unwrap().id, 182);
        let mut ids: Vec<_> = COUNTRIES.iter().map(|c| c.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), COUNTRIES.len(), "sorted and unique");
        assert!(by_id("x").is_none() && by_id("999").is_none());
    }
}
