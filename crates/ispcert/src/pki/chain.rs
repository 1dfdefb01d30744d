//! Certificate chains as the billing delivers them: put in order, checked, and described.

use std::collections::HashSet;

use jiff::Timestamp;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the download holds no certificate")]
    Empty,
    #[error("certificate {0} of the download is not valid X.509: {1}")]
    Unparsable(usize, String),
    #[error("the download holds no end-entity certificate")]
    NoLeaf,
    #[error("the download holds several unrelated end-entity certificates")]
    AmbiguousLeaf,
    #[error("the signature of \"{0}\" does not verify with its issuer's key")]
    BadSignature(String),
}

/// A leaf and the certificates that lead from it to a root, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub leaf: Vec<u8>,
    /// Issuer of the leaf first.
    pub intermediates: Vec<Vec<u8>>,
    /// The self-signed root, when the billing sent it.
    pub root: Option<Vec<u8>>,
}

fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

impl Chain {
    /// `tls.crt`: the leaf then the intermediates, without the root (clients have it already).
    pub fn tls_crt(&self) -> String {
        std::iter::once(&self.leaf).chain(&self.intermediates).map(|d| to_pem(d)).collect()
    }

    /// `ca.crt`: the root when known.
    pub fn ca_crt(&self) -> Option<String> {
        self.root.as_deref().map(to_pem)
    }

    pub fn leaf_info(&self) -> CertInfo {
        // `order` parsed the leaf already, so this cannot fail; fall back to an empty description
        // rather than panicking if it ever did.
        CertInfo::from_der(&self.leaf).unwrap_or_default()
    }
}

/// What the operator reports about a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// Hex, colon-separated, as `openssl x509 -serial` groups it.
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub common_name: Option<String>,
    /// DNS names of the subjectAltName extension, in order.
    pub dns_names: Vec<String>,
    pub issuer: String,
    pub subject: String,
    pub public_key_bits: Vec<u8>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(describe(&cert))
    }

    /// Every name: SANs, or the common name when there are none.
    pub fn names(&self) -> Vec<String> {
        if self.dns_names.is_empty() { self.common_name.iter().cloned().collect() } else { self.dns_names.clone() }
    }

    /// The names of `wanted` the certificate does not carry (case-insensitive, exact: a wildcard
    /// covers only the same wildcard).
    pub fn missing_names(&self, wanted: &[String]) -> Vec<String> {
        let have: HashSet<String> = self.names().iter().map(|n| n.to_ascii_lowercase()).collect();
        wanted.iter().filter(|w| !have.contains(&w.to_ascii_lowercase())).cloned().collect()
    }
}

fn timestamp(t: i64) -> Timestamp {
    Timestamp::from_second(t).unwrap_or_default()
}

fn describe(cert: &X509Certificate<'_>) -> CertInfo {
    let common_name = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_string);
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    CertInfo {
        serial: cert.raw_serial_as_string(),
        not_before: timestamp(cert.validity().not_before.timestamp()),
        not_after: timestamp(cert.validity().not_after.timestamp()),
        common_name,
        dns_names,
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        public_key_bits: cert.public_key().subject_public_key.data.to_vec(),
    }
}

/// Every certificate of a PEM text, in its order. Other PEM blocks are skipped.
pub fn certificates_in_pem(text: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE" || p.tag() == "X509 CERTIFICATE" || p.tag() == "TRUSTED CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect()
}

/// Puts certificates in order (leaf, intermediates up to the root) whatever order they came in,
/// dropping duplicates and certificates not on the leaf's path, and checks each signature.
pub fn order(ders: Vec<Vec<u8>>) -> Result<Chain, ChainError> {
    let mut unique: Vec<Vec<u8>> = Vec::new();
    for d in ders {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    if unique.is_empty() {
        return Err(ChainError::Empty);
    }
    let parsed: Vec<X509Certificate<'_>> = unique
        .iter()
        .enumerate()
        .map(|(i, d)| {
            X509Certificate::from_der(d).map(|(_, c)| c).map_err(|e| ChainError::Unparsable(i + 1, e.to_string()))
        })
        .collect::<Result<_, _>>()?;

    let self_signed = |c: &X509Certificate<'_>| c.subject().as_raw() == c.issuer().as_raw();
    // A leaf issues nothing in the set. Among several candidates prefer the one that is not a CA.
    let issues_another = |i: usize| {
        parsed
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.issuer().as_raw() == parsed[i].subject().as_raw() && !self_signed(other))
    };
    let candidates: Vec<usize> =
        (0..parsed.len()).filter(|&i| !issues_another(i) && !self_signed(&parsed[i])).collect();
    let leaf = match candidates.as_slice() {
        [] if parsed.len() == 1 => 0,
        [] => return Err(ChainError::NoLeaf),
        [one] => *one,
        many => {
            let non_ca: Vec<usize> = many.iter().copied().filter(|&i| !parsed[i].is_ca()).collect();
            match non_ca.as_slice() {
                [one] => *one,
                _ => return Err(ChainError::AmbiguousLeaf),
            }
        }
    };

    let mut path = vec![leaf];
    let mut current = leaf;
    while !self_signed(&parsed[current]) && path.len() < parsed.len() {
        let next = (0..parsed.len())
            .find(|j| !path.contains(j) && parsed[*j].subject().as_raw() == parsed[current].issuer().as_raw());
        let Some(next) = next else { break };
        parsed[current]
            .verify_signature(Some(parsed[next].public_key()))
            .map_err(|_| ChainError::BadSignature(parsed[current].subject().to_string()))?;
        path.push(next);
        current = next;
    }
    let last = *path.last().unwrap_or(&leaf);
    let root = if path.len() > 1 && self_signed(&parsed[last]) {
        parsed[last]
            .verify_signature(None)
            .map_err(|_| ChainError::BadSignature(parsed[last].subject().to_string()))?;
        path.pop();
        Some(unique[last].clone())
    } else {
        None
    };
    Ok(Chain {
        leaf: unique[path[0]].clone(),
        intermediates: path[1..].iter().map(|&i| unique[i].clone()).collect(),
        root,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    use super::*;

    /// A root, an intermediate and a leaf for `names`, DER each, for tests.
    pub(crate) fn test_chain(names: &[&str], leaf_key: &KeyPair) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("Test Root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate().unwrap();
        let int_params = ca_params("Test Intermediate");
        let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
        let int_issuer = Issuer::new(int_params, int_key);
        let mut leaf_params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        leaf_params.distinguished_name.push(DnType::CommonName, names[0]);
        let leaf = leaf_params.signed_by(leaf_key, &int_issuer).unwrap();
        (leaf.der().to_vec(), int.der().to_vec(), root.der().to_vec())
    }

    #[test]
    fn orders_a_shuffled_chain_and_splits_the_root() {
        let key = KeyPair::generate().unwrap();
        let (leaf, int, root) = test_chain(&["a.example", "b.example"], &key);
        for input in [
            vec![leaf.clone(), int.clone(), root.clone()],
            vec![root.clone(), leaf.clone(), int.clone()],
            vec![int.clone(), root.clone(), leaf.clone(), leaf.clone()],
        ] {
            let chain = order(input).unwrap();
            assert_eq!(chain.leaf, leaf);
            assert_eq!(chain.intermediates, vec![int.clone()]);
            assert_eq!(chain.root.as_ref(), Some(&root));
        }
        let chain = order(vec![int.clone(), leaf.clone()]).unwrap();
        assert_eq!((chain.intermediates.len(), chain.root), (1, None));
        let info = order(vec![leaf.clone()]).unwrap().leaf_info();
        assert_eq!(info.dns_names, ["a.example", "b.example"]);
        assert!(info.missing_names(&["A.example".into(), "c.example".into()]) == ["c.example"]);
    }

    #[test]
    fn pem_round_trip_and_bad_input() {
        let key = KeyPair::generate().unwrap();
        let (leaf, int, root) = test_chain(&["a.example"], &key);
        let chain = order(vec![leaf, int, root]).unwrap();
        let again = certificates_in_pem(chain.tls_crt().as_bytes());
        assert_eq!(again.len(), 2);
        assert!(chain.ca_crt().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(order(vec![]), Err(ChainError::Empty));
        assert!(matches!(order(vec![b"junk".to_vec()]), Err(ChainError::Unparsable(1, _))));
    }

    #[test]
    fn a_forged_link_is_refused() {
        let key = KeyPair::generate().unwrap();
        let (leaf, _, _) = test_chain(&["a.example"], &key);
        // Another chain's intermediate with the same subject name: the signature cannot verify.
        let (_, other_int, _) = test_chain(&["a.example"], &key);
        assert!(matches!(order(vec![leaf, other_int]), Err(ChainError::BadSignature(_))));
    }
}
