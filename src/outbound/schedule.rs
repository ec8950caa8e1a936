//! When a failed status webhook is tried again: a pure function of the
//! attempt and a random number.

use std::time::Duration;

/// The wait after each failed attempt (seconds): 5 s, 30 s, 2 min, 10 min,
/// 30 min, 1 h, 2 h, 4 h, 8 h, then every 12 h. Fifteen attempts over about
/// three days (75.7 hours before jitter).
pub const DELAYS: [u64; 14] = [
    5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200, 43200, 43200, 43200, 43200,
];

/// How long to wait after attempt `attempt` (from 1) failed, scaled by a
/// factor in [0.8, 1.2) so that a batch that failed together does not
/// retry together; `None` once every attempt is used. `random` is in [0, 1).
pub fn retry_delay(attempt: i32, random: f64) -> Option<Duration> {
    let i = usize::try_from(attempt.max(1) - 1).ok()?;
    let base = DELAYS.get(i)?;
    let factor = 0.8 + 0.4 * random.clamp(0.0, 1.0 - f64::EPSILON);
    Some(Duration::from_secs(*base).mul_f64(factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_three_days_of_backoff_with_jitter_then_none() {
        assert_eq!(retry_delay(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(1, 0.0), Some(Duration::from_secs(4)));
        assert!(retry_delay(1, 0.999_999).unwrap() < Duration::from_secs(6));
        assert_eq!(retry_delay(3, 0.5), Some(Duration::from_secs(120)));
        assert_eq!(retry_delay(14, 0.5), Some(Duration::from_secs(43200)));
        assert_eq!(retry_delay(15, 0.5), None);
        let total: u64 = DELAYS.iter().sum();
        assert!(
            (3 * 86_400 - 6 * 3600..=3 * 86_400 + 6 * 3600).contains(&total),
            "{total}"
        );
        // Each wait is longer than (or as long as) the one before.
        assert!(DELAYS.windows(2).all(|w| w[0] <= w[1]));
    }
}
