//! One reconcile of one certificate, as the stages read it: the resource, the shared context, its
//! names and API, the moment the reconcile began, and the issuer's billing client once found.
//! Nothing here is decided: what stages decide goes to the [`Ledger`](super::ledger::Ledger) and
//! into the [`Flow`] they return.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use kube::{Api, ResourceExt};

use super::flow::{Flow, Stop};
use crate::billing::BillingError;
use crate::controller::context::Context;
use crate::controller::issuers::{IssuerHandle, IssuerView};
use crate::controller::reasons as r;
use crate::crd::IspCertificate;

pub struct Run<'a> {
    pub cert: &'a IspCertificate,
    pub ctx: &'a Context,
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub api: Api<IspCertificate>,
    pub now: Timestamp,
    handle: OnceLock<Arc<IssuerHandle>>,
}

impl<'a> Run<'a> {
    pub fn new(cert: &'a IspCertificate, ctx: &'a Context) -> Self {
        let ns = cert.namespace().unwrap_or_default();
        Run {
            cert,
            ctx,
            api: Api::namespaced(ctx.shared.client.clone(), &ns),
            ns,
            name: cert.name_any(),
            uid: cert.uid().unwrap_or_default(),
            now: Timestamp::now(),
            handle: OnceLock::new(),
        }
    }

    /// `IspCertificate ns/name`, for errors that name what failed.
    pub fn key(&self) -> String {
        format!("IspCertificate {}/{}", self.ns, self.name)
    }

    /// The billing client of the certificate's issuer, when the issuer has passed its check.
    pub fn handle(&self, issuer: &IssuerView) -> Flow<Arc<IssuerHandle>> {
        if let Some(h) = self.handle.get() {
            return Flow::Go(h.clone());
        }
        let shared = &self.ctx.shared;
        let wait = shared.settings.poll_interval.max(Duration::from_secs(1));
        if shared.issuers.is_suspect(&issuer.key) {
            return Flow::Stop(Stop::pending(
                r::ISSUER_NOT_READY,
                format!("the billing refused {}'s credentials; waiting for the issuer to check them again", issuer.key),
                wait,
            ));
        }
        match shared.issuers.get(issuer) {
            Some(h) => Flow::Go(self.handle.get_or_init(|| h).clone()),
            // The issuer controller verifies credentials and registers the client; until it has
            // (for example right after start-up) the certificate waits a moment.
            None => Flow::Stop(Stop::pending(
                r::ISSUER_NOT_READY,
                format!("waiting for {} to pass its credentials check", issuer.key),
                wait,
            )),
        }
    }

    /// Turns a billing error of a call that spends no money into a stop, flagging refused
    /// credentials so the issuer checks them again instead of certificates retrying them.
    pub fn billing_stop(&self, issuer: &IssuerView, e: BillingError, what: &str) -> Stop {
        match &e {
            BillingError::Auth | BillingError::Access { .. } => {
                self.ctx.shared.issuers.suspect(&issuer.key);
                let _ = self.ctx.shared.recheck.send(issuer.key.clone());
                Stop::pending(r::ISSUER_NOT_READY, format!("{what}: {e}"), self.ctx.shared.settings.poll_interval)
            }
            BillingError::Transport { .. } => Stop::failed(r::BILLING_UNREACHABLE, format!("{what}: {e}")),
            BillingError::NotFound { .. } => Stop::blocked(
                r::ORDER_NOT_FOUND,
                format!("{what}: {e}. Nothing is ordered again automatically; check the order in the billing panel"),
                Some(Duration::from_secs(600)),
            ),
            _ => Stop::failed(r::BILLING_ERROR, format!("{what}: {e}")),
        }
    }
}
