//! Decoding `certificate.file` bodies: PEM text, a ZIP (GlobalSign: a `.p7b` and `.crt` files),
//! a JSON document carrying the PEM, or an error document. The exact body of the real billing is
//! unknown, so every shape public material mentions is accepted.

use std::io::{Cursor, Read};

use serde_json::Value;

use super::decode;
use super::error::{BillingError, TransportKind};
use crate::pki::chain::certificates_in_pem;

/// Limits on what a ZIP may hold, so a hostile archive cannot exhaust memory.
const MAX_ZIP_ENTRIES: usize = 32;
const MAX_ENTRY_BYTES: u64 = 1 << 20;

fn unparsable(detail: impl Into<String>) -> BillingError {
    BillingError::transport(TransportKind::Unparsable, detail)
}

/// The certificates of a download body, DER each, in the order they came.
pub fn certificates(body: &[u8]) -> Result<Vec<Vec<u8>>, BillingError> {
    // A text body may carry a UTF-8 byte order mark; ZIP and DER bodies never start with one.
    let trimmed = decode::trim_start(body);
    let found = if trimmed.starts_with(b"PK\x03\x04") {
        from_zip(trimmed)?
    } else if trimmed.starts_with(b"-----BEGIN") {
        from_pem_text(trimmed)
    } else if trimmed.starts_with(b"{") || trimmed.starts_with(b"<") {
        // An error document (in any format) becomes its typed error here.
        let doc = decode::answer(trimmed)?;
        from_json(&doc)
    } else if trimmed.first() == Some(&0x30) {
        // A bare DER certificate or PKCS#7 bundle.
        from_der_blob(trimmed)
    } else {
        return Err(unparsable("a download that is neither PEM, ZIP, JSON nor DER"));
    };
    if found.is_empty() {
        return Err(unparsable("a download without any certificate"));
    }
    Ok(found)
}

fn from_pem_text(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = certificates_in_pem(text);
    if out.is_empty() {
        for block in pem::parse_many(text).unwrap_or_default() {
            if block.tag() == "PKCS7" {
                out.extend(from_pkcs7(block.contents()));
            }
        }
    }
    out
}

fn from_der_blob(der: &[u8]) -> Vec<Vec<u8>> {
    let bundle = from_pkcs7(der);
    if bundle.is_empty() { vec![der.to_vec()] } else { bundle }
}

/// Certificates of a PKCS#7 (`.p7b`) degenerate SignedData.
pub fn from_pkcs7(der: &[u8]) -> Vec<Vec<u8>> {
    use cms::cert::CertificateChoices;
    use cms::content_info::ContentInfo;
    use cms::signed_data::SignedData;
    use der::{Decode, Encode};

    let Ok(info) = ContentInfo::from_der(der) else { return vec![] };
    let Ok(signed) = info.content.decode_as::<SignedData>() else { return vec![] };
    signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(cert) => cert.to_der().ok(),
            CertificateChoices::Other(_) => None,
        })
        .collect()
}

/// `.crt`/`.pem`/`.cer` entries are preferred (PEM or DER); the `.p7b` is the fallback.
fn from_zip(bytes: &[u8]) -> Result<Vec<Vec<u8>>, BillingError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| unparsable(format!("a broken ZIP: {e}")))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(unparsable(format!("a ZIP with {} entries", archive.len())));
    }
    let mut loose = Vec::new();
    let mut bundles = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| unparsable(format!("a broken ZIP entry: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map(|n| n.to_ascii_lowercase()).unwrap_or_default();
        let mut data = Vec::new();
        (&mut entry)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| unparsable(format!("a broken ZIP entry: {e}")))?;
        if data.len() as u64 > MAX_ENTRY_BYTES {
            return Err(unparsable("a ZIP entry over 1 MiB"));
        }
        let is_pem = data.trim_ascii_start().starts_with(b"-----BEGIN");
        if name.ends_with(".p7b") || name.ends_with(".p7c") || name.ends_with(".p7") {
            bundles.extend(if is_pem { from_pem_text(&data) } else { from_pkcs7(&data) });
        } else if name.ends_with(".crt") || name.ends_with(".pem") || name.ends_with(".cer") {
            loose.extend(if is_pem { certificates_in_pem(&data) } else { from_der_blob(&data) });
        }
    }
    Ok(if loose.is_empty() { bundles } else { loose })
}

/// A JSON document carrying PEM text somewhere (for example `{"crt": "-----BEGIN..."}`).
fn from_json(doc: &Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    collect_pem_strings(doc, 0, &mut out);
    out
}

fn collect_pem_strings(v: &Value, depth: u8, out: &mut Vec<Vec<u8>>) {
    if depth > 16 {
        return;
    }
    match v {
        Value::String(s) if s.contains("-----BEGIN") => out.extend(from_pem_text(s.as_bytes())),
        Value::Array(items) => items.iter().for_each(|x| collect_pem_strings(x, depth + 1, out)),
        Value::Object(m) => m.values().for_each(|x| collect_pem_strings(x, depth + 1, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rcgen::KeyPair;

    use super::*;
    use crate::pki::chain::tests::test_chain;

    fn pem_of(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
    }

    fn pkcs7(certs: &[Vec<u8>]) -> Vec<u8> {
        use cms::cert::CertificateChoices;
        use cms::content_info::ContentInfo;
        use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
        use der::asn1::SetOfVec;
        use der::oid::ObjectIdentifier;
        use der::{Any, Decode, Encode};
        let set: SetOfVec<CertificateChoices> = certs
            .iter()
            .map(|d| CertificateChoices::Certificate(x509_cert::Certificate::from_der(d).unwrap()))
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let sd = SignedData {
            version: cms::content_info::CmsVersion::V1,
            digest_algorithms: SetOfVec::new(),
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1"),
                econtent: None,
            },
            certificates: Some(CertificateSet(set)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::new()),
        };
        ContentInfo {
            content_type: ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2"),
            content: Any::encode_from(&sd).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn pem_zip_p7b_and_json_bodies_all_yield_the_chain() {
        let key = KeyPair::generate().unwrap();
        let (leaf, int, root) = test_chain(&["a.example"], &key);
        let pem_text = format!("{}{}{}", pem_of(&leaf), pem_of(&int), pem_of(&root));
        assert_eq!(certificates(pem_text.as_bytes()).unwrap(), vec![leaf.clone(), int.clone(), root.clone()]);

        let json = serde_json::json!({"crt": {"$": pem_text}}).to_string();
        assert_eq!(certificates(json.as_bytes()).unwrap().len(), 3);

        let p7b = pkcs7(&[leaf.clone(), int.clone(), root.clone()]);
        assert_eq!(certificates(&p7b).unwrap().len(), 3);

        for with_crt in [true, false] {
            let mut buf = Cursor::new(Vec::new());
            let mut zw = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            zw.start_file("a.example.p7b", opts).unwrap();
            zw.write_all(&p7b).unwrap();
            if with_crt {
                zw.start_file("a.example.crt", opts).unwrap();
                zw.write_all(pem_of(&leaf).as_bytes()).unwrap();
                zw.start_file("intermediate.crt", opts).unwrap();
                zw.write_all(pem_of(&int).as_bytes()).unwrap();
            }
            zw.finish().unwrap();
            let got = certificates(buf.get_ref()).unwrap();
            assert_eq!(got.len(), if with_crt { 2 } else { 3 });
            assert_eq!(got[0], leaf);
        }
    }

    #[test]
    fn error_documents_become_typed_errors() {
        let not_yet = br#"{"error": {"type": "missed", "object": "file", "msg": "no file"}}"#;
        assert_eq!(certificates(not_yet), Err(BillingError::NotIssuedYet));
        let xml = br#"<doc><error type="value" object="elid"/></doc>"#;
        assert!(matches!(certificates(xml), Err(BillingError::NotFound { .. })));
        let with_bom = b"\xEF\xBB\xBF {\"error\": {\"type\": \"value\", \"object\": \"elid\"}}";
        assert!(matches!(certificates(with_bom), Err(BillingError::NotFound { .. })), "a byte order mark is skipped");
        assert!(matches!(certificates(b"hello"), Err(BillingError::Transport { .. })));
        assert!(matches!(certificates(b"{}"), Err(BillingError::Transport { .. })));
    }
}
