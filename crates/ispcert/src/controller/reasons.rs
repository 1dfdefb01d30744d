//! Every condition and event reason the operator uses, in one place. They are API: users and
//! alerts match on them, so they are stable PascalCase words.

// Condition types.
pub const READY: &str = "Ready";
pub const ISSUING: &str = "Issuing";
/// True when the resource is not Ready and waits for a person (the kstatus convention: Flux and
/// other GitOps tools report such a resource as failed instead of waiting for it).
pub const STALLED: &str = "Stalled";
/// True from the warning time ahead of the subscription's end (reason `SubscriptionEnding`), and
/// after it (reason `SubscriptionEnded`).
pub const SUBSCRIPTION_ENDING: &str = "SubscriptionEnding";

// Success and progress.
pub const ISSUED: &str = "Issued";
pub const KEY_GENERATED: &str = "KeyGenerated";
pub const ORDERING: &str = "Ordering";
pub const ORDERED: &str = "Ordered";
pub const ORDER_RECOVERED: &str = "OrderRecovered";
pub const ORDER_ADOPTED: &str = "OrderAdopted";
pub const PENDING: &str = "Pending";
pub const REISSUING: &str = "Reissuing";
pub const SECRET_WRITTEN: &str = "SecretWritten";
pub const SECRET_RESTORED: &str = "SecretRestored";
pub const DELETED_AT_BILLING: &str = "DeletedAtBilling";
pub const RENEWAL_SCHEDULED: &str = "RenewalScheduled";
pub const SUBSCRIPTION_ACTIVE: &str = "SubscriptionActive";
pub const RENEW_REQUESTED: &str = "RenewRequested";
pub const PROLONGING: &str = "Prolonging";
pub const PROLONGED: &str = "Prolonged";
/// The order that one the billing would not prolong was replaced by is dealt with.
pub const ORDER_REPLACED: &str = "OrderReplaced";

// Waiting on something outside this resource.
pub const ISSUER_NOT_FOUND: &str = "IssuerNotFound";
pub const ISSUER_NOT_READY: &str = "IssuerNotReady";
pub const ORDER_OUTCOME_UNKNOWN: &str = "OrderOutcomeUnknown";

// Problems a user must fix.
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const SECRET_IN_USE: &str = "SecretInUse";
pub const SECRET_NOT_MANAGED: &str = "SecretNotManaged";
pub const SECRET_WRONG_TYPE: &str = "SecretWrongType";
pub const CSR_SECRET_INVALID: &str = "CsrSecretInvalid";
pub const NOT_ENOUGH_MONEY: &str = "NotEnoughMoney";
pub const ORDER_REJECTED: &str = "OrderRejected";
pub const ORDER_NOT_FOUND: &str = "OrderNotFound";
pub const ORDER_FAILED: &str = "OrderFailed";
pub const ORDER_SUSPENDED: &str = "OrderSuspended";
pub const CERTIFICATE_MISMATCH: &str = "CertificateMismatch";
/// The certificate the Secret serves has expired (whatever is under way to replace it).
pub const EXPIRED: &str = "Expired";
/// The paid subscription has ended: nothing is bought automatically under `Manual`.
pub const SUBSCRIPTION_ENDED: &str = "SubscriptionEnded";
/// A reissue was requested the allowed number of times without being completed.
pub const REISSUE_STUCK: &str = "ReissueStuck";
/// The CA refused a reissue; it is requested again a bounded number of times.
pub const REISSUE_FAILED: &str = "ReissueFailed";
/// The billing refused `service.prolong` before charging.
pub const PROLONG_REFUSED: &str = "ProlongRefused";
/// A prolongation's answer was lost and the list does not show it: a person checks.
pub const PROLONG_OUTCOME_UNKNOWN: &str = "ProlongOutcomeUnknown";
/// The account holds orders that may be the one wanted: a person adopts one or confirms another.
pub const UNCLAIMED_ORDER_FOUND: &str = "UnclaimedOrderFound";
/// The issuer's order budget allows no further order now.
pub const ORDER_BUDGET_EXHAUSTED: &str = "OrderBudgetExhausted";
/// A ClusterIspIssuer that does not serve the certificate's namespace.
pub const ISSUER_NOT_ALLOWED: &str = "IssuerNotAllowed";
/// The certificate's spec cannot be read by this version of the operator.
pub const UNREADABLE_SPEC: &str = "UnreadableSpec";
pub const DELETION_BLOCKED: &str = "DeletionBlocked";

// Transient trouble.
pub const BILLING_UNREACHABLE: &str = "BillingUnreachable";
pub const BILLING_ERROR: &str = "BillingError";
pub const KUBERNETES_ERROR: &str = "KubernetesError";

// Issuer conditions.
pub const CREDENTIALS_VERIFIED: &str = "CredentialsVerified";
pub const CREDENTIALS_NOT_FOUND: &str = "CredentialsNotFound";
pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
pub const CREDENTIALS_NAMESPACE_NOT_ALLOWED: &str = "CredentialsNamespaceNotAllowed";
pub const WRONG_CREDENTIALS: &str = "WrongCredentials";
pub const ACCESS_DENIED: &str = "AccessDenied";
pub const INVALID_URL: &str = "InvalidURL";
