//! The 16 MiB echo alone, for profiling and for comparing two builds side
//! by side (what BENCHMARKS.md's per-change figures for issue 4 came from).
//!
//!     bytes_echo [TARGET] [ROUNDS] [ascii|binary]
//!
//! TARGET defaults to `local:`; ROUNDS to 15; the payload is `b'x' * 16 MiB`
//! (what the peer benchmark sends) or every byte value in turn. The host
//! program is `$PUSHY_HOST_PROGRAM`, else the `pushy` built beside this
//! example, so two builds can be compared under the same client (see
//! `common::pushy_binary`). Prints one line per round
//! and the median of all rounds but the first (which faults its memory in).

mod common;

use std::time::Instant;

use anyhow::{Context, bail};

const MIB16: usize = 16 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "local:".into());
    let rounds: usize = match args.next() {
        Some(n) => n.parse().context("ROUNDS must be a number")?,
        None => 15,
    };
    let payload: Vec<u8> = match args.next().as_deref() {
        None | Some("ascii") => vec![b'x'; MIB16],
        Some("binary") => (0..MIB16).map(|i| i as u8).collect(),
        Some(other) => bail!("payload must be ascii or binary, not {other}"),
    };
    if rounds < 2 {
        bail!("ROUNDS must be at least 2");
    }
    let mut config = pushy::ConnectionConfig::default();
    config.output = pushy::OutputMode::Discard;
    config.host_program = Some(common::pushy_binary());
    let con = pushy::connect_with(&target, config).await?;
    let echo = con.eval("lambda b: bytes(b)").await?.into_object()?;
    let payload = pushy::Bytes::from(payload);
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let started = Instant::now();
        let arg = pushy::Value::Bytes(payload.clone());
        let back = echo.call(&(arg,)).await?.into_bytes()?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(back[..] == payload[..], "the echo came back changed");
        println!("{round} {took:.2} ms");
        samples.push(took);
    }
    let mut warm = samples[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    println!("median of rounds 1..: {:.2} ms", warm[warm.len() / 2]);
    con.close().await?;
    Ok(())
}
