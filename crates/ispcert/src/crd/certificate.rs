//! `IspCertificate`: a certificate bought through an issuer's billing account and kept in a Secret.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::issuer::{Contacts, SubjectSpec, SubscriptionRenewal};

fn default_period() -> u32 {
    12
}

/// A DNS name or a wildcard `*.` name, as CEL-checked on `commonName` and `altNames`.
pub const DNS_NAME_RULE: &str = "self.matches('^(\\\\*\\\\.)?([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\\\\.)+[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$')";

/// Which certificate to buy and where to keep it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ispcert.dev",
    version = "v1alpha1",
    kind = "IspCertificate",
    namespaced,
    status = "CertificateStatus",
    shortname = "ispcert",
    shortname = "ispcerts",
    category = "ispcert-all",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.secretName"}"#,
    printcolumn = r#"{"name":"Product","type":"string","jsonPath":".spec.product"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","format":"date-time","jsonPath":".status.notAfter"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Order","type":"string","jsonPath":".status.orderId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.issuerRef == oldSelf.issuerRef").message("issuerRef cannot change: the order belongs to one billing account; create a new IspCertificate instead"))]
#[x_kube(validation = Rule::new("self.product == oldSelf.product").message("product cannot change: another product is another purchase; create a new IspCertificate instead"))]
#[x_kube(validation = Rule::new("self.commonName == oldSelf.commonName").message("commonName cannot change: another common name is another purchase; create a new IspCertificate instead"))]
#[x_kube(validation = Rule::new("has(self.orderId) == has(oldSelf.orderId) && (!has(self.orderId) || self.orderId == oldSelf.orderId)").message("orderId cannot be added, removed or changed after creation"))]
#[x_kube(validation = Rule::new("!has(self.orderId) || !has(self.privateKey) || self.privateKey.source != 'Billing'").message("adopting an existing order (orderId) needs the key in the cluster: use privateKey.source Cluster or Secret"))]
#[x_kube(validation = Rule::new("!has(self.approvers) || self.approvers.all(a, a.domain == self.commonName || (has(self.altNames) && a.domain in self.altNames))").message("every approvers[].domain must be the commonName or one of altNames"))]
#[x_kube(validation = Rule::new("has(self.approverMailbox) || (has(self.approvers) && self.approvers.exists(a, a.domain == self.commonName) && (!has(self.altNames) || self.altNames.all(n, self.approvers.exists(a, a.domain == n))))").message("every name needs an approver: set approverMailbox (e.g. admin) or list each name under approvers"))]
#[x_kube(validation = Rule::new("!has(self.altNames) || !(self.commonName in self.altNames)").message("altNames must not repeat the commonName"))]
#[x_kube(validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set renewBefore or renewBeforePercentage, not both"))]
#[serde(rename_all = "camelCase")]
pub struct IspCertificateSpec {
    /// The `IspIssuer` (same namespace) or `ClusterIspIssuer` whose billing account pays.
    /// Cannot change.
    pub issuer_ref: IssuerRef,

    /// The product: a catalog name such as `alphassl`, `alphassl-wildcard` or
    /// `globalsign-domainssl`, or a raw price-list id such as `55324`. `ispcert catalog` lists
    /// them. Cannot change.
    #[schemars(length(min = 1, max = 64))]
    pub product: String,

    /// Subscription period in months: 12 or 24. The certificate itself is valid for at most
    /// 200 days (CA/Browser Forum), so the operator reissues it for free within the period.
    #[serde(default = "default_period")]
    #[x_kube(validation = Rule::new("self == 12 || self == 24").message("period must be 12 or 24 months"))]
    #[schemars(range(min = 12, max = 24))]
    pub period: u32,

    /// The main domain, for example `www.example.com` or `*.example.com` (wildcard products
    /// only). Cannot change.
    #[x_kube(validation = Rule::new("self != ''").message("commonName must not be empty"))]
    #[x_kube(validation = Rule::new(DNS_NAME_RULE).message("commonName must be a DNS name such as www.example.com or *.example.com"))]
    #[schemars(length(max = 253))]
    pub common_name: String,

    /// Additional domains, for multi-domain products only. Changing them reissues the
    /// certificate for free, up to the number of domains paid for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(length(min = 1, max = 253), pattern(r"^([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub alt_names: Vec<String>,

    /// For multi-domain orders on products whose addon code the catalog does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_domain: Option<MultiDomainSpec>,

    /// Subject fields; each unset field falls back to the issuer's subject.
    // Boxed, like `contacts`: rarely set, and inline they took 400 bytes of every cached
    // certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<SubjectSpec>>,

    /// Contacts; fall back to the issuer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Box<Contacts>>,

    /// The approver mailbox used for every name without an entry in `approvers`: one of
    /// `admin`, `administrator`, `hostmaster`, `postmaster`, `webmaster` (at the name's domain;
    /// a wildcard `*.example.com` is approved through `example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_mailbox: Option<ApproverMailbox>,

    /// Approver emails for particular names (domain validation by email).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 101))]
    pub approvers: Vec<Approver>,

    /// How the private key is made and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,

    /// Adopt an order already bought (for example in the billing's web panel) by its
    /// certificate id instead of ordering. Nothing is bought; the operator downloads the
    /// certificate, and reissues it for free with its own key when needed. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,20}$')").message("orderId must be the billing's numeric certificate id"))]
    #[schemars(length(max = 20))]
    pub order_id: Option<String>,

    /// The `kubernetes.io/tls` Secret to write, in this namespace.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("secretName must be a valid Secret name (lower-case DNS subdomain)"))]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// Labels and annotations copied onto the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<Box<SecretTemplate>>,

    /// How long before the certificate expires it is renewed (a free reissue), as a duration such
    /// as `720h` or `360h30m`. A value of the whole lifetime or more means the default: two
    /// thirds into the certificate's real lifetime. Renewals never come sooner after a
    /// certificate's start than the operator's `--renewal-floor` (7 days by default). Not with
    /// `renewBeforePercentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(h|m|s|ms))+$') && duration(self) > duration('0s')").message("renewBefore must be a positive duration such as 720h or 360h30m"))]
    #[schemars(length(max = 32))]
    pub renew_before: Option<String>,

    /// Renew when this percentage of the certificate's lifetime is left, 1 to 99 (cert-manager's
    /// meaning). Not with `renewBefore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<u32>,

    /// How this certificate's subscription is renewed near its end: `Manual` or `Automatic`
    /// (`service.prolong`, money); the issuer's `subscriptionRenewal` (default `Manual`) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_renewal: Option<SubscriptionRenewal>,

    /// What deleting this resource does. `Retain` (default) keeps the order, the Secret and the
    /// key Secret (applying the manifest again adopts them, buying nothing); `Delete` deletes the
    /// certificate at the billing, then both Secrets.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Which issuer pays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `IspIssuer` (default; same namespace) or `ClusterIspIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IssuerKind {
    #[default]
    IspIssuer,
    ClusterIspIssuer,
}

impl IssuerKind {
    /// The kind as `issuerRef.kind` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::IspIssuer => "IspIssuer",
            IssuerKind::ClusterIspIssuer => "ClusterIspIssuer",
        }
    }
}

/// The billing's addon code for extra domains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiDomainSpec {
    /// The `addon_<code>` of this product in your account's order form. Only needed for
    /// products whose code the catalog lacks; the catalog's own code wins otherwise.
    // Bounded to its Rust type at apply time: a larger number would fail to deserialise and,
    // in a watch, stop the whole list for everyone.
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub addon_code: u32,
}

/// The five mailboxes CAs accept for domain validation by email.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApproverMailbox {
    Admin,
    Administrator,
    Hostmaster,
    Postmaster,
    Webmaster,
}

impl ApproverMailbox {
    pub fn as_str(self) -> &'static str {
        match self {
            ApproverMailbox::Admin => "admin",
            ApproverMailbox::Administrator => "administrator",
            ApproverMailbox::Hostmaster => "hostmaster",
            ApproverMailbox::Postmaster => "postmaster",
            ApproverMailbox::Webmaster => "webmaster",
        }
    }
}

/// The approver email of one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.email.lowerAscii() in ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'].map(m, m + '@' + (self.domain.startsWith('*.') ? self.domain.substring(2) : self.domain).lowerAscii())").message("email must be admin@, administrator@, hostmaster@, postmaster@ or webmaster@ the domain (for *.example.com: @example.com)"))]
pub struct Approver {
    /// The name (the commonName or one of altNames) this email approves.
    #[schemars(length(min = 1, max = 253))]
    pub domain: String,
    /// One of admin@, administrator@, hostmaster@, postmaster@ or webmaster@ that domain.
    #[schemars(length(min = 3, max = 320))]
    pub email: String,
}

/// Key settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.source == 'Secret' ? has(self.secretRef) : !has(self.secretRef)").message("privateKey.secretRef is required with source Secret and not allowed otherwise"))]
#[x_kube(validation = Rule::new("!has(self.size) || (self.algorithm == 'ECDSA' ? (self.size == 256 || self.size == 384) : (self.size == 2048 || self.size == 4096))").message("privateKey.size must be 2048 or 4096 for RSA, 256 or 384 for ECDSA"))]
#[x_kube(validation = Rule::new("self.source == 'Cluster' || (!has(self.size) && self.algorithm == 'RSA' && self.rotationPolicy == 'Never')").message("privateKey.algorithm, size and rotationPolicy describe keys the operator makes (source Cluster); leave them unset with source Billing or Secret"))]
pub struct PrivateKeySpec {
    /// `Cluster` (default): the operator makes the key; it never leaves the cluster.
    /// `Billing`: the billing makes key and CSR (the reference's flow); the key passes through
    /// the billing. `Secret`: an existing CSR and key are read from `secretRef`.
    #[serde(default)]
    pub source: KeySource,
    /// `RSA` (default) or `ECDSA`, for keys the operator makes.
    #[serde(default)]
    pub algorithm: KeyAlgorithmSpec,
    /// RSA: 2048 (default) or 4096. ECDSA: 256 (default) or 384.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub size: Option<u32>,
    /// `Never` (default) keeps the key across reissues; `Always` makes a new key for each
    /// reissue.
    #[serde(default)]
    pub rotation_policy: RotationPolicy,
    /// With source `Secret`: where the CSR and key are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<CsrSecretRef>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KeySource {
    #[default]
    Cluster,
    Billing,
    Secret,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithmSpec {
    #[default]
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RotationPolicy {
    #[default]
    Never,
    Always,
}

/// A Secret in this namespace holding an existing CSR and its private key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsrSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the PEM CSR. Defaults to `tls.csr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub csr_key: Option<String>,
    /// Key of the PEM private key. Defaults to `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key_key: Option<String>,
}

/// Metadata copied onto the Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels added to the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// An order being placed: written before the billing is asked, so that a crash between the
/// billing charging and the id reaching the status cannot lead to a second order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderAttempt {
    /// When the operator decided to order.
    pub started_at: Time,
    /// The `remoteid` sent with the order; the order is looked up by it (or by name and date)
    /// before any new attempt.
    pub remote_id: String,
    /// Set when the billing's answer was lost (timeout, 5xx): the order may exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_unknown: Option<bool>,
    /// Reads of the billing's list that did not show the order; it counts as never placed only
    /// after several, over the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub misses: Option<u32>,
    /// When the last list that missed the order was read; only a later list counts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
}

/// A free reissue in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReissueState {
    /// When the reissue was requested.
    pub requested_at: Time,
    /// Why: `KeyMismatch`, `NamesChanged`, `Renewal`, `KeyRotation`, `Adopted`.
    pub reason: String,
    /// The serial number of the certificate being replaced; a download still showing it means
    /// the new one is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_serial: Option<String>,
    /// Requests made for this need so far (1 when unset); a reissue not completed within the
    /// operator's `--reissue-timeout` (doubling with each request) is requested again, up to
    /// `--reissue-attempts` times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub attempts: Option<u32>,
    /// Set when the billing showed the CA refusing this request (certificate state 6): it is
    /// requested again after the backoff instead of the approval timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
}

/// A subscription renewal (`service.prolong`) being made: written before the billing is asked, so
/// that a crash or a lost answer is confirmed from the list instead of paid twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProlongState {
    /// When the operator decided to prolong.
    pub requested_at: Time,
    /// The subscription's end before it; a list showing a later end confirms the prolongation.
    pub previous_end: Time,
    /// Set when the billing's answer was lost (timeout, 5xx): the prolongation may have been made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_unknown: Option<bool>,
}

/// What the operator knows about the order and the certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// `Ready`: the Secret holds a valid certificate for the current spec. `Issuing`: an order or
    /// reissue is under way. `Stalled`: not Ready, and nothing happens until a person acts (the
    /// message says what to do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The billing's certificate id of this resource's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The billing account of the order (until there is one, of the issuer), as an opaque key (a
    /// hash of the billing's URL and the login): order ids are unique within one account only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub account: Option<String>,
    /// When the order was placed (or adopted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_at: Option<Time>,
    /// When the paid subscription ends: the billing's `expiredate` of the order, as last seen in
    /// the account's list. No certificate of this order is valid past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_end: Option<Time>,
    /// The billing's state of the order, for example `processing` or `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_state: Option<String>,
    /// Set while an order is being placed (see the operator's README on crash safety).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_attempt: Option<Box<OrderAttempt>>,
    /// Set while a subscription renewal (`service.prolong`) is being made and confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prolong: Option<Box<ProlongState>>,
    /// When the operator last prolonged the subscription (it counts against the order budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prolonged_at: Option<Time>,
    /// The order this resource's order replaced, when the billing refused to prolong it under
    /// `subscriptionRenewal: Automatic`. This certificate keeps claiming it until the new
    /// order's certificate is stored; then it is deleted at the billing (`deletionPolicy:
    /// Delete`) or left to run out (`Retain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_order: Option<String>,
    /// Set while a free reissue is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue: Option<Box<ReissueState>>,
    /// Start of validity of the stored certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// End of validity of the stored certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// Serial number of the stored certificate (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// DNS names of the stored certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// When the operator will reissue the certificate (`renewBefore`, `renewBeforePercentage` or two
    /// thirds into its lifetime). Unset when the subscription ends too soon for a reissue to help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// The approver email of each name as the billing was last given them (with the order or a
    /// reissue): when `approvers` or `approverMailbox` change, a free reissue sends the new ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 101), inner(length(max = 320)))]
    pub approver_emails: Vec<String>,
    /// The subject of the CSR the billing was last given, for a key made in the cluster
    /// (`CN=www.example.com, C=RU, O=Org`): when `subject` changes, a free `manual` reissue sends
    /// a CSR with the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub requested_subject: Option<String>,
    /// The value of the `ispcert.dev/renew` annotation (written by `ispcert renew`) last acted on:
    /// a different value asks for a free reissue now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub renew_request: Option<String>,
    /// When the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub failed_attempts: Option<u32>,
}
