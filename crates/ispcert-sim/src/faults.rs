//! Fault injection: what a test switches on to see how the client copes with a misbehaving
//! billing or a proxy in front of it.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// An HTTP error status (5xx from a proxy) with a short plain-text body.
    Status {
        /// The HTTP status, e.g. 502.
        status: u16,
    },
    /// The request is held and never answered (until the client gives up or the simulator stops).
    Timeout,
    /// A maintenance HTML page instead of the API answer.
    Html {
        /// HTTP status of the page; maintenance pages come as 200 or 503.
        #[serde(default = "default_html_status")]
        status: u16,
    },
    /// A truncated JSON body with HTTP 200.
    MalformedJson,
    /// The normal answer, after a delay.
    Slow {
        /// The delay in milliseconds.
        delay_ms: u64,
    },
    /// An `auth` error even for right credentials.
    Auth,
    /// An error document of this type, as the billing answers one. Before commit it refuses
    /// without charging (`access` on one function, an IP allow-list that covers some calls only);
    /// after commit the order is charged and the caller still gets the error (a processing module
    /// failing after payment, a duplicate check, an XML glitch).
    Error {
        /// The error's `type`.
        error: ErrorType,
    },
    /// A list answer without `elem`: the `doc` wrapper left in, with keys of its own (what an
    /// unknown answer shape looks like). For the `certificate` function.
    ListWithoutElem,
}

/// The error types a fault can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    Access,
    Exists,
    Xml,
    /// A type no client knows.
    Unknown,
}

impl ErrorType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorType::Access => "access",
            ErrorType::Exists => "exists",
            ErrorType::Xml => "xml",
            ErrorType::Unknown => "billmgr_processing_failed",
        }
    }
}

fn default_html_status() -> u16 {
    200
}

/// A fault to switch on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// What goes wrong.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Only requests of this `func` (all billing requests when `None`).
    #[serde(default)]
    pub func: Option<String>,
    /// Only the next `count` matching requests (forever when `None`).
    #[serde(default)]
    pub count: Option<u32>,
    /// Apply the fault after the request has taken effect (an order is charged, then its answer
    /// is lost). Without it a fault strikes before any state changes. Not allowed for `auth`.
    #[serde(default)]
    pub after_commit: bool,
}

impl FaultSpec {
    /// A fault of `kind` on every billing request, before commit, until cleared.
    pub fn new(kind: FaultKind) -> FaultSpec {
        FaultSpec { kind, func: None, count: None, after_commit: false }
    }

    /// Restricts the fault to one billing function.
    pub fn on_func(mut self, func: impl Into<String>) -> FaultSpec {
        self.func = Some(func.into());
        self
    }

    /// Limits the fault to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> FaultSpec {
        self.count = Some(n);
        self
    }

    /// Makes the fault strike after the request took effect.
    pub fn after_commit(mut self) -> FaultSpec {
        self.after_commit = true;
        self
    }

    /// Why this spec cannot be applied, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        match &self.kind {
            FaultKind::Auth if self.after_commit => {
                Some("an auth failure after commit makes no sense: the billing checks credentials first")
            }
            FaultKind::Status { status } | FaultKind::Html { status } if !(100..=599).contains(status) => {
                Some("status must be an HTTP status code")
            }
            _ => None,
        }
    }
}

/// A fault that is switched on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// Id to remove it with.
    pub id: u64,
    /// The fault; `count` is what remains.
    #[serde(flatten)]
    pub spec: FaultSpec,
}

/// The switched-on faults; the first one matching a request applies.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    inner: Mutex<(u64, Vec<ActiveFault>)>,
}

impl Faults {
    pub(crate) fn add(&self, spec: FaultSpec) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let id = g.0;
        g.1.push(ActiveFault { id, spec });
        id
    }

    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let before = g.1.len();
        g.1.retain(|f| f.id != id);
        g.1.len() != before
    }

    pub(crate) fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1.clear();
    }

    pub(crate) fn list(&self) -> Vec<ActiveFault> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// Takes the fault for a request of `func` at the given phase, using up one of its count.
    pub(crate) fn take(&self, func: &str, after_commit: bool) -> Option<FaultKind> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let faults = &mut g.1;
        let pos = faults
            .iter()
            .position(|f| f.spec.after_commit == after_commit && f.spec.func.as_deref().is_none_or(|x| x == func))?;
        let kind = faults[pos].spec.kind.clone();
        if let Some(n) = &mut faults[pos].spec.count {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(pos);
            }
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_by_func_and_phase_and_run_out() {
        let f = Faults::default();
        f.add(FaultSpec::new(FaultKind::Timeout).on_func("certificate").times(2));
        f.add(FaultSpec::new(FaultKind::Status { status: 502 }).after_commit());
        assert_eq!(f.take("certificate.edit", false), None);
        assert_eq!(f.take("certificate", false), Some(FaultKind::Timeout));
        assert_eq!(f.take("certificate", false), Some(FaultKind::Timeout));
        assert_eq!(f.take("certificate", false), None);
        assert_eq!(f.take("x", true), Some(FaultKind::Status { status: 502 }));
        assert_eq!(f.list().len(), 1);
        f.clear();
        assert!(f.list().is_empty());
    }

    #[test]
    fn specs_serialise_flat() {
        let s = FaultSpec::new(FaultKind::Slow { delay_ms: 5 }).on_func("auth");
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["kind"], "slow");
        assert_eq!(j["delay_ms"], 5);
        let back: FaultSpec = serde_json::from_str(r#"{"kind":"html"}"#).unwrap();
        assert_eq!(back.kind, FaultKind::Html { status: 200 });
        assert!(FaultSpec::new(FaultKind::Auth).after_commit().problem().is_some());
    }
}
