//! Instructions per relayed message under callgrind: a count that does not
//! drift with the machine's load or clock speed (this machine has no hardware
//! counters). Differential: each server runs the same relay load for two
//! lengths of time, and the difference in instructions over the difference in
//! messages cancels startup, joins and shutdown.

use std::path::Path;
use std::time::Duration;

use crate::scenarios::{self, RelayParams};
use crate::sys::ServerProc;
use crate::ServerKind;

/// One server's count.
#[derive(Debug, Clone)]
pub(crate) struct Count {
    pub(crate) kind: ServerKind,
    /// Instructions (callgrind `Ir`, user mode) per relayed message.
    pub(crate) per_msg: f64,
    /// Messages relayed in the short and the long run.
    pub(crate) msgs: (u64, u64),
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
    pub(crate) bad: u64,
}

/// Counts `servers` (kind and command line) under callgrind, the relay load of
/// `params` run for each of `lengths` seconds; callgrind's files go to `dir`.
pub(crate) fn count(
    rt: &tokio::runtime::Runtime,
    servers: &[(ServerKind, String)],
    pin: Option<usize>,
    params: &RelayParams,
    lengths: (f64, f64),
    dir: &Path,
) -> Result<Vec<Count>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut counts = Vec::new();
    for (kind, cmd) in servers {
        let mut points = Vec::new();
        let (mut lost, mut reordered, mut bad) = (0, 0, 0);
        for secs in [lengths.0, lengths.1] {
            let out = dir.join(format!("{}-{secs}s.callgrind", kind.name()));
            let _ = std::fs::remove_file(&out);
            let cmdline = format!(
                "valgrind --tool=callgrind --callgrind-out-file={} {cmd}",
                out.display()
            );
            // SIGTERM on drop; callgrind writes its totals as the server exits.
            let server = ServerProc::spawn(&cmdline, pin, Duration::from_secs(120))?;
            let run = RelayParams {
                duration: Duration::from_secs_f64(secs),
                stamps_from: *kind != ServerKind::Bare,
                ..params.clone()
            };
            let r = rt.block_on(scenarios::relay(
                &server.url,
                &server.url,
                &[server.pid],
                &run,
                None,
            ))?;
            drop(server);
            (lost, reordered, bad) = (lost + r.lost, reordered + r.reordered, bad + r.bad);
            let ir = total_instructions(&out)?;
            eprintln!(
                "   {} {secs} s: {} messages, {ir} instructions",
                kind.name(),
                r.received
            );
            points.push((ir, r.received));
        }
        let ((ir0, m0), (ir1, m1)) = (points[0], points[1]);
        if m1 <= m0 {
            return Err(format!(
                "{}: the longer run relayed no more messages ({m0} then {m1})",
                kind.name()
            ));
        }
        counts.push(Count {
            kind: *kind,
            per_msg: (ir1 as f64 - ir0 as f64) / (m1 - m0) as f64,
            msgs: (m0, m1),
            lost,
            reordered,
            bad,
        });
    }
    Ok(counts)
}

/// The `totals:` line of a callgrind output file (instructions executed).
fn total_instructions(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (is valgrind installed?)", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{}: no `totals:` line", path.display()))
}
