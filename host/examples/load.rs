//! A bounded load test against `pushy serve` on 127.0.0.1: N concurrent
//! clients, each opening a session and making M calls; some misbehave
//! (garbage bytes, early disconnect, an endless loop). Prints throughput,
//! latency percentiles, errors and the daemon's memory.
//!
//! `cargo run --release --example load -- [CLIENTS] [CALLS]` (default 200 × 1000)

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use pushy::{ConnectionConfig, OutputMode};
use tokio::io::AsyncWriteExt;

#[derive(Clone, Copy, Debug)]
enum Role {
    Good,
    Garbage,
    EarlyDisconnect,
    EndlessLoop,
}

fn role(index: usize) -> Role {
    match index % 20 {
        5 => Role::Garbage,
        10 => Role::EarlyDisconnect,
        15 => Role::EndlessLoop,
        _ => Role::Good,
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let calls: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let binary = common::pushy_binary();
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("token");
    std::fs::write(&token, "load-test-token-0123456789")?;
    let mut daemon = Command::new(&binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--timeout",
            "2",
            "--max-sessions",
        ])
        .arg((clients + 16).to_string())
        .arg("--token-file")
        .arg(&token)
        .stderr(Stdio::piped())
        .spawn()
        .context("start pushy serve (build it first: cargo build --release)")?;
    let mut lines = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().context("serve exited")??;
        if let Some(a) = line.strip_prefix("pushy: listening on ") {
            break a.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let pid = daemon.id();
    // One session first, so the baseline includes the mapped compiled code.
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Discard;
    config.token_file = Some(token.clone());
    let url = format!("daemon:{address}");
    pushy::connect_with(&url, config.clone())
        .await?
        .ping()
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid, "VmRSS:");

    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..clients {
        let (url, config, address) = (url.clone(), config.clone(), address.clone());
        tasks.push(tokio::spawn(async move {
            let role = role(index);
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            match role {
                Role::Garbage => {
                    if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
                        let _ = stream.write_all(&[0xff; 64]).await;
                    }
                }
                Role::Good | Role::EarlyDisconnect | Role::EndlessLoop => {
                    let con = match pushy::connect_with(&url, config).await {
                        Ok(con) => con,
                        Err(_) => return (role, latencies, 1),
                    };
                    let d = match con.eval("{'k': 1}").await.and_then(|v| v.into_object()) {
                        Ok(d) => d,
                        Err(_) => return (role, latencies, 1),
                    };
                    let limit = if matches!(role, Role::EarlyDisconnect) {
                        10
                    } else {
                        calls
                    };
                    for _ in 0..limit {
                        let t = Instant::now();
                        match d.call_method("get", &("k",)).await {
                            Ok(_) => latencies.push(t.elapsed()),
                            Err(_) => errors += 1,
                        }
                    }
                    if matches!(role, Role::EndlessLoop) {
                        // Expected to end in a time-limit error, not counted.
                        let _ = con.execute("while True: pass").await;
                    }
                }
            }
            (role, latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let (mut good_errors, mut good_clients) = (0, 0);
    let mut peak_rss_sample = 0;
    for task in tasks {
        let (role, mut lat, errors) = task.await?;
        if matches!(role, Role::Good) {
            good_clients += 1;
            good_errors += errors;
        }
        latencies.append(&mut lat);
        peak_rss_sample = peak_rss_sample.max(rss_kib(pid, "VmRSS:"));
    }
    let wall = started.elapsed();
    let peak = rss_kib(pid, "VmHWM:");
    // Sessions end; their instances are unmapped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid, "VmRSS:");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("clients: {clients} ({good_clients} well-behaved), calls per client: {calls}");
    println!(
        "calls completed: {} in {:.2} s = {:.0} calls/s",
        latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64()
    );
    println!("latency p50 {:?}, p99 {:?}", pct(0.50), pct(0.99));
    println!("errors of well-behaved clients: {good_errors}");
    println!(
        "daemon RSS: baseline {} MiB, peak {} MiB, after the clients left {} MiB",
        baseline / 1024,
        peak / 1024,
        after / 1024
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = daemon.wait();
    anyhow::ensure!(good_errors == 0, "well-behaved clients saw errors");
    anyhow::ensure!(
        after <= baseline + 64 * 1024,
        "daemon memory did not return to its baseline"
    );
    Ok(())
}
