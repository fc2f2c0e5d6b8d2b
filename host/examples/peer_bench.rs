//! This project's side of the peer benchmarks (`scripts/bench`), and the raw
//! baselines: the operations `scripts/peers.py` runs on RPyC and execnet.
//!
//! `cargo run --release --example peer_bench -- SYSTEM OPERATION`
//! prints one JSON line, `{"system":…,"op":…,"samples":[µs…]}`.
//!
//! SYSTEM: `local`, `daemon` (a `pushy serve` on 127.0.0.1 started and
//! stopped here), `raw-pipe` (a `cat` process), `raw-tcp` (an echo process,
//! TCP_NODELAY), and `raw-pipe-poll` / `raw-tcp-poll`: the same ping-pongs
//! with both ends polling for up to 100 µs before they block, as this
//! project's two sides do (the floor for that design). OPERATION: setup, method, getpid, append10k, bytes16m,
//! create_drop10k, drop10k_held. A system without the operation prints no
//! samples. Every loop is bounded in count and in time (`BENCH_BUDGET_S`,
//! default 3 s); every process started here is stopped here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use anyhow::{Context, bail};
use common::pushy_binary;
use pushy::{Connection, ConnectionConfig, OutputMode};

const MIB16: usize = 16 << 20;

fn budget() -> Duration {
    let seconds = std::env::var("BENCH_BUDGET_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

/// Calls per run of the per-call operations (`method`, `getpid`, the raw
/// ping-pongs): `BENCH_CALLS`, else `default`. `scripts/bench` splits each
/// round into several shorter runs.
fn calls(default: usize) -> usize {
    std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Runs `once` up to `count` times or until the budget is spent; each run
/// returns the microseconds it measured.
async fn timed<F, Fut>(count: usize, mut once: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let deadline = Instant::now() + budget();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        samples.push(once().await?);
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(samples)
}

fn micros(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e6
}

/// A `pushy serve` on 127.0.0.1, killed on drop.
struct Daemon {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
    token: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> anyhow::Result<Daemon> {
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, "peer-bench-token-0123456789abcdef")?;
    let mut child = Command::new(pushy_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting pushy serve")?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let address = loop {
        match lines.next() {
            Some(line) => {
                if let Some(a) = line?.strip_prefix("pushy: listening on ") {
                    break a.trim().to_owned();
                }
            }
            None => bail!("pushy serve exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok(Daemon {
        child,
        address,
        _dir: dir,
        token,
    })
}

struct Pushy {
    target: String,
    config: ConnectionConfig,
    _daemon: Option<Daemon>,
}

impl Pushy {
    fn new(system: &str) -> anyhow::Result<Pushy> {
        let mut config = ConnectionConfig::default();
        config.output = OutputMode::Discard;
        config.host_program = Some(pushy_binary());
        match system {
            "local" => Ok(Pushy {
                target: "local:".into(),
                config,
                _daemon: None,
            }),
            "daemon" => {
                let daemon = start_daemon()?;
                config.token_file = Some(daemon.token.clone());
                Ok(Pushy {
                    target: format!("daemon:{}", daemon.address),
                    config,
                    _daemon: Some(daemon),
                })
            }
            other => bail!("unknown system {other}"),
        }
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        Ok(pushy::connect_with(&self.target, self.config.clone()).await?)
    }
}

/// Waits until the guest's table is back at `baseline` (releases are sent
/// with the table-size request that asks).
async fn until_baseline(con: &Connection, baseline: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        con.flush_releases();
        if con.table_size().await? <= baseline {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the remote table did not return to its baseline");
        }
        tokio::task::yield_now().await;
    }
}

/// `con.modules.os.getpid()`, Pushy's way.
async fn getpid(con: &Connection) -> anyhow::Result<i64> {
    let os = con.modules().import("os").await?;
    Ok(os.call_method("getpid", &()).await?.extract()?)
}

async fn pushy_op(system: &str, op: &str) -> anyhow::Result<Vec<f64>> {
    let pushy = Pushy::new(system)?;
    if op == "setup" {
        return timed(20, || async {
            let start = Instant::now();
            let con = pushy.connect().await?;
            let pid = getpid(&con).await?;
            let took = micros(start);
            anyhow::ensure!(pid > 0);
            con.close().await?;
            Ok(took)
        })
        .await;
    }
    let con = pushy.connect().await?;
    let samples = match op {
        "method" => {
            let d = con.eval("{'k': 1}").await?.into_object()?;
            timed(calls(5000), || async {
                let start = Instant::now();
                let v: i64 = d.call_method("get", &("k",)).await?.extract()?;
                let took = micros(start);
                anyhow::ensure!(v == 1);
                Ok(took)
            })
            .await?
        }
        "getpid" => {
            timed(calls(3000), || async {
                let start = Instant::now();
                let pid = getpid(&con).await?;
                let took = micros(start);
                anyhow::ensure!(pid > 0);
                Ok(took)
            })
            .await?
        }
        "append10k" => {
            timed(5, || async {
                let items = con.eval("[]").await?.into_object()?;
                let start = Instant::now();
                for i in 0..10_000 {
                    items.call_method("append", &(i,)).await?;
                }
                let took = micros(start);
                anyhow::ensure!(items.len().await? == 10_000);
                Ok(took)
            })
            .await?
        }
        "bytes16m" => {
            let echo = con.eval("lambda b: bytes(b)").await?.into_object()?;
            // A `Value::Bytes` argument is sent without a copy.
            let payload = pushy::Bytes::from(vec![b'x'; MIB16]);
            timed(5, || async {
                let start = Instant::now();
                let arg = pushy::Value::Bytes(payload.clone());
                let back = echo.call(&(arg,)).await?.into_bytes()?;
                let took = micros(start);
                anyhow::ensure!(back.len() == MIB16);
                Ok(took)
            })
            .await?
        }
        "create_drop10k" => {
            let make = con.import("builtins").await?.getattr("object").await?;
            let make = make.into_object()?;
            let baseline = con.table_size().await?;
            timed(3, || async {
                let start = Instant::now();
                for _ in 0..10_000 {
                    drop(make.call(&()).await?);
                }
                until_baseline(&con, baseline).await?;
                Ok(micros(start))
            })
            .await?
        }
        "drop10k_held" => {
            let make = con.import("builtins").await?.getattr("object").await?;
            let make = make.into_object()?;
            let baseline = con.table_size().await?;
            timed(3, || async {
                let mut held = Vec::with_capacity(10_000);
                for _ in 0..10_000 {
                    held.push(make.call(&()).await?);
                }
                anyhow::ensure!(con.table_size().await? >= baseline + 10_000);
                let start = Instant::now();
                drop(held);
                until_baseline(&con, baseline).await?;
                Ok(micros(start))
            })
            .await?
        }
        _ => Vec::new(),
    };
    con.close().await?;
    Ok(samples)
}

/// Kills and reaps a child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sync_timed(
    count: usize,
    mut once: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<f64>> {
    let deadline = Instant::now() + budget();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        samples.push(once()?);
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(samples)
}

/// How long the `-poll` baselines poll before blocking, and when they start
/// yielding the CPU between tries (this project's client defaults).
const POLL_BUDGET: Duration = Duration::from_micros(100);
const POLL_YIELD_AFTER: Duration = Duration::from_micros(20);

/// Waits until `fd` is readable, polling first when `polling`.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, polling: bool) -> anyhow::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    if polling {
        let started = Instant::now();
        while started.elapsed() < POLL_BUDGET {
            if poll(&mut fds, Some(&Timespec::default()))? > 0 {
                return Ok(());
            }
            if started.elapsed() >= POLL_YIELD_AFTER {
                std::thread::yield_now();
            }
        }
    }
    poll(&mut fds, None)?;
    Ok(())
}

/// Reads exactly `buf.len()` bytes, waiting (and polling) before each read.
fn read_polling(
    reader: &mut (impl Read + std::os::fd::AsFd),
    buf: &mut [u8],
    polling: bool,
) -> anyhow::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        wait_readable(reader.as_fd(), polling)?;
        let n = reader.read(&mut buf[got..])?;
        if n == 0 {
            return Ok(false);
        }
        got += n;
    }
    Ok(true)
}

fn raw_op(system: &str, op: &str) -> anyhow::Result<Vec<f64>> {
    match (system, op) {
        ("raw-pipe" | "raw-pipe-poll", "method") => {
            let polling = system.ends_with("-poll");
            let mut command = if polling {
                let mut echo = Command::new(std::env::current_exe()?);
                echo.args(["echo-pipe", "poll"]);
                echo
            } else {
                Command::new("cat")
            };
            let mut echo = Reaped(
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?,
            );
            let mut to = echo.0.stdin.take().context("stdin")?;
            let mut from = echo.0.stdout.take().context("stdout")?;
            let mut buf = [0u8; 8];
            sync_timed(calls(5000), || {
                let start = Instant::now();
                to.write_all(b"pingpong")?;
                anyhow::ensure!(read_polling(&mut from, &mut buf, polling)?, "echo ended");
                Ok(micros(start))
            })
        }
        ("raw-tcp-poll", "method") | ("raw-tcp", "method" | "bytes16m") => {
            let polling = system.ends_with("-poll");
            let size = if op == "method" { 8 } else { MIB16 };
            let exe = std::env::current_exe()?;
            let mut echo = Reaped(
                Command::new(exe)
                    .args([
                        "echo-server",
                        &size.to_string(),
                        if polling { "poll" } else { "block" },
                    ])
                    .stdout(Stdio::piped())
                    .spawn()?,
            );
            let mut line = String::new();
            BufReader::new(echo.0.stdout.take().context("stdout")?).read_line(&mut line)?;
            let mut stream = TcpStream::connect(line.trim())?;
            stream.set_nodelay(true)?;
            let payload = vec![b'x'; size];
            let mut back = vec![0u8; size];
            let samples = sync_timed(if size == 8 { calls(5000) } else { 10 }, || {
                let start = Instant::now();
                if size == 8 {
                    stream.write_all(&payload)?;
                    anyhow::ensure!(read_polling(&mut stream, &mut back, polling)?, "echo ended");
                } else {
                    // Both directions at once, as an echo of 16 MiB must.
                    let mut writer = stream.try_clone()?;
                    let payload = &payload;
                    std::thread::scope(|s| -> anyhow::Result<()> {
                        let sender = s.spawn(move || writer.write_all(payload));
                        stream.read_exact(&mut back)?;
                        sender.join().expect("sender")?;
                        Ok(())
                    })?;
                }
                Ok(micros(start))
            })?;
            drop(echo);
            Ok(samples)
        }
        _ => Ok(Vec::new()),
    }
}

/// The other end of `raw-pipe-poll`: echoes stdin to stdout, polling.
fn echo_pipe() -> anyhow::Result<()> {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut buf = [0u8; 8];
    while read_polling(&mut input, &mut buf, true)? {
        output.write_all(&buf)?;
        output.flush()?;
    }
    Ok(())
}

/// The other end of `raw-tcp`: echoes what arrives (frames of `size` bytes),
/// polling before each read when `polling`.
fn echo_server(size: usize, polling: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let (mut stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; size.min(1 << 20)];
    loop {
        wait_readable(std::os::fd::AsFd::as_fd(&stream), polling)?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode, size, rest @ ..] if mode == "echo-server" => {
            return echo_server(size.parse()?, rest.iter().any(|a| a == "poll"));
        }
        [mode, ..] if mode == "echo-pipe" => return echo_pipe(),
        _ => {}
    }
    let [system, op] = args.as_slice() else {
        bail!("usage: peer_bench SYSTEM OPERATION");
    };
    let samples = if system.starts_with("raw-") {
        raw_op(system, op)?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(pushy_op(system, op))?
    };
    let list: Vec<String> = samples.iter().map(|s| format!("{s:.3}")).collect();
    println!(
        "{{\"system\": \"{system}\", \"op\": \"{op}\", \"samples\": [{}]}}",
        list.join(", ")
    );
    Ok(())
}
