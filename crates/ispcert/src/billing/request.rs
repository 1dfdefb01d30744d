//! What the operator asks the billing for: subjects, contacts, approvers, orders and reissues,
//! and how each becomes form parameters.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::error::BillingError;

/// The five mailboxes CAs accept for domain validation by email.
pub const APPROVER_MAILBOXES: [&str; 5] = ["admin", "administrator", "hostmaster", "postmaster", "webmaster"];

/// The domain whose mailboxes validate `name`: a wildcard `*.d` is validated through `d`.
pub fn mailbox_domain(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

/// Whether `email` is one of the five approver mailboxes of `name`'s domain.
pub fn is_allowed_approver(email: &str, name: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    domain.eq_ignore_ascii_case(mailbox_domain(name))
        && APPROVER_MAILBOXES.iter().any(|m| m.eq_ignore_ascii_case(local))
}

/// Approver emails by domain, turned into `approver_email_<n>` in whatever order a request's
/// names take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Approvers {
    by_domain: BTreeMap<String, String>,
}

impl Approvers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the approver for a name (a wildcard's base domain is used).
    pub fn set(&mut self, name: &str, email: impl Into<String>) -> &mut Self {
        self.by_domain.insert(mailbox_domain(name).to_ascii_lowercase(), email.into());
        self
    }

    pub fn for_name(&self, name: &str) -> Option<&str> {
        self.by_domain.get(&mailbox_domain(name).to_ascii_lowercase()).map(String::as_str)
    }

    /// `approver_email_1` for `names[0]` (the common name), `approver_email_{n+1}` for the n-th
    /// additional name. Refuses before sending when a name has no approver or a wrong one.
    pub fn params(&self, names: &[&str]) -> Result<Vec<(String, String)>, BillingError> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let email = self.for_name(name).ok_or_else(|| {
                    BillingError::InvalidRequest(format!("no approver email for {name}"))
                })?;
                if !is_allowed_approver(email, name) {
                    return Err(BillingError::InvalidRequest(format!(
                        "{email} cannot approve {name}: use admin@, administrator@, hostmaster@, postmaster@ or webmaster@{}",
                        mailbox_domain(name)
                    )));
                }
                Ok((format!("approver_email_{}", i + 1), email.to_string()))
            })
            .collect()
    }
}

/// Subject fields the billing puts in a CSR it generates (`crt_type=generate`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The billing's numeric country id (182 is Russia): see `ispcert countries`.
    pub country_id: String,
    pub state: String,
    pub locality: String,
    pub organization: String,
    pub organizational_unit: Option<String>,
    pub email: Option<String>,
}

impl Subject {
    fn params(&self, out: &mut Vec<(String, String)>) {
        push(out, "field_country", &self.country_id);
        push(out, "ST", &self.state);
        push(out, "L", &self.locality);
        push(out, "O", &self.organization);
        if let Some(ou) = self.organizational_unit.as_deref().filter(|s| !s.is_empty()) {
            push(out, "OU", ou);
        }
        if let Some(e) = self.email.as_deref().filter(|s| !s.is_empty()) {
            push(out, "emailAddress", e);
        }
    }
}

/// An administrative or technical contact of an order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub email: String,
    pub phone: String,
}

impl Contact {
    fn params(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        for (suffix, value) in [
            ("fname", &self.first_name),
            ("lname", &self.last_name),
            ("jtitle", &self.title),
            ("email", &self.email),
            ("phone", &self.phone),
        ] {
            push(out, &format!("{prefix}_{suffix}"), value);
        }
    }
}

fn push(out: &mut Vec<(String, String)>, key: &str, value: &str) {
    out.push((key.to_string(), value.to_string()));
}

/// A key and CSR the billing made (`certificate.order.csr`). The key is secret.
#[derive(Clone)]
pub struct BillingKeyPair {
    pub csr: String,
    pub key: SecretString,
}

impl std::fmt::Debug for BillingKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingKeyPair").field("csr", &self.csr).field("key", &"[redacted]").finish()
    }
}

/// Asks the billing to make a key and CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRequest {
    pub pricelist: u32,
    pub period: u32,
    pub common_name: String,
    pub alt_names: Vec<String>,
    pub subject: Subject,
}

impl CsrRequest {
    pub(crate) fn params(&self) -> Vec<(String, String)> {
        let mut p = vec![];
        push(&mut p, "sok", "ok");
        push(&mut p, "snext", "ok");
        push(&mut p, "crt_type", "generate");
        push(&mut p, "period", &self.period.to_string());
        push(&mut p, "pricelist", &self.pricelist.to_string());
        push(&mut p, "CN", &self.common_name);
        self.subject.params(&mut p);
        if !self.alt_names.is_empty() {
            let joined = self.alt_names.join(" ");
            push(&mut p, "altname", &joined);
            push(&mut p, "altname_input", &joined);
        }
        p
    }
}

/// Where an order's key comes from.
#[derive(Clone)]
pub enum OrderKey {
    /// The billing made key and CSR (`crt_type=generate`); both go back with the order.
    Billing(BillingKeyPair),
    /// Our own CSR (`crt_type=manual`); the key never leaves the cluster.
    Csr(String),
}

impl std::fmt::Debug for OrderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderKey::Billing(_) => f.write_str("OrderKey::Billing([redacted])"),
            OrderKey::Csr(_) => f.write_str("OrderKey::Csr"),
        }
    }
}

/// A certificate order (`certificate.order.param`, `skipbasket=on`). It spends money.
#[derive(Clone, Debug)]
pub struct OrderRequest {
    pub pricelist: u32,
    pub period: u32,
    pub common_name: String,
    /// Additional domains, in the order `approver_email_2..` follow.
    pub alt_names: Vec<String>,
    /// `addon_<code>=<count>` for multi-domain products.
    pub addon: Option<(u32, usize)>,
    pub approvers: Approvers,
    /// Sent with `crt_type=generate` (the billing builds the subject); ignored for our own CSR.
    pub subject: Subject,
    pub admin: Contact,
    pub tech: Contact,
    pub key: OrderKey,
    /// Our idempotency tag for the order, kept by the billing as the service's `remoteid`.
    pub remote_id: Option<String>,
}

impl OrderRequest {
    /// The form fields of the order (without `authinfo`, `out`, `lang` and `func`). Refuses
    /// before anything is sent when the request cannot be valid.
    pub fn params(&self) -> Result<Vec<(String, String)>, BillingError> {
        if self.common_name.trim().is_empty() {
            return Err(BillingError::InvalidRequest("the common name is empty".into()));
        }
        let mut p = vec![];
        push(&mut p, "sok", "ok");
        push(&mut p, "skipbasket", "on");
        push(&mut p, "period", &self.period.to_string());
        push(&mut p, "pricelist", &self.pricelist.to_string());
        match &self.key {
            OrderKey::Billing(pair) => {
                push(&mut p, "crt_type", "generate");
                push(&mut p, "CN", &self.common_name);
                self.subject.params(&mut p);
                push(&mut p, "csr", &pair.csr);
                push(&mut p, "key", pair.key.expose_secret());
            }
            OrderKey::Csr(csr) => {
                push(&mut p, "crt_type", "manual");
                push(&mut p, "csr", csr);
            }
        }
        self.admin.params("adm", &mut p);
        self.tech.params("tech", &mut p);
        let mut names: Vec<&str> = vec![&self.common_name];
        names.extend(self.alt_names.iter().map(String::as_str));
        p.extend(self.approvers.params(&names)?);
        if !self.alt_names.is_empty() {
            let joined = self.alt_names.join(" ");
            push(&mut p, "altname", &joined);
            push(&mut p, "altname_input", &joined);
        }
        if let Some((code, count)) = self.addon {
            push(&mut p, &format!("addon_{code}"), &count.to_string());
        }
        if let Some(tag) = &self.remote_id {
            push(&mut p, "remoteid", tag);
        }
        Ok(p)
    }
}

/// The three forms of `certificate.reissue.step2`. Reissues are free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reissue {
    /// Same CSR (and key) as before.
    OldRequest,
    /// A new CSR, for example after a key rotation.
    Manual { csr: String },
    /// New additional domains, in the order `approver_email_2..` follow.
    AltNames { alt_names: Vec<String> },
}

impl Reissue {
    pub fn crt_type(&self) -> &'static str {
        match self {
            Reissue::OldRequest => "oldrequest",
            Reissue::Manual { .. } => "manual",
            Reissue::AltNames { .. } => "altname",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approver_rules() {
        assert!(is_allowed_approver("admin@example.com", "example.com"));
        assert!(is_allowed_approver("Hostmaster@Example.com", "*.example.com"));
        assert!(!is_allowed_approver("root@example.com", "example.com"));
        assert!(!is_allowed_approver("admin@other.com", "example.com"));
        assert!(!is_allowed_approver("admin@sub.example.com", "example.com"));
        assert!(!is_allowed_approver("admin", "example.com"));
    }

    #[test]
    fn approver_indexes_follow_the_names_order() {
        let mut a = Approvers::new();
        a.set("a.example", "admin@a.example")
            .set("*.b.example", "webmaster@b.example")
            .set("c.example", "postmaster@c.example");
        let p = a.params(&["a.example", "c.example", "*.b.example"]).unwrap();
        assert_eq!(
            p,
            [
                ("approver_email_1".to_string(), "admin@a.example".to_string()),
                ("approver_email_2".to_string(), "postmaster@c.example".to_string()),
                ("approver_email_3".to_string(), "webmaster@b.example".to_string()),
            ]
        );
        assert!(matches!(a.params(&["d.example"]), Err(BillingError::InvalidRequest(_))));
        let mut wrong = Approvers::new();
        wrong.set("a.example", "root@a.example");
        assert!(wrong.params(&["a.example"]).is_err());
    }

    #[test]
    fn order_params_for_a_multi_domain_billing_key_order() {
        let mut approvers = Approvers::new();
        approvers
            .set("a.example", "admin@a.example")
            .set("b.example", "admin@b.example")
            .set("c.example", "admin@c.example");
        let req = OrderRequest {
            pricelist: 55326,
            period: 12,
            common_name: "a.example".into(),
            alt_names: vec!["b.example".into(), "c.example".into()],
            addon: Some((55364, 2)),
            approvers,
            subject: Subject {
                country_id: "182".into(),
                state: "M".into(),
                locality: "M".into(),
                organization: "O".into(),
                ..Default::default()
            },
            admin: Contact::default(),
            tech: Contact::default(),
            key: OrderKey::Billing(BillingKeyPair { csr: "CSR".into(), key: SecretString::from("KEY") }),
            remote_id: Some("tag".into()),
        };
        let p = req.params().unwrap();
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("crt_type"), Some("generate"));
        assert_eq!(get("altname"), Some("b.example c.example"));
        assert_eq!(get("altname_input"), Some("b.example c.example"));
        assert_eq!(get("addon_55364"), Some("2"));
        assert_eq!(get("approver_email_3"), Some("admin@c.example"));
        assert_eq!(get("skipbasket"), Some("on"));
        assert_eq!(get("key"), Some("KEY"));
        assert_eq!(get("remoteid"), Some("tag"));
        assert!(!format!("{req:?}").contains("KEY\""));
    }
}
