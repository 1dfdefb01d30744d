//! Valid certificate orders for tests that talk to the billing client directly. Shared by several
//! test binaries.

use ispcert::billing::{Approvers, Contact, OrderKey, OrderRequest, Subject};
use ispcert::pki::keys::{self, CsrSubject, KeyAlgorithm};
use secrecy::SecretString;

pub fn contact() -> Contact {
    Contact {
        first_name: "Anna".into(),
        last_name: "Ivanova".into(),
        title: "SRE".into(),
        email: "anna@example.com".into(),
        phone: "+7 495 1234567".into(),
    }
}

pub fn subject() -> Subject {
    Subject {
        country_id: "182".into(),
        state: "Moscow".into(),
        locality: "Moscow".into(),
        organization: "Example LLC".into(),
        ..Subject::default()
    }
}

/// An order for a fresh key's CSR, without a tag; `names[0]` is the common name, each name is
/// approved by its admin@ mailbox. Returns the key too.
pub fn order(pricelist: u32, names: &[&str], addon: Option<(u32, usize)>) -> (OrderRequest, SecretString) {
    let key = keys::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let alt: Vec<String> = names[1..].iter().map(|s| s.to_string()).collect();
    let csr = keys::csr(&key, names[0], &alt, &CsrSubject::default()).unwrap();
    let mut approvers = Approvers::new();
    for n in names {
        approvers.set(n, format!("admin@{}", n.trim_start_matches("*.")));
    }
    let req = OrderRequest {
        pricelist,
        period: 12,
        common_name: names[0].into(),
        alt_names: alt,
        addon,
        approvers,
        subject: subject(),
        admin: contact(),
        tech: contact(),
        key: OrderKey::Csr(csr),
        remote_id: None,
    };
    (req, key)
}
