//! Validation: an `IspCertificate` spec and its issuer's defaults become a [`Plan`], or a list of
//! problems a user must fix. Pure: no client, no clock.
//!
//! The CRD's CEL rules refuse most of these at apply time already; this is the same judgement for
//! what CEL cannot see (the issuer's defaults and region) and a second line for manifests that
//! reached the API some other way.

use super::renewal::RenewBefore;
use crate::billing::{Approvers, Contact, is_allowed_approver, mailbox_domain};
use crate::catalog::{self, Product, Region};
use crate::crd::{
    ContactSpec, CsrSecretRef, DeletionPolicy, IspCertificateSpec, IssuerSpec, KeyAlgorithmSpec, KeySource,
    RotationPolicy, SecretTemplate, SubjectSpec,
};
use crate::pki::keys::KeyAlgorithm;

/// How the private key is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPlan {
    /// The operator makes the key; it never leaves the cluster.
    Cluster { algorithm: KeyAlgorithm, rotate_on_reissue: bool },
    /// The billing makes key and CSR.
    Billing,
    /// An existing CSR and key from a Secret.
    Secret(CsrSecretRef),
}

/// Everything the reconcile needs to know about what the user asked for, checked.
#[derive(Clone, Debug)]
pub struct Plan {
    pub product: &'static Product,
    pub region: Region,
    pub pricelist: u32,
    pub period: u32,
    pub common_name: String,
    pub alt_names: Vec<String>,
    /// `addon_<code>=<count>` for the order, if any.
    pub addon: Option<(u32, usize)>,
    pub approvers: Approvers,
    pub key: KeyPlan,
    pub subject: SubjectSpec,
    pub admin: Contact,
    pub tech: Contact,
    /// An order to adopt instead of buying one.
    pub adopt: Option<String>,
    pub secret_name: String,
    pub secret_template: SecretTemplate,
    pub deletion_policy: DeletionPolicy,
    pub renew_before: RenewBefore,
    pub subscription_renewal: crate::crd::SubscriptionRenewal,
}

impl Plan {
    /// The common name then the alt names, as ordered.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.common_name.clone()).chain(self.alt_names.iter().cloned()).collect()
    }

    /// The approver email of each name, in the order of [`names`](Self::names).
    pub fn approver_emails(&self) -> Vec<String> {
        self.names().iter().map(|n| self.approvers.for_name(n).unwrap_or_default().to_string()).collect()
    }

    /// The subject fields the CSRs made in the cluster carry besides the names.
    pub fn csr_subject(&self) -> crate::pki::keys::CsrSubject {
        let s = &self.subject;
        crate::pki::keys::CsrSubject {
            country: s.country.clone(),
            state: s.state.clone(),
            locality: s.locality.clone(),
            organization: s.organization.clone(),
            organizational_unit: s.organizational_unit.clone(),
        }
    }

    /// The subject as the billing's `crt_type=generate` fields want it (validation made sure
    /// they are all there when the billing makes the key).
    pub fn billing_subject(&self) -> crate::billing::Subject {
        let s = &self.subject;
        crate::billing::Subject {
            country_id: s.country_id.clone().unwrap_or_default(),
            state: s.state.clone().unwrap_or_default(),
            locality: s.locality.clone().unwrap_or_default(),
            organization: s.organization.clone().unwrap_or_default(),
            organizational_unit: s.organizational_unit.clone(),
            email: s.email.clone(),
        }
    }

    /// Names a certificate may carry beyond [`Plan::names`]: CAs add the base domain of a wildcard;
    /// DV products commonly add the bare domain to `www.` (and `www.` to a bare domain).
    pub fn tolerated_extra_names(&self) -> Vec<String> {
        let names = self.names();
        let mut out = Vec::new();
        for n in &names {
            if let Some(base) = n.strip_prefix("*.") {
                out.push(base.to_string());
            } else if let Some(base) = n.strip_prefix("www.") {
                out.push(base.to_string());
            } else {
                out.push(format!("www.{n}"));
            }
        }
        out.retain(|n| !names.iter().any(|m| m.eq_ignore_ascii_case(n)));
        out
    }
}

fn is_dns_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 || !bare.contains('.') {
        return false;
    }
    bare.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

fn contact(spec: &ContactSpec) -> Contact {
    Contact {
        first_name: spec.first_name.clone(),
        last_name: spec.last_name.clone(),
        title: spec.title.clone(),
        email: spec.email.clone(),
        phone: spec.phone.clone(),
    }
}

fn key_algorithm(algorithm: KeyAlgorithmSpec, size: Option<u32>) -> Result<KeyAlgorithm, String> {
    match (algorithm, size) {
        (KeyAlgorithmSpec::Rsa, None | Some(2048)) => Ok(KeyAlgorithm::Rsa2048),
        (KeyAlgorithmSpec::Rsa, Some(4096)) => Ok(KeyAlgorithm::Rsa4096),
        (KeyAlgorithmSpec::Ecdsa, None | Some(256)) => Ok(KeyAlgorithm::EcdsaP256),
        (KeyAlgorithmSpec::Ecdsa, Some(384)) => Ok(KeyAlgorithm::EcdsaP384),
        (a, Some(s)) => {
            Err(format!("privateKey.size {s} is not offered for {a:?}: RSA takes 2048 or 4096, ECDSA 256 or 384"))
        }
    }
}

/// Checks a spec against the catalog and its issuer, and resolves every default. Every problem
/// is reported at once, so one round of fixes is enough.
pub fn plan(spec: &IspCertificateSpec, issuer: &IssuerSpec) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let lookup = product(spec, issuer, &mut problems);
    if spec.period != 12 && spec.period != 24 {
        problems.push(format!("period must be 12 or 24 months, not {}", spec.period));
    }
    let cn = names(spec, &mut problems);
    let addon = lookup.as_ref().and_then(|l| product_fit(spec, l.product, &cn, &mut problems));
    let approvers = approvers(spec, &cn, &mut problems);
    let key = key_plan(spec, &mut problems);
    let base_subject = issuer.subject.clone().unwrap_or_default();
    let subject = spec.subject.as_ref().map(|s| s.over(&base_subject)).unwrap_or(base_subject);
    if spec.private_key.as_ref().is_some_and(|k| k.source == KeySource::Billing) {
        billing_subject_complete(&subject, &mut problems);
    }
    let (admin, tech) = contacts(spec, issuer, &mut problems);
    let renew_before = renew_before(spec, &mut problems);

    if !problems.is_empty() {
        return Err(problems);
    }
    // Every `None` above pushed a problem, so these are present here.
    let (Some(l), Some(key), Some(admin), Some(tech)) = (lookup, key, admin, tech) else {
        return Err(vec!["internal: incomplete plan".into()]);
    };
    let region = l.region_of_id.unwrap_or(issuer.region);
    Ok(Plan {
        product: l.product,
        region,
        pricelist: l.product.pricelist(region),
        period: spec.period,
        common_name: cn,
        alt_names: spec.alt_names.clone(),
        addon,
        approvers,
        key,
        subject,
        admin: contact(&admin),
        tech: contact(&tech),
        adopt: spec.order_id.clone(),
        secret_name: spec.secret_name.clone(),
        secret_template: spec.secret_template.as_deref().cloned().unwrap_or_default(),
        deletion_policy: spec.deletion_policy,
        renew_before,
        subscription_renewal: spec.subscription_renewal.or(issuer.subscription_renewal).unwrap_or_default(),
    })
}

/// `renewBefore` or `renewBeforePercentage`, as the CEL rules check them at apply time.
fn renew_before(spec: &IspCertificateSpec, problems: &mut Vec<String>) -> RenewBefore {
    match (&spec.renew_before, spec.renew_before_percentage) {
        (Some(_), Some(_)) => problems.push("set renewBefore or renewBeforePercentage, not both".into()),
        (Some(text), None) => {
            match humantime::parse_duration(text).ok().and_then(|d| jiff::SignedDuration::try_from(d).ok()) {
                Some(d) if !d.is_zero() => return RenewBefore::Duration(d),
                _ => problems.push(format!("renewBefore {text:?} must be a positive duration such as 720h or 360h30m")),
            }
        }
        (None, Some(p)) if (1..=99).contains(&p) => return RenewBefore::Percentage(p),
        (None, Some(p)) => problems.push(format!("renewBeforePercentage must be 1 to 99, not {p}")),
        (None, None) => {}
    }
    RenewBefore::TwoThirds
}

/// The product, by name or by a price-list id of the issuer's region.
fn product(spec: &IspCertificateSpec, issuer: &IssuerSpec, problems: &mut Vec<String>) -> Option<catalog::Lookup> {
    let Some(l) = catalog::lookup(&spec.product) else {
        let hints = catalog::suggestions(&spec.product);
        let hint = if hints.is_empty() { String::new() } else { format!(" (did you mean {}?)", hints.join(", ")) };
        problems.push(format!("unknown product {:?}{hint}; `ispcert catalog` lists the products", spec.product));
        return None;
    };
    if let Some(r) = l.region_of_id
        && r != issuer.region
    {
        problems.push(format!(
            "price-list id {} belongs to the {} price list, but the issuer buys from the {} list; use the product name {} instead",
            spec.product,
            r.as_str(),
            issuer.region.as_str(),
            l.product.name
        ));
    }
    Some(l)
}

/// The common name (trimmed), with the problems of it and of the alt names.
fn names(spec: &IspCertificateSpec, problems: &mut Vec<String>) -> String {
    let cn = spec.common_name.trim().to_string();
    if cn.is_empty() {
        problems.push("commonName must not be empty".into());
    } else if !is_dns_name(&cn) {
        problems.push(format!("commonName {cn:?} is not a DNS name"));
    }
    for n in &spec.alt_names {
        if !is_dns_name(n) {
            problems.push(format!("altNames entry {n:?} is not a DNS name"));
        }
        if n.starts_with("*.") {
            problems.push(format!("altNames entry {n:?} is a wildcard; no multi-domain product takes wildcards"));
        }
        if n.eq_ignore_ascii_case(&cn) {
            problems.push(format!("altNames repeats the commonName {n:?}"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for n in &spec.alt_names {
        if !seen.insert(n.to_ascii_lowercase()) {
            problems.push(format!("altNames lists {n:?} twice"));
        }
    }
    cn
}

/// Whether the product takes these names (wildcard or not, how many domains), and the addon the
/// order needs for the alt names.
fn product_fit(spec: &IspCertificateSpec, p: &Product, cn: &str, problems: &mut Vec<String>) -> Option<(u32, usize)> {
    if cn.starts_with("*.") && !p.wildcard {
        problems
            .push(format!("{} is not a wildcard product, so it cannot cover {cn}; choose a -wildcard product", p.name));
    }
    if !cn.starts_with("*.") && !cn.is_empty() && p.wildcard {
        problems.push(format!("{} is a wildcard product; its commonName must start with *.", p.name));
    }
    match p.addon_for(spec.alt_names.len(), spec.multi_domain.as_ref().map(|m| m.addon_code)) {
        Ok(a) => a,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    }
}

/// One approver email per name: from `approvers`, else from `approverMailbox`.
fn approvers(spec: &IspCertificateSpec, cn: &str, problems: &mut Vec<String>) -> Approvers {
    let names: Vec<String> = std::iter::once(cn.to_string()).chain(spec.alt_names.iter().cloned()).collect();
    let mut approvers = Approvers::new();
    for a in &spec.approvers {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&a.domain)) {
            problems
                .push(format!("approvers lists {:?}, which is neither the commonName nor one of altNames", a.domain));
            continue;
        }
        if !is_allowed_approver(&a.email, &a.domain) {
            problems.push(format!(
                "approver {} cannot approve {}: use admin@, administrator@, hostmaster@, postmaster@ or webmaster@{}",
                a.email,
                a.domain,
                mailbox_domain(&a.domain)
            ));
        }
        approvers.set(&a.domain, a.email.clone());
    }
    for n in names.iter().filter(|n| !n.is_empty()) {
        if approvers.for_name(n).is_none() {
            match spec.approver_mailbox {
                Some(m) => {
                    approvers.set(n, format!("{}@{}", m.as_str(), mailbox_domain(n)));
                }
                None => problems.push(format!("no approver for {n}: set approverMailbox or add it to approvers")),
            }
        }
    }
    approvers
}

/// How the key is made, and the problems of the key settings.
fn key_plan(spec: &IspCertificateSpec, problems: &mut Vec<String>) -> Option<KeyPlan> {
    let key_spec = spec.private_key.clone().unwrap_or_default();
    let key = match key_spec.source {
        KeySource::Cluster => match key_algorithm(key_spec.algorithm, key_spec.size) {
            Ok(algorithm) => Some(KeyPlan::Cluster {
                algorithm,
                rotate_on_reissue: key_spec.rotation_policy == RotationPolicy::Always,
            }),
            Err(e) => {
                problems.push(e);
                None
            }
        },
        KeySource::Billing => Some(KeyPlan::Billing),
        KeySource::Secret => match &key_spec.secret_ref {
            Some(r) => Some(KeyPlan::Secret(r.clone())),
            None => {
                problems.push("privateKey.source Secret needs privateKey.secretRef".into());
                None
            }
        },
    };
    // The same as the CRD's rule, for objects stored before it existed.
    if key_spec.source != KeySource::Cluster
        && (key_spec.size.is_some()
            || key_spec.algorithm != KeyAlgorithmSpec::Rsa
            || key_spec.rotation_policy != RotationPolicy::Never)
    {
        problems.push(
            "privateKey.algorithm, size and rotationPolicy describe keys the operator makes (source Cluster); leave them unset with source Billing or Secret".into(),
        );
    }
    if key_spec.source != KeySource::Secret && key_spec.secret_ref.is_some() {
        problems.push("privateKey.secretRef is only used with privateKey.source Secret".into());
    }
    if key_spec.source == KeySource::Billing && spec.order_id.is_some() {
        problems.push("adopting an existing order (orderId) needs the key in the cluster: use privateKey.source Cluster or Secret".into());
    }
    if let Some(id) = &spec.order_id
        && !crate::billing::decode::is_plausible_id(id)
    {
        problems.push(format!("orderId {id:?} is not a billing certificate id"));
    }
    key
}

/// When the billing makes the key it builds the subject, which needs every field.
fn billing_subject_complete(subject: &SubjectSpec, problems: &mut Vec<String>) {
    let missing: Vec<&str> = [
        ("subject.countryId", &subject.country_id),
        ("subject.state", &subject.state),
        ("subject.locality", &subject.locality),
        ("subject.organization", &subject.organization),
    ]
    .into_iter()
    .filter(|(_, v)| v.as_deref().is_none_or(|s| s.trim().is_empty()))
    .map(|(n, _)| n)
    .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "privateKey.source Billing makes the billing build the subject, which needs {} (in the certificate or its issuer)",
            missing.join(", ")
        ));
    }
}

/// The administrative and technical contacts, each falling back to the issuer's (and tech to
/// admin).
fn contacts(
    spec: &IspCertificateSpec,
    issuer: &IssuerSpec,
    problems: &mut Vec<String>,
) -> (Option<ContactSpec>, Option<ContactSpec>) {
    let pick = |c: Option<&crate::crd::Contacts>| c.and_then(|c| c.admin.clone());
    let admin = pick(spec.contacts.as_deref()).or_else(|| pick(issuer.contacts.as_ref()));
    let tech = spec
        .contacts
        .as_ref()
        .and_then(|c| c.tech.clone())
        .or_else(|| issuer.contacts.as_ref().and_then(|c| c.tech.clone()))
        .or_else(|| admin.clone());
    if admin.is_none() {
        problems.push("contacts.admin is required for an order: set it in the certificate or its issuer".into());
    }
    (admin, tech)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Approver, ApproverMailbox, Contacts, IssuerKind, IssuerRef, MultiDomainSpec, PrivateKeySpec};

    fn issuer() -> IssuerSpec {
        serde_json::from_value(serde_json::json!({
            "credentialsSecretRef": {"name": "creds"},
            "contacts": {"admin": {"firstName": "A", "lastName": "B", "title": "T", "email": "a@example.com", "phone": "+7 1234567"}},
            "subject": {"country": "RU", "countryId": "182", "state": "Moscow", "locality": "Moscow", "organization": "Org"}
        }))
        .unwrap()
    }

    fn spec(product: &str, cn: &str) -> IspCertificateSpec {
        IspCertificateSpec {
            issuer_ref: IssuerRef { name: "i".into(), kind: IssuerKind::IspIssuer },
            product: product.into(),
            period: 12,
            common_name: cn.into(),
            alt_names: vec![],
            multi_domain: None,
            subject: None,
            contacts: None,
            approver_mailbox: Some(ApproverMailbox::Admin),
            approvers: vec![],
            private_key: None,
            order_id: None,
            secret_name: "tls".into(),
            secret_template: None,
            deletion_policy: DeletionPolicy::Retain,
            renew_before: None,
            renew_before_percentage: None,
            subscription_renewal: None,
        }
    }

    #[test]
    fn renew_before_is_a_duration_or_a_percentage_not_both() {
        let with = |before: Option<&str>, percentage: Option<u32>| {
            let mut s = spec("alphassl", "www.example.com");
            s.renew_before = before.map(String::from);
            s.renew_before_percentage = percentage;
            plan(&s, &issuer()).map(|p| p.renew_before).map_err(|e| e.join("\n"))
        };
        let hours = |h: i64| jiff::SignedDuration::from_hours(h);
        assert_eq!(with(None, None), Ok(RenewBefore::TwoThirds));
        assert_eq!(with(Some("720h"), None), Ok(RenewBefore::Duration(hours(720))));
        assert_eq!(
            with(Some("1h30m"), None),
            Ok(RenewBefore::Duration(hours(1) + jiff::SignedDuration::from_mins(30)))
        );
        assert_eq!(with(None, Some(25)), Ok(RenewBefore::Percentage(25)));
        assert!(with(Some("soon"), None).unwrap_err().contains("renewBefore \"soon\" must be a positive duration"));
        assert!(with(Some("0s"), None).is_err());
        assert!(with(None, Some(100)).unwrap_err().contains("1 to 99"));
        assert!(with(Some("1h"), Some(10)).unwrap_err().contains("not both"));
    }

    fn problems(s: &IspCertificateSpec) -> String {
        plan(s, &issuer()).err().map(|p| p.join("\n")).unwrap_or_default()
    }

    #[test]
    fn a_plain_spec_resolves_every_default() {
        let p = plan(&spec("alphassl", "www.example.com"), &issuer()).unwrap();
        assert_eq!(p.pricelist, 55324);
        assert_eq!(p.key, KeyPlan::Cluster { algorithm: KeyAlgorithm::Rsa2048, rotate_on_reissue: false });
        assert_eq!(p.approvers.for_name("www.example.com"), Some("admin@www.example.com"));
        assert_eq!(p.tech, p.admin);
        assert_eq!(p.addon, None);
    }

    #[test]
    fn foreign_issuers_use_the_foreign_price_list() {
        let mut i = issuer();
        i.region = Region::Foreign;
        assert_eq!(plan(&spec("alphassl", "www.example.com"), &i).unwrap().pricelist, 55346);
        let e = plan(&spec("55324", "www.example.com"), &i).unwrap_err().join("");
        assert!(e.contains("Russian price list"), "{e}");
    }

    #[test]
    fn each_bad_input_has_a_clear_problem() {
        let mut cases: Vec<(IspCertificateSpec, &str)> = vec![];
        cases.push((spec("alphasll", "a.example.com"), "did you mean alphassl"));
        let mut s = spec("alphassl", "a.example.com");
        s.period = 36;
        cases.push((s, "period must be 12 or 24"));
        let mut s = spec("alphassl", "a.example.com");
        s.approver_mailbox = None;
        s.approvers = vec![Approver { domain: "a.example.com".into(), email: "root@a.example.com".into() }];
        cases.push((s, "root@a.example.com cannot approve"));
        let mut s = spec("alphassl", "a.example.com");
        s.approvers = vec![Approver { domain: "b.example.com".into(), email: "admin@b.example.com".into() }];
        cases.push((s, "neither the commonName nor one of altNames"));
        let mut s = spec("alphassl", "a.example.com");
        s.private_key = Some(PrivateKeySpec { source: KeySource::Billing, ..Default::default() });
        s.order_id = Some("12".into());
        cases.push((s, "needs the key in the cluster"));
        cases.push((spec("alphassl", "*.example.com"), "not a wildcard product"));
        let mut s = spec("alphassl", "a.example.com");
        s.alt_names = vec!["b.example.com".into()];
        cases.push((s, "single-domain"));
        cases.push((spec("alphassl", ""), "commonName must not be empty"));
        let mut s = spec("comodo-positivessl-multidomain", "a.example.com");
        s.alt_names = vec!["b.example.com".into(), "c.example.com".into(), "d.example.com".into()];
        cases.push((s, "includes 3 domains"));
        let mut s = spec("alphassl", "a.example.com");
        s.private_key = Some(PrivateKeySpec { source: KeySource::Secret, ..Default::default() });
        cases.push((s, "needs privateKey.secretRef"));
        let mut s = spec("alphassl", "a.example.com");
        s.private_key = Some(PrivateKeySpec {
            source: KeySource::Billing,
            algorithm: KeyAlgorithmSpec::Ecdsa,
            ..Default::default()
        });
        cases.push((s, "leave them unset with source Billing or Secret"));
        let mut s = spec("alphassl", "a.example.com");
        s.private_key = Some(PrivateKeySpec {
            source: KeySource::Billing,
            rotation_policy: RotationPolicy::Always,
            ..Default::default()
        });
        cases.push((s, "leave them unset with source Billing or Secret"));
        for (s, want) in cases {
            let got = problems(&s);
            assert!(got.contains(want), "want {want:?} in {got:?}");
        }
    }

    #[test]
    fn billing_keys_need_a_full_subject_and_contacts_are_required() {
        let mut i = issuer();
        i.subject = None;
        i.contacts = Some(Contacts::default());
        let mut s = spec("alphassl", "a.example.com");
        s.private_key = Some(PrivateKeySpec { source: KeySource::Billing, ..Default::default() });
        let e = plan(&s, &i).unwrap_err().join("\n");
        assert!(e.contains("subject.countryId") && e.contains("contacts.admin"), "{e}");
    }

    #[test]
    fn multi_domain_orders_carry_the_addon_and_an_approver_per_name() {
        let mut s = spec("globalsign-domainssl", "a.example.com");
        s.alt_names = vec!["b.example.com".into(), "c.example.com".into()];
        s.approvers = vec![Approver { domain: "c.example.com".into(), email: "webmaster@c.example.com".into() }];
        let p = plan(&s, &issuer()).unwrap();
        assert_eq!(p.addon, Some((55364, 2)));
        assert_eq!(p.approvers.for_name("b.example.com"), Some("admin@b.example.com"));
        assert_eq!(p.approvers.for_name("c.example.com"), Some("webmaster@c.example.com"));
        let mut s = spec("rapidssl", "a.example.com");
        s.alt_names = vec!["b.example.com".into()];
        s.multi_domain = Some(MultiDomainSpec { addon_code: 9999 });
        assert_eq!(plan(&s, &issuer()).unwrap().addon, Some((9999, 1)));
    }

    #[test]
    fn wildcards_tolerate_their_base_domain() {
        let p = plan(&spec("alphassl-wildcard", "*.example.com"), &issuer()).unwrap();
        assert_eq!(p.tolerated_extra_names(), ["example.com"]);
        let www = plan(&spec("alphassl", "www.example.com"), &issuer()).unwrap();
        assert_eq!(www.tolerated_extra_names(), ["example.com"]);
        let bare = plan(&spec("alphassl", "example.com"), &issuer()).unwrap();
        assert_eq!(bare.tolerated_extra_names(), ["www.example.com"]);
        assert_eq!(p.approvers.for_name("*.example.com"), Some("admin@example.com"));
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A valid plan for a product and names, with an issuer that has contacts and a subject.
    pub(crate) fn plan_for(product: &str, cn: &str, alt_names: &[&str]) -> Plan {
        let issuer: IssuerSpec = serde_json::from_value(serde_json::json!({
            "credentialsSecretRef": {"name": "creds"},
            "contacts": {"admin": {"firstName": "A", "lastName": "B", "title": "T", "email": "a@example.com", "phone": "+7 1234567"}},
            "subject": {"country": "RU", "countryId": "182", "state": "Moscow", "locality": "Moscow", "organization": "Org"}
        }))
        .unwrap();
        let spec: IspCertificateSpec = serde_json::from_value(serde_json::json!({
            "issuerRef": {"name": "i"},
            "product": product,
            "commonName": cn,
            "altNames": alt_names,
            "approverMailbox": "admin",
            "secretName": "tls",
        }))
        .unwrap();
        plan(&spec, &issuer).unwrap()
    }
}
