//! Preloaded snapshots (`--preload`), side by side with plain sessions in
//! one run: a fresh session to its first result with and without modules
//! preloaded, and `import pytest` from source against preloaded.
//!
//! The pytest cases need a virtualenv with pytest: `PUSHY_BENCH_VENV`
//! (`scripts/bench preload` makes one); without it only the stdlib cases
//! run. Snapshots are cached in `target/bench-cache` (built on first use,
//! outside the measurement: `scripts/bench_preload.py` times that build).

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use pushy::sandbox::PythonPath;
use pushy::{Connection, ConnectionConfig, OutputMode, Sandbox, SandboxConfig};

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

fn sandbox(venv: Option<&PathBuf>, preload: &[&str]) -> Sandbox {
    let mut config = SandboxConfig::default();
    config.cache_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache"));
    if let Some(venv) = venv {
        config.session.python_path = PythonPath::resolve(&[], Some(venv)).expect("the venv");
    }
    config.preload = preload.iter().map(|m| m.to_string()).collect();
    Sandbox::new(config).expect("sandbox")
}

fn fresh(c: &mut Criterion) {
    let rt = runtime();
    let venv = std::env::var_os("PUSHY_BENCH_VENV").map(PathBuf::from);
    let mut cases: Vec<(&str, Sandbox)> = vec![
        ("plain", sandbox(None, &[])),
        (
            "json+re+decimal preloaded",
            sandbox(None, &["json", "re", "decimal"]),
        ),
    ];
    if let Some(venv) = &venv {
        cases.push(("plain, venv on sys.path", sandbox(Some(venv), &[])));
        cases.push(("pytest preloaded", sandbox(Some(venv), &["pytest"])));
    } else {
        eprintln!("PUSHY_BENCH_VENV not set: the pytest cases are skipped");
    }
    let mut group = c.benchmark_group("preload_fresh_session");
    group.sample_size(30);
    for (name, sandbox) in &cases {
        let session = sandbox.config().session.clone();
        group.bench_function(format!("{name}: new session to first result"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let con = Connection::embedded_with(sandbox, session.clone(), quiet())
                        .await
                        .unwrap();
                    assert_eq!(con.eval("1").await.unwrap().extract::<i64>().unwrap(), 1);
                })
            })
        });
    }
    group.finish();
    let Some(venv) = &venv else {
        return;
    };
    let mut group = c.benchmark_group("preload_import_pytest");
    group.sample_size(10);
    for (name, sandbox) in [
        ("from source", sandbox(Some(venv), &[])),
        ("preloaded", sandbox(Some(venv), &["pytest"])),
    ] {
        let session = sandbox.config().session.clone();
        group.bench_function(format!("{name}: new session + import pytest"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let con = Connection::embedded_with(&sandbox, session.clone(), quiet())
                        .await
                        .unwrap();
                    con.execute("import pytest").await.unwrap();
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fresh);
criterion_main!(benches);
