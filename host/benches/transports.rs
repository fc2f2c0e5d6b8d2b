//! Round trips over `local:` and `daemon:` next to raw ping-pongs of the
//! same transports, in one run: an 8-byte pipe ping-pong with a `cat`
//! process, and a TCP_NODELAY ping-pong with an echo thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use pushy::{ConnectionConfig, OutputMode};

fn pushy_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pushy")
}

fn config() -> ConnectionConfig {
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Discard;
    config.host_program = Some(pushy_binary());
    config
}

struct Daemon(Child, String, tempfile::TempDir);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bench-token-0123456789abcdef").unwrap();
    let mut child = Command::new(pushy_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(a) = line.strip_prefix("pushy: listening on ") {
            break a.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Daemon(child, address, dir)
}

fn raw_baselines(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw");
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_cat = cat.stdin.take().unwrap();
    let mut from_cat = cat.stdout.take().unwrap();
    group.bench_function("pipe ping-pong (8 bytes, cat process)", |b| {
        let mut buf = [0u8; 8];
        b.iter(|| {
            to_cat.write_all(b"pingpong").unwrap();
            from_cat.read_exact(&mut buf).unwrap();
        })
    });
    drop(to_cat);
    let _ = cat.wait();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let mut buf = [0u8; 8];
        while stream.read_exact(&mut buf).is_ok() {
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    group.bench_function("TCP ping-pong (8 bytes, NODELAY, echo thread)", |b| {
        let mut buf = [0u8; 8];
        b.iter(|| {
            stream.write_all(b"pingpong").unwrap();
            stream.read_exact(&mut buf).unwrap();
        })
    });
    group.finish();
}

fn pushy_round_trips(c: &mut Criterion) {
    if !pushy_binary().exists() {
        eprintln!("skipping: build target/release/pushy first");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let daemon = start_daemon();
    let mut daemon_config = config();
    daemon_config.token_file = Some(daemon.2.path().join("token"));
    let targets = [
        ("embedded:".to_owned(), config()),
        ("local:".to_owned(), config()),
        (format!("daemon:{}", daemon.1), daemon_config),
    ];
    let mut group = c.benchmark_group("transport");
    for (target, config) in targets {
        let label = target.split(':').next().unwrap().to_owned();
        let con = rt.block_on(pushy::connect_with(&target, config)).unwrap();
        let d = rt
            .block_on(con.eval("{'k': 1}"))
            .unwrap()
            .into_object()
            .unwrap();
        group.bench_function(format!("{label}: ping"), |b| {
            b.iter(|| rt.block_on(con.ping()).unwrap())
        });
        group.bench_function(format!("{label}: method call on a handle"), |b| {
            b.iter(|| rt.block_on(d.call_method("get", &("k",))).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, raw_baselines, pushy_round_trips);
criterion_main!(benches);
