//! Per-object exponential backoff (kube-runtime has none built in), reset on success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Backoffs {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoffs {
    /// Records a failure of `key` and returns how long to wait: `min`·2ⁿ capped at `max`, with
    /// up to 10% jitter so that objects failing together do not retry together.
    pub fn fail(&self, key: &str, min: Duration, max: Duration) -> Duration {
        self.fail_after(key, 0, min, max)
    }

    /// As [`fail`](Self::fail), counting at least `known` earlier failures: a count kept in the
    /// object's status survives a restart, this map does not.
    pub fn fail_after(&self, key: &str, known: u32, min: Duration, max: Duration) -> Duration {
        let n = {
            let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1).max(known.saturating_add(1));
            *n
        };
        let base = min.saturating_mul(1u32 << (n - 1).min(20)).min(max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.1);
        (base + jitter).min(max)
    }

    /// Failures recorded for `key` since its last success.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(key).copied().unwrap_or(0)
    }

    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let b = Backoffs::default();
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(10));
        let d1 = b.fail("a", min, max);
        let d2 = b.fail("a", min, max);
        let d3 = b.fail("a", min, max);
        assert!(d1 >= min && d1 < Duration::from_millis(1101));
        assert!(d2 >= Duration::from_secs(2) && d3 >= Duration::from_secs(4));
        for _ in 0..10 {
            assert!(b.fail("a", min, max) <= max);
        }
        assert_eq!(b.failures("a"), 13);
        b.reset("a");
        assert_eq!(b.failures("a"), 0);
        assert!(b.fail("a", min, max) < Duration::from_millis(1101));
        assert!(b.fail("b", min, max) < Duration::from_millis(1101));
    }

    #[test]
    fn failures_known_from_the_status_count_after_a_restart() {
        let b = Backoffs::default();
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let d = b.fail_after("c", 4, min, max);
        assert!(d >= Duration::from_secs(16) && d <= Duration::from_secs(18), "{d:?}: the fifth failure");
        assert!(b.fail_after("c", 0, min, max) >= Duration::from_secs(32), "the map counts on");
        assert!(b.fail_after("d", 20, min, max) == max, "capped");
    }
}
