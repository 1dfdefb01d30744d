//! Private keys and certificate signing requests made inside the cluster.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, RsaKeySize, SignatureAlgorithm};
use secrecy::{ExposeSecret, SecretString};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, SubjectPublicKeyInfo, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

/// The key types the operator makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
        }
    }

    fn signature(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // rcgen's errors describe the operation, never the key material, so they are safe to show.
    #[error("cannot generate a {0} key: {1}")]
    Generate(&'static str, rcgen::Error),
    #[error("the private key is not a PEM PKCS#8, PKCS#1 or SEC1 key this operator can use: {0}")]
    UnreadableKey(rcgen::Error),
    #[error("cannot build the certificate signing request: {0}")]
    Csr(rcgen::Error),
    #[error("the certificate signing request is not valid PEM/DER: {0}")]
    UnreadableCsr(String),
    #[error("the certificate signing request's signature does not verify")]
    CsrSignature,
}

/// Generates a private key, returned as PKCS#8 PEM. RSA 4096 takes about a second: call this
/// from a blocking task.
pub fn generate(algorithm: KeyAlgorithm) -> Result<SecretString, KeyError> {
    let key = match algorithm {
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(algorithm.signature(), RsaKeySize::_2048),
        KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(algorithm.signature(), RsaKeySize::_4096),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(algorithm.signature()),
    }
    .map_err(|e| KeyError::Generate(algorithm.as_str(), e))?;
    Ok(SecretString::from(key.serialize_pem()))
}

fn load(key_pem: &SecretString) -> Result<KeyPair, KeyError> {
    KeyPair::from_pem(key_pem.expose_secret()).map_err(KeyError::UnreadableKey)
}

/// The algorithm of an existing key, or `None` for one the operator would not have made.
pub fn algorithm_of(key_pem: &SecretString) -> Result<Option<KeyAlgorithm>, KeyError> {
    let key = load(key_pem)?;
    let alg = key.algorithm();
    Ok(if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Some(KeyAlgorithm::EcdsaP256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Some(KeyAlgorithm::EcdsaP384)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        let spki = key.subject_public_key_info();
        let bits = SubjectPublicKeyInfo::from_der(&spki).ok().and_then(|(_, s)| match s.parsed() {
            Ok(PublicKey::RSA(rsa)) => Some(rsa.key_size()),
            _ => None,
        });
        match bits {
            Some(2048) => Some(KeyAlgorithm::Rsa2048),
            Some(4096) => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        }
    } else {
        None
    })
}

/// The raw public key (the BIT STRING of SubjectPublicKeyInfo) of a private key. Certificates
/// and CSRs are matched to keys by comparing these bytes.
pub fn public_key_bits(key_pem: &SecretString) -> Result<Vec<u8>, KeyError> {
    Ok(load(key_pem)?.der_bytes().to_vec())
}

/// The subject fields a CSR carries besides the names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsrSubject {
    /// Two-letter ISO country code.
    pub country: Option<String>,
    pub state: Option<String>,
    pub locality: Option<String>,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
}

impl CsrSubject {
    /// The fields as one line (`C=RU, O=Org`), empty ones left out, in the order a CSR carries
    /// them: what tells whether a spec's subject is the one a certificate was requested with.
    pub fn line(&self) -> String {
        let fields = [
            ("C", &self.country),
            ("ST", &self.state),
            ("L", &self.locality),
            ("O", &self.organization),
            ("OU", &self.organizational_unit),
        ];
        let set = fields.iter().filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| format!("{k}={v}")));
        set.collect::<Vec<_>>().join(", ")
    }
}

/// Builds a PEM CSR for `common_name` with every name (common name first) as a DNS SAN.
pub fn csr(
    key_pem: &SecretString,
    common_name: &str,
    alt_names: &[String],
    subject: &CsrSubject,
) -> Result<String, KeyError> {
    let key = load(key_pem)?;
    let mut names = vec![common_name.to_string()];
    for n in alt_names {
        if !names.iter().any(|x| x.eq_ignore_ascii_case(n)) {
            names.push(n.clone());
        }
    }
    let mut params = CertificateParams::new(names).map_err(KeyError::Csr)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    let fields = [
        (DnType::CountryName, &subject.country),
        (DnType::StateOrProvinceName, &subject.state),
        (DnType::LocalityName, &subject.locality),
        (DnType::OrganizationName, &subject.organization),
        (DnType::OrganizationalUnitName, &subject.organizational_unit),
    ];
    for (ty, value) in fields {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            dn.push(ty, v);
        }
    }
    params.distinguished_name = dn;
    let request = params.serialize_request(&key).map_err(KeyError::Csr)?;
    request.pem().map_err(KeyError::Csr)
}

/// What a CSR asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrInfo {
    pub common_name: Option<String>,
    /// The subject's fields besides the common name.
    pub subject: CsrSubject,
    /// DNS names of the subjectAltName extension, in order.
    pub dns_names: Vec<String>,
    pub public_key_bits: Vec<u8>,
}

impl CsrInfo {
    /// Every name the CSR covers: the common name, then SANs not equal to it.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.common_name.iter().cloned().collect();
        for n in &self.dns_names {
            if !out.iter().any(|x| x.eq_ignore_ascii_case(n)) {
                out.push(n.clone());
            }
        }
        out
    }
}

/// Reads and verifies a PEM (or DER) CSR.
pub fn inspect_csr(csr: &str) -> Result<CsrInfo, KeyError> {
    let der = match pem::parse(csr.trim()) {
        Ok(p) if p.tag().contains("CERTIFICATE REQUEST") => p.into_contents(),
        Ok(p) => {
            return Err(KeyError::UnreadableCsr(format!(
                "a PEM block of type {} instead of CERTIFICATE REQUEST",
                p.tag()
            )));
        }
        Err(e) => return Err(KeyError::UnreadableCsr(e.to_string())),
    };
    let (_, req) = X509CertificationRequest::from_der(&der).map_err(|e| KeyError::UnreadableCsr(e.to_string()))?;
    req.verify_signature().map_err(|_| KeyError::CsrSignature)?;
    let info = &req.certification_request_info;
    let common_name = info.subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    fn field<'a>(mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>) -> Option<String> {
        values.next().and_then(|v| v.as_str().ok()).map(str::to_string)
    }
    let subject = CsrSubject {
        country: field(info.subject.iter_country()),
        state: field(info.subject.iter_state_or_province()),
        locality: field(info.subject.iter_locality()),
        organization: field(info.subject.iter_organization()),
        organizational_unit: field(info.subject.iter_organizational_unit()),
    };
    let mut dns_names = Vec::new();
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    if let GeneralName::DNSName(d) = name {
                        dns_names.push(d.to_string());
                    }
                }
            }
        }
    }
    Ok(CsrInfo { common_name, subject, dns_names, public_key_bits: info.subject_pki.subject_public_key.data.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_makes_a_key_and_a_matching_csr() {
        for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let key = generate(alg).unwrap();
            assert!(key.expose_secret().starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(algorithm_of(&key).unwrap(), Some(alg));
            let csr = csr(
                &key,
                "a.example",
                &["b.example".into(), "A.example".into()],
                &CsrSubject { country: Some("RU".into()), organization: Some("Org".into()), ..Default::default() },
            )
            .unwrap();
            let info = inspect_csr(&csr).unwrap();
            assert_eq!(info.common_name.as_deref(), Some("a.example"));
            assert_eq!(info.dns_names, ["a.example", "b.example"]);
            assert_eq!(info.public_key_bits, public_key_bits(&key).unwrap());
        }
    }

    #[test]
    fn rsa_4096_is_recognised() {
        let key = generate(KeyAlgorithm::Rsa4096).unwrap();
        assert_eq!(algorithm_of(&key).unwrap(), Some(KeyAlgorithm::Rsa4096));
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let key = generate(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = csr(&key, "a.example", &[], &CsrSubject::default()).unwrap();
        let mut der = pem::parse(&csr).unwrap().into_contents();
        let n = der.len();
        der[n / 2] ^= 0x01;
        let bad = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert!(inspect_csr(&bad).is_err());
        assert!(inspect_csr("not a csr").is_err());
    }
}
