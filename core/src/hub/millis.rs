//! The process-wide wrapping millisecond clock: times in 4 bytes, for what
//! every connection holds (the liveness clock, the replay's age marks, the
//! outbox's stall clock).

use tokio::time::Instant;

/// `t` in milliseconds since the process's first call, modulo 2^32 (~49
/// days), rounded down (also before that first call, as paused test clocks
/// can be). Compare two such times only by their wrapping difference, and
/// only for times known to be less than 2^31 ms apart.
pub(crate) fn millis(t: Instant) -> u32 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    if t >= epoch {
        (t - epoch).as_millis() as u32
    } else {
        ((epoch - t).as_nanos().div_ceil(1_000_000) as u32).wrapping_neg()
    }
}
