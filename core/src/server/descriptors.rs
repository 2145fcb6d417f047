//! Fits the connection limits to the process's descriptor limit. Every
//! connection, pending or open, holds a descriptor; past the limit `accept`
//! fails (EMFILE) and newcomers wait unanswered in the kernel's backlog. Fitted,
//! the connection the process cannot hold is refused with a 503 instead
//! (counted in `switchboard_handshakes_refused_total{reason="capacity"}`),
//! and the ones it has go on.

use tracing::warn;

use crate::config::ServerConfig;

/// Descriptors kept for everything but client sockets: the listener, Redis,
/// files, logs, and sockets being answered with a refusal.
const RESERVED: u64 = 64;

/// `config` with `max_conns` and `max_pending` cut to what `nofile`
/// descriptors can hold (a warning says so when they had to be cut).
pub(crate) fn fit(mut config: ServerConfig) -> ServerConfig {
    let Ok((nofile, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return config;
    };
    if let Some((conns, pending)) = fitted(nofile, config.max_conns, config.max_pending) {
        warn!(
            nofile,
            max_conns = config.max_conns,
            max_pending = config.max_pending,
            fitted_max_conns = conns,
            fitted_max_pending = pending,
            "the connection limits (0: none) exceed the descriptor limit; \
             fitted to it, so that connections beyond it are refused with 503"
        );
        config.max_conns = conns;
        config.max_pending = pending;
    }
    config
}

/// The limits that fit `nofile` descriptors, or `None` when the given ones
/// fit already (or the descriptor limit is too small to plan with). Pending
/// sockets get at most a sixteenth of the descriptors.
fn fitted(nofile: u64, max_conns: usize, max_pending: usize) -> Option<(usize, usize)> {
    let budget = usize::try_from(nofile.checked_sub(RESERVED)?).unwrap_or(usize::MAX);
    let pending_share = budget / 16;
    if pending_share == 0 {
        return None;
    }
    let pending = match max_pending {
        0 => pending_share,
        p => p.min(pending_share),
    };
    let conns = match max_conns {
        0 => budget - pending,
        c => c.min(budget - pending),
    };
    (conns != max_conns || pending != max_pending).then_some((conns, pending))
}

#[cfg(test)]
mod tests {
    use super::fitted;

    #[test]
    fn limits_fit_the_descriptors() {
        // The defaults fit 20 000 descriptors.
        assert_eq!(fitted(20_000, 10_000, 1024), None);
        // Unlimited connections: everything but the pending share and the reserve.
        assert_eq!(fitted(20_000, 0, 1024), Some((20_000 - 64 - 1024, 1024)));
        assert_eq!(fitted(20_000, 50_000, 1024), Some((18_912, 1024)));
        // Pending sockets at most a sixteenth.
        assert_eq!(fitted(1_088, 10_000, 1024), Some((1_024 - 64, 64)));
        assert_eq!(fitted(1_088, 0, 0), Some((960, 64)));
        // Too few descriptors to plan with: left alone.
        assert_eq!(fitted(64, 10, 10), None);
        assert_eq!(fitted(70, 10, 10), None);
    }
}
