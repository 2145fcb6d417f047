//! `switchboard-bench`: load benchmark for the Switchboard signaling server.
//!
//! Runs the server under test as a child process pinned to one core (so its
//! RSS and CPU time come from `/proc/PID`), drives it from this process
//! pinned to another core, and runs a reference relay (a default-configured
//! tokio-tungstenite server, built into this binary) — and, when the npm
//! `ws` package is installed, the classic Node `ws` relay — the same way in
//! the same run, so every figure comes with a ratio. See docs/BENCHMARKS.md.

mod bare;
mod client;
mod floor;
mod idle;
mod instructions;
mod limit;
mod reference;
mod relay_rooms;
mod report;
mod runs;
mod scenarios;
mod soak;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sys::{RedisProc, ServerProc, Servers};

const DEFAULT_SERVER_CMD: &str =
    "target/release/switchboard --listen 127.0.0.1:0 --rate-limit-rps 0 --max-conns-per-ip 0 --conn-rate-per-ip 0 --max-pending-per-ip 0 --max-conns 0";
const DEFAULT_NODE_CMD: &str = "node bench/node/ws-server.js";

#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// N pairs relaying ~350-byte candidates, closed loop: msgs/s, latency, CPU per message.
    Relay,
    /// N idle joined connections in rooms of two: server RSS per connection.
    Idle,
    /// M connections that connect and join: joins per second.
    Joins,
    /// relay (each --pairs × --window; default 50 pairs × windows 1 and 8, then
    /// 1 pair × window 1 for unloaded latency), idle and joins.
    All,
    /// Churn against the server under test (connect, join, relay, drop without
    /// close, resume, leave) while its RSS and open descriptors are sampled;
    /// fails on a lost message or descriptors that do not return.
    Soak {
        /// How long the churn lasts.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Pairs churning at once.
        #[arg(long = "soak-pairs", default_value_t = 100)]
        soak_pairs: usize,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10)]
        sample_secs: u64,
        /// Seconds to wait after the churn (the resume window must pass).
        #[arg(long, default_value_t = 30)]
        settle_secs: u64,
    },
    /// Instructions per relayed message under callgrind (valgrind): the relay
    /// load (--pairs, first --window) for two lengths of time, subtracted.
    /// Single-node servers only (switchboard, bare, reference).
    Instructions {
        /// The two run lengths, seconds (measured part; the warm-up is added).
        #[arg(long, value_delimiter = ',', default_value = "2,6")]
        lengths: Vec<f64>,
        /// Where callgrind writes its files.
        #[arg(long, default_value = "target/callgrind")]
        out_dir: PathBuf,
    },
    /// Every figure of the issue "At the floor" in one run: relay 50 × 4
    /// (switchboard, bare, reference, node), light load 1 × 1 (switchboard,
    /// bare), instructions per message (bare, switchboard), the cluster, idle
    /// and after-a-call memory (switchboard, bare), and the descriptor limit.
    Floor,
    /// At the descriptor limit: open more joined connections than the server's
    /// descriptors allow (the server under test gets `--max-conns 0`: as many
    /// as they allow), each pair that got in makes a call (--idle-sdp-bytes,
    /// default 4000); the rest must be refused with 503.
    Limit {
        /// Connections attempted.
        #[arg(long, default_value_t = 19_500)]
        limit_conns: usize,
    },
    /// Run the built-in bare relay (tuned tokio-tungstenite that only routes by `to`).
    BareServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Run the built-in reference relay (plain default tokio-tungstenite).
    ReferenceServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Set TCP_NODELAY on accepted sockets (not a default; for comparison only).
        #[arg(long)]
        nodelay: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// The server under test (--server-cmd).
    Switchboard,
    /// The built-in default-configured tokio-tungstenite relay.
    Reference,
    /// The built-in bare relay: tuned tokio-tungstenite, routes by `to` and does
    /// nothing else (no `from`, `seq`, replay, limits or metrics).
    Bare,
    /// The classic Node `ws` relay (bench/node/ws-server.js), if `ws` is installed.
    Node,
    /// The server under test with MessagePack clients (`webrtc-signaling.msgpack`:
    /// the server transcodes every frame). Relay only.
    SwitchboardMsgpack,
    /// Two nodes of the server under test (--server-cmd plus --redis-url) sharing a
    /// redis-server (--redis-cmd), all on the server core; relay pairs are split
    /// across them (A on one node, B on the other). Relay only.
    Cluster,
    /// Switchboard hosted by Node with an event listener (node/bench/server.js;
    /// needs the built package: cd node && npm install).
    NodeHost,
    /// Switchboard hosted by Python's asyncio with a handler (python/bench/server.py,
    /// run by --python).
    PythonHost,
    /// The pure-Python relay on `websockets` (python/bench/ws_relay.py, run by --python).
    PythonWebsockets,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            ServerKind::Switchboard => "switchboard",
            ServerKind::Reference => "reference",
            ServerKind::Bare => "bare",
            ServerKind::Node => "node-ws",
            ServerKind::SwitchboardMsgpack => "switchboard-msgpack",
            ServerKind::Cluster => "cluster-2-nodes",
            ServerKind::NodeHost => "node-host",
            ServerKind::PythonHost => "python-host",
            ServerKind::PythonWebsockets => "python-websockets",
        }
    }
}

#[derive(Debug, Args)]
struct Opts {
    /// Command line of the server under test (split on whitespace); it must
    /// print `listening on ws://HOST:PORT/PATH` on stdout once bound.
    #[arg(long, global = true, default_value = DEFAULT_SERVER_CMD)]
    server_cmd: String,
    /// Command line of the reference server [default: this binary's `reference-server`].
    #[arg(long, global = true)]
    reference_cmd: Option<String>,
    /// Command line of the Node `ws` reference.
    #[arg(long, global = true, default_value = DEFAULT_NODE_CMD)]
    node_cmd: String,
    /// The Python that runs `python-host` and `python-websockets` (with the
    /// `switchboard-signaling` wheel and `websockets` installed).
    #[arg(long, global = true, default_value = "target/py-venv/bin/python")]
    python: String,
    /// Command line of the Redis behind `cluster` runs (`--port` and friends are added).
    #[arg(long, global = true, default_value = "redis-server")]
    redis_cmd: String,
    /// Servers to run, in this order within each repeat.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "switchboard,reference,node"
    )]
    servers: Vec<ServerKind>,
    /// Runs per scenario and server; the report shows medians.
    #[arg(long, short = 'r', global = true, default_value_t = 3)]
    repeats: usize,
    /// Core for the server (via `taskset -c`).
    #[arg(long, global = true, default_value_t = 0)]
    server_cpu: usize,
    /// Core for this load generator.
    #[arg(long, global = true, default_value_t = 1)]
    client_cpu: usize,
    /// Do not pin anything.
    #[arg(long, global = true)]
    no_pin: bool,
    /// relay: number of client pairs (comma-separated list runs each) [default: 50].
    #[arg(long, global = true, value_delimiter = ',')]
    pairs: Option<Vec<usize>>,
    /// relay: messages in flight per direction (comma-separated list runs each).
    #[arg(long, global = true, value_delimiter = ',')]
    window: Option<Vec<usize>>,
    /// relay: measured seconds.
    #[arg(long, global = true, default_value_t = 5.0)]
    duration: f64,
    /// relay: unmeasured seconds before the measurement.
    #[arg(long, global = true, default_value_t = 1.0)]
    warmup: f64,
    /// relay: bytes per candidate frame as sent by the client.
    #[arg(long, global = true, default_value_t = 350)]
    frame_bytes: usize,
    /// relay: send a cumulative `ack` after this many sequenced frames (0: never).
    #[arg(long, global = true, default_value_t = 64)]
    ack_every: u64,
    /// idle: connections held.
    #[arg(long, global = true, default_value_t = 10_000)]
    idle_conns: usize,
    /// idle: before going quiet, each pair makes a call: an offer and an answer
    /// with an SDP of this many bytes, then 4 candidates each way (0: join
    /// only). `all` runs 0 and 4000.
    #[arg(long, global = true, value_delimiter = ',')]
    idle_sdp_bytes: Option<Vec<usize>>,
    /// idle (without or after a call): also with classic clients, which never
    /// acknowledge, measured this many seconds later (0: acking clients only). The
    /// default covers the replay age rule at the default heartbeat (twice
    /// interval + timeout, plus a tick).
    #[arg(long, global = true, default_value_t = 95)]
    classic_wait: u64,
    /// joins: connections that connect and join.
    #[arg(long, global = true, default_value_t = 5_000)]
    join_conns: usize,
    /// Record a `perf` profile of the server during each measured window
    /// into DIR/SERVER-SCENARIO-rN.data (those runs' figures include perf's overhead).
    #[arg(long, global = true, value_name = "DIR")]
    perf: Option<std::path::PathBuf>,
    /// A run during which other processes used more than this % of a core is
    /// repeated (up to twice), after waiting for the machine to go quiet.
    #[arg(long, global = true, default_value_t = 20.0)]
    max_noise: f64,
    /// Seconds the server gets to exit after SIGTERM before SIGKILL (raise it
    /// for a server under valgrind, which writes its output at exit).
    #[arg(long, global = true, default_value_t = 3.0)]
    stop_timeout: f64,
    /// Before each run, wait up to this many seconds for the rest of the
    /// machine to go quiet (under 15 % of one core busy for 1 s); 0: don't.
    #[arg(long, global = true, default_value_t = 60.0)]
    quiet_wait: f64,
    /// idle and joins: connects in progress at once.
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::BareServer { listen } = &cli.cmd {
        return match bare::run(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Cmd::ReferenceServer { listen, nodelay } = &cli.cmd {
        return match reference::run(listen, *nodelay) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("reference-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = cli.opts;
    let nofile = sys::raise_nofile();
    let pin = !opts.no_pin && sys::cpus() >= 2;
    if pin {
        if let Err(e) = sys::pin_self(opts.client_cpu) {
            eprintln!(
                "warning: cannot pin the load generator to core {}: {e}",
                opts.client_cpu
            );
        }
    } else if !opts.no_pin {
        eprintln!("warning: fewer than 2 cores; server and load generator share a core");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "switchboard-bench".into());
    let reference_cmd = opts
        .reference_cmd
        .clone()
        .unwrap_or_else(|| format!("{exe} reference-server --listen 127.0.0.1:0"));
    let mut bench = Bench {
        opts: &opts,
        rt,
        reference_cmd,
        exe,
        server_pin: pin.then_some(opts.server_cpu),
        servers: opts.servers.clone(),
        repeats: opts.repeats,
        unavailable: Vec::new(),
        failed: false,
    };
    eprintln!(
        "switchboard-bench: servers {:?}, {} repeats, server on core {}, load on core {}, RLIMIT_NOFILE {}",
        opts.servers.iter().map(|s| s.name()).collect::<Vec<_>>(),
        opts.repeats,
        if pin { opts.server_cpu.to_string() } else { "any".into() },
        if pin { opts.client_cpu.to_string() } else { "any".into() },
        nofile.map_or("?".into(), |n| n.to_string()),
    );
    let windows = opts.window.clone();
    let pairs = opts.pairs.clone();
    match cli.cmd {
        Cmd::Relay => {
            for &p in pairs.as_deref().unwrap_or(&[50]) {
                for &w in windows.as_deref().unwrap_or(&[1]) {
                    bench.relay(p, w);
                }
            }
        }
        Cmd::Idle => {
            for &sdp in opts.idle_sdp_bytes.as_deref().unwrap_or(&[0]) {
                bench.idle_all(sdp);
            }
        }
        Cmd::Joins => bench.joins(),
        Cmd::Limit { limit_conns } => bench.limit(limit_conns),
        Cmd::Floor => bench.floor(),
        Cmd::Instructions {
            ref lengths,
            ref out_dir,
        } => bench.instructions(lengths, out_dir),
        Cmd::All => {
            for &p in pairs.as_deref().unwrap_or(&[50]) {
                for &w in windows.as_deref().unwrap_or(&[1, 8]) {
                    bench.relay(p, w);
                }
            }
            if pairs.is_none() && windows.is_none() {
                bench.relay(1, 1);
            }
            for &sdp in opts.idle_sdp_bytes.as_deref().unwrap_or(&[0, 4000]) {
                bench.idle_all(sdp);
            }
            bench.joins();
        }
        Cmd::Soak {
            minutes,
            soak_pairs,
            sample_secs,
            settle_secs,
        } => {
            let ok = soak::run(
                &bench.rt,
                &opts.server_cmd,
                bench.server_pin,
                soak_pairs,
                minutes,
                Duration::from_secs(sample_secs),
                Duration::from_secs(settle_secs),
            );
            match ok {
                Ok(true) => {}
                Ok(false) => bench.failed = true,
                Err(e) => {
                    eprintln!("soak: {e}");
                    bench.failed = true;
                }
            }
        }
        Cmd::ReferenceServer { .. } | Cmd::BareServer { .. } => unreachable!("handled above"),
    }
    let missing_sut = bench.unavailable.contains(&ServerKind::Switchboard);
    if bench.failed || missing_sut {
        eprintln!("FAILED: lost/reordered/invalid messages, a failed run, or the server under test missing");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Wait (at most `max_secs`) until the machine is nearly idle, so that
/// other work (a build, a test run) does not skew a run.
fn wait_for_quiet(max_secs: f64) {
    if max_secs <= 0.0 {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(max_secs);
    let mut told = false;
    loop {
        let before = sys::machine_busy_seconds();
        std::thread::sleep(Duration::from_secs(1));
        let busy = sys::machine_busy_seconds() - before;
        if busy.is_nan() || busy < 0.15 {
            return;
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "   machine still busy ({:.0} % of a core); running anyway",
                busy * 100.0
            );
            return;
        }
        if !told {
            eprintln!(
                "   waiting for the machine to go quiet ({:.0} % of a core busy)",
                busy * 100.0
            );
            told = true;
        }
    }
}

struct Bench<'a> {
    opts: &'a Opts,
    rt: tokio::runtime::Runtime,
    reference_cmd: String,
    exe: String,
    server_pin: Option<usize>,
    /// The servers each scenario runs against (`--servers`; `floor` sets its own).
    servers: Vec<ServerKind>,
    /// Repeats of each scenario (`-r`; `floor` raises it for one step).
    repeats: usize,
    unavailable: Vec<ServerKind>,
    failed: bool,
}

impl Bench<'_> {
    fn cmdline(&self, kind: ServerKind) -> String {
        match kind {
            ServerKind::Switchboard | ServerKind::SwitchboardMsgpack | ServerKind::Cluster => {
                self.opts.server_cmd.clone()
            }
            ServerKind::Reference => self.reference_cmd.clone(),
            ServerKind::Bare => format!("{} bare-server --listen 127.0.0.1:0", self.exe),
            ServerKind::Node => self.opts.node_cmd.clone(),
            ServerKind::NodeHost => "node node/bench/server.js".into(),
            ServerKind::PythonHost => {
                format!(
                    "{} python/bench/server.py --listen 127.0.0.1:0",
                    self.opts.python
                )
            }
            ServerKind::PythonWebsockets => {
                format!(
                    "{} python/bench/ws_relay.py --listen 127.0.0.1:0",
                    self.opts.python
                )
            }
        }
    }

    /// Starts the servers of one run: one process, or (cluster) a Redis and two
    /// nodes of the server under test, ready.
    fn start(&self, kind: ServerKind) -> Result<Servers, String> {
        let stop = Duration::from_secs_f64(self.opts.stop_timeout);
        let cmd = self.cmdline(kind);
        if kind != ServerKind::Cluster {
            let node = ServerProc::spawn(&cmd, self.server_pin, stop)?;
            return Ok(Servers {
                kind,
                nodes: vec![node],
                redis: None,
            });
        }
        let redis = RedisProc::spawn(&self.opts.redis_cmd, self.server_pin)?;
        let cmd = format!("{cmd} --redis-url redis://127.0.0.1:{}", redis.port);
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let node = ServerProc::spawn(&cmd, self.server_pin, stop)?;
            sys::wait_ready(&node.url)?;
            nodes.push(node);
        }
        Ok(Servers {
            kind,
            nodes,
            redis: Some(redis),
        })
    }

    /// Run `scenario` R times against every available server, interleaved
    /// (sb, ref, node, sb, ref, node, ...), each run on a fresh server.
    fn each<T: scenarios::Noise>(
        &mut self,
        title: &str,
        slug: &str,
        with_cluster: bool,
        mut scenario: impl FnMut(
            &tokio::runtime::Runtime,
            &Servers,
            Option<PathBuf>,
        ) -> Result<T, String>,
    ) -> Vec<(ServerKind, Vec<T>)> {
        eprintln!("== {title}");
        let mut results: Vec<(ServerKind, Vec<T>)> = Vec::new();
        for rep in 0..self.repeats {
            for kind in self.servers.clone() {
                let relay_only =
                    matches!(kind, ServerKind::Cluster | ServerKind::SwitchboardMsgpack);
                if self.unavailable.contains(&kind) || (relay_only && !with_cluster) {
                    continue;
                }
                let mut attempt = 0;
                let (out, server) = loop {
                    attempt += 1;
                    wait_for_quiet(self.opts.quiet_wait);
                    let server = match self.start(kind) {
                        Ok(s) => s,
                        Err(e) => break (Err(e), None),
                    };
                    let perf = self
                        .opts
                        .perf
                        .as_ref()
                        .map(|d| d.join(format!("{}-{slug}-r{}.data", kind.name(), rep + 1)));
                    let out = scenario(&self.rt, &server, perf);
                    match &out {
                        // A run that lost or reordered anything always counts.
                        Ok(r)
                            if r.noise_pct() > self.opts.max_noise && r.clean() && attempt < 3 =>
                        {
                            eprintln!(
                                "   (other processes used {:.0} % of a core during that run: repeating it)",
                                r.noise_pct()
                            );
                            drop(server);
                            std::thread::sleep(Duration::from_millis(300));
                        }
                        _ => break (out, Some(server)),
                    }
                };
                let Some(mut server) = server else {
                    let e = out.err().unwrap_or_default();
                    eprintln!("   {}: unavailable, skipped: {e}", kind.name());
                    if kind == ServerKind::Switchboard {
                        eprintln!(
                            "   (build it: cargo build --release -p switchboard, or pass --server-cmd)"
                        );
                    }
                    self.unavailable.push(kind);
                    continue;
                };
                let alive = server.alive();
                match out {
                    Ok(r) => {
                        let slot = match results.iter().position(|(k, _)| *k == kind) {
                            Some(i) => i,
                            None => {
                                results.push((kind, Vec::new()));
                                results.len() - 1
                            }
                        };
                        results[slot].1.push(r);
                    }
                    Err(e) => {
                        self.failed = true;
                        eprintln!(
                            "   {} run {}: FAILED: {e}{}",
                            kind.name(),
                            rep + 1,
                            if alive {
                                String::new()
                            } else {
                                format!(" (server exited; stderr: {})", server.stderr_tail())
                            }
                        );
                    }
                }
                drop(server);
                // Let the kernel finish tearing down the closed sockets.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        results
    }
}
