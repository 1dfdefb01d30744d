//! What a reconcile learns and decides about a certificate, as status changes. Stages record
//! [`Change`]s (data, applied by the pure [`apply`]) and events in the [`Ledger`]; it knows what
//! the API server already holds, so every write sends only what changed, and the few facts that
//! must be durable before the next step (an order intent, an order id) are written at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::warn;

use super::run::Run;
use super::settle::Note;
use crate::controller::context::{Error, KubeResult};
use crate::controller::{conditions, reasons as r, status};
use crate::crd::{CertificateStatus, IspCertificate, OrderAttempt, ReissueState};

/// One thing a reconcile found out or decided about the certificate's status.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// This resource's order is `id` on `account` (placed, recovered or adopted at `at`); any
    /// attempt is over.
    Ordered { id: String, at: Timestamp, account: String },
    /// The account of an order recorded before accounts were.
    Account(String),
    /// A list read at `at` missed the order of an interrupted attempt.
    AttemptMissed { misses: u32, at: Timestamp },
    /// The billing's answer to the attempt's order was lost: the order may exist.
    AttemptOutcomeUnknown,
    /// The attempt is over without an order (refused, or proven never placed).
    AttemptAbandoned,
    /// The billing's state of the order, for `status.orderState`.
    OrderState(String),
    /// The subscription's end, from the billing's list.
    SubscriptionEnd(Timestamp),
    /// A free reissue was requested.
    ReissueRequested(ReissueState),
    /// The billing shows the CA refusing the reissue under way.
    ReissueFailed,
    /// The `ispcert.dev/renew` annotation with this value has been acted on.
    RenewRequestHandled(String),
    /// The approver emails the billing was given with the order or a reissue.
    ApproversSent(Vec<String>),
    /// The subject line of the CSR the billing was given with the order or a reissue.
    SubjectSent(String),
    /// The billing's answer to the prolongation was lost: it may have been made.
    ProlongOutcomeUnknown,
    /// The billing refused the prolongation before charging.
    ProlongAbandoned,
    /// The list shows the prolongation requested at `at`: the subscription now ends at `end`.
    Prolonged { end: Timestamp, at: Timestamp },
    /// The billing refused to prolong order `old`: one new order replaces it. Until that order
    /// is placed the resource has none of its own; `old` stays claimed by it.
    Replacing { old: String },
    /// The replaced order is dealt with (deleted at the billing, or left to run out).
    ReplacedOrderRetired,
    /// A certificate for the spec is stored in the Secret.
    Stored(Stored),
}

/// The certificate a Secret now serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub names: Vec<String>,
    /// `None` when the subscription ends too soon for a renewal to help.
    pub renewal: Option<Timestamp>,
}

/// Applies one change to a status. Pure.
pub fn apply(status: &mut CertificateStatus, change: Change) {
    match change {
        Change::Ordered { id, at, account } => {
            status.order_id = Some(id);
            status.account = Some(account);
            status.ordered_at = Some(Time(at));
            status.order_attempt = None;
        }
        Change::Account(account) => status.account = Some(account),
        Change::AttemptMissed { misses, at } => {
            if let Some(a) = status.order_attempt.as_mut() {
                a.misses = Some(misses);
                a.checked_at = Some(Time(at));
            }
        }
        Change::AttemptOutcomeUnknown => {
            if let Some(a) = status.order_attempt.as_mut() {
                a.outcome_unknown = Some(true);
            }
        }
        Change::AttemptAbandoned => status.order_attempt = None,
        Change::OrderState(state) => status.order_state = Some(state),
        Change::SubscriptionEnd(t) => status.subscription_end = Some(Time(t)),
        Change::ReissueRequested(reissue) => status.reissue = Some(Box::new(reissue)),
        Change::ReissueFailed => {
            if let Some(reissue) = status.reissue.as_mut() {
                reissue.failed = Some(true);
            }
        }
        Change::RenewRequestHandled(value) => status.renew_request = Some(value),
        Change::ApproversSent(emails) => status.approver_emails = emails,
        Change::SubjectSent(line) => status.requested_subject = Some(line),
        Change::ProlongOutcomeUnknown => {
            if let Some(p) = status.prolong.as_mut() {
                p.outcome_unknown = Some(true);
            }
        }
        Change::ProlongAbandoned => status.prolong = None,
        Change::Prolonged { end, at } => {
            status.prolong = None;
            status.prolonged_at = Some(Time(at));
            status.subscription_end = Some(Time(end));
        }
        Change::Replacing { old } => {
            status.replaced_order = Some(old);
            status.order_id = None;
            status.ordered_at = None;
            status.order_state = None;
            status.subscription_end = None;
            status.order_attempt = None;
            status.prolong = None;
            status.reissue = None;
            status.approver_emails = Vec::new();
            status.requested_subject = None;
        }
        Change::ReplacedOrderRetired => status.replaced_order = None,
        Change::Stored(s) => {
            status.not_before = Some(Time(s.not_before));
            status.not_after = Some(Time(s.not_after));
            status.serial_number = Some(s.serial);
            status.dns_names = s.names;
            status.renewal_time = s.renewal.map(Time);
            status.reissue = None;
            if status.order_state.as_deref().is_none_or(|st| !st.starts_with("active")) {
                status.order_state = Some("active/issued".into());
            }
        }
    }
}

/// The status a reconcile builds, what the server holds of it, and the events to publish.
pub struct Ledger {
    status: CertificateStatus,
    written: CertificateStatus,
    events: Vec<Note>,
}

/// How the write of an order intent went.
pub enum Intent {
    Written,
    /// The resource changed since it was read: nothing was written.
    Conflict,
}

impl Ledger {
    /// A ledger starting from the status the reconcile read.
    pub fn new(status: &CertificateStatus) -> Self {
        Ledger { status: status.clone(), written: status.clone(), events: Vec::new() }
    }

    /// The status as built so far.
    pub fn status(&self) -> &CertificateStatus {
        &self.status
    }

    pub fn record(&mut self, change: Change) {
        apply(&mut self.status, change);
    }

    /// Queues an event, published after the status is written.
    pub fn note(&mut self, note: Note) {
        self.events.push(note);
    }

    /// Writes what changed since the last write.
    pub async fn persist(&mut self, run: &Run<'_>) -> Result<(), Error> {
        status::write(&run.api, &run.name, &self.written, &self.status, None)
            .await
            .doing(|| format!("patch status of {}", run.key()))?;
        self.written = self.status.clone();
        Ok(())
    }

    /// Writes what changed, trying a few times: for a fact that keeps every later reconcile from
    /// spending money again (an order id).
    pub async fn persist_retrying(&mut self, run: &Run<'_>) -> Result<(), Error> {
        let mut tries = 0;
        loop {
            match self.persist(run).await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 3 => {
                    tries += 1;
                    warn!(error = %e, "writing the status failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the intent to order on `fresh`, the resource as just read from the server, with its
    /// resourceVersion as a precondition: if anything changed meanwhile nothing is written. From
    /// then on the server's status is this ledger's base.
    pub async fn write_intent(
        &mut self,
        run: &Run<'_>,
        fresh: &IspCertificate,
        attempt: OrderAttempt,
    ) -> Result<Intent, Error> {
        let base = fresh.status.clone().unwrap_or_default();
        let mut with_intent = base.clone();
        with_intent.order_attempt = Some(Box::new(attempt));
        // The attempt is on the account recorded by this run: others read it from here.
        with_intent.account = self.status.account.clone().or(base.account.clone());
        // What an earlier run said (Stalled by a missing issuer, say) no longer holds from here.
        let (generation, now) = (fresh.metadata.generation, attempt_started(&with_intent));
        with_intent.observed_generation = generation;
        // An order that replaces one the billing would not prolong leaves Ready alone: the
        // certificate of the old one still serves.
        let replacing = base.replaced_order.is_some();
        for (type_, holds) in [(r::READY, false), (r::ISSUING, true), (r::STALLED, false)] {
            if replacing && type_ == r::READY {
                continue;
            }
            let message = if type_ == r::STALLED { "" } else { ORDERING_MESSAGE };
            conditions::set(&mut with_intent.conditions, type_, holds, r::ORDERING, message, generation, now);
        }
        self.write_on(run, fresh, &base, with_intent, "order").await
    }

    /// Writes the intent to prolong on `fresh` (the resource as just read from the server) with
    /// its resourceVersion as a precondition, as [`write_intent`](Self::write_intent) does for
    /// orders: a second reconcile working from a lagging cache cannot prolong again.
    pub async fn write_prolong_intent(
        &mut self,
        run: &Run<'_>,
        fresh: &IspCertificate,
        prolong: crate::crd::ProlongState,
    ) -> Result<Intent, Error> {
        let base = fresh.status.clone().unwrap_or_default();
        let mut with_intent = base.clone();
        with_intent.prolong = Some(Box::new(prolong));
        // The end this run read from the list is what the intent replaces.
        with_intent.subscription_end = self.status.subscription_end.clone().or(base.subscription_end.clone());
        self.write_on(run, fresh, &base, with_intent, "prolongation").await
    }

    /// Writes `with_intent` over `base` (the status of `fresh`) only if the resource is still at
    /// `fresh`'s resourceVersion; once written it is this ledger's base.
    async fn write_on(
        &mut self,
        run: &Run<'_>,
        fresh: &IspCertificate,
        base: &CertificateStatus,
        with_intent: CertificateStatus,
        what: &str,
    ) -> Result<Intent, Error> {
        let precondition = fresh.metadata.resource_version.as_deref();
        match status::write(&run.api, &run.name, base, &with_intent, precondition).await {
            Ok(_) => {
                self.status = with_intent.clone();
                self.written = with_intent;
                Ok(Intent::Written)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Intent::Conflict),
            Err(e) => Err(Error::kube(format!("write the {what} intent to the status of {}", run.key()), e)),
        }
    }

    /// The built status, the status the server holds, and the queued events.
    pub fn into_parts(self) -> (CertificateStatus, CertificateStatus, Vec<Note>) {
        (self.status, self.written, self.events)
    }
}

/// What the conditions say while the order is placed.
const ORDERING_MESSAGE: &str = "placing the order at the billing";

fn attempt_started(status: &CertificateStatus) -> Timestamp {
    status.order_attempt.as_ref().map_or_else(Timestamp::now, |a| a.started_at.0)
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn attempt() -> OrderAttempt {
        OrderAttempt {
            started_at: Time(at("2026-12-01T10:00:00Z")),
            remote_id: "ispcert-tag".into(),
            outcome_unknown: None,
            misses: None,
            checked_at: None,
        }
    }

    #[test]
    fn each_change_touches_only_its_fields() {
        let t = at("2026-12-01T12:00:00Z");
        let base = CertificateStatus { order_attempt: Some(Box::new(attempt())), ..Default::default() };
        let cases: Vec<(Change, CertificateStatus)> = vec![
            (
                Change::Ordered { id: "42".into(), at: t, account: "A".into() },
                CertificateStatus {
                    order_id: Some("42".into()),
                    account: Some("A".into()),
                    ordered_at: Some(Time(t)),
                    ..Default::default()
                },
            ),
            (
                Change::AttemptMissed { misses: 2, at: t },
                CertificateStatus {
                    order_attempt: Some(Box::new(OrderAttempt {
                        misses: Some(2),
                        checked_at: Some(Time(t)),
                        ..attempt()
                    })),
                    ..Default::default()
                },
            ),
            (Change::Account("A".into()), CertificateStatus { account: Some("A".into()), ..base.clone() }),
            (
                Change::AttemptOutcomeUnknown,
                CertificateStatus {
                    order_attempt: Some(Box::new(OrderAttempt { outcome_unknown: Some(true), ..attempt() })),
                    ..Default::default()
                },
            ),
            (Change::AttemptAbandoned, CertificateStatus::default()),
            (
                Change::OrderState("processing".into()),
                CertificateStatus { order_state: Some("processing".into()), ..base.clone() },
            ),
            (Change::SubscriptionEnd(t), CertificateStatus { subscription_end: Some(Time(t)), ..base.clone() }),
        ];
        for (change, want) in cases {
            let mut s = base.clone();
            apply(&mut s, change.clone());
            assert_eq!(s, want, "{change:?}");
        }
    }

    #[test]
    fn a_stored_certificate_ends_the_reissue_and_is_active() {
        let t = at("2026-12-01T12:00:00Z");
        let stored = Stored {
            serial: "0a".into(),
            not_before: t,
            not_after: t + SignedDuration::from_hours(24 * 90),
            names: vec!["a.example.com".into()],
            renewal: Some(t + SignedDuration::from_hours(24 * 60)),
        };
        let reissue = ReissueState {
            requested_at: Time(t),
            reason: "Renewal".into(),
            previous_serial: Some("09".into()),
            attempts: None,
            failed: None,
        };
        for (state, want) in
            [(None, "active/issued"), (Some("processing"), "active/issued"), (Some("active"), "active")]
        {
            let mut s = CertificateStatus {
                reissue: Some(Box::new(reissue.clone())),
                order_state: state.map(String::from),
                ..Default::default()
            };
            apply(&mut s, Change::Stored(stored.clone()));
            assert_eq!(s.reissue, None);
            assert_eq!(s.order_state.as_deref(), Some(want));
            assert_eq!((s.serial_number.as_deref(), s.dns_names.len()), (Some("0a"), 1));
            assert_eq!(s.renewal_time, stored.renewal.map(Time));
        }
        let mut s = CertificateStatus::default();
        apply(&mut s, Change::ReissueRequested(reissue.clone()));
        assert_eq!(s.reissue.as_deref(), Some(&reissue));
    }
}
