//! Times fresh sessions (a new session to its first result) and calls on a
//! live one, printing one JSON line per case in the shape of the eryx peer
//! benchmark (`../shared/eryx-bench.md`), so that `scripts/bench_fresh.py`
//! can run both alternately.
//!
//! ```text
//! fresh_sessions fresh N [--alloc pool|demand] [--preload M,...] [--venv DIR]
//! fresh_sessions live N [--alloc pool|demand]
//! fresh_sessions phases N [options of fresh]
//! ```
//!
//! The sandbox (and any preloaded snapshot) is made once, before timing,
//! as a server or test runner makes it once for all its sessions.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use pushy::sandbox::PythonPath;
use pushy::{Connection, ConnectionConfig, OutputMode, Sandbox, SandboxConfig};

struct Options {
    case: String,
    n: usize,
    pooled: bool,
    preload: Vec<String>,
    venv: Option<PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let case = args
        .next()
        .context("usage: fresh_sessions fresh|live N [options]")?;
    let n = args.next().context("N missing")?.parse().context("N")?;
    let mut options = Options {
        case,
        n,
        pooled: true,
        preload: Vec::new(),
        venv: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--alloc" => {
                options.pooled = match value.as_str() {
                    "pool" => true,
                    "demand" => false,
                    other => bail!("--alloc pool|demand, not {other}"),
                }
            }
            "--preload" => options.preload = value.split(',').map(str::to_owned).collect(),
            "--venv" => options.venv = Some(value.into()),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

fn report(case: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let p50 = samples[n / 2];
    let mean = samples.iter().sum::<f64>() / n as f64;
    let list: Vec<String> = samples.iter().map(|s| format!("{s:.4}")).collect();
    println!(
        "{{\"case\":\"{case}\",\"n\":{n},\"p50_ms\":{p50:.4},\"mean_ms\":{mean:.4},\"min_ms\":{:.4},\"samples_ms\":[{}]}}",
        samples[0],
        list.join(",")
    );
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut config = SandboxConfig::default();
    if !options.pooled {
        config.max_live_sessions = 0;
    }
    config.preload = options.preload.clone();
    config.session.python_path = PythonPath::resolve(&[], options.venv.as_deref())?;
    let sandbox = Sandbox::new(config)?;
    let session = sandbox.config().session.clone();
    let mut quiet = ConnectionConfig::default();
    quiet.output = OutputMode::Discard;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let fresh = || async {
            let con = Connection::embedded_with(&sandbox, session.clone(), quiet.clone()).await?;
            let one: i64 = con.eval("1").await?.extract()?;
            anyhow::ensure!(one == 1, "eval(\"1\") gave {one}");
            con.close().await?;
            anyhow::Ok(())
        };
        let mut samples = Vec::with_capacity(options.n);
        match options.case.as_str() {
            "fresh" => {
                fresh().await?;
                for _ in 0..options.n {
                    let started = Instant::now();
                    fresh().await?;
                    samples.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            "phases" => {
                // Where a fresh session's time goes: start, first call, close.
                fresh().await?;
                let mut phases = [const { Vec::new() }; 3];
                for _ in 0..options.n {
                    let started = Instant::now();
                    let con =
                        Connection::embedded_with(&sandbox, session.clone(), quiet.clone()).await?;
                    let connected = Instant::now();
                    con.eval("1").await?;
                    let called = Instant::now();
                    con.close().await?;
                    let closed = Instant::now();
                    for (phase, (from, to)) in phases.iter_mut().zip([
                        (started, connected),
                        (connected, called),
                        (called, closed),
                    ]) {
                        phase.push((to - from).as_secs_f64() * 1e3);
                    }
                }
                for (name, mut phase) in ["start", "first_call", "close"].into_iter().zip(phases) {
                    report(name, &mut phase);
                }
                return Ok(());
            }
            "live" => {
                let con =
                    Connection::embedded_with(&sandbox, session.clone(), quiet.clone()).await?;
                con.execute("x = 1").await?;
                for _ in 0..options.n {
                    let started = Instant::now();
                    con.execute("x = 1").await?;
                    samples.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            other => bail!("case fresh or live, not {other}"),
        }
        report(&options.case, &mut samples);
        Ok(())
    })
}
