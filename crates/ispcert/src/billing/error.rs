//! Billing errors, classified by the billing's `type`/`object` and never by message text.

use std::fmt;

/// The longest billing text an error keeps, in bytes (see [`BillingError::clipped`]).
pub const MAX_MESSAGE: usize = 300;

/// What retrying the same call can achieve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A passing condition (network, maintenance, not issued yet): retry with backoff.
    Soon,
    /// Only a person can fix it (credentials, IP allow-list, balance): retry slowly, after a change.
    AfterUserAction,
    /// The same request will fail the same way.
    Never,
    /// A call that spends money (an order, a prolongation) may have gone through without its
    /// answer reaching us: find out whether it did (the certificate list) before repeating it.
    /// Repeating it blindly can charge twice.
    CheckFirst,
}

/// How a request failed before the billing could answer with a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection could be made: the request never left.
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// An HTTP status other than 200.
    Status(u16),
    /// An HTML page instead of a document (a proxy, a maintenance window, a login page).
    Html,
    /// A body that is neither JSON, XML, PEM nor ZIP, or JSON of an unexpected shape.
    Unparsable,
    /// The connection broke while sending or reading.
    Body,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportKind::Connect => f.write_str("connection failed"),
            TransportKind::Timeout => f.write_str("timed out"),
            TransportKind::Status(code) => write!(f, "HTTP {code}"),
            TransportKind::Html => f.write_str("an HTML page instead of an API answer"),
            TransportKind::Unparsable => f.write_str("an unparsable answer"),
            TransportKind::Body => f.write_str("the connection broke"),
        }
    }
}

/// The money figures of a `not_enough_money` answer, as the billing formats them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shortfall {
    /// What the order costs.
    pub amount: Option<String>,
    /// The account balance.
    pub balance: Option<String>,
    pub currency: Option<String>,
    /// How much is missing.
    pub deficit: Option<String>,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cur = self.currency.as_deref().unwrap_or("");
        let show = |v: &Option<String>| v.as_deref().map(|v| format!("{v} {cur}").trim().to_string());
        let mut parts = Vec::new();
        if let Some(a) = show(&self.amount) {
            parts.push(format!("the order costs {a}"));
        }
        if let Some(b) = show(&self.balance) {
            parts.push(format!("the balance is {b}"));
        }
        if let Some(d) = show(&self.deficit) {
            parts.push(format!("top up at least {d}"));
        }
        if parts.is_empty() { f.write_str("the balance is too low") } else { f.write_str(&parts.join(", ")) }
    }
}

/// A failed billing call.
///
/// Messages never carry the password: the billing's own text is scrubbed of the credentials
/// before it is kept (see [`crate::billing::Credentials::scrub`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("the billing refused the credentials: wrong email or password")]
    Auth,
    #[error("the billing refused access{}: {message} (is this machine's IP on the account's allow-list, and is two-factor login off for API use?)", object_suffix(.object))]
    Access { object: String, message: String },
    #[error("the billing rejected the value of `{field}`: {message}")]
    InvalidField { field: String, message: String },
    #[error("the billing says the required field `{field}` is missing: {message}")]
    MissingField { field: String, message: String },
    #[error("not enough money on the billing account: {0}")]
    NotEnoughMoney(Shortfall),
    #[error("the billing has no such {object} for this account (unknown, deleted, or another account's)")]
    NotFound { object: String },
    #[error("the certificate is not issued yet")]
    NotIssuedYet,
    #[error("the billing answered error `{kind}`{}: {message}", object_suffix(.object))]
    Other { kind: String, object: String, message: String },
    /// An error of a type that does not prove the call was refused before it took effect,
    /// answered to a call that spends money (`exists`, `xml`, a processing failure after payment,
    /// a type we do not know): the money may be gone.
    #[error("the billing answered error `{kind}`{} to a call that spends money, which does not prove nothing was charged: {message}", object_suffix(.object))]
    PaidUnclear { kind: String, object: String, message: String },
    #[error("the request was not sent: {0}")]
    InvalidRequest(String),
    #[error("billing unreachable or broken: {kind}{}", detail_suffix(.detail))]
    Transport {
        kind: TransportKind,
        /// Whether the request may have reached the billing. Only `Connect` proves it did not.
        sent: bool,
        /// Whether the call spends money (`certificate.order.param`, `service.prolong`).
        paid: bool,
        detail: String,
    },
}

fn object_suffix(object: &str) -> String {
    if object.is_empty() { String::new() } else { format!(" ({object})") }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

impl BillingError {
    /// Builds the typed error from an error document's `type`, `object`, message and parameters.
    pub fn classify(kind: &str, object: &str, message: String, param: impl Fn(&str) -> Option<String>) -> Self {
        let object_owned = object.to_string();
        match kind {
            "auth" => BillingError::Auth,
            "access" => BillingError::Access { object: object_owned, message },
            "value" if object == "elid" => BillingError::NotFound { object: object_owned },
            "value" => BillingError::InvalidField { field: object_owned, message },
            "missed" if object == "file" => BillingError::NotIssuedYet,
            // An unknown function: nothing the user left out, so not a missing field.
            "missed" if object == "func" => {
                BillingError::Other { kind: kind.to_string(), object: object_owned, message }
            }
            "missed" => BillingError::MissingField { field: object_owned, message },
            "not_enough_money" => BillingError::NotEnoughMoney(Shortfall {
                amount: param("amount"),
                balance: param("have"),
                currency: param("currency"),
                deficit: param("deficit"),
            }),
            _ => BillingError::Other { kind: kind.to_string(), object: object_owned, message },
        }
    }

    /// The same error with every text field passed through `f` (used to scrub credentials from
    /// whatever the billing or a proxy echoed).
    pub fn map_text(self, f: impl Fn(String) -> String) -> Self {
        use BillingError::*;
        match self {
            Access { object, message } => Access { object: f(object), message: f(message) },
            InvalidField { field, message } => InvalidField { field: f(field), message: f(message) },
            MissingField { field, message } => MissingField { field: f(field), message: f(message) },
            NotEnoughMoney(s) => NotEnoughMoney(Shortfall {
                amount: s.amount.map(&f),
                balance: s.balance.map(&f),
                currency: s.currency.map(&f),
                deficit: s.deficit.map(&f),
            }),
            NotFound { object } => NotFound { object: f(object) },
            Other { kind, object, message } => Other { kind: f(kind), object: f(object), message: f(message) },
            PaidUnclear { kind, object, message } => {
                PaidUnclear { kind: f(kind), object: f(object), message: f(message) }
            }
            InvalidRequest(m) => InvalidRequest(f(m)),
            Transport { kind, sent, paid, detail } => Transport { kind, sent, paid, detail: f(detail) },
            e @ (Auth | NotIssuedYet) => e,
        }
    }

    /// The same error with every text field cut to [`MAX_MESSAGE`] bytes, so that a hostile
    /// or broken answer cannot fill conditions and events. Cut only after the credentials are
    /// scrubbed: a cut through an echoed password would leave a prefix that no longer matches it.
    pub fn clipped(self) -> Self {
        self.map_text(|s| crate::text::clip(s, MAX_MESSAGE))
    }

    pub fn transport(kind: TransportKind, detail: impl Into<String>) -> Self {
        BillingError::Transport { kind, sent: kind != TransportKind::Connect, paid: false, detail: detail.into() }
    }

    /// The same error, known to come from a call that spends money: a transport failure, or an
    /// error of a type that is no refusal known to come before payment, then means the money may
    /// be gone (see [`BillingError::may_have_charged`]). Known refusals (wrong credentials, no
    /// access, a bad or missing field, too little money, a captcha) stay what they are.
    pub fn in_paid_call(self) -> Self {
        match self {
            BillingError::Transport { kind, sent, detail, .. } => {
                BillingError::Transport { kind, sent, paid: true, detail }
            }
            BillingError::Other { kind, object, message } if kind != "captcha_verification_failed" => {
                BillingError::PaidUnclear { kind, object, message }
            }
            e => e,
        }
    }

    /// Whether retrying the same call can help, and when.
    pub fn retry(&self) -> Retry {
        match self {
            e if e.may_have_charged() => Retry::CheckFirst,
            BillingError::PaidUnclear { .. } => Retry::CheckFirst,
            BillingError::Transport { kind: TransportKind::Status(code), .. } => {
                if *code >= 500 || *code == 429 || *code == 408 { Retry::Soon } else { Retry::Never }
            }
            BillingError::Transport { .. } | BillingError::NotIssuedYet => Retry::Soon,
            BillingError::Auth | BillingError::Access { .. } | BillingError::NotEnoughMoney(_) => {
                Retry::AfterUserAction
            }
            BillingError::Other { kind, .. } if kind == "captcha_verification_failed" => Retry::AfterUserAction,
            BillingError::InvalidField { .. }
            | BillingError::MissingField { .. }
            | BillingError::NotFound { .. }
            | BillingError::Other { .. }
            | BillingError::InvalidRequest(_) => Retry::Never,
        }
    }

    /// Whether a failed call that spends money may nonetheless have been carried out and charged.
    /// True only when the request may have reached the billing and no answer proved otherwise;
    /// such an order must be looked for in the certificate list before anything is ordered again.
    pub fn may_have_charged(&self) -> bool {
        matches!(self, BillingError::Transport { sent: true, paid: true, .. } | BillingError::PaidUnclear { .. })
    }

    /// A short stable name for metrics labels and condition reasons.
    pub fn category(&self) -> &'static str {
        match self {
            BillingError::Auth => "Auth",
            BillingError::Access { .. } => "Access",
            BillingError::InvalidField { .. } => "InvalidField",
            BillingError::MissingField { .. } => "MissingField",
            BillingError::NotEnoughMoney(_) => "NotEnoughMoney",
            BillingError::NotFound { .. } => "NotFound",
            BillingError::NotIssuedYet => "NotIssuedYet",
            BillingError::Other { .. } => "BillingError",
            BillingError::PaidUnclear { .. } => "PaidUnclear",
            BillingError::InvalidRequest(_) => "InvalidRequest",
            BillingError::Transport { .. } => "Unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_param(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn classification_goes_by_type_and_object_only() {
        assert_eq!(BillingError::classify("auth", "", "anything".into(), no_param), BillingError::Auth);
        assert!(matches!(BillingError::classify("value", "elid", "x".into(), no_param), BillingError::NotFound { .. }));
        assert!(matches!(
            BillingError::classify("value", "period", "x".into(), no_param),
            BillingError::InvalidField { field, .. } if field == "period"
        ));
        assert!(matches!(
            BillingError::classify("missed", "csr", "x".into(), no_param),
            BillingError::MissingField { field, .. } if field == "csr"
        ));
        assert_eq!(BillingError::classify("missed", "file", "x".into(), no_param), BillingError::NotIssuedYet);
        assert!(matches!(
            BillingError::classify("missed", "func", "x".into(), no_param),
            BillingError::Other { kind, object, .. } if kind == "missed" && object == "func"
        ));
        assert!(matches!(
            BillingError::classify("exists", "", "x".into(), no_param),
            BillingError::Other { kind, .. } if kind == "exists"
        ));
    }

    #[test]
    fn shortfall_reads_the_documented_params() {
        let e = BillingError::classify("not_enough_money", "", "msg".into(), |p| {
            Some(
                match p {
                    "amount" => "50.00",
                    "have" => "10.00",
                    "currency" => "RUB",
                    "deficit" => "40.00",
                    _ => return None,
                }
                .to_string(),
            )
        });
        let BillingError::NotEnoughMoney(s) = &e else { panic!("{e:?}") };
        assert_eq!(s.deficit.as_deref(), Some("40.00"));
        assert_eq!(
            e.to_string(),
            "not enough money on the billing account: the order costs 50.00 RUB, the balance is 10.00 RUB, top up at least 40.00 RUB"
        );
    }

    #[test]
    fn only_sent_transport_failures_of_paid_calls_may_have_charged() {
        let paid = |kind| BillingError::transport(kind, "").in_paid_call();
        assert!(!paid(TransportKind::Connect).may_have_charged());
        assert!(paid(TransportKind::Timeout).may_have_charged());
        assert!(paid(TransportKind::Status(502)).may_have_charged());
        assert!(!BillingError::transport(TransportKind::Timeout, "").may_have_charged(), "a read spends nothing");
        assert!(!BillingError::Auth.in_paid_call().may_have_charged());
        assert!(!BillingError::NotEnoughMoney(Shortfall::default()).in_paid_call().may_have_charged());
    }

    #[test]
    fn a_paid_call_that_may_have_gone_through_is_never_simply_retried() {
        for kind in [TransportKind::Timeout, TransportKind::Status(502), TransportKind::Body, TransportKind::Unparsable]
        {
            assert_eq!(BillingError::transport(kind, "").in_paid_call().retry(), Retry::CheckFirst, "{kind}");
        }
        assert_eq!(BillingError::transport(TransportKind::Connect, "").in_paid_call().retry(), Retry::Soon);
        assert_eq!(BillingError::transport(TransportKind::Timeout, "").retry(), Retry::Soon);
        // An error type that does not prove a refusal before payment: the money may be gone.
        let answered = |kind: &str| BillingError::classify(kind, "", "m".into(), |_| None).in_paid_call();
        for kind in ["exists", "xml", "stat_addon_over_limit", "billmgr_processing_failed"] {
            assert!(answered(kind).may_have_charged(), "{kind}");
            assert_eq!(answered(kind).retry(), Retry::CheckFirst, "{kind}");
        }
        // Known refusals come before payment.
        for kind in ["auth", "access", "value", "missed", "not_enough_money", "captcha_verification_failed"] {
            assert!(!answered(kind).may_have_charged(), "{kind}");
        }
        // Outside paid calls an unknown error is just an error.
        assert!(!BillingError::classify("exists", "", "m".into(), |_| None).may_have_charged());
    }

    #[test]
    fn retry_hints() {
        assert_eq!(BillingError::transport(TransportKind::Status(503), "").retry(), Retry::Soon);
        assert_eq!(BillingError::transport(TransportKind::Status(404), "").retry(), Retry::Never);
        assert_eq!(BillingError::Auth.retry(), Retry::AfterUserAction);
        assert_eq!(BillingError::NotIssuedYet.retry(), Retry::Soon);
        assert_eq!(BillingError::NotFound { object: "elid".into() }.retry(), Retry::Never);
    }
}
