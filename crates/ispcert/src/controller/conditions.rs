//! Status conditions with Kubernetes semantics: `lastTransitionTime` moves only when the status
//! flips, so re-writing the same condition is a no-op.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition messages are cut here (bytes): they are shown in `kubectl get -o wide` and events.
const MAX_MESSAGE: usize = 1000;

/// Sets condition `type_`, keeping `lastTransitionTime` when the status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = crate::text::clip(message.into(), MAX_MESSAGE);
    let transition = match conditions.iter().find(|c| c.type_ == type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let new = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// The condition of a type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of a type is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Timestamp::now();
        let mut c = vec![];
        set(&mut c, "Ready", false, "Pending", "waiting", Some(1), t0);
        set(&mut c, "Ready", false, "Pending", "still waiting", Some(2), t0 + SignedDuration::from_secs(5));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time.0, t0);
        assert_eq!(c[0].message, "still waiting");
        set(&mut c, "Ready", true, "Issued", "ok", Some(2), t0 + SignedDuration::from_secs(9));
        assert_eq!(c[0].last_transition_time.0, t0 + SignedDuration::from_secs(9));
        assert!(is_true(&c, "Ready"));
        set(&mut c, "Issuing", false, "Issued", "x".repeat(5000), None, t0);
        assert!(get(&c, "Issuing").unwrap().message.chars().count() <= MAX_MESSAGE + 1);
    }
}
