//! A `pushy serve` process on 127.0.0.1, for tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Daemon {
    pub child: Child,
    pub address: String,
    pub token_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `pushy serve` with a fresh token and `extra` flags.
    pub fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "test-token-0123456789abcdef\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pushy serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines.next().expect("serve exited early").unwrap();
            if let Some(address) = line.strip_prefix("pushy: listening on ") {
                break address.trim().to_owned();
            }
        };
        // Keep draining stderr so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Daemon {
            child,
            address,
            token_file,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("daemon:{}", self.address)
    }

    pub fn config(&self) -> pushy::ConnectionConfig {
        let mut config = super::quiet_config();
        config.token_file = Some(self.token_file.clone());
        config
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
