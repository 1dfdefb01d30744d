//! Time glue between Kubernetes timestamps (jiff, as k8s-openapi uses) and std durations.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// How long ago `t` was; zero for the future.
pub fn elapsed_since(t: Timestamp) -> Duration {
    Duration::try_from(Timestamp::now().duration_since(t)).unwrap_or_default()
}

/// How long until `t`; zero for the past.
pub fn remaining_until(t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or_default()
}

/// The UTC calendar date of `t` (the billing's list dates are plain dates).
pub fn utc_date(t: Timestamp) -> Date {
    t.to_zoned(TimeZone::UTC).date()
}
