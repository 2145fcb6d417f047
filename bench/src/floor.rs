//! The runs of the issue "At the floor" (`floor`), and the two scenarios that
//! only it and their own commands use: instructions per message under
//! callgrind, and the descriptor limit.

use std::time::Duration;

use crate::client::Wire;
use crate::scenarios::RelayParams;
use crate::sys::ServerProc;
use crate::{instructions, limit, wait_for_quiet, Bench, ServerKind};

/// Repeats of the light-load run in `floor`, at least (about 7 s a run, two runs a repeat).
const LIGHT_LOAD_REPEATS: usize = 15;

impl Bench<'_> {
    /// Every figure of the issue, each against the servers it compares.
    pub(crate) fn floor(&mut self) {
        use ServerKind::{
            Bare, Cluster, Node, NodeHost, PythonHost, PythonWebsockets, Reference, Switchboard,
        };
        type Step<'s, 'b> = (&'s [ServerKind], fn(&mut Bench<'b>));
        let steps: [Step<'_, '_>; 9] = [
            (&[Switchboard, Bare, Reference, Node], |b| b.relay(50, 4)),
            // Latency at light load is within a percent of the bare relay's,
            // where three repeats can not tell: more of them, and paired.
            (&[Switchboard, Bare], |b| {
                let repeats = b.repeats;
                b.repeats = repeats.max(LIGHT_LOAD_REPEATS);
                b.relay(1, 1);
                b.repeats = repeats;
            }),
            (&[Bare, Switchboard], |b| {
                b.instructions(&[3.0, 5.0], std::path::Path::new("target/callgrind"))
            }),
            (&[Switchboard, Cluster], |b| b.relay(50, 4)),
            (&[Switchboard, Bare], |b| b.idle_all(0)),
            (&[Switchboard, Bare], |b| b.idle_all(4000)),
            (&[Switchboard], |b| b.limit(19_500)),
            // The hosts against their language's usual server (skipped, and
            // said so, where the package or the venv is not built).
            (&[NodeHost, Node], |b| b.relay(50, 1)),
            (&[PythonHost, PythonWebsockets], |b| {
                for window in [1, 4, 8] {
                    b.relay(50, window);
                }
            }),
        ];
        for (servers, step) in steps {
            self.servers = servers.to_vec();
            step(self);
        }
    }

    pub(crate) fn limit(&mut self, n: usize) {
        let sdp = self
            .opts
            .idle_sdp_bytes
            .as_ref()
            .and_then(|v| v.first().copied())
            .unwrap_or(4000);
        let mut cmd = self.opts.server_cmd.clone();
        if !cmd.contains("--max-conns ") {
            cmd.push_str(" --max-conns 0");
        }
        let stop = Duration::from_secs_f64(self.opts.stop_timeout);
        let title = format!(
            "at the descriptor limit: {n} connections attempted, pairs that got in make a call ({sdp}-byte SDPs, 4 candidates each way, acked)"
        );
        eprintln!("== {title}");
        wait_for_quiet(self.opts.quiet_wait);
        let result = ServerProc::spawn(&cmd, self.server_pin, stop).and_then(|server| {
            self.rt.block_on(limit::at_limit(
                &server.url,
                server.pid,
                n,
                self.opts.concurrency,
                sdp,
            ))
        });
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("   failed: {e}");
                self.failed = true;
                return;
            }
        };
        if let Some(f) = &r.first_failure {
            eprintln!("   first failure: {f}");
        }
        println!("\n### {title}\n");
        println!("| metric | value |\n|---|---:|");
        println!("| connections attempted | {} |", r.attempted);
        println!("| connections joined | {} |", r.joined);
        println!("| refused with 503 | {} |", r.refused);
        println!("| other failures (must be 0) | {} |", r.failed);
        println!(
            "| refusals counted (`reason=\"capacity\"`) | {} |",
            r.refused_metric.map_or("?".into(), |v| v.to_string())
        );
        println!(
            "| joins/s, lowest block of 2000 | {:.0} |",
            r.joins_per_s_min
        );
        println!("| joins/s, median block | {:.0} |", r.joins_per_s_median);
        println!(
            "| server RSS before / after, MiB | {:.1} / {:.1} |",
            r.rss_before_mib, r.rss_after_mib
        );
        println!(
            "| RSS KiB per joined connection (after its call) | {:.2} |",
            r.kib_per_conn
        );
        println!(
            "| pairs relaying after the refusals (of 10) | {} |",
            r.served_after
        );
        self.failed |= r.failed > 0 || r.served_after < 10.min(r.joined / 2);
    }

    pub(crate) fn instructions(&mut self, lengths: &[f64], dir: &std::path::Path) {
        let [short, long] = lengths[..] else {
            eprintln!("--lengths takes two values");
            self.failed = true;
            return;
        };
        let servers: Vec<(ServerKind, String)> = self
            .servers
            .iter()
            .filter(|k| {
                matches!(
                    k,
                    ServerKind::Switchboard | ServerKind::Bare | ServerKind::Reference
                )
            })
            .map(|&k| (k, self.cmdline(k)))
            .collect();
        let pairs = self.opts.pairs.as_ref().and_then(|p| p.first().copied());
        let window = self.opts.window.as_ref().and_then(|w| w.first().copied());
        let params = RelayParams {
            pairs: pairs.unwrap_or(50),
            window: window.unwrap_or(4),
            warmup: Duration::from_secs_f64(self.opts.warmup),
            duration: Duration::ZERO,
            frame_bytes: self.opts.frame_bytes,
            ack_every: self.opts.ack_every,
            wire: Wire::Json,
            stamps_from: true,
        };
        let title = format!(
            "instructions per relayed message (callgrind, {} pairs, window {}, runs of {short} s and {long} s subtracted)",
            params.pairs, params.window
        );
        eprintln!("== {title}");
        let counts = match instructions::count(
            &self.rt,
            &servers,
            self.server_pin,
            &params,
            (short, long),
            dir,
        ) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("   failed: {e}");
                self.failed = true;
                return;
            }
        };
        println!("\n### {title}\n");
        println!("| server | instructions / message | ratio to the first | messages (short, long run) | lost | reordered | invalid |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let first = counts.first().map_or(1.0, |c| c.per_msg);
        for c in &counts {
            println!(
                "| {} | {:.0} | {:.2}× | {}, {} | {} | {} | {} |",
                c.kind.name(),
                c.per_msg,
                c.per_msg / first,
                c.msgs.0,
                c.msgs.1,
                c.lost,
                c.reordered,
                c.bad
            );
            self.failed |= c.lost + c.reordered + c.bad > 0;
        }
    }
}
