//! Per-connection rate limiting: a token bucket, at most one `rate-limited` error
//! per second, and detection of sustained abuse (10× the limit for 5 s → 1008).

use std::time::Instant;

use super::millis;

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
const ABUSE_SECONDS: u8 = 5;

/// The configured limit, the same for every connection of a hub: passed in
/// at each check, not kept per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub burst: u32,
    pub per_sec: u32,
}

/// One connection's bucket. Every connection holds one, so its times are
/// wrapping milliseconds ([`millis`]), 24 bytes in all (88 with `Instant`s
/// and the limit repeated). Two times of a connection are compared by their
/// wrapping difference, exact up to ~49 days apart; a connection silent
/// longer than that may find its bucket short of a refill for a moment.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    tokens: f32,
    last_ms: u32,
    window_start_ms: u32,
    window_count: u32,
    last_error_ms: u32,
    abusive_windows: u8,
    errored: bool,
}

impl RateLimiter {
    /// `None` when rate limiting is off (`per_sec == 0`).
    pub(crate) fn new(limit: Limit, now: Instant) -> Option<Self> {
        let now = ms(now);
        (limit.per_sec > 0).then_some(RateLimiter {
            tokens: limit.burst as f32,
            last_ms: now,
            window_start_ms: now,
            window_count: 0,
            last_error_ms: now,
            abusive_windows: 0,
            errored: false,
        })
    }

    pub(crate) fn check(&mut self, now: Instant, limit: Limit) -> Verdict {
        let now = ms(now);
        // Abuse: count every frame per one-second window; a run of windows at more
        // than 10× the sustained rate means the client ignores the errors.
        let elapsed_window = now.wrapping_sub(self.window_start_ms);
        if elapsed_window >= 1000 {
            let whole = elapsed_window / 1000;
            let abusive = whole == 1
                && u64::from(self.window_count) > ABUSE_FACTOR * u64::from(limit.per_sec);
            self.abusive_windows = if abusive {
                self.abusive_windows.saturating_add(1)
            } else {
                0
            };
            self.window_start_ms = self.window_start_ms.wrapping_add(whole * 1000);
            self.window_count = 0;
        }
        self.window_count = self.window_count.saturating_add(1);
        if self.abusive_windows >= ABUSE_SECONDS {
            return Verdict::Abuse;
        }

        let dt = now.wrapping_sub(self.last_ms) as f32 / 1000.0;
        self.last_ms = now;
        self.tokens = (self.tokens + dt * limit.per_sec as f32).min(limit.burst as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        let notify = !self.errored || now.wrapping_sub(self.last_error_ms) >= 1000;
        if notify {
            self.errored = true;
            self.last_error_ms = now;
        }
        Verdict::Drop { notify }
    }
}

/// `now` on the wrapping millisecond clock. Every time a bucket sees comes
/// from `std::time::Instant`, so differences are exact whatever the epoch.
fn ms(now: Instant) -> u32 {
    millis(tokio::time::Instant::from_std(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limit(burst: u32, per_sec: u32) -> Limit {
        Limit { burst, per_sec }
    }

    #[test]
    fn burst_then_refill_and_one_error_per_second() {
        let t0 = Instant::now();
        let l = limit(5, 10);
        let mut r = RateLimiter::new(l, t0).unwrap();
        for _ in 0..5 {
            assert_eq!(r.check(t0, l), Verdict::Allow);
        }
        assert_eq!(r.check(t0, l), Verdict::Drop { notify: true });
        assert_eq!(r.check(t0, l), Verdict::Drop { notify: false });
        // 100 ms refills one token at 10/s.
        assert_eq!(r.check(t0 + Duration::from_millis(100), l), Verdict::Allow);
        assert_eq!(
            r.check(t0 + Duration::from_millis(100), l),
            Verdict::Drop { notify: false }
        );
        let t1 = t0 + Duration::from_millis(1100);
        let verdicts: Vec<Verdict> = (0..20).map(|_| r.check(t1, l)).collect();
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
        assert!(RateLimiter::new(limit(5, 0), Instant::now()).is_none());
    }

    #[test]
    fn sustained_flood_is_abuse_but_a_burst_is_not() {
        let t0 = Instant::now();
        let l = limit(5, 2);
        let mut r = RateLimiter::new(l, t0).unwrap();
        // One second at 100/s (50× the limit) is not yet abuse.
        for i in 0..100 {
            assert_ne!(
                r.check(t0 + Duration::from_millis(i * 10), l),
                Verdict::Abuse
            );
        }
        let mut abused_at = None;
        for i in 100..800u64 {
            if r.check(t0 + Duration::from_millis(i * 10), l) == Verdict::Abuse {
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
