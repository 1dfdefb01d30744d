//! `IspIssuer` and `ClusterIspIssuer`: one ispmanager billing account each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::Region;

fn default_url() -> String {
    crate::billing::DEFAULT_URL.to_string()
}

fn default_region() -> Region {
    Region::Russian
}

/// The billing account an issuer uses. `IspIssuer` and `ClusterIspIssuer` share this spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// The billing API endpoint. The default is the production ispmanager billing; other
    /// BILLmanager installations (for example `https://api-eu.ispmanager.com/billmgr`) work too.
    /// Must be http(s) without credentials or query.
    #[serde(default = "default_url")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/@?#\\\\s]+(/[^?#\\\\s]*)?$')").message("url must be an http(s) URL without credentials, query or fragment, e.g. https://api.ispmanager.com/billmgr"))]
    pub url: String,

    /// The Secret holding the billing login under the keys `email` and `password`. An `IspIssuer`
    /// reads it from its own namespace; a `ClusterIspIssuer` only from the operator's namespace.
    pub credentials_secret_ref: CredentialsSecretRef,

    /// Which price list the account buys from: `Russian` (clients in Russia) or `Foreign`. It
    /// picks the price-list id of each product (see `ispcert catalog`).
    #[serde(default = "default_region")]
    pub region: Region,

    /// Contacts used by every certificate of this issuer unless the certificate overrides them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Contacts>,

    /// Subject used by every certificate of this issuer unless the certificate overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectSpec>,

    /// How many new orders (and subscription renewals) the certificates of this issuer may place
    /// in any 24 hours, counted from the billing's own list and the certificates' statuses, so
    /// that a restart does not reset it. `0` allows no new order. Default 10. A runaway (a GitOps
    /// loop creating objects, a bug) stops here with a condition, a Warning event and the metric
    /// `ispcert_order_budget_exhausted`, instead of spending the balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4294967295u32))]
    pub order_budget: Option<u32>,

    /// How the certificates' subscriptions are renewed when they near their end. `Manual`
    /// (default): a `SubscriptionEnding` condition, a Warning event and a metric ahead of the end,
    /// and nothing is bought. `Automatic`: `service.prolong` once per period (money), within the
    /// order budget. A certificate's own `subscriptionRenewal` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_renewal: Option<SubscriptionRenewal>,
}

/// Who renews a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SubscriptionRenewal {
    /// A person, in the billing panel; the operator warns ahead.
    #[default]
    Manual,
    /// The operator, by `service.prolong`, once per period.
    Automatic,
}

/// The default of [`IssuerSpec::order_budget`].
pub const DEFAULT_ORDER_BUDGET: u32 = 10;

impl IssuerSpec {
    /// New orders allowed per 24 hours.
    pub fn order_budget(&self) -> u32 {
        self.order_budget.unwrap_or(DEFAULT_ORDER_BUDGET)
    }
}

/// Where the billing login is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Not allowed to differ from where the Secret is read: the issuer's own namespace for an
    /// `IspIssuer`, the operator's namespace for a `ClusterIspIssuer`. Accepted only so that a
    /// manifest naming it gets a clear answer instead of a silent prune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub namespace: Option<String>,
    /// Key of the account email in the Secret. Defaults to `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub email_key: Option<String>,
    /// Key of the password in the Secret. Defaults to `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub password_key: Option<String>,
}

/// The administrative and technical contacts of an order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contacts {
    /// The administrative contact (`adm_*` order fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<ContactSpec>,
    /// The technical contact (`tech_*` order fields). Defaults to the administrative contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tech: Option<ContactSpec>,
}

/// A person the CA may contact about the order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactSpec {
    /// First name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// Last name.
    #[schemars(length(min = 1, max = 100))]
    pub last_name: String,
    /// Job title.
    #[schemars(length(min = 1, max = 100))]
    pub title: String,
    /// Email address.
    #[schemars(length(max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$')").message("email must look like name@example.com"))]
    pub email: String,
    /// Phone number in international format, for example `+7 495 1234567`.
    #[schemars(length(max = 30))]
    #[x_kube(validation = Rule::new("self.matches('^\\\\+?[0-9 ()-]{5,30}$')").message("phone must be digits, optionally with + ( ) - and spaces"))]
    pub phone: String,
}

/// The subject of the certificate request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectSpec {
    /// Two-letter ISO 3166 country code put in CSRs the operator makes (`C`), for example `RU`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z]{2}$')").message("country must be a two-letter upper-case ISO code such as RU"))]
    pub country: Option<String>,
    /// The billing's numeric country id (`field_country`; 182 is Russia), needed when the billing
    /// makes the key. `ispcert countries` lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,5}$')").message("countryId must be the billing's numeric country id, e.g. 182"))]
    pub country_id: Option<String>,
    /// State or region (`ST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub state: Option<String>,
    /// City (`L`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub locality: Option<String>,
    /// Organization (`O`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub organization: Option<String>,
    /// Department (`OU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub organizational_unit: Option<String>,
    /// Email address of the subject (`emailAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub email: Option<String>,
}

impl SubjectSpec {
    /// Fields of `self`, each falling back to `base`'s.
    pub fn over(&self, base: &SubjectSpec) -> SubjectSpec {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        SubjectSpec {
            country: pick(&self.country, &base.country),
            country_id: pick(&self.country_id, &base.country_id),
            state: pick(&self.state, &base.state),
            locality: pick(&self.locality, &base.locality),
            organization: pick(&self.organization, &base.organization),
            organizational_unit: pick(&self.organizational_unit, &base.organizational_unit),
            email: pick(&self.email, &base.email),
        }
    }
}

/// What the operator last found out about the billing account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// `Ready` is True when the credentials were accepted by a real call to the billing. `Stalled`
    /// is True when they were refused (or cannot be read) and only a person can fix it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The account in use, redacted (`a…@example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When the credentials were last checked against the billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// A namespaced billing account for the `IspCertificate`s of its namespace.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ispcert.dev",
    version = "v1alpha1",
    kind = "IspIssuer",
    namespaced,
    status = "IssuerStatus",
    shortname = "ispissuer",
    category = "ispcert-all",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct IspIssuerSpec {
    #[serde(flatten)]
    pub inner: IssuerSpec,
}

/// A cluster-wide billing account. Its credentials Secret is read from the operator's namespace.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ispcert.dev",
    version = "v1alpha1",
    kind = "ClusterIspIssuer",
    status = "IssuerStatus",
    shortname = "clusterispissuer",
    category = "ispcert-all",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIspIssuerSpec {
    #[serde(flatten)]
    pub inner: IssuerSpec,

    /// Which namespaces' certificates may use this issuer (a label selector on namespaces).
    /// Unset: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,

    /// Whether certificates of other namespaces may adopt existing orders of this account
    /// (`spec.orderId`, the `ispcert.dev/adopt-order` annotation, a retained Secret whose order
    /// cannot be proven theirs). Default false: a tenant can never take over an order another
    /// tenant bought.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_order_adoption: bool,
}
