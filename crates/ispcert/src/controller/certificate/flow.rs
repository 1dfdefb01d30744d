//! The vocabulary of the certificate stages: a stage either goes on ([`Flow::Go`] with what it
//! produced) or stops with what it decided ([`Stop`]): whether the certificate is Ready, why, what
//! a person reads, and when to look again. `settle` turns the stop into status and events.

use std::time::Duration;

use crate::controller::reasons as r;

/// How often a certificate whose Secret another certificate writes looks again.
pub const SECRET_IN_USE_RECHECK: Duration = Duration::from_secs(20);

/// What a stage decided when the reconcile cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// `Some(false)` marks the certificate not Ready; `None` leaves Ready as the stored
    /// certificate allows (see `settle`).
    pub(super) ready: Option<bool>,
    pub(super) reason: &'static str,
    pub(super) message: String,
    /// Whether an order or reissue is under way.
    pub(super) issuing: bool,
    /// A warning the user should see, counted in `failedAttempts`.
    pub(super) failure: bool,
    pub(super) requeue: Requeue,
}

/// When to look at the certificate again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    After(Duration),
    /// After the per-object backoff, which grows with each failure in a row.
    Backoff,
    /// When the resource, its issuer or its Secrets change.
    OnChange,
}

impl From<Option<Duration>> for Requeue {
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Requeue::OnChange, Requeue::After)
    }
}

impl Stop {
    /// The Secret serves a valid certificate for this spec.
    pub fn ready(message: impl Into<String>, requeue: Option<Duration>) -> Self {
        Stop {
            ready: Some(true),
            reason: r::ISSUED,
            message: message.into(),
            issuing: false,
            failure: false,
            requeue: requeue.into(),
        }
    }

    /// Waiting on the billing or the CA; not a failure.
    pub fn pending(reason: &'static str, message: impl Into<String>, requeue: Duration) -> Self {
        Stop {
            ready: None,
            reason,
            message: message.into(),
            issuing: true,
            failure: false,
            requeue: Requeue::After(requeue),
        }
    }

    /// Something a person must fix; retried when the resource (or what it watches) changes, and
    /// after `requeue` if given.
    pub fn blocked(reason: &'static str, message: impl Into<String>, requeue: Option<Duration>) -> Self {
        Stop {
            ready: Some(false),
            reason,
            message: message.into(),
            issuing: false,
            failure: true,
            requeue: requeue.into(),
        }
    }

    /// Another IspCertificate, created first, writes the Secret this one names.
    pub fn secret_in_use(secret: &str, owner: &str) -> Self {
        Stop::blocked(
            r::SECRET_IN_USE,
            format!(
                "Secret {secret} is already written by IspCertificate {owner} (created first); choose another secretName. Nothing is ordered meanwhile"
            ),
            // Looked at again now and then (from the cache, no API call): when the other
            // certificate goes, this one takes the Secret over without anyone editing it.
            Some(SECRET_IN_USE_RECHECK),
        )
    }

    /// Something a person must look at while the certificate may still serve: Ready stays as the
    /// served certificate allows, `Issuing` carries the trouble, and a Warning event says it.
    pub fn trouble(reason: &'static str, message: impl Into<String>, requeue: Duration) -> Self {
        Stop {
            ready: None,
            reason,
            message: message.into(),
            issuing: true,
            failure: true,
            requeue: Requeue::After(requeue),
        }
    }

    /// A failure retried with the per-object backoff.
    pub fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Stop { ready: None, reason, message: message.into(), issuing: true, failure: true, requeue: Requeue::Backoff }
    }

    /// The same stop, with a certificate that still serves left Ready (the trouble shows under
    /// `Issuing`).
    pub fn keeping_ready(self) -> Self {
        Stop { ready: None, ..self }
    }

    /// The same stop, looked at again after the per-certificate backoff: for a referenced object
    /// that is missing, whose appearance may not wake the certificate (or may have been missed
    /// while the operator started).
    pub fn retrying(self) -> Self {
        Stop { requeue: Requeue::Backoff, ..self }
    }

    /// The same stop, with the certificate marked not Ready whatever it serves.
    pub fn not_ready(self) -> Self {
        Stop { ready: Some(false), ..self }
    }
}

/// A stage's answer: go on with `T`, or stop.
pub enum Flow<T> {
    Go(T),
    Stop(Stop),
}

/// Unwraps a [`Flow`], returning the stop from the enclosing function.
macro_rules! go {
    ($e:expr) => {
        match $e {
            Flow::Go(v) => v,
            Flow::Stop(s) => return Ok(Flow::Stop(s)),
        }
    };
}
pub(crate) use go;
