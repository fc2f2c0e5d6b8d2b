//! `ssh:` against a real OpenSSH server started on 127.0.0.1 by the test:
//! zero-install push of this very binary, then every operation.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::quiet_config;

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (install openssh-client)");
    assert!(status.success());
}

fn start_sshd() -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "/usr/sbin/sshd missing: install openssh-server (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_key");
    let client_key = dir.path().join("client_key");
    keygen(&host_key);
    keygen(&client_key);
    std::fs::copy(
        client_key.with_extension("pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
             UsePAM no\nLogLevel ERROR\n",
            host = host_key.display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    // sshd wants its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()
        .expect("start sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd { child, port, dir }
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn pushed_copies(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_pushes_the_binary_once_and_then_works_like_local() -> anyhow::Result<()> {
    let sshd = start_sshd();
    let remote_dir = sshd.dir.path().join("remote-cache");
    let mut config = quiet_config();
    config.ssh_options = vec![
        "-i".into(),
        sshd.dir.path().join("client_key").display().to_string(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ];
    config.ssh_remote_dir = remote_dir.display().to_string();
    let url = format!("ssh:{}@127.0.0.1:{}", user(), sshd.port);

    let con = pushy::connect_with(&url, config.clone()).await?;
    let copies = pushed_copies(&remote_dir);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        copies[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pushy-")
    );
    let pushed_at = std::fs::metadata(&copies[0])?.modified()?;
    let path = con.modules().import("os.path").await?;
    let joined: String = path.call_method("join", &("a", "b")).await?.extract()?;
    assert_eq!(joined, "a/b");
    let add = con.define("def add(a, b):\n    return a + b").await?;
    assert_eq!(add.call(&(2, 3)).await?.extract::<i64>()?, 5);
    let cb = con.callback(|args: pushy::CallArgs| -> Result<usize, String> { Ok(args.args.len()) });
    let apply = con.define("def apply(f):\n    return f(1, 2, 3)").await?;
    assert_eq!(apply.call(&(&cb,)).await?.extract::<usize>()?, 3);
    // Blocking calls work over ssh: too, and end at the call's time limit.
    con.execute("import time\ntime.sleep(0.01)").await?;
    con.close().await?;

    // Second connection: the copy is there, nothing is pushed again.
    let again = pushy::connect_with(&url, config.clone()).await?;
    assert_eq!(again.eval("40 + 2").await?.extract::<i64>()?, 42);
    assert_eq!(pushed_copies(&remote_dir).len(), 1);
    assert_eq!(std::fs::metadata(&copies[0])?.modified()?, pushed_at);
    let mut limited = config.clone();
    limited.limits.time_limit_ms = Some(1000);
    let con = pushy::connect_with(&url, limited).await?;
    let started = Instant::now();
    let err = con
        .execute("import time\ntime.sleep(3600)")
        .await
        .unwrap_err();
    assert!(
        matches!(err, pushy::Error::TimeLimit { limit_ms: 1000 }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // --path over ssh: names the remote's files (here the same machine's);
    // one the remote does not have is refused there, never ignored.
    let project = tempfile::tempdir()?;
    std::fs::write(
        project.path().join("remote_mod.py"),
        "WHERE = 'remote path'\n",
    )?;
    let mut with_path = config.clone();
    with_path.host_args = vec![format!("--path={}", project.path().display())];
    let con = pushy::connect_with(&url, with_path.clone()).await?;
    let module = con.modules().import("remote_mod").await?;
    assert_eq!(
        module.getattr("WHERE").await?.extract::<String>()?,
        "remote path"
    );
    con.close().await?;
    with_path.host_args = vec![format!(
        "--path={}",
        project.path().join("missing").display()
    )];
    let err = pushy::connect_with(&url, with_path).await.unwrap_err();
    assert!(matches!(err, pushy::Error::Transport(_)), "{err:?}");

    // A host that refuses us gives a clear transport error.
    config.ssh_options[1] = sshd.dir.path().join("host_key").display().to_string();
    let err = pushy::connect_with(&url, config).await.unwrap_err();
    assert!(matches!(err, pushy::Error::Transport(_)), "{err:?}");
    Ok(())
}
