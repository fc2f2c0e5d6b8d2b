"""``ssh:`` from Python, against a real OpenSSH server started on 127.0.0.1
(as the Rust suite's tests/ssh.rs does): the package pushes the ``pushy``
binary and uses the sandbox on the far side as it uses ``local:``."""

from __future__ import annotations

import getpass
import os
import pathlib
import socket
import subprocess
import time
from typing import Iterator

import pytest

import pushy

from conftest import pushy_binary

SSHD = pathlib.Path("/usr/sbin/sshd")


def _keygen(path: pathlib.Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not SSHD.exists():
        pytest.fail("/usr/sbin/sshd is missing: install openssh-server (scripts/test does)")
    directory = tmp_path_factory.mktemp("sshd")
    host_key, client_key = directory / "host_key", directory / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {directory}/sshd.pid\nAuthorizedKeysFile {directory}/authorized_keys\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "LogLevel ERROR\n")
    pathlib.Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                              stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.05)
    # The ssh the package runs (from PATH) with this server's key and no
    # known-hosts prompt, as a user's ~/.ssh/config would give it.
    wrappers = directory / "bin"
    wrappers.mkdir()
    ssh = wrappers / "ssh"
    ssh.write_text(
        "#!/bin/sh\nexec /usr/bin/ssh -i " + str(client_key)
        + " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        + ' "$@"\n')
    ssh.chmod(0o755)
    yield {"url": f"ssh:{getpass.getuser()}@127.0.0.1:{port}", "bin": wrappers}
    server.kill()
    server.wait()


@pytest.fixture
def ssh_url(sshd: dict, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PATH", f"{sshd['bin']}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PUSHY_HOST_PROGRAM", str(pushy_binary()))
    return sshd["url"]


def test_ssh_works_like_local(ssh_url: str):
    with pushy.connect(ssh_url) as con:
        assert con.eval("1 + 2") == 3
        assert isinstance(con.modules.os.getpid(), int)
        assert con.modules.os.path.join("a", "b") == "a/b"

        def local_twice(x):
            return 2 * x

        assert con.eval("lambda f: f(21)")(local_twice) == 42
        with pytest.raises(KeyError):
            con.eval("{}")["missing"]
        remote_list = con.eval("[3, 1, 2]")
        remote_list.sort()
        assert pushy.obtain(remote_list) == [1, 2, 3]


def test_ssh_limits_hold(ssh_url: str):
    with pushy.connect(ssh_url, timeout=1) as con:
        started = time.monotonic()
        with pytest.raises(pushy.TimeLimitExceeded):
            con.execute("import time\ntime.sleep(3600)")
        assert time.monotonic() - started < 10


def test_ssh_to_a_host_that_refuses_us_is_a_connect_error(sshd: dict, monkeypatch):
    monkeypatch.setenv("PUSHY_HOST_PROGRAM", str(pushy_binary()))
    # Without the wrapper, ssh has no key for this server.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(pushy.ConnectError):
        pushy.connect(sshd["url"], timeout=5)
