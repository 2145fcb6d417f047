//! Reconnect delays: exponential backoff with full jitter.
//!
//! Full jitter (a uniformly random delay between zero and the exponential ceiling)
//! rather than "ceiling ± a little": when a server restarts, thousands of clients
//! lose their connection at the same instant, and full jitter spreads their
//! reconnects over the whole window instead of sending them back in waves.

use std::time::Duration;

use rand::Rng;

/// The delay policy for reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Ceiling of the first attempt's delay.
    pub(crate) base: Duration,
    /// Largest ceiling, however many attempts have failed.
    pub(crate) max: Duration,
}

impl Backoff {
    /// The ceiling of the delay before reconnect attempt `attempt` (1-based):
    /// `min(max, base · 2^(attempt-1))`. Saturates instead of overflowing, so an
    /// unlimited number of attempts stays at `max`.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// A random delay in `[0, ceiling(attempt)]`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        jitter(self.ceiling(attempt))
    }
}

/// A uniformly random duration in `[0, ceiling]`.
pub(crate) fn jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(30),
    };

    #[test]
    fn ceiling_doubles_then_caps() {
        let ceilings: Vec<u64> = (1..=7).map(|a| B.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
        // Attempt 0 is treated as the first; huge attempt numbers do not overflow.
        assert_eq!(B.ceiling(0), Duration::from_secs(1));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(30));
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn delays_stay_inside_the_envelope_and_spread_over_it() {
        for attempt in 1..=8 {
            let ceiling = B.ceiling(attempt);
            let samples: Vec<Duration> = (0..400).map(|_| B.delay(attempt)).collect();
            assert!(
                samples.iter().all(|d| *d <= ceiling),
                "attempt {attempt}: above {ceiling:?}"
            );
            // Full jitter: both halves of the window are used (a fixed or
            // "ceiling minus a little" delay would fail this).
            let low = samples.iter().filter(|d| **d < ceiling / 2).count();
            assert!(
                (100..=300).contains(&low),
                "attempt {attempt}: {low}/400 in the lower half"
            );
        }
    }

    #[test]
    fn zero_ceiling_gives_zero() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
