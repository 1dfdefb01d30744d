//! When a certificate is renewed by a free reissue, and what its subscription's end means for it.
//! Pure.
//!
//! - cert-manager's `renewBefore` (a duration before `notAfter`) or `renewBeforePercentage` (the
//!   part of the lifetime left), two thirds into the real lifetime by default;
//! - never sooner after the certificate's start than the floor (nor than the default would), so
//!   that a `renewBefore` close to the lifetime cannot reissue every few minutes;
//! - never when the subscription ends too soon for a reissue to gain at least the floor: the CA
//!   caps each certificate at the subscription's end, so near it every reissue would live shorter
//!   than the last, each with an approver email. The subscription policy applies instead.

use jiff::{SignedDuration, Timestamp};

use crate::pki::chain::CertInfo;

/// When the spec asks for renewal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RenewBefore {
    /// Two thirds into the lifetime.
    #[default]
    TwoThirds,
    /// This long before `notAfter` (`renewBefore`).
    Duration(SignedDuration),
    /// When this percentage of the lifetime is left (`renewBeforePercentage`).
    Percentage(u32),
}

/// Everything the renewal time depends on besides the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenewalPolicy {
    pub before: RenewBefore,
    /// The least time between a certificate's start and its renewal, and the least a reissue must
    /// add before the subscription ends.
    pub floor: SignedDuration,
}

/// What the certificate's lifetime plan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Reissue at this moment.
    At(Timestamp),
    /// The subscription ends at this moment, too soon for a reissue to help.
    SubscriptionEnds(Timestamp),
}

impl Renewal {
    /// The planned reissue, if any.
    pub fn at(self) -> Option<Timestamp> {
        match self {
            Renewal::At(t) => Some(t),
            Renewal::SubscriptionEnds(_) => None,
        }
    }
}

/// Plans the renewal of `cert` under `policy`, given the subscription's end when known.
pub fn plan_renewal(cert: &CertInfo, policy: &RenewalPolicy, subscription_end: Option<Timestamp>) -> Renewal {
    if let Some(end) = subscription_end
        && end.duration_since(cert.not_after) < policy.floor
    {
        return Renewal::SubscriptionEnds(end);
    }
    let (start, end) = (cert.not_before, cert.not_after);
    let life = end.duration_since(start).max(SignedDuration::ZERO);
    let two_thirds = start.checked_add(life * 2 / 3).unwrap_or(end);
    let asked = match policy.before {
        RenewBefore::TwoThirds => two_thirds,
        // As cert-manager: a renewBefore of the whole lifetime or more means the default.
        RenewBefore::Duration(d) if d >= life || d <= SignedDuration::ZERO => two_thirds,
        RenewBefore::Duration(d) => end.checked_sub(d).unwrap_or(two_thirds),
        RenewBefore::Percentage(p) => {
            let left = life * i32::try_from(p.min(100)).unwrap_or(100) / 100;
            end.checked_sub(left).unwrap_or(two_thirds)
        }
    };
    let earliest = start.checked_add(policy.floor.min(life * 2 / 3)).unwrap_or(two_thirds);
    Renewal::At(asked.max(earliest))
}

/// Where a subscription stands for its certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Unknown, or ends later than the warning time ahead.
    Running,
    /// Ends within the warning time.
    Ending(Timestamp),
    /// Has ended.
    Ended(Timestamp),
}

/// Where the subscription ending at `end` stands at `now`, warning `warn_before` ahead.
pub fn subscription(end: Option<Timestamp>, warn_before: SignedDuration, now: Timestamp) -> Subscription {
    match end {
        Some(end) if end <= now => Subscription::Ended(end),
        Some(end) if end.duration_since(now) <= warn_before => Subscription::Ending(end),
        _ => Subscription::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * n)
    }

    fn cert(from: i64, to: i64) -> CertInfo {
        CertInfo { not_before: day(from), not_after: day(to), ..Default::default() }
    }

    fn policy(before: RenewBefore) -> RenewalPolicy {
        RenewalPolicy { before, floor: SignedDuration::from_hours(24 * 7) }
    }

    #[test]
    fn renewal_times_follow_cert_managers_meaning_within_the_floor() {
        let hours = |d: i64| RenewBefore::Duration(SignedDuration::from_hours(d));
        // (case, before, certificate days, expected renewal day)
        let cases: Vec<(&str, RenewBefore, (i64, i64), Timestamp)> = vec![
            ("default: two thirds", RenewBefore::TwoThirds, (0, 90), day(60)),
            ("renewBefore 30 days", hours(30 * 24), (0, 90), day(60)),
            ("renewBefore 10 days", hours(10 * 24), (0, 90), day(80)),
            ("renewBefore the whole life: the default", hours(90 * 24), (0, 90), day(60)),
            ("renewBefore past the floor: the floor", hours(87 * 24), (0, 90), day(7)),
            ("percentage 50", RenewBefore::Percentage(50), (0, 90), day(45)),
            ("percentage 10", RenewBefore::Percentage(10), (0, 100), day(90)),
            ("percentage 99: the floor", RenewBefore::Percentage(99), (0, 100), day(7)),
            ("a life shorter than the floor: two thirds", hours(5 * 24), (0, 6), day(4)),
        ];
        for (case, before, (from, to), expected) in cases {
            assert_eq!(plan_renewal(&cert(from, to), &policy(before), None), Renewal::At(expected), "{case}");
        }
    }

    #[test]
    fn no_reissue_when_the_subscription_ends_too_soon_for_it_to_gain_the_floor() {
        let p = policy(RenewBefore::TwoThirds);
        // 200-day certificates in a 365-day subscription: renewed at 133 days, then the next
        // one is capped at day 365, and that one is not renewed again.
        assert_eq!(
            plan_renewal(&cert(0, 200), &p, Some(day(365))),
            Renewal::At(day(133) + SignedDuration::from_hours(8))
        );
        assert_eq!(
            plan_renewal(&cert(133, 333), &p, Some(day(365))),
            Renewal::At(day(266) + SignedDuration::from_hours(8))
        );
        assert_eq!(plan_renewal(&cert(266, 365), &p, Some(day(365))), Renewal::SubscriptionEnds(day(365)));
        assert_eq!(
            plan_renewal(&cert(266, 360), &p, Some(day(365))),
            Renewal::SubscriptionEnds(day(365)),
            "5 days to gain"
        );
        assert_eq!(
            plan_renewal(&cert(266, 357), &p, Some(day(365))).at(),
            Some(day(326) + SignedDuration::from_hours(16))
        );
    }

    #[test]
    fn a_subscription_warns_ahead_then_ends() {
        let warn = SignedDuration::from_hours(24 * 30);
        assert_eq!(subscription(None, warn, day(0)), Subscription::Running);
        assert_eq!(subscription(Some(day(31)), warn, day(0)), Subscription::Running);
        assert_eq!(subscription(Some(day(30)), warn, day(0)), Subscription::Ending(day(30)));
        assert_eq!(subscription(Some(day(30)), warn, day(30)), Subscription::Ended(day(30)));
    }
}
