//! The simulated certificate authorities: one root, one issuing intermediate per brand, CSR
//! parsing and key generation for `crt_type=generate`, and the download bodies (PEM chain, or a
//! GlobalSign-style ZIP with a `.p7b`). All of the simulator's own keys are ECDSA P-256, which is
//! fast to generate and to sign with; customer CSRs may use any key rcgen understands.

use std::collections::HashMap;
use std::io::Write as _;

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData as _, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509CertificationRequest};
use x509_parser::public_key::PublicKey;

use crate::products;
use crate::time::to_offset_date_time as to_time;

use super::render::bytes_like::Bytes;

/// emailAddress (PKCS#9), which rcgen has no named type for.
const OID_EMAIL: [u64; 7] = [1, 2, 840, 113_549, 1, 9, 1];

/// Subject attributes besides the common name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subject {
    pub o: Option<String>,
    pub ou: Option<String>,
    pub l: Option<String>,
    pub st: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub c: Option<String>,
    pub email: Option<String>,
}

/// What the simulator reads from a CSR.
#[derive(Clone, Debug)]
pub(crate) struct Csr {
    pub cn: Option<String>,
    /// DNS names of the subjectAltName extension request, lowercased.
    pub sans: Vec<String>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    pub subject: Subject,
}

/// Parses a PEM CSR and verifies its self-signature. The error text says what is wrong.
pub(crate) fn parse_csr(pem_text: &str) -> Result<Csr, String> {
    let block = pem::parse(pem_text.trim()).map_err(|e| format!("not a PEM block: {e}"))?;
    if !matches!(block.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") {
        return Err(format!("PEM block is {:?}, not CERTIFICATE REQUEST", block.tag()));
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(block.contents()).map_err(|e| format!("not a PKCS#10 request: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the request".into());
    }
    csr.verify_signature().map_err(|e| format!("the request's signature does not verify: {e}"))?;
    let info = &csr.certification_request_info;
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let subject = Subject {
        o: first(&mut info.subject.iter_organization()),
        ou: first(&mut info.subject.iter_organizational_unit()),
        l: first(&mut info.subject.iter_locality()),
        st: first(&mut info.subject.iter_state_or_province()),
        c: first(&mut info.subject.iter_country()),
        email: first(&mut info.subject.iter_email()),
    };
    let mut sans = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => sans.push(d.to_ascii_lowercase()),
                        // Public TLS certificates carry domain names only.
                        other => return Err(format!("the request asks for {other}, which is not a domain name")),
                    }
                }
            }
        }
    }
    // A key rcgen cannot put into a certificate (RSA-PSS, DSA, ...) is refused here, at order
    // time, rather than failing later at download.
    SubjectPublicKeyInfo::from_der(info.subject_pki.raw).map_err(|e| format!("unsupported public key: {e}"))?;
    // Only keys public CAs certify (CA/Browser Forum Baseline Requirements 6.1.5): RSA of 2048
    // bits or more, ECDSA on P-256, P-384 or P-521.
    let curve = info.subject_pki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    let acceptable = match info.subject_pki.parsed() {
        Ok(PublicKey::RSA(rsa)) => rsa.key_size() >= 2048,
        Ok(PublicKey::EC(_)) => {
            matches!(curve.as_deref(), Some("1.2.840.10045.3.1.7" | "1.3.132.0.34" | "1.3.132.0.35"))
        }
        _ => false,
    };
    if !acceptable {
        return Err("the request's key is not one a public CA certifies: RSA of 2048 bits or more, or ECDSA P-256, P-384 or P-521".into());
    }
    Ok(Csr {
        cn: first(&mut info.subject.iter_common_name()).map(|c| c.to_ascii_lowercase()),
        sans,
        spki: info.subject_pki.raw.to_vec(),
        subject,
    })
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key, to check that a key belongs to a CSR.
pub(crate) fn key_spki(key_pem: &str) -> Result<Vec<u8>, String> {
    let key = KeyPair::from_pem(key_pem.trim()).map_err(|e| format!("unreadable key: {e}"))?;
    Ok(key.subject_public_key_info())
}

fn dn(cn: &str, s: &Subject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(c) = &s.c {
        dn.push(DnType::CountryName, c.as_str());
    }
    if let Some(st) = &s.st {
        dn.push(DnType::StateOrProvinceName, st.as_str());
    }
    if let Some(l) = &s.l {
        dn.push(DnType::LocalityName, l.as_str());
    }
    if let Some(o) = &s.o {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    if let Some(ou) = &s.ou {
        dn.push(DnType::OrganizationalUnitName, ou.as_str());
    }
    dn.push(DnType::CommonName, cn);
    if let Some(e) = &s.email {
        dn.push(DnType::CustomDnType(OID_EMAIL.to_vec()), e.as_str());
    }
    dn
}

fn dns_sans(names: &[String]) -> Result<Vec<SanType>, String> {
    names
        .iter()
        .map(|n| {
            n.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("name {n:?} cannot go into a certificate: {e}"))
        })
        .collect()
}

/// A new ECDSA P-256 key and a CSR for `names` (common name first), as the billing makes them for
/// `crt_type=generate`. Returns (csr PEM, key PEM).
pub(crate) fn generate_key_and_csr(names: &[String], subject: &Subject) -> Result<(String, String), String> {
    let cn = names.first().ok_or("no common name")?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn, subject);
    params.subject_alt_names = dns_sans(names)?;
    let csr = params.serialize_request(&key).and_then(|c| c.pem()).map_err(|e| e.to_string())?;
    Ok((csr, key.serialize_pem()))
}

/// One intermediate: its issuer handle and certificate.
struct Intermediate {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: Vec<u8>,
}

/// What a leaf certificate is made from.
#[derive(Clone, Debug)]
pub(crate) struct LeafSpec {
    /// The brand whose intermediate signs it.
    pub brand: String,
    /// Delivered as a ZIP (GlobalSign's CA module) rather than PEM text.
    pub zip: bool,
    /// Common name first, then the other DNS names in the billing's order.
    pub names: Vec<String>,
    /// Subject attributes to include (empty for DV).
    pub subject: Subject,
    pub spki: Vec<u8>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub serial: [u8; 16],
    /// File name stem of the ZIP members (`<stem>.p7b`, `<stem>.crt`).
    pub file_stem: String,
}

/// A signed chain and the download body the brand delivers.
#[derive(Debug)]
pub(crate) struct IssuedChain {
    /// The `certificate.file` body.
    pub body: Bytes,
    pub content_type: &'static str,
    pub filename: String,
}

/// The simulated PKI.
pub(crate) struct Ca {
    root_pem: String,
    root_der: Vec<u8>,
    intermediates: HashMap<String, Intermediate>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n * 24)
}

impl Ca {
    /// Makes a fresh root and one intermediate per brand.
    pub(crate) fn new() -> Result<Ca, String> {
        let now = Timestamp::now();
        let e = |e: rcgen::Error| e.to_string();
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(e)?;
        let mut root = CertificateParams::default();
        let mut root_dn = DistinguishedName::new();
        root_dn.push(DnType::OrganizationName, "ispcert simulator");
        root_dn.push(DnType::CommonName, "ispcert Simulated Root CA");
        root.distinguished_name = root_dn;
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = to_time(now - days(1));
        root.not_after = to_time(now + days(365 * 20));
        root.serial_number = Some(SerialNumber::from_slice(&[0x01, 0x5a]));
        let root_cert = root.self_signed(&root_key).map_err(e)?;
        let root_issuer = Issuer::new(root, root_key);
        let mut intermediates = HashMap::new();
        for (i, brand) in products::brands().into_iter().enumerate() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(e)?;
            let mut p = CertificateParams::default();
            let mut d = DistinguishedName::new();
            d.push(DnType::OrganizationName, format!("{brand} (simulated)"));
            d.push(DnType::CommonName, format!("{brand} Simulated Issuing CA"));
            p.distinguished_name = d;
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            p.not_before = to_time(now - days(1));
            p.not_after = to_time(now + days(365 * 10));
            p.serial_number = Some(SerialNumber::from_slice(&[0x02, (i as u8).wrapping_add(1)]));
            p.use_authority_key_identifier_extension = true;
            let cert = p.signed_by(&key, &root_issuer).map_err(e)?;
            intermediates.insert(
                brand.to_string(),
                Intermediate { pem: cert.pem(), der: cert.der().to_vec(), issuer: Issuer::new(p, key) },
            );
        }
        Ok(Ca { root_pem: root_cert.pem(), root_der: root_cert.der().to_vec(), intermediates })
    }

    /// The root certificate, PEM (what a test trusts).
    pub(crate) fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Signs a leaf and packs the download body for its brand.
    pub(crate) fn issue(&self, spec: &LeafSpec) -> Result<IssuedChain, String> {
        let int = self.intermediates.get(&spec.brand).ok_or("no intermediate for brand")?;
        let spki = SubjectPublicKeyInfo::from_der(&spec.spki).map_err(|e| e.to_string())?;
        let cn = spec.names.first().ok_or("no common name")?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(cn, &spec.subject);
        p.subject_alt_names = dns_sans(&spec.names)?;
        p.not_before = to_time(spec.not_before);
        p.not_after = to_time(spec.not_after);
        let mut serial = spec.serial;
        serial[0] = (serial[0] & 0x7f) | 0x10; // positive and of full length
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let leaf = p.signed_by(&spki, &int.issuer).map_err(|e| e.to_string())?;
        let leaf_pem = leaf.pem();
        let leaf_der = leaf.der().to_vec();
        if spec.zip {
            let body = self.zip(spec, &leaf_pem, &leaf_der, int)?;
            Ok(IssuedChain {
                body: Bytes::from(body),
                content_type: "application/zip",
                filename: format!("{}.zip", spec.file_stem),
            })
        } else {
            let body = format!("{leaf_pem}{}{}", int.pem, self.root_pem);
            Ok(IssuedChain {
                body: Bytes::from(body),
                content_type: "application/x-pem-file",
                filename: format!("{}.crt", spec.file_stem),
            })
        }
    }

    fn zip(&self, spec: &LeafSpec, leaf_pem: &str, leaf_der: &[u8], int: &Intermediate) -> Result<Vec<u8>, String> {
        use der::{Decode as _, Encode as _};
        let certs = [leaf_der, &int.der, &self.root_der]
            .into_iter()
            .map(x509_cert::Certificate::from_der)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let p7b =
            cms::content_info::ContentInfo::try_from(certs).and_then(|ci| ci.to_der()).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        let files: [(String, &[u8]); 4] = [
            (format!("{}.p7b", spec.file_stem), &p7b),
            (format!("{}.crt", spec.file_stem), leaf_pem.as_bytes()),
            ("intermediate.crt".to_owned(), int.pem.as_bytes()),
            ("root.crt".to_owned(), self.root_pem.as_bytes()),
        ];
        for (name, bytes) in files {
            zip.start_file(name, opts).map_err(|e| e.to_string())?;
            zip.write_all(bytes).map_err(|e| e.to_string())?;
        }
        let cursor = zip.finish().map_err(|e| e.to_string())?;
        Ok(cursor.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{X509Certificate, parse_x509_pem};

    fn spec(brand: &str, spki: Vec<u8>) -> LeafSpec {
        let now = Timestamp::now();
        LeafSpec {
            brand: brand.into(),
            zip: brand == "AlphaSSL",
            names: vec!["*.example.com".into(), "example.com".into()],
            subject: Subject::default(),
            spki,
            not_before: now,
            not_after: now + days(200),
            serial: [0xab; 16],
            file_stem: "star.example.com".into(),
        }
    }

    #[test]
    fn generated_csr_parses_and_its_key_matches() {
        let names = vec!["a.example.com".to_owned(), "b.example.com".to_owned()];
        let subject = Subject {
            o: Some("Org".into()),
            c: Some("RU".into()),
            email: Some("x@example.com".into()),
            ..Subject::default()
        };
        let (csr, key) = generate_key_and_csr(&names, &subject).unwrap();
        let parsed = parse_csr(&csr).unwrap();
        assert_eq!(parsed.cn.as_deref(), Some("a.example.com"));
        assert_eq!(parsed.sans, names);
        assert_eq!(parsed.subject.o.as_deref(), Some("Org"));
        assert_eq!(key_spki(&key).unwrap(), parsed.spki);
        let (_, other) = generate_key_and_csr(&names, &subject).unwrap();
        assert_ne!(key_spki(&other).unwrap(), parsed.spki);
    }

    #[test]
    fn garbage_and_tampered_csrs_are_refused() {
        assert!(parse_csr("hello").is_err());
        assert!(parse_csr("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err());
        let (csr, _) = generate_key_and_csr(&["a.example.com".into()], &Subject::default()).unwrap();
        let block = pem::parse(&csr).unwrap();
        let mut der = block.contents().to_vec();
        let n = der.len();
        der[n - 5] ^= 0x55; // inside the signature
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert!(parse_csr(&tampered).is_err());
    }

    #[test]
    fn chain_verifies_and_leaf_carries_the_csr_key() {
        let ca = Ca::new().unwrap();
        let (csr, _) = generate_key_and_csr(&["*.example.com".into()], &Subject::default()).unwrap();
        let csr = parse_csr(&csr).unwrap();
        let chain = ca.issue(&spec("Comodo", csr.spki.clone())).unwrap();
        assert_eq!(chain.content_type, "application/x-pem-file");
        let pems: Vec<_> = pem::parse_many(&chain.body).unwrap();
        assert_eq!(pems.len(), 3);
        let certs: Vec<X509Certificate<'_>> =
            pems.iter().map(|p| X509Certificate::from_der(p.contents()).unwrap().1).collect();
        assert_eq!(certs[0].public_key().raw, csr.spki.as_slice());
        certs[0].verify_signature(Some(certs[1].public_key())).unwrap();
        certs[1].verify_signature(Some(certs[2].public_key())).unwrap();
        certs[2].verify_signature(None).unwrap();
        let _ = parse_x509_pem(ca.root_pem().as_bytes()).unwrap();
        let zip = ca.issue(&spec("AlphaSSL", csr.spki)).unwrap();
        assert_eq!(zip.content_type, "application/zip");
        assert!(zip.body.starts_with(b"PK"));
    }
}
