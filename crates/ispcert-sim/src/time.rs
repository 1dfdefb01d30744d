//! The billing's calendar: subscription periods in calendar months, list dates, the RFC 3339 form
//! of the introspection API, and the `time` crate's type that rcgen takes.

use jiff::tz::{Offset, TimeZone};
use jiff::{Span, Timestamp};

/// `t` plus `months` calendar months on the UTC calendar, keeping the time of day. A day of the
/// month the target month lacks is clamped to its last day (Jan 31 + 1 month is Feb 28, or Feb 29
/// in a leap year): how subscription periods end. Saturates at [`Timestamp::MAX`] rather than
/// failing.
pub fn add_months(t: Timestamp, months: u32) -> Timestamp {
    Span::new()
        .try_months(months)
        .and_then(|span| t.to_zoned(TimeZone::UTC).checked_add(span))
        .map_or(Timestamp::MAX, |z| z.timestamp())
}

/// The UTC date of `t` as `YYYY-MM-DD`, the billing's `createdate`/`expiredate` form.
pub fn ymd(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

/// A subscription end as the list shows it: the date, or with `exact` also the time of day.
pub fn expiredate(t: Timestamp, exact: bool) -> String {
    if exact { t.strftime("%Y-%m-%d %H:%M:%S").to_string() } else { ymd(t) }
}

/// RFC 3339 in UTC with offset `+00:00` (not `Z`), and the fraction of a second with 0, 3, 6 or 9
/// digits, the fewest that are exact: the form the simulator's introspection API has always used.
pub fn rfc3339(t: Timestamp) -> String {
    let nanos = t.subsec_nanosecond().unsigned_abs();
    let digits = match nanos {
        0 => 0,
        n if n % 1_000_000 == 0 => 3,
        n if n % 1_000 == 0 => 6,
        _ => 9,
    };
    format!("{:.digits$}", t.display_with_offset(Offset::UTC))
}

/// `t` as the `time` crate's type, which rcgen takes for certificate validity.
pub fn to_offset_date_time(t: Timestamp) -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).unwrap_or(::time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn calendar_months_clamp_the_day_and_keep_the_time_of_day() {
        let cases = [
            ("2023-01-31T10:20:30Z", 1, "2023-02-28T10:20:30Z"),
            ("2024-01-31T10:20:30Z", 1, "2024-02-29T10:20:30Z"),
            ("2024-03-31T00:00:00Z", 1, "2024-04-30T00:00:00Z"),
            ("2024-02-29T23:59:59.5Z", 12, "2025-02-28T23:59:59.5Z"),
            ("2024-02-29T12:00:00Z", 24, "2026-02-28T12:00:00Z"),
            ("2023-02-28T12:00:00Z", 12, "2024-02-28T12:00:00Z"),
            ("2024-08-31T08:00:00Z", 12, "2025-08-31T08:00:00Z"),
            ("2024-12-31T08:00:00Z", 2, "2025-02-28T08:00:00Z"),
            ("2025-05-15T08:00:00Z", 0, "2025-05-15T08:00:00Z"),
        ];
        for (start, months, want) in cases {
            assert_eq!(add_months(ts(start), months), ts(want), "{start} + {months} months");
        }
        assert_eq!(add_months(ts("9999-01-01T00:00:00Z"), 24), Timestamp::MAX);
        assert_eq!(add_months(ts("2025-01-01T00:00:00Z"), u32::MAX), Timestamp::MAX);
    }

    #[test]
    fn dates_and_rfc3339_keep_their_established_form() {
        assert_eq!(ymd(ts("2025-03-04T23:59:59.999Z")), "2025-03-04");
        assert_eq!(ymd(ts("0999-03-04T00:00:00Z")), "0999-03-04");
        assert_eq!(rfc3339(ts("2025-03-04T05:06:07Z")), "2025-03-04T05:06:07+00:00");
        assert_eq!(rfc3339(ts("2025-03-04T05:06:07.1Z")), "2025-03-04T05:06:07.100+00:00");
        assert_eq!(rfc3339(ts("2025-03-04T05:06:07.00012Z")), "2025-03-04T05:06:07.000120+00:00");
        assert_eq!(rfc3339(ts("2025-03-04T05:06:07.000000001Z")), "2025-03-04T05:06:07.000000001+00:00");
    }

    #[test]
    fn offset_date_times_are_the_same_instant() {
        let t = ts("2025-03-04T05:06:07.123456789Z");
        let o = to_offset_date_time(t);
        assert_eq!((o.unix_timestamp(), o.nanosecond()), (t.as_second(), 123_456_789));
        assert_eq!(o.offset(), ::time::UtcOffset::UTC);
    }
}
