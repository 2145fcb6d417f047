//! The relay, idle and joins runs: each scenario against every server of the
//! run, repeated, and its table.

use std::time::Duration;

use crate::client::Wire;
use crate::report::{self, Report, Row};
use crate::scenarios::{self, RelayParams};
use crate::{Bench, ServerKind};

impl Bench<'_> {
    pub(crate) fn relay(&mut self, pairs: usize, window: usize) {
        let p = RelayParams {
            pairs,
            window,
            warmup: Duration::from_secs_f64(self.opts.warmup),
            duration: Duration::from_secs_f64(self.opts.duration),
            frame_bytes: self.opts.frame_bytes,
            ack_every: self.opts.ack_every,
            wire: Wire::Json,
            stamps_from: true,
        };
        let title = format!(
            "relay: {} pairs, window {window}, {}-byte candidates, {} s measured after {} s warm-up, ack every {}",
            p.pairs, p.frame_bytes, self.opts.duration, self.opts.warmup, p.ack_every
        );
        let slug = format!("relay-p{pairs}-w{window}");
        let results = self.each(&title, &slug, true, |rt, s, perf| {
            let wire = match s.kind {
                ServerKind::SwitchboardMsgpack => Wire::MsgPack,
                _ => Wire::Json,
            };
            let r = rt.block_on(scenarios::relay(
                s.url(),
                s.url_b(),
                &s.pids(),
                &RelayParams {
                    wire,
                    stamps_from: s.kind != ServerKind::Bare,
                    ..p.clone()
                },
                perf.as_deref(),
            ))?;
            eprintln!(
                "   {:>8.0} msg/s  p50 {:>6.1} µs  p99 {:>7.1} µs  server {:>5.2} µs/msg ({:.0} % CPU)  load {:.0} % CPU  others {:.0} % CPU  lost {} reordered {} invalid {}",
                r.msgs_per_s, r.p50_us, r.p99_us, r.server_cpu_us_per_msg, r.server_cpu_pct,
                r.loadgen_cpu_pct, r.others_cpu_pct, r.lost, r.reordered, r.bad
            );
            Ok(r)
        });
        if results
            .iter()
            .flat_map(|(_, v)| v)
            .any(|r| r.lost + r.reordered + r.bad > 0)
        {
            self.failed = true;
        }
        let mut rep = Report::new(
            &title,
            &results.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
        );
        rep.row(Row::median(
            "messages/s (higher is better)",
            &results,
            |r| r.msgs_per_s,
            0,
        ));
        rep.row(Row::median("p50 latency µs", &results, |r| r.p50_us, 1));
        rep.row(Row::median("p99 latency µs", &results, |r| r.p99_us, 1));
        rep.row(Row::median(
            "server CPU µs / relayed message",
            &results,
            |r| r.server_cpu_us_per_msg,
            2,
        ));
        rep.row(Row::median(
            "server CPU %",
            &results,
            |r| r.server_cpu_pct,
            0,
        ));
        rep.row(Row::median(
            "load generator CPU %",
            &results,
            |r| r.loadgen_cpu_pct,
            0,
        ));
        rep.row(
            Row::median(
                "other processes CPU % (noise)",
                &results,
                |r| r.others_cpu_pct,
                0,
            )
            .no_ratio(),
        );
        rep.row(Row::sum("lost (all runs)", &results, |r| r.lost));
        rep.row(Row::sum("reordered (all runs)", &results, |r| r.reordered));
        rep.row(Row::sum(
            "invalid: wrong from / seq gap / error (all runs)",
            &results,
            |r| r.bad,
        ));
        rep.print();
        if let (Some(p), [(first, _), (second, _), ..]) =
            (report::paired(&results, |r| r.p50_us), &results[..])
        {
            println!(
                "p50 latency, {} / {} repeat by repeat: median ratio {:.3}×; {} lower in {}, higher in {} of {} repeats\n",
                first.name(),
                second.name(),
                p.median_ratio,
                first.name(),
                p.lower,
                p.higher,
                p.n
            );
        }
    }

    /// Idle joined connections, without or after a call, with acking and
    /// classic clients.
    pub(crate) fn idle_all(&mut self, sdp_bytes: usize) {
        self.idle(sdp_bytes, None);
        if self.opts.classic_wait > 0 {
            self.idle(sdp_bytes, Some(Duration::from_secs(self.opts.classic_wait)));
        }
    }

    fn idle(&mut self, sdp_bytes: usize, classic_wait: Option<Duration>) {
        let (n, c) = (self.opts.idle_conns, self.opts.concurrency);
        let title = match (sdp_bytes, classic_wait) {
            (0, None) => format!(
                "idle: {n} joined connections in rooms of 2 (acked what the join brought), RSS once settled"
            ),
            (0, Some(wait)) => format!(
                "idle, classic clients: {n} joined connections in rooms of 2, never acked; RSS {} s later",
                wait.as_secs()
            ),
            (_, None) => format!(
                "idle after a call: {n} joined connections in rooms of 2, each pair exchanged {sdp_bytes}-byte SDPs and 4 candidates each way (and acked), RSS once settled"
            ),
            (_, Some(wait)) => format!(
                "idle after a call, classic clients: {n} joined connections in rooms of 2, each pair exchanged {sdp_bytes}-byte SDPs and 4 candidates each way, never acked; RSS {} s later",
                wait.as_secs()
            ),
        };
        let results = self.each(&title, "idle", false, |rt, s, _perf| {
            let r = rt.block_on(crate::idle::idle(
                s.url(),
                s.pid(),
                n,
                c,
                sdp_bytes,
                classic_wait,
            ))?;
            eprintln!(
                "   RSS {:.1} → {:.1} MiB: {:.2} KiB per connection (setup {:.0} joins/s)",
                r.rss_before_mib, r.rss_after_mib, r.kib_per_conn, r.setup_joins_per_s
            );
            Ok(r)
        });
        let mut rep = Report::new(
            &title,
            &results.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
        );
        rep.row(Row::median(
            "RSS KiB per idle joined connection",
            &results,
            |r| r.kib_per_conn,
            2,
        ));
        rep.row(Row::median(
            "server RSS before, MiB",
            &results,
            |r| r.rss_before_mib,
            1,
        ));
        rep.row(Row::median(
            "server RSS with all connections, MiB",
            &results,
            |r| r.rss_after_mib,
            1,
        ));
        rep.print();
    }

    pub(crate) fn joins(&mut self) {
        let (n, c) = (self.opts.join_conns, self.opts.concurrency);
        let title = format!("joins: {n} connections connect + join (rooms of 2), {c} at a time");
        let results = self.each(&title, "joins", false, |rt, s, perf| {
            let r = rt.block_on(scenarios::joins(s.url(), s.pid(), n, c, perf.as_deref()))?;
            eprintln!(
                "   {:>6.0} joins/s  server {:.1} µs/join  load {:.0} % CPU  others {:.0} % CPU",
                r.joins_per_s, r.server_cpu_us_per_join, r.loadgen_cpu_pct, r.others_cpu_pct
            );
            Ok(r)
        });
        let mut rep = Report::new(
            &title,
            &results.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
        );
        rep.row(Row::median(
            "joins/s (higher is better)",
            &results,
            |r| r.joins_per_s,
            0,
        ));
        rep.row(Row::median(
            "server CPU µs / join",
            &results,
            |r| r.server_cpu_us_per_join,
            1,
        ));
        rep.row(Row::median(
            "load generator CPU %",
            &results,
            |r| r.loadgen_cpu_pct,
            0,
        ));
        rep.row(
            Row::median(
                "other processes CPU % (noise)",
                &results,
                |r| r.others_cpu_pct,
                0,
            )
            .no_ratio(),
        );
        rep.print();
    }
}
