//! What the Secrets must contain: the `kubernetes.io/tls` output and the key Secret that holds a
//! private key from before its CSR leaves the operator. Pure builders plus readers.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::decide::KeyMeta;
use super::plan::Plan;
use crate::pki::chain::Chain;
use crate::pki::keys::KeyAlgorithm;

/// Label on every Secret the operator writes: the name of the `IspCertificate` it belongs to.
/// Owned Secrets are watched by this label, metadata only.
pub const LABEL_CERTIFICATE: &str = "ispcert.dev/certificate-name";

pub const ANN_CERTIFICATE: &str = "ispcert.dev/certificate-name";
pub const ANN_ISSUER_NAME: &str = "ispcert.dev/issuer-name";
pub const ANN_ISSUER_KIND: &str = "ispcert.dev/issuer-kind";
pub const ANN_COMMON_NAME: &str = "ispcert.dev/common-name";
pub const ANN_ALT_NAMES: &str = "ispcert.dev/alt-names";
pub const ANN_ORDER_ID: &str = "ispcert.dev/order-id";
pub const ANN_PRODUCT: &str = "ispcert.dev/product";
pub const ANN_NOT_AFTER: &str = "ispcert.dev/not-after";
pub const ANN_SERIAL: &str = "ispcert.dev/serial";
pub const ANN_CONTENT_HASH: &str = "ispcert.dev/content-hash";
pub const ANN_KEY_ALGORITHM: &str = "ispcert.dev/key-algorithm";
pub const ANN_KEY_SOURCE: &str = "ispcert.dev/key-source";
pub const ANN_CSR_NAMES: &str = "ispcert.dev/csr-names";

/// The type of the output Secret, which ingress controllers read.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The key Secret of an `IspCertificate`: `<name>-ispcert-key`, shortened with a hash when the
/// name is long (Secret names stop at 253 characters).
pub fn key_secret_name(certificate: &str) -> String {
    let name = format!("{certificate}-ispcert-key");
    if name.len() <= 253 {
        return name;
    }
    let hash = hex::encode(&Sha256::digest(certificate.as_bytes())[..4]);
    // A name part may not end in `.` or `-` where the suffix is joined on.
    let head = certificate[..230].trim_end_matches(['.', '-']);
    format!("{head}-{hash}-ispcert-key")
}

/// Where the output Secret comes from, for its annotations.
#[derive(Clone, Debug)]
pub struct Provenance<'a> {
    pub certificate: &'a str,
    pub issuer_kind: &'a str,
    pub issuer_name: &'a str,
    pub order_id: &'a str,
}

fn content_hash(data: &BTreeMap<String, ByteString>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(&v.0);
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The `kubernetes.io/tls` Secret: `tls.crt` = leaf + intermediates, `tls.key`, `ca.crt` when
/// the root is known, annotations describing the certificate, and the template's metadata.
pub fn tls_secret(plan: &Plan, from: &Provenance<'_>, namespace: &str, chain: &Chain, key: &SecretString) -> Secret {
    let info = chain.leaf_info();
    let mut data = BTreeMap::new();
    data.insert("tls.crt".to_string(), ByteString(chain.tls_crt().into_bytes()));
    data.insert("tls.key".to_string(), ByteString(key.expose_secret().as_bytes().to_vec()));
    if let Some(ca) = chain.ca_crt() {
        data.insert("ca.crt".to_string(), ByteString(ca.into_bytes()));
    }
    // Template metadata first, so ours wins on a clash: the label drives the watch.
    let mut labels = plan.secret_template.labels.clone();
    labels.insert(LABEL_CERTIFICATE.to_string(), from.certificate.to_string());
    let mut annotations = plan.secret_template.annotations.clone();
    for (k, v) in [
        (ANN_CERTIFICATE, from.certificate.to_string()),
        (ANN_ISSUER_NAME, from.issuer_name.to_string()),
        (ANN_ISSUER_KIND, from.issuer_kind.to_string()),
        (ANN_COMMON_NAME, plan.common_name.clone()),
        (ANN_ALT_NAMES, plan.alt_names.join(",")),
        (ANN_ORDER_ID, from.order_id.to_string()),
        (ANN_PRODUCT, plan.product.name.to_string()),
        (ANN_NOT_AFTER, info.not_after.to_string()),
        (ANN_SERIAL, info.serial.clone()),
        (ANN_CONTENT_HASH, content_hash(&data)),
    ] {
        annotations.insert(k.to_string(), v);
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(plan.secret_name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(TLS_SECRET_TYPE.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Whether an existing Secret already holds exactly what `desired` would write (data, type,
/// and every label and annotation we set), so the write can be skipped.
pub fn up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>, have: &Option<BTreeMap<String, String>>| {
        want.iter().flatten().all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    existing.data == desired.data
        && existing.type_ == desired.type_
        && subset(&desired.metadata.labels, &existing.metadata.labels)
        && subset(&desired.metadata.annotations, &existing.metadata.annotations)
}

/// What the operator keeps of each Secret it labels, from a metadata-only watch: the three facts
/// the fast path compares (every decision that needs more reads the Secret): the certificate our
/// label names, our serial annotation and the resourceVersion. One allocation holds all three
/// (three strings of their own took twice the memory, for two Secrets per certificate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSeen {
    /// The owner, then the serial, then the resourceVersion.
    text: Box<str>,
    /// Where the owner ends and, when there is one, where the serial ends.
    owner_end: u32,
    serial_end: Option<u32>,
    has_version: bool,
}

impl SecretSeen {
    pub fn new(owner: &str, serial: Option<&str>, resource_version: Option<&str>) -> Self {
        let text = [Some(owner), serial, resource_version].into_iter().flatten().collect::<String>();
        // Label values and annotations are far below 4 GiB (the API server caps objects at 1.5 MiB).
        let owner_end = u32::try_from(owner.len()).unwrap_or(u32::MAX);
        let serial_end = serial.map(|s| owner_end.saturating_add(u32::try_from(s.len()).unwrap_or(u32::MAX)));
        SecretSeen { text: text.into(), owner_end, serial_end, has_version: resource_version.is_some() }
    }

    /// `None` for a Secret without our label (the watch selects by it; an edit may remove it).
    pub fn of(meta: &ObjectMeta) -> Option<SecretSeen> {
        let owner = meta.labels.as_ref()?.get(LABEL_CERTIFICATE)?;
        let serial = meta.annotations.as_ref().and_then(|a| a.get(ANN_SERIAL));
        Some(SecretSeen::new(owner, serial.map(String::as_str), meta.resource_version.as_deref()))
    }

    fn part(&self, from: u32, to: Option<u32>) -> &str {
        let at = |i: u32| usize::try_from(i).unwrap_or(usize::MAX);
        let to = to.map_or(self.text.len(), at);
        self.text.get(at(from)..to).unwrap_or_default()
    }

    /// The certificate our label names.
    pub fn owner(&self) -> &str {
        self.part(0, Some(self.owner_end))
    }

    /// Our serial annotation.
    pub fn serial(&self) -> Option<&str> {
        self.serial_end.map(|end| self.part(self.owner_end, Some(end)))
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.has_version.then(|| self.part(self.serial_end.unwrap_or(self.owner_end), None))
    }
}

/// Whether a Secret is ours to write for `certificate`: it carries our label naming it.
pub fn managed_for(secret: &Secret, certificate: &str) -> bool {
    secret.metadata.labels.as_ref().and_then(|l| l.get(LABEL_CERTIFICATE)).is_some_and(|v| v == certificate)
}

/// The order a Secret left behind by a deleted `IspCertificate` was made from, if it was made by
/// the same issuer for the same product and common name: adopting it avoids buying again.
pub fn retained_order(secret: &Secret, plan: &Plan, issuer_kind: &str, issuer_name: &str) -> Option<String> {
    let ann = secret.metadata.annotations.as_ref()?;
    let is = |k: &str, v: &str| ann.get(k).is_some_and(|x| x.eq_ignore_ascii_case(v));
    (is(ANN_ISSUER_KIND, issuer_kind)
        && is(ANN_ISSUER_NAME, issuer_name)
        && is(ANN_PRODUCT, plan.product.name)
        && is(ANN_COMMON_NAME, &plan.common_name))
    .then(|| ann.get(ANN_ORDER_ID).cloned())
    .flatten()
    .filter(|id| crate::billing::decode::is_plausible_id(id))
}

/// The key Secret: the private key and the CSR made for it (and the key it replaced, until the
/// certificate for the new one is stored), labelled for the metadata watch. It has no owner
/// reference: like the output Secret it outlives the resource under `Retain`, so a manifest
/// applied again finds its key; `Delete` removes it explicitly.
pub fn key_secret(name: &str, namespace: &str, certificate: &str, stored: &StoredKey) -> Secret {
    let mut data = BTreeMap::new();
    data.insert("tls.key".to_string(), ByteString(stored.key.expose_secret().as_bytes().to_vec()));
    data.insert("tls.csr".to_string(), ByteString(stored.csr.as_bytes().to_vec()));
    if let Some(previous) = &stored.previous {
        data.insert("tls.key.previous".to_string(), ByteString(previous.expose_secret().as_bytes().to_vec()));
    }
    let meta = &stored.meta;
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_KEY_SOURCE.to_string(), meta.source.clone());
    annotations.insert(ANN_CSR_NAMES.to_string(), meta.csr_names.join(","));
    if let Some(a) = meta.algorithm {
        annotations.insert(ANN_KEY_ALGORITHM.to_string(), a.as_str().to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some([(LABEL_CERTIFICATE.to_string(), certificate.to_string())].into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The key material read back from a key Secret.
pub struct StoredKey {
    pub key: SecretString,
    pub csr: String,
    pub meta: KeyMeta,
    /// The key this one replaced, while the certificate for the new one is pending.
    pub previous: Option<SecretString>,
}

impl StoredKey {
    /// Whether the annotations that describe the key are there. A tool that prunes or rewrites
    /// annotations (GitOps, a backup restore) can remove them; the key is then described anew
    /// from itself, never replaced for it.
    pub fn is_described(&self) -> bool {
        !self.meta.source.is_empty() && (self.meta.source != "cluster" || self.meta.algorithm.is_some())
    }
}

fn algorithm_from(s: &str) -> Option<KeyAlgorithm> {
    [KeyAlgorithm::Rsa2048, KeyAlgorithm::Rsa4096, KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384]
        .into_iter()
        .find(|a| a.as_str() == s)
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()).filter(|s| !s.trim().is_empty())
}

/// Reads a key Secret; `None` when it lacks a key or CSR (then it is remade).
pub fn read_key_secret(secret: &Secret) -> Option<StoredKey> {
    let key = SecretString::from(text(secret, "tls.key")?);
    let csr = text(secret, "tls.csr")?;
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let meta = KeyMeta {
        algorithm: ann.get(ANN_KEY_ALGORITHM).and_then(|a| algorithm_from(a)),
        source: ann.get(ANN_KEY_SOURCE).cloned().unwrap_or_default(),
        csr_names: ann
            .get(ANN_CSR_NAMES)
            .map(|n| n.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
    };
    let previous = text(secret, "tls.key.previous").map(SecretString::from);
    Some(StoredKey { key, csr, meta, previous })
}

/// Reads a user's CSR Secret (`privateKey.source: Secret`).
pub fn read_csr_secret(secret: &Secret, csr_key: &str, key_key: &str) -> Result<(String, SecretString), String> {
    let csr = text(secret, csr_key).ok_or_else(|| format!("has no non-empty key {csr_key:?} with the PEM CSR"))?;
    let key =
        text(secret, key_key).ok_or_else(|| format!("has no non-empty key {key_key:?} with the PEM private key"))?;
    Ok((csr, SecretString::from(key)))
}

#[cfg(test)]
mod tests {
    use rcgen::KeyPair;

    use super::*;

    #[test]
    fn the_cache_keeps_only_what_the_fast_path_reads() {
        let mut meta = ObjectMeta {
            name: Some("www-tls".into()),
            namespace: Some("ns".into()),
            resource_version: Some("7".into()),
            labels: Some([(LABEL_CERTIFICATE.into(), "www".into()), ("team".into(), "a".into())].into()),
            annotations: Some([(ANN_SERIAL.into(), "01".into()), (ANN_ALT_NAMES.into(), "b".into())].into()),
            ..Default::default()
        };
        let seen = SecretSeen::of(&meta).unwrap();
        assert_eq!((seen.owner(), seen.serial(), seen.resource_version()), ("www", Some("01"), Some("7")));
        meta.annotations = None;
        let seen = SecretSeen::of(&meta).unwrap();
        assert_eq!((seen.owner(), seen.serial(), seen.resource_version()), ("www", None, Some("7")));
        meta.resource_version = None;
        meta.annotations = Some([(ANN_SERIAL.into(), String::new())].into());
        let seen = SecretSeen::of(&meta).unwrap();
        assert_eq!((seen.owner(), seen.serial(), seen.resource_version()), ("www", Some(""), None));
        meta.labels.as_mut().unwrap().remove(LABEL_CERTIFICATE);
        assert_eq!(SecretSeen::of(&meta), None, "not ours any more");
    }
    use crate::controller::plan::tests_support::plan_for;
    use crate::pki::chain::{order, tests::test_chain};

    fn chain() -> (Chain, SecretString) {
        let key = KeyPair::generate().unwrap();
        let (leaf, int, root) = test_chain(&["a.example.com", "b.example.com"], &key);
        (order(vec![leaf, int, root]).unwrap(), SecretString::from(key.serialize_pem()))
    }

    #[test]
    fn the_tls_secret_has_what_ingresses_and_users_expect() {
        let mut plan = plan_for("globalsign-domainssl", "a.example.com", &["b.example.com"]);
        plan.secret_template.labels.insert(LABEL_CERTIFICATE.into(), "spoof".into());
        plan.secret_template.labels.insert("team".into(), "web".into());
        plan.secret_template.annotations.insert("note".into(), "x".into());
        let (chain, key) = chain();
        let from = Provenance { certificate: "site", issuer_kind: "IspIssuer", issuer_name: "acct", order_id: "42" };
        let s = tls_secret(&plan, &from, "ns", &chain, &key);
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = s.data.as_ref().unwrap();
        let crt = String::from_utf8(data["tls.crt"].0.clone()).unwrap();
        assert_eq!(crt.matches("BEGIN CERTIFICATE").count(), 2, "leaf + intermediate, no root");
        assert!(data.contains_key("ca.crt") && data.contains_key("tls.key"));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_CERTIFICATE], "site");
        assert_eq!(labels["team"], "web");
        let ann = s.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[ANN_ALT_NAMES], "b.example.com");
        assert_eq!(ann[ANN_ORDER_ID], "42");
        assert_eq!(ann["note"], "x");
        assert!(up_to_date(&s, &s));
        let mut changed = s.clone();
        changed.data.as_mut().unwrap().insert("tls.key".into(), ByteString(b"other".to_vec()));
        assert!(!up_to_date(&changed, &s));
        assert!(managed_for(&s, "site") && !managed_for(&s, "other"));
        assert_eq!(retained_order(&s, &plan, "IspIssuer", "acct").as_deref(), Some("42"));
        assert_eq!(retained_order(&s, &plan, "IspIssuer", "another"), None);
    }

    #[test]
    fn key_secrets_round_trip() {
        let key = SecretString::from("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n".to_string());
        let meta = KeyMeta {
            algorithm: Some(KeyAlgorithm::EcdsaP384),
            source: "cluster".into(),
            csr_names: vec!["a".into(), "b".into()],
        };
        let stored = StoredKey {
            key,
            csr: "CSR".into(),
            meta: meta.clone(),
            previous: Some(SecretString::from("OLD".to_string())),
        };
        let s = key_secret("site-ispcert-key", "ns", "site", &stored);
        assert!(s.metadata.owner_references.is_none(), "no owner: the key outlives the resource under Retain");
        let back = read_key_secret(&s).unwrap();
        assert_eq!(back.meta, meta);
        assert!(back.is_described());
        assert_eq!(back.csr, "CSR");
        assert_eq!(back.previous.unwrap().expose_secret(), "OLD");

        // Annotations pruned by another tool: the key and CSR are read, but not described.
        let mut pruned = s.clone();
        pruned.metadata.annotations = None;
        let bare = read_key_secret(&pruned).unwrap();
        assert!(!bare.is_described(), "an undescribed key is described anew, not replaced");
        assert!(bare.previous.is_some(), "the previous key survives");
        assert_eq!(key_secret_name("site"), "site-ispcert-key");
        assert!(key_secret_name(&"x".repeat(253)).len() <= 253);
    }
}
