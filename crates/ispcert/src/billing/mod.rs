//! The ispmanager billing (BILLmanager) certificate API: a typed client and its wire decoding.
//!
//! `docs/billing-wire.md` records the wire decisions this module and the simulator share.

mod client;
mod credentials;
pub mod decode;
pub mod download;
mod error;
mod request;

pub(crate) use client::with_causes;
pub use client::{BillingClient, DEFAULT_URL, Observer, Outcome, http_pool, parse_endpoint};
pub use credentials::Credentials;
pub use decode::{CertificateDetails, CertificateRow, Country};
pub use error::{BillingError, MAX_MESSAGE, Retry, Shortfall, TransportKind};
pub use request::{
    APPROVER_MAILBOXES, Approvers, BillingKeyPair, Contact, CsrRequest, OrderKey, OrderRequest, Reissue, Subject,
    is_allowed_approver, mailbox_domain,
};
