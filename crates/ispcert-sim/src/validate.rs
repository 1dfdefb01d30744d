//! The strict checks of the billing's order and reissue forms. Every function returns the
//! `Refusal` the billing would answer; none touches state, so a refused request charges nothing by
//! construction. Missing fields are reported before bad values, in the order the reference lists
//! them.

use crate::products::{self, Product, Region};

use super::ca::{self, Csr, Subject};
use super::countries;
use super::params::Params;
use super::render::Refusal;
use super::state::{CrtType, OrderData, leaf_names};

/// Mailbox names a CA accepts for domain validation by email.
const APPROVER_BOXES: [&str; 5] = ["admin", "administrator", "hostmaster", "postmaster", "webmaster"];

/// The contact fields every order must carry, in the reference's order.
pub(crate) const CONTACT_FIELDS: [&str; 10] = [
    "adm_fname",
    "adm_lname",
    "adm_jtitle",
    "adm_email",
    "adm_phone",
    "tech_fname",
    "tech_lname",
    "tech_jtitle",
    "tech_email",
    "tech_phone",
];

/// Longest field value the simulator stores (the billing's columns are bounded too).
const MAX_FIELD: usize = 255;
/// The most alt names one certificate takes (the largest public CAs stop at 250 names).
const MAX_ALT_NAMES: usize = 250;

/// A DNS host name (lowercased by the caller): labels of letters, digits and inner hyphens, at
/// least two labels, at most 253 characters. `*.` is allowed as the first label when `wildcard`.
pub(crate) fn is_hostname(name: &str, wildcard: bool) -> bool {
    let rest = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => return false,
        None => name,
    };
    let labels: Vec<&str> = rest.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels.last().is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// The mailbox domain of a name: a wildcard `*.d` is validated at `d`.
pub(crate) fn approver_domain(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

/// Checks the product against the account's price list: `value`/`pricelist` for an unknown id or
/// one of the other region's list.
pub(crate) fn pricelist(p: &Params, region: Region) -> Result<(&'static Product, u32), Refusal> {
    let raw = p.required("pricelist")?;
    let id: u32 = raw.parse().map_err(|_| Refusal::value("pricelist", format!("{raw:?} is not a price list id")))?;
    let product = products::in_region(id, region).ok_or_else(|| match products::is_pricelist(id) {
        true => Refusal::value(
            "pricelist",
            format!("price list {id} is not offered to this account's clients ({region:?} list)"),
        ),
        false => Refusal::value("pricelist", format!("unknown price list {id}")),
    })?;
    Ok((product, id))
}

/// `period` must be 12 or 24 months.
pub(crate) fn period(p: &Params) -> Result<u32, Refusal> {
    match p.required("period")? {
        "12" => Ok(12),
        "24" => Ok(24),
        other => Err(Refusal::value("period", format!("{other:?} months is not offered (12 or 24)"))),
    }
}

/// The alt names of `altname` (space-separated), lowercased, checked as host names, without
/// duplicates and without the common name (or its wildcard base).
pub(crate) fn altnames(raw: &str, field: &str, cn: &str) -> Result<Vec<String>, Refusal> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in raw.split_whitespace() {
        if out.len() == MAX_ALT_NAMES {
            return Err(Refusal::value(field, format!("more than {MAX_ALT_NAMES} alt names")));
        }
        let name = name.to_ascii_lowercase();
        if !is_hostname(&name, false) {
            return Err(Refusal::value(
                field,
                format!("{name:?} is not a domain name (wildcards only as the common name of a wildcard product)"),
            ));
        }
        if name == cn || name == approver_domain(cn) || !seen.insert(name.clone()) {
            return Err(Refusal::value(field, format!("{name:?} is listed twice")));
        }
        out.push(name);
    }
    Ok(out)
}

/// The common name against the product: wildcard products take exactly `*.domain`, others never a
/// wildcard.
pub(crate) fn cn(raw: &str, product: &Product) -> Result<String, Refusal> {
    let cn = raw.trim().to_ascii_lowercase();
    if product.wildcard && !cn.starts_with("*.") {
        return Err(Refusal::value(
            "CN",
            format!("{} is a wildcard product: the common name must be *.domain", product.title),
        ));
    }
    if !product.wildcard && cn.contains('*') {
        return Err(Refusal::value("CN", format!("{} is not a wildcard product", product.title)));
    }
    if !is_hostname(&cn, product.wildcard) {
        return Err(Refusal::value("CN", format!("{cn:?} is not a domain name")));
    }
    Ok(cn)
}

/// `approver_email_1..=n` for `names` (common name first): each required, each one of the five
/// mailboxes of its domain (case-insensitive); an index past the last name is refused too, because
/// it means the caller counted the names differently than the billing.
pub(crate) fn approvers(p: &Params, names: &[&str]) -> Result<Vec<String>, Refusal> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = format!("approver_email_{}", i + 1);
        let email = p.required(&field)?;
        let domain = approver_domain(name);
        let ok = email.rsplit_once('@').is_some_and(|(local, d)| {
            d.eq_ignore_ascii_case(domain) && APPROVER_BOXES.iter().any(|b| b.eq_ignore_ascii_case(local))
        });
        if !ok {
            return Err(Refusal::value(
                &field,
                format!(
                    "{email:?} is not one of admin@, administrator@, hostmaster@, postmaster@, webmaster@ {domain}"
                ),
            ));
        }
        out.push(email.to_ascii_lowercase());
    }
    for (k, v) in p.iter() {
        if let Some(n) = k.strip_prefix("approver_email_") {
            let beyond = n.parse::<usize>().map_or(true, |n| n == 0 || n > names.len());
            if beyond && !v.trim().is_empty() {
                return Err(Refusal::value(
                    k,
                    format!("there are only {} domain names in this certificate", names.len()),
                ));
            }
        }
    }
    Ok(out)
}

/// `approver_method`, when given, must be `auth_email`: the reference documents no other method
/// through this API, and approver emails are what the simulator checks.
pub(crate) fn approver_method(p: &Params, required: bool) -> Result<(), Refusal> {
    match p.filled("approver_method") {
        None if required => Err(Refusal::missed("approver_method")),
        None | Some("auth_email") => Ok(()),
        Some(other) => Err(Refusal::value("approver_method", format!("{other:?} is not supported (auth_email)"))),
    }
}

/// Parses a CSR field: `value`/`csr` when unreadable or badly signed.
pub(crate) fn csr(raw: &str) -> Result<Csr, Refusal> {
    ca::parse_csr(raw).map_err(|e| Refusal::value("csr", e))
}

/// The CSR may ask only for names that were ordered.
pub(crate) fn csr_names_within(csr: &Csr, names: &[String]) -> Result<(), Refusal> {
    match csr.sans.iter().find(|s| !names.contains(s)) {
        Some(extra) => Err(Refusal::value("csr", format!("the request asks for {extra:?}, which is not in the order"))),
        None => Ok(()),
    }
}

/// A bounded free-text field.
fn text(p: &Params, name: &str) -> Result<Option<String>, Refusal> {
    match p.filled(name) {
        Some(v) if v.chars().count() > MAX_FIELD => {
            Err(Refusal::value(name, format!("longer than {MAX_FIELD} characters")))
        }
        Some(v) => Ok(Some(v.to_owned())),
        None => Ok(None),
    }
}

fn email_like(p: &Params, name: &str) -> Result<(), Refusal> {
    let v = p.required(name)?;
    let ok =
        v.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !v.contains(char::is_whitespace));
    if ok { Ok(()) } else { Err(Refusal::value(name, format!("{v:?} is not an email address"))) }
}

/// Multi-domain pricing rules for `altnames` on `product`, with the addon code the simulator
/// knows for its price list (`addon_code`). Returns (addon, paid alt names).
pub(crate) fn addons(
    p: &Params,
    product: &Product,
    addon_code: Option<u32>,
    altnames: usize,
) -> Result<(Option<(u32, u32)>, u32), Refusal> {
    let included = product.domains_included.saturating_sub(1);
    let mut given: Option<(u32, u32)> = None;
    for (k, v) in p.iter() {
        let Some(code) = k.strip_prefix("addon_") else {
            continue;
        };
        // Field names match literally: `addon_055364` is not `addon_55364`.
        let code_ok = addon_code.filter(|c| code == c.to_string());
        let Some(code) = code_ok else {
            return Err(Refusal::value(k, format!("addon {code:?} does not belong to {}", product.title)));
        };
        let count: u32 =
            v.trim().parse().map_err(|_| Refusal::value(k, format!("{v:?} is not a number of domains")))?;
        given = Some((code, count));
    }
    if altnames as u32 <= included {
        return match given {
            Some((code, n)) if n > 0 => Err(Refusal::value(
                format!("addon_{code}"),
                format!("{} alt names are included in {}: no addon is needed", included, product.title),
            )),
            _ => Ok((None, included)),
        };
    }
    let Some(code) = addon_code else {
        let why = if included == 0 {
            format!("{} is a single-domain product", product.title)
        } else {
            format!("{} includes only {included} alt names", product.title)
        };
        return Err(Refusal::value("altname", why));
    };
    let field = format!("addon_{code}");
    let (_, count) = given.ok_or_else(|| Refusal::missed(&field))?;
    if count as usize != altnames {
        return Err(Refusal::value(
            &field,
            format!("{count} additional domains paid for, but {altnames} alt names given"),
        ));
    }
    Ok((Some((code, count)), count.max(included)))
}

/// A fully checked `certificate.order.param`.
#[derive(Debug)]
pub(crate) struct ValidOrder {
    pub product: &'static Product,
    pub pricelist: u32,
    pub period: u32,
    pub crt_type: CrtType,
    pub cn: String,
    pub altnames: Vec<String>,
    pub addon: Option<(u32, u32)>,
    pub paid_altnames: u32,
    pub approvers: Vec<String>,
    pub data: OrderData,
    pub csr_pem: String,
    pub key_pem: Option<String>,
    pub spki: Vec<u8>,
    pub remoteid: Option<String>,
}

/// Subject fields a `crt_type=generate` form carries (`field_country`, `ST`, `L`, `O`, `OU`,
/// `emailAddress`), checked.
pub(crate) fn generate_subject(p: &Params) -> Result<(Subject, String), Refusal> {
    let country_id = p.required("field_country")?;
    let country = countries::by_id(country_id)
        .ok_or_else(|| Refusal::value("field_country", format!("unknown country id {country_id:?}")))?;
    let subject = Subject {
        o: text(p, "O")?,
        ou: text(p, "OU")?,
        l: text(p, "L")?,
        st: text(p, "ST")?,
        c: Some(country.iso.to_owned()),
        email: text(p, "emailAddress")?,
    };
    if let Some(e) = &subject.email
        && !e.contains('@')
    {
        return Err(Refusal::value("emailAddress", format!("{e:?} is not an email address")));
    }
    Ok((subject, country.id.to_string()))
}

/// Validates a whole order for an account of `region`; `addon_code` is the simulator's addon
/// table lookup for a price list.
pub(crate) fn order(
    p: &Params,
    region: Region,
    addon_code: impl Fn(u32) -> Option<u32>,
) -> Result<ValidOrder, Refusal> {
    let crt_type = match p.required("crt_type")? {
        "generate" => CrtType::Generate,
        "manual" => CrtType::Manual,
        other => {
            return Err(Refusal::value("crt_type", format!("{other:?} (generate or manual)")));
        }
    };
    // Missing fields first, in the reference's order.
    let mut required: Vec<&str> = vec!["pricelist", "period"];
    if crt_type == CrtType::Generate {
        required.extend(["field_country", "CN", "ST", "L", "O"]);
    }
    required.extend(CONTACT_FIELDS);
    required.push("approver_email_1");
    required.push("csr");
    if crt_type == CrtType::Generate {
        required.push("key");
    }
    for f in &required {
        p.required(f)?;
    }
    let (product, pricelist) = pricelist(p, region)?;
    let period = period(p)?;
    for f in CONTACT_FIELDS {
        if f.ends_with("_email") {
            email_like(p, f)?;
        } else {
            text(p, f)?;
        }
    }
    let contacts = CONTACT_FIELDS.iter().map(|f| (*f, p.filled(f).unwrap_or_default().to_owned())).collect();
    let csr_pem = p.required("csr")?.to_owned();
    let csr = csr(&csr_pem)?;
    let (cn, data, key_pem) = match crt_type {
        CrtType::Generate => {
            let (subject, field_country) = generate_subject(p)?;
            let key_pem = p.required("key")?.to_owned();
            let key_spki = ca::key_spki(&key_pem).map_err(|e| Refusal::value("key", e))?;
            if key_spki != csr.spki {
                return Err(Refusal::value("csr", "the key does not belong to this request"));
            }
            let cn = cn(p.required("CN")?, product)?;
            if csr.cn.as_deref() != Some(cn.as_str()) {
                return Err(Refusal::value(
                    "csr",
                    format!("the request is for {:?}, not for {cn:?}", csr.cn.as_deref().unwrap_or("")),
                ));
            }
            (cn, OrderData { contacts, subject, field_country: Some(field_country) }, Some(key_pem))
        }
        CrtType::Manual => {
            let from_csr = csr.cn.clone().ok_or_else(|| Refusal::value("csr", "the request has no common name"))?;
            if let Some(given) = p.filled("CN")
                && !given.eq_ignore_ascii_case(&from_csr)
            {
                return Err(Refusal::value(
                    "CN",
                    format!("{given:?} differs from the request's common name {from_csr:?}"),
                ));
            }
            let cn = cn(&from_csr, product)?;
            let field_country = csr.subject.c.as_deref().and_then(countries::by_iso).map(|c| c.id.to_string());
            (cn, OrderData { contacts, subject: csr.subject.clone(), field_country }, None)
        }
    };
    let altnames = match (p.filled("altname"), p.filled("altname_input")) {
        (None, None) => Vec::new(),
        (Some(_), None) => return Err(Refusal::missed("altname_input")),
        (None, Some(_)) => return Err(Refusal::missed("altname")),
        (Some(a), Some(ai)) => {
            let list = altnames(a, "altname", &cn)?;
            let input: Vec<String> = ai.split_whitespace().map(str::to_ascii_lowercase).collect();
            if input != list {
                return Err(Refusal::value("altname_input", "differs from altname"));
            }
            list
        }
    };
    let (addon, paid_altnames) = addons(p, product, addon_code(pricelist), altnames.len())?;
    let names = leaf_names(&cn, &altnames);
    csr_names_within(&csr, &names)?;
    approver_method(p, false)?;
    let mut approver_names: Vec<&str> = vec![cn.as_str()];
    approver_names.extend(altnames.iter().map(String::as_str));
    let approvers = approvers(p, &approver_names)?;
    let remoteid = text(p, "remoteid")?;
    Ok(ValidOrder {
        product,
        pricelist,
        period,
        crt_type,
        cn,
        altnames,
        addon,
        paid_altnames,
        approvers,
        data,
        csr_pem,
        key_pem,
        spki: csr.spki,
        remoteid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert!(is_hostname("a.example.com", false));
        assert!(is_hostname("*.example.com", true));
        assert!(!is_hostname("*.example.com", false));
        assert!(!is_hostname("localhost", false));
        assert!(!is_hostname("a..com", false));
        assert!(!is_hostname("-a.com", false));
        assert!(!is_hostname("a.b.*", true));
        assert!(!is_hostname("1.2.3.4", false));
        assert!(!is_hostname(&format!("{}.com", "a".repeat(64)), false));
    }

    #[test]
    fn approver_emails_follow_the_domain_order_and_reject_extra_indexes() {
        let p =
            Params::from_pairs(&[("approver_email_1", "Admin@Example.com"), ("approver_email_2", "webmaster@b.com")]);
        assert_eq!(approvers(&p, &["*.example.com", "b.com"]).unwrap().len(), 2);
        let swapped =
            Params::from_pairs(&[("approver_email_1", "webmaster@b.com"), ("approver_email_2", "admin@example.com")]);
        assert_eq!(approvers(&swapped, &["example.com", "b.com"]).unwrap_err().object, "approver_email_1");
        let extra = Params::from_pairs(&[("approver_email_1", "admin@a.com"), ("approver_email_2", "admin@b.com")]);
        assert_eq!(approvers(&extra, &["a.com"]).unwrap_err().object, "approver_email_2");
        let other_box = Params::from_pairs(&[("approver_email_1", "root@a.com")]);
        assert_eq!(approvers(&other_box, &["a.com"]).unwrap_err().kind, "value");
        let missing = Params::from_pairs(&[("approver_email_1", "admin@a.com")]);
        assert_eq!(approvers(&missing, &["a.com", "b.com"]).unwrap_err().kind, "missed");
    }

    #[test]
    fn addon_rules() {
        let gs = products::titled("GlobalSign DomainSSL").unwrap();
        let ok = Params::from_pairs(&[("addon_55364", "2")]);
        assert_eq!(addons(&ok, gs, Some(55364), 2).unwrap(), (Some((55364, 2)), 2));
        assert_eq!(addons(&ok, gs, Some(55364), 3).unwrap_err().object, "addon_55364");
        let none = Params::default();
        assert_eq!(addons(&none, gs, Some(55364), 1).unwrap_err().kind, "missed");
        let wrong = Params::from_pairs(&[("addon_1", "2")]);
        assert_eq!(addons(&wrong, gs, Some(55364), 2).unwrap_err().object, "addon_1");
        let md = products::titled("Multi Domain").unwrap();
        assert_eq!(addons(&none, md, None, 2).unwrap(), (None, 2));
        assert_eq!(addons(&none, md, None, 3).unwrap_err().object, "altname");
        let rapid = products::titled("RapidSSL").unwrap();
        assert_eq!(addons(&none, rapid, None, 1).unwrap_err().object, "altname");
        assert_eq!(addons(&none, rapid, None, 0).unwrap(), (None, 0));
    }

    #[test]
    fn pricelists_are_checked_against_the_accounts_region() {
        let ru = Params::from_pairs(&[("pricelist", "55326")]);
        assert!(pricelist(&ru, Region::Russian).is_ok());
        assert_eq!(pricelist(&ru, Region::Foreign).unwrap_err().object, "pricelist");
        let shared = Params::from_pairs(&[("pricelist", "2025")]);
        assert!(pricelist(&shared, Region::Foreign).is_ok());
        let unknown = Params::from_pairs(&[("pricelist", "1")]);
        assert_eq!(pricelist(&unknown, Region::Russian).unwrap_err().kind, "value");
    }
}
