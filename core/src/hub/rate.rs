//! Per-connection rate limiting: a token bucket, at most one `rate-limited` error
//! per second, and detection of sustained abuse (10× the limit for 5 s → 1008).

use std::time::{Duration, Instant};

/// What to do with one inbound message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Drop it; `notify` says whether to send a `rate-limited` error this time.
    Drop {
        notify: bool,
    },
    /// Sustained abuse: close the connection with 1008.
    Abuse,
}

const ABUSE_FACTOR: u64 = 10;
const ABUSE_SECONDS: u32 = 5;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    burst: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
    last_error: Option<Instant>,
    window_start: Instant,
    window_count: u64,
    abusive_windows: u32,
}

impl RateLimiter {
    /// `None` when rate limiting is off (`per_sec == 0`).
    pub(crate) fn new(burst: u32, per_sec: u32, now: Instant) -> Option<Self> {
        (per_sec > 0).then_some(RateLimiter {
            burst: burst as f64,
            per_sec: per_sec as f64,
            tokens: burst as f64,
            last: now,
            last_error: None,
            window_start: now,
            window_count: 0,
            abusive_windows: 0,
        })
    }

    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        // Abuse: count every frame per one-second window; a run of windows at more
        // than 10× the sustained rate means the client ignores the errors.
        let elapsed_window = now.saturating_duration_since(self.window_start);
        if elapsed_window >= Duration::from_secs(1) {
            let whole = elapsed_window.as_secs();
            let abusive = whole == 1 && self.window_count > ABUSE_FACTOR * self.per_sec as u64;
            self.abusive_windows = if abusive { self.abusive_windows + 1 } else { 0 };
            self.window_start += Duration::from_secs(whole);
            self.window_count = 0;
        }
        self.window_count += 1;
        if self.abusive_windows >= ABUSE_SECONDS {
            return Verdict::Abuse;
        }

        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        let notify = match self.last_error {
            Some(t) if now.saturating_duration_since(t) < Duration::from_secs(1) => false,
            _ => {
                self.last_error = Some(now);
                true
            }
        };
        Verdict::Drop { notify }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_and_one_error_per_second() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(5, 10, t0).unwrap();
        for _ in 0..5 {
            assert_eq!(r.check(t0), Verdict::Allow);
        }
        assert_eq!(r.check(t0), Verdict::Drop { notify: true });
        assert_eq!(r.check(t0), Verdict::Drop { notify: false });
        // 100 ms refills one token at 10/s.
        assert_eq!(r.check(t0 + Duration::from_millis(100)), Verdict::Allow);
        assert_eq!(
            r.check(t0 + Duration::from_millis(100)),
            Verdict::Drop { notify: false }
        );
        let t1 = t0 + Duration::from_millis(1100);
        let verdicts: Vec<Verdict> = (0..20).map(|_| r.check(t1)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Allow).count(),
            5,
            "refilled to the burst"
        );
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == Verdict::Drop { notify: true })
                .count(),
            1
        );
    }

    #[test]
    fn off_when_zero() {
        assert!(RateLimiter::new(5, 0, Instant::now()).is_none());
    }

    #[test]
    fn sustained_flood_is_abuse_but_a_burst_is_not() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(5, 2, t0).unwrap();
        // One second at 100/s (50× the limit) is not yet abuse.
        for i in 0..100 {
            assert_ne!(r.check(t0 + Duration::from_millis(i * 10)), Verdict::Abuse);
        }
        let mut abused_at = None;
        for i in 100..800u64 {
            if r.check(t0 + Duration::from_millis(i * 10)) == Verdict::Abuse {
                abused_at = Some(i * 10);
                break;
            }
        }
        let at = abused_at.expect("a 7 s flood is abuse");
        assert!(
            (5000..=6100).contains(&at),
            "closed after ~5 s of flood, at {at} ms"
        );
    }
}
