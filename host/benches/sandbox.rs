//! Benchmarks of the embedded sandbox, each next to its reference in the
//! same run: a fresh session vs a `python3 -c pass` process, `pushy run`
//! vs `python3` on the same script, a handle method call vs a no-op call
//! into the component.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pushy::{Connection, ConnectionConfig, OutputMode, Sandbox, SandboxConfig};

/// The interpreters to compare with: the real binary behind `python3` on
/// PATH (not a pyenv shim script), and the system's `/usr/bin/python3` when
/// that is a different build.
fn pythons() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    if let Ok(out) = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if path.exists() {
            found.push(("python3 on PATH".to_owned(), path));
        }
    }
    let system = PathBuf::from("/usr/bin/python3");
    if system.exists() {
        let canonical = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if !found
            .iter()
            .any(|(_, p)| canonical(p) == canonical(&system))
        {
            found.push(("/usr/bin/python3".to_owned(), system));
        }
    }
    found
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn quiet() -> ConnectionConfig {
    let mut config = ConnectionConfig::default();
    config.output = OutputMode::Discard;
    config
}

fn sessions(c: &mut Criterion) {
    let rt = runtime();
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let session = sandbox.config().session.clone();
    let mut group = c.benchmark_group("fresh_session");
    group.sample_size(30);
    group.bench_function("pushy: new session to first result", |b| {
        b.iter(|| {
            rt.block_on(async {
                let con = Connection::embedded_with(&sandbox, session.clone(), quiet())
                    .await
                    .unwrap();
                assert_eq!(con.eval("1").await.unwrap().extract::<i64>().unwrap(), 1);
            })
        })
    });
    group.bench_function("pushy: new session + import json", |b| {
        b.iter(|| {
            rt.block_on(async {
                let con = Connection::embedded_with(&sandbox, session.clone(), quiet())
                    .await
                    .unwrap();
                con.execute("import json").await.unwrap();
            })
        })
    });
    group.bench_function(
        "pushy: new session + import pydoc (not pre-imported)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let con = Connection::embedded_with(&sandbox, session.clone(), quiet())
                        .await
                        .unwrap();
                    con.execute("import pydoc").await.unwrap();
                })
            })
        },
    );
    for (name, python) in pythons() {
        group.bench_function(format!("{name} -c pass (process)"), |b| {
            b.iter(|| {
                let status = Command::new(&python).args(["-c", "pass"]).status().unwrap();
                assert!(status.success());
            })
        });
    }
    group.finish();
}

fn calls(c: &mut Criterion) {
    let rt = runtime();
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let con = rt
        .block_on(Connection::embedded_with(
            &sandbox,
            sandbox.config().session.clone(),
            quiet(),
        ))
        .unwrap();
    let d = rt
        .block_on(con.eval("{'k': 1}"))
        .unwrap()
        .into_object()
        .unwrap();
    let mut group = c.benchmark_group("round_trip");
    group.bench_function("ping (no-op call into the component)", |b| {
        b.iter(|| rt.block_on(con.ping()).unwrap())
    });
    group.bench_function("eval(\"1\")", |b| {
        b.iter(|| rt.block_on(con.eval("1")).unwrap())
    });
    group.bench_function("method call on a handle: d.get('k')", |b| {
        b.iter(|| rt.block_on(d.call_method("get", &("k",))).unwrap())
    });
    group.finish();
}

fn processes(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let hello = root.join("examples/hello.py");
    let pushy = root.join("target/release/pushy");
    if !pushy.exists() {
        eprintln!("skipping process benchmarks: build target/release/pushy first");
        return;
    }
    // Warm the compiled-component cache once.
    let _ = Command::new(&pushy)
        .arg("run")
        .arg(&hello)
        .stdout(Stdio::null())
        .status();
    let mut group = c.benchmark_group("process");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("pushy run examples/hello.py", |b| {
        b.iter(|| {
            let status = Command::new(&pushy)
                .arg("run")
                .arg(&hello)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    for (name, python) in pythons() {
        group.bench_function(format!("{name} examples/hello.py"), |b| {
            b.iter(|| {
                let status = Command::new(&python)
                    .arg(&hello)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sessions, calls, processes);
criterion_main!(benches);
