//! The end of every certificate reconcile, as a pure function: given the status the resource had,
//! the status its stages built and the stop they reached, what is the new status (conditions,
//! failure counters, observed generation), which events does a person see, and when is the
//! certificate looked at again. Nothing here talks to anything; `finish` acts on the answer.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::flow::{Requeue, Stop};
use crate::controller::conditions;
use crate::controller::reasons as r;
use crate::controller::renewal::{Subscription, subscription};
use crate::crd::{CertificateStatus, SubscriptionRenewal};

/// An event to publish: its type, reason and note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub text: String,
}

impl Note {
    pub fn normal(reason: &'static str, text: impl Into<String>) -> Self {
        Note { type_: EventType::Normal, reason, text: text.into() }
    }
}

/// What one reconcile leaves behind.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// The status to write (only its difference from what the server holds is sent).
    pub status: CertificateStatus,
    /// Events, in order: those the stages queued, then one for a changed outcome.
    pub events: Vec<Note>,
    /// Whether the Secret serves a valid certificate for this spec.
    pub ready: bool,
    pub requeue: Requeue,
    /// The per-certificate failure backoff starts over (nothing failed this time).
    pub reset_backoff: bool,
}

/// What `settle` needs besides the stop.
pub struct Inputs<'a> {
    /// The status the resource had when the reconcile started.
    pub old: &'a CertificateStatus,
    /// The status the stages built from it.
    pub built: CertificateStatus,
    /// Events the stages queued.
    pub events: Vec<Note>,
    /// `metadata.generation` of the resource this reconcile saw.
    pub generation: Option<i64>,
    /// `spec.secretName`, for the Ready message.
    pub secret_name: &'a str,
    /// How far ahead of the subscription's end `SubscriptionEnding` turns True.
    pub subscription_warning: SignedDuration,
    /// Who renews the subscription, for the words of `SubscriptionEnding`.
    pub subscription_renewal: SubscriptionRenewal,
    pub now: Timestamp,
}

/// Turns the stop a reconcile reached into the status, events and requeue it leads to.
///
/// - A certificate that was Ready for this very generation and is still valid stays Ready while
///   a renewal waits or fails (`stop.ready == None`); the trouble shows under `Issuing`, and the
///   Ready condition keeps its own words.
/// - A failure counts in `failedAttempts` and `lastFailureTime`; a success that makes the
///   certificate Ready clears the count.
/// - `Stalled` is True when the certificate is not Ready and waits for a person (a blocked
///   stop), so that GitOps tools following kstatus report it failed instead of waiting.
/// - An event is published when the outcome (status, reason or message of `Issuing` while issuing,
///   of `Ready` otherwise) changed, except for an `Issued` outcome the stages announced already.
/// - A served certificate that has expired makes Ready False with reason `Expired` (or
///   `SubscriptionEnded` when the subscription is over), whatever is under way to replace it.
/// - `SubscriptionEnding` follows the subscription's end as last read: True from the warning time
///   ahead, with a Warning event when it turns True or the subscription ends, and the certificate
///   is looked at again at those moments.
pub fn settle(inputs: Inputs<'_>, stop: &Stop) -> Settled {
    let Inputs { old, mut built, mut events, generation, secret_name, subscription_warning, subscription_renewal, now } =
        inputs;
    let automatic = subscription_renewal == SubscriptionRenewal::Automatic;
    let serving = conditions::is_true(&old.conditions, r::READY)
        && old.observed_generation == generation
        && built.not_after.as_ref().is_some_and(|t| t.0 > now);
    let ready = stop.ready.unwrap_or(serving);

    if stop.failure {
        built.last_failure_time = Some(Time(now));
        built.failed_attempts = Some(built.failed_attempts.unwrap_or(0).saturating_add(1));
    } else if stop.ready == Some(true) {
        built.failed_attempts = None;
    }

    let (ready_reason, ready_message) = if ready && stop.ready.is_none() {
        conditions::get(&old.conditions, r::READY)
            .map(|c| (known_ready_reason(&c.reason), c.message.clone()))
            .unwrap_or((r::ISSUED, String::new()))
    } else {
        (stop.reason, stop.message.clone())
    };
    let ready_message = if ready && ready_message.is_empty() { ready_text(&built, secret_name) } else { ready_message };
    let sub = subscription(built.subscription_end.as_ref().map(|t| t.0), subscription_warning, now);
    let expired = !ready && built.serial_number.is_some() && built.not_after.as_ref().is_some_and(|t| t.0 <= now);
    let (ready_reason, ready_message) = if expired {
        expired_words(&built, sub, automatic, &stop.message, secret_name)
    } else {
        (ready_reason, ready_message)
    };
    conditions::set(&mut built.conditions, r::READY, ready, ready_reason, &ready_message, generation, now);
    let issuing_message = if stop.issuing { stop.message.clone() } else { String::new() };
    conditions::set(&mut built.conditions, r::ISSUING, stop.issuing, stop.reason, issuing_message, generation, now);
    // A person must act: not Ready, nothing under way, and a failure that waits for a change.
    let stalled = !ready && !stop.issuing && stop.failure;
    let stalled_message = if stalled { stop.message.clone() } else { String::new() };
    conditions::set(&mut built.conditions, r::STALLED, stalled, stop.reason, stalled_message, generation, now);
    built.observed_generation = generation;
    if let Some(note) = set_subscription(&mut built, sub, automatic, old, generation, now) {
        events.push(note);
    }

    let outcome = if stop.issuing { r::ISSUING } else { r::READY };
    let before = conditions::get(&old.conditions, outcome).map(|c| (&c.status, &c.reason, &c.message));
    let after = conditions::get(&built.conditions, outcome).map(|c| (&c.status, &c.reason, &c.message));
    let announced = ready && stop.reason == r::ISSUED && events.iter().any(|e| e.reason == r::ISSUED);
    // An expiry is announced once, as a Warning, whatever the stop says.
    let expired_before = conditions::get(&old.conditions, r::READY).is_some_and(|c| c.reason == ready_reason);
    if expired && !expired_before {
        events.push(Note { type_: EventType::Warning, reason: ready_reason, text: ready_message.clone() });
    }
    if before != after && !announced && !(expired && outcome == r::READY) {
        let type_ = if stop.failure { EventType::Warning } else { EventType::Normal };
        let text = if stop.message.is_empty() { ready_message } else { stop.message.clone() };
        events.push(Note { type_, reason: stop.reason, text });
    }
    let requeue = match (stop.requeue, next_subscription_moment(&built, sub, subscription_warning)) {
        (Requeue::After(d), Some(t)) => Requeue::After(d.min(wait_until(t, now))),
        (requeue, _) => requeue,
    };
    Settled { status: built, events, ready, requeue, reset_backoff: !stop.failure }
}

/// The Ready reason and message of a certificate whose served certificate has expired.
fn expired_words(
    built: &CertificateStatus,
    sub: Subscription,
    automatic: bool,
    pending: &str,
    secret: &str,
) -> (&'static str, String) {
    let at = |t: &Option<Time>| t.as_ref().map(|t| day_and_time(t.0)).unwrap_or_default();
    let expired = format!("the certificate in Secret {secret} expired at {}", at(&built.not_after));
    match sub {
        Subscription::Ended(_) => {
            (r::SUBSCRIPTION_ENDED, format!("{expired}: {}", subscription_words(built, sub, automatic)))
        }
        _ if pending.is_empty() => (r::EXPIRED, expired),
        _ => (r::EXPIRED, format!("{expired}; {pending}")),
    }
}

fn day_and_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// What the subscription's state means, in words that say what to do (under `Automatic`, what
/// the operator does).
fn subscription_words(built: &CertificateStatus, sub: Subscription, automatic: bool) -> String {
    let order = built.order_id.as_deref().unwrap_or("?");
    match sub {
        Subscription::Ending(end) | Subscription::Ended(end) if automatic => format!(
            "the subscription of order {order} ends at {}: the operator prolongs it (subscriptionRenewal: Automatic)",
            day_and_time(end)
        ),
        Subscription::Running => match &built.subscription_end {
            Some(end) => format!("the subscription of order {order} runs until {}", day_and_time(end.0)),
            None => String::new(),
        },
        Subscription::Ending(end) => format!(
            "the subscription of order {order} ends at {}: prolong it in the billing panel before then (nothing is bought automatically); the operator then reissues the certificate",
            day_and_time(end)
        ),
        Subscription::Ended(end) => format!(
            "the subscription of order {order} ended at {}: prolong it in the billing panel (the operator then reissues the certificate), or delete and re-create this IspCertificate to buy a new one",
            day_and_time(end)
        ),
    }
}

/// Sets `SubscriptionEnding` when the subscription's end is known, and returns the Warning event
/// of a subscription that starts ending or has ended.
fn set_subscription(
    built: &mut CertificateStatus,
    sub: Subscription,
    automatic: bool,
    old: &CertificateStatus,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Note> {
    built.subscription_end.as_ref()?;
    let (ending, reason) = match sub {
        Subscription::Running => (false, r::SUBSCRIPTION_ACTIVE),
        Subscription::Ending(_) => (true, r::SUBSCRIPTION_ENDING),
        Subscription::Ended(_) => (true, r::SUBSCRIPTION_ENDED),
    };
    let text = subscription_words(built, sub, automatic);
    conditions::set(&mut built.conditions, r::SUBSCRIPTION_ENDING, ending, reason, &text, generation, now);
    let before =
        conditions::get(&old.conditions, r::SUBSCRIPTION_ENDING).map(|c| (c.status.as_str(), c.reason.as_str()));
    let after = if ending { "True" } else { "False" };
    (ending && before != Some((after, reason))).then_some(Note { type_: EventType::Warning, reason, text })
}

/// When the subscription's state changes next: the warning time, then the end.
fn next_subscription_moment(
    built: &CertificateStatus,
    sub: Subscription,
    warning: SignedDuration,
) -> Option<Timestamp> {
    let end = built.subscription_end.as_ref()?.0;
    match sub {
        Subscription::Running => end.checked_sub(warning).ok(),
        Subscription::Ending(_) => Some(end),
        Subscription::Ended(_) => None,
    }
}

/// How long from `now` until `t`, at least a second.
fn wait_until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or_default().max(Duration::from_secs(1))
}

/// The Ready message of a certificate that serves.
fn ready_text(status: &CertificateStatus, secret_name: &str) -> String {
    let until = status.not_after.as_ref().map(|t| t.0.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default();
    format!("certificate is valid until {until}; Secret {secret_name} is up to date")
}

/// A Ready reason read back from a condition, as one of ours (conditions hold any string; a
/// reason we never write is reported as `Issued`).
fn known_ready_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[r::ISSUED, r::SECRET_WRITTEN, r::SECRET_RESTORED, r::RENEWAL_SCHEDULED];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or(r::ISSUED)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::SignedDuration;

    use super::*;

    const GEN: Option<i64> = Some(3);

    fn now() -> Timestamp {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    /// A status whose Ready and Issuing conditions are as given (for `generation`), and whose
    /// certificate expires `days_left` from now.
    fn status(
        ready: (&str, &str, &str),
        issuing: (&str, &str),
        generation: Option<i64>,
        days_left: i64,
    ) -> CertificateStatus {
        let mut s = CertificateStatus {
            observed_generation: generation,
            order_id: Some("7".into()),
            serial_number: Some("0a".into()),
            not_after: Some(Time(now() + SignedDuration::from_hours(24 * days_left))),
            ..Default::default()
        };
        let earlier = now() - SignedDuration::from_hours(1);
        conditions::set(&mut s.conditions, r::READY, ready.0 == "True", ready.1, ready.2, generation, earlier);
        conditions::set(&mut s.conditions, r::ISSUING, issuing.0 == "True", issuing.1, "", generation, earlier);
        s
    }

    fn fresh() -> CertificateStatus {
        CertificateStatus::default()
    }

    fn run(old: &CertificateStatus, events: Vec<Note>, stop: &Stop) -> Settled {
        let inputs = Inputs {
            old,
            built: old.clone(),
            events,
            generation: GEN,
            secret_name: "www-tls",
            subscription_warning: SignedDuration::from_hours(24 * 30),
            subscription_renewal: SubscriptionRenewal::Manual,
            now: now(),
        };
        settle(inputs, stop)
    }

    fn condition(s: &Settled, type_: &str) -> (String, String, String) {
        let c = conditions::get(&s.status.conditions, type_).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn reasons(s: &Settled) -> Vec<(&'static str, EventType)> {
        s.events.iter().map(|e| (e.reason, e.type_)).collect()
    }

    fn pending() -> Stop {
        Stop::pending(r::PENDING, "order 7 is processing at the billing", Duration::from_secs(30))
    }

    #[test]
    fn every_ready_and_issuing_transition() {
        let serving = status(("True", r::ISSUED, "valid until then"), ("False", r::ISSUED), GEN, 30);
        let expired = status(("True", r::ISSUED, "valid until then"), ("False", r::ISSUED), GEN, -1);
        let older_spec = status(("True", r::ISSUED, "valid until then"), ("False", r::ISSUED), Some(2), 30);
        let blocked = status(("False", r::INVALID_SPEC, "fix it"), ("False", r::INVALID_SPEC), GEN, 30);
        let failed = Stop::failed(r::BILLING_UNREACHABLE, "billing unreachable");
        let invalid = Stop::blocked(r::INVALID_SPEC, "fix the spec", None);
        let issued = Stop::ready("", Some(Duration::from_secs(3600)));
        let (new, waiting) = (fresh(), pending());
        // (case, old status, stop, Ready after, Issuing after)
        type Case<'a> = (&'a str, &'a CertificateStatus, &'a Stop, (&'a str, &'a str), (&'a str, &'a str));
        let cases: Vec<Case> = vec![
            ("new and waiting", &new, &waiting, ("False", r::PENDING), ("True", r::PENDING)),
            ("new and issued", &new, &issued, ("True", r::ISSUED), ("False", r::ISSUED)),
            ("new and refused", &new, &invalid, ("False", r::INVALID_SPEC), ("False", r::INVALID_SPEC)),
            ("new and failing", &new, &failed, ("False", r::BILLING_UNREACHABLE), ("True", r::BILLING_UNREACHABLE)),
            ("serving, renewal pending", &serving, &waiting, ("True", r::ISSUED), ("True", r::PENDING)),
            ("serving, renewal failing", &serving, &failed, ("True", r::ISSUED), ("True", r::BILLING_UNREACHABLE)),
            ("serving, then refused", &serving, &invalid, ("False", r::INVALID_SPEC), ("False", r::INVALID_SPEC)),
            ("serving, issued again", &serving, &issued, ("True", r::ISSUED), ("False", r::ISSUED)),
            ("expired, renewal pending", &expired, &waiting, ("False", r::EXPIRED), ("True", r::PENDING)),
            ("expired, renewal failing", &expired, &failed, ("False", r::EXPIRED), ("True", r::BILLING_UNREACHABLE)),
            ("older spec, pending", &older_spec, &waiting, ("False", r::PENDING), ("True", r::PENDING)),
            ("blocked, then fixed and issued", &blocked, &issued, ("True", r::ISSUED), ("False", r::ISSUED)),
            ("blocked, then pending", &blocked, &waiting, ("False", r::PENDING), ("True", r::PENDING)),
        ];
        for (case, old, stop, ready, issuing) in cases {
            let s = run(old, vec![], stop);
            let (rs, rr, _) = condition(&s, r::READY);
            let (is, ir, _) = condition(&s, r::ISSUING);
            assert_eq!((rs.as_str(), rr.as_str()), ready, "{case}: Ready");
            assert_eq!((is.as_str(), ir.as_str()), issuing, "{case}: Issuing");
            let stalled = ready.0 == "False" && issuing.0 == "False";
            assert_eq!(condition(&s, r::STALLED).0, if stalled { "True" } else { "False" }, "{case}: Stalled");
            assert_eq!(s.ready, ready.0 == "True", "{case}");
            assert_eq!(s.status.observed_generation, GEN, "{case}");
        }
    }

    #[test]
    fn an_expired_certificate_says_so_whatever_is_pending() {
        let expired = status(("True", r::ISSUED, "valid until then"), ("False", r::ISSUED), GEN, -1);
        let reissuing =
            Stop::pending(r::REISSUING, "order 7: waiting for the reissued certificate", Duration::from_secs(1));
        let s = run(&expired, vec![], &reissuing);
        let (status, reason, message) = condition(&s, r::READY);
        assert_eq!((status.as_str(), reason.as_str()), ("False", r::EXPIRED));
        assert!(
            message.starts_with("the certificate in Secret www-tls expired at 2026-11-30 12:00 UTC; order 7: waiting"),
            "{message}"
        );
        assert_eq!(condition(&s, r::ISSUING).1, r::REISSUING, "what is under way still shows");
        assert!(reasons(&s).contains(&(r::EXPIRED, EventType::Warning)));
        assert!(!reasons(&run(&s.status, vec![], &reissuing)).contains(&(r::EXPIRED, EventType::Warning)), "once");
    }

    #[test]
    fn a_subscription_warns_ahead_ends_and_is_looked_at_when_it_changes() {
        let with_end = |days: i64| {
            let mut s = status(("True", r::ISSUED, "valid"), ("False", r::ISSUED), GEN, 20);
            s.subscription_end = Some(Time(now() + SignedDuration::from_hours(24 * days)));
            s
        };
        let day = Duration::from_secs(24 * 3600);
        let ready = Stop::ready("", Some(day * 10));
        // Ends in 40 days: active, looked at again when the warning starts (in 10 days).
        let s = run(&with_end(40), vec![], &ready);
        assert_eq!(condition(&s, r::SUBSCRIPTION_ENDING).0, "False");
        assert_eq!(s.requeue, Requeue::After(day * 10));
        let warned = |s: &Settled| s.events.iter().any(|e| e.reason == r::SUBSCRIPTION_ENDING);
        assert!(!warned(&s));
        // Ends in 20 days: ending, one Warning event, looked at again at the end at the latest.
        let ending = run(&with_end(20), vec![], &Stop::ready("", Some(day * 30)));
        assert_eq!(condition(&ending, r::SUBSCRIPTION_ENDING).1, r::SUBSCRIPTION_ENDING);
        assert!(condition(&ending, r::SUBSCRIPTION_ENDING).2.contains("prolong it in the billing panel"));
        assert!(reasons(&ending).contains(&(r::SUBSCRIPTION_ENDING, EventType::Warning)));
        assert_eq!(ending.requeue, Requeue::After(day * 20));
        assert!(!warned(&run(&ending.status, vec![], &ready)), "warned once");
        // Ended, and the certificate with it.
        let mut over = with_end(-1);
        over.not_after = over.subscription_end.clone();
        let ended = run(&over, vec![], &pending());
        assert_eq!(condition(&ended, r::READY).1, r::SUBSCRIPTION_ENDED);
        assert!(condition(&ended, r::READY).2.contains("delete and re-create this IspCertificate"));
        assert_eq!(condition(&ended, r::SUBSCRIPTION_ENDING).1, r::SUBSCRIPTION_ENDED);
        // Under Automatic the words say what the operator does instead.
        let words = subscription_words(&with_end(20), Subscription::Ending(now()), true);
        assert!(words.contains("the operator prolongs it") && !words.contains("billing panel"), "{words}");
        // No end known: no condition.
        let unknown = run(&status(("True", r::ISSUED, "valid"), ("False", r::ISSUED), GEN, 20), vec![], &ready);
        assert!(conditions::get(&unknown.status.conditions, r::SUBSCRIPTION_ENDING).is_none());
    }

    #[test]
    fn a_serving_certificate_keeps_the_words_of_its_ready_condition() {
        let serving = status(("True", r::SECRET_RESTORED, "restored it"), ("False", r::ISSUED), GEN, 30);
        let s = run(&serving, vec![], &pending());
        assert_eq!(condition(&s, r::READY), ("True".into(), r::SECRET_RESTORED.into(), "restored it".into()));
        assert_eq!(condition(&s, r::ISSUING).2, "order 7 is processing at the billing");
        let odd = status(("True", "SomethingElse", "x"), ("False", r::ISSUED), GEN, 30);
        assert_eq!(condition(&run(&odd, vec![], &pending()), r::READY).1, r::ISSUED);
    }

    #[test]
    fn an_empty_ready_message_is_worded_from_the_status() {
        let s = run(&status(("False", r::PENDING, ""), ("True", r::PENDING), GEN, 30), vec![], &Stop::ready("", None));
        assert_eq!(
            condition(&s, r::READY).2,
            "certificate is valid until 2026-12-31 12:00 UTC; Secret www-tls is up to date"
        );
        assert_eq!(condition(&s, r::ISSUING).2, "", "nothing is being issued");
    }

    #[test]
    fn failures_count_until_a_success_clears_them() {
        let mut old = fresh();
        let failed = Stop::failed(r::BILLING_UNREACHABLE, "billing unreachable");
        for n in 1..=3 {
            let s = run(&old, vec![], &failed);
            assert_eq!(s.status.failed_attempts, Some(n));
            assert_eq!(s.status.last_failure_time, Some(Time(now())));
            assert!(!s.reset_backoff);
            assert_eq!(s.requeue, Requeue::Backoff);
            old = s.status;
        }
        let still = run(&old, vec![], &pending());
        assert_eq!(still.status.failed_attempts, Some(3), "waiting is not a success");
        assert!(still.reset_backoff, "but it is no failure either");
        assert_eq!(run(&old, vec![], &Stop::ready("", None)).status.failed_attempts, None);
    }

    #[test]
    fn an_event_marks_each_changed_outcome_once() {
        let first = run(&fresh(), vec![], &pending());
        assert_eq!(reasons(&first), [(r::PENDING, EventType::Normal)]);
        assert_eq!(first.events[0].text, "order 7 is processing at the billing");
        // The same outcome again: no event, and the conditions keep their transition time.
        let again = run(&first.status, vec![], &pending());
        assert!(again.events.is_empty(), "{:?}", again.events);
        assert_eq!(again.status.conditions, first.status.conditions);
        // A failure is a Warning.
        let failed = run(&first.status, vec![], &Stop::failed(r::BILLING_ERROR, "refused"));
        assert_eq!(reasons(&failed), [(r::BILLING_ERROR, EventType::Warning)]);
        // Issued and announced by the stage already: its event stands alone.
        let stored = Note::normal(r::ISSUED, "certificate 01 stored");
        let issued = run(&first.status, vec![stored.clone()], &Stop::ready("", None));
        assert_eq!(issued.events, [stored]);
        // Issued without an announcement: the outcome is the event, worded from the status.
        let quiet = run(&first.status, vec![], &Stop::ready("", None));
        assert_eq!(reasons(&quiet), [(r::ISSUED, EventType::Normal)]);
        assert!(quiet.events[0].text.starts_with("certificate is valid until"), "{}", quiet.events[0].text);
    }

    #[test]
    fn the_requeue_is_the_stops() {
        for requeue in [Requeue::OnChange, Requeue::Backoff, Requeue::After(Duration::from_secs(9))] {
            let stop = Stop { requeue, ..pending() };
            assert_eq!(run(&fresh(), vec![], &stop).requeue, requeue);
        }
    }
}
