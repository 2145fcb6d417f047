//! Process plumbing: the server under test as a child process (pinned with
//! `taskset`), its RSS and CPU time read from `/proc`, the load generator's
//! own pinning and file-descriptor limit.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub(crate) fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current
}

/// Number of CPUs this process may run on.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pin the calling thread (call it before any other thread exists) to `cpu`.
pub(crate) fn pin_self(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(std::io::Error::from)
}

/// Server CPU time (user + system, all threads, live and exited) in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)` field, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Some((utime + stime) as f64 / hz)
}

/// CPU seconds the whole machine spent busy (all cores: user, nice, system,
/// irq, softirq, steal), from `/proc/stat`.
pub(crate) fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// CPU samples of the server, this process and the machine at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    at: std::time::Instant,
    server: Option<f64>,
    own: f64,
    machine: f64,
}

/// CPU use between two [`CpuSample`]s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUse {
    pub(crate) wall: f64,
    /// Server CPU seconds (NaN when unreadable).
    pub(crate) server: f64,
    /// Load generator CPU seconds.
    pub(crate) own: f64,
    /// Busy CPU seconds of everything else on the machine.
    pub(crate) others: f64,
}

impl CpuSample {
    /// `server` sums the processes in `server_pids` (a cluster: nodes and Redis).
    pub(crate) fn take(server_pids: &[u32]) -> Self {
        CpuSample {
            at: std::time::Instant::now(),
            server: server_pids.iter().map(|&p| cpu_seconds(p)).sum(),
            own: self_cpu_seconds(),
            machine: machine_busy_seconds(),
        }
    }

    pub(crate) fn since(&self, earlier: &CpuSample) -> CpuUse {
        let server = match (earlier.server, self.server) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let own = self.own - earlier.own;
        let machine = self.machine - earlier.machine;
        CpuUse {
            wall: (self.at - earlier.at).as_secs_f64(),
            server,
            own,
            others: (machine - own - if server.is_nan() { 0.0 } else { server }).max(0.0),
        }
    }
}

/// This process's own CPU time in seconds.
pub(crate) fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Resident set size in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A server under test, running as a child process.
#[derive(Debug)]
pub(crate) struct ServerProc {
    child: Child,
    stop_timeout: Duration,
    pub(crate) pid: u32,
    pub(crate) url: String,
    stderr_tail: Arc<Mutex<Vec<String>>>,
}

impl ServerProc {
    /// Start `cmdline` (split on whitespace), optionally under
    /// `taskset -c CPU`, and wait until it prints `listening on ws://…`.
    pub(crate) fn spawn(
        cmdline: &str,
        pin_cpu: Option<usize>,
        stop_timeout: Duration,
    ) -> Result<Self, String> {
        let words: Vec<&str> = cmdline.split_whitespace().collect();
        let Some((prog, args)) = words.split_first() else {
            return Err("empty server command".into());
        };
        if prog.contains('/') && !Path::new(prog).exists() {
            return Err(format!("{prog} not found"));
        }
        let mut cmd = pinned(prog, pin_cpu);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {prog}: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        drain_stderr(stderr, Arc::clone(&stderr_tail));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            // Keep draining after the URL so the child never blocks on a full pipe.
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.to_string());
                    }
                }
                line.clear();
            }
        });
        let mut proc = ServerProc {
            child,
            stop_timeout,
            pid,
            url: String::new(),
            stderr_tail,
        };
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(url) => {
                proc.url = url;
                Ok(proc)
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                let status = proc.child.try_wait().ok().flatten();
                let tail = proc.stderr_tail();
                Err(format!(
                    "`{cmdline}` did not print `listening on ws://…` ({}){}",
                    status.map_or("still running".to_string(), |s| s.to_string()),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; stderr: {tail}")
                    }
                ))
            }
        }
    }

    /// Whether the child is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Last lines the child wrote on stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|v| v.join(" | "))
            .unwrap_or_default()
    }
}

impl Drop for ServerProc {
    /// SIGTERM, up to `stop_timeout` to exit (a profiler wrapped around the
    /// server then writes its data), then SIGKILL.
    fn drop(&mut self) {
        stop_child(
            &mut self.child,
            self.pid,
            rustix::process::Signal::TERM,
            self.stop_timeout,
        );
    }
}

/// Sends `sig`, gives the child up to `grace` to exit, then kills it.
fn stop_child(child: &mut Child, pid: u32, sig: rustix::process::Signal, grace: Duration) {
    if signal(pid, sig) {
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(pid: u32, sig: rustix::process::Signal) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

/// `perf record` attached to a process, stopped (SIGINT) on drop.
#[derive(Debug)]
pub(crate) struct PerfRecord {
    child: Child,
}

impl PerfRecord {
    /// Sample `pid` (all threads, call graphs, software cpu-clock event so it
    /// works in VMs without hardware counters) into `out`.
    pub(crate) fn start(pid: u32, out: &Path) -> Option<Self> {
        if let Some(dir) = out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let child = Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-F", "4999", "-g", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("   perf record: {e}"))
            .ok()?;
        Some(PerfRecord { child })
    }
}

impl Drop for PerfRecord {
    fn drop(&mut self) {
        let pid = self.child.id();
        stop_child(
            &mut self.child,
            pid,
            rustix::process::Signal::INT,
            Duration::from_secs(10),
        );
    }
}

fn drain_stderr(stderr: impl Read + Send + 'static, tail: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            if let Ok(mut t) = tail.lock() {
                if t.len() >= 5 {
                    t.remove(0);
                }
                t.push(line.trim_end().chars().take(300).collect());
            }
            line.clear();
        }
    });
}

/// A `redis-server` for cluster runs: no persistence, 127.0.0.1 on a free port.
#[derive(Debug)]
pub(crate) struct RedisProc {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) port: u16,
}

impl RedisProc {
    /// Starts `cmd` (split on whitespace) pinned like a server, and waits
    /// until it answers `PING`.
    pub(crate) fn spawn(cmd: &str, pin_cpu: Option<usize>) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let Some((prog, args)) = words.split_first() else {
            return Err("empty redis command".into());
        };
        let mut c = pinned(prog, pin_cpu);
        c.args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().map_err(|e| {
            format!("cannot start {prog}: {e} (Debian: apt-get install redis-server)")
        })?;
        let mut proc = RedisProc {
            pid: child.id(),
            child,
            port,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !http_like(port, b"PING\r\n", b"+PONG") {
            if std::time::Instant::now() >= deadline || !matches!(proc.child.try_wait(), Ok(None)) {
                return Err(format!("`{cmd}` did not answer PING on port {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proc)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` to 127.0.0.1:`port` and checks the answer starts with `expect`.
fn http_like(port: u16, request: &[u8], expect: &[u8]) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(request).is_ok()
        && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(expect))
}

/// Waits until the server at `ws://HOST:PORT/…` answers `/ready` with 200
/// (a cluster node: connected to Redis and in sync).
pub(crate) fn wait_ready(url: &str) -> Result<(), String> {
    let port: u16 = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|hp| hp.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !http_like(
        port,
        b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200",
    ) {
        if std::time::Instant::now() >= deadline {
            return Err(format!("{url} never became ready"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The servers of one run: one process, or two cluster nodes sharing a Redis.
#[derive(Debug)]
pub(crate) struct Servers {
    /// What was started (the relay's clients speak MessagePack to one kind).
    pub(crate) kind: crate::ServerKind,
    pub(crate) nodes: Vec<ServerProc>,
    pub(crate) redis: Option<RedisProc>,
}

impl Servers {
    /// Where the A side of each pair (and every other client) connects.
    pub(crate) fn url(&self) -> &str {
        &self.nodes[0].url
    }

    /// Where the B side of each pair connects (the second node of a cluster).
    pub(crate) fn url_b(&self) -> &str {
        &self.nodes[self.nodes.len() - 1].url
    }

    /// The first server process (RSS, perf).
    pub(crate) fn pid(&self) -> u32 {
        self.nodes[0].pid
    }

    /// Every process whose CPU counts as the server's.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut p: Vec<u32> = self.nodes.iter().map(|n| n.pid).collect();
        p.extend(self.redis.as_ref().map(|r| r.pid));
        p
    }

    pub(crate) fn alive(&mut self) -> bool {
        self.nodes.iter_mut().all(ServerProc::alive)
    }

    pub(crate) fn stderr_tail(&self) -> String {
        self.nodes
            .iter()
            .map(ServerProc::stderr_tail)
            .collect::<Vec<_>>()
            .join(" || ")
    }
}

/// `prog`, under `taskset -c CPU` when pinning is asked for and available.
fn pinned(prog: &str, pin_cpu: Option<usize>) -> Command {
    match pin_cpu {
        Some(cpu) if taskset_available() => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(prog);
            c
        }
        _ => Command::new(prog),
    }
}

fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
