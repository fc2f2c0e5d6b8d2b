"""Fixtures: a connection of every target (embedded:, local:, and a
``pushy serve`` daemon on 127.0.0.1 with a token), and the rule that no
test may make anything panic."""

from __future__ import annotations

import os
import pathlib
import subprocess
import threading
from typing import Iterator, List

import pytest

import pushy

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOKEN = "test-token-0123456789abcdef\n"


def pushy_binary() -> pathlib.Path:
    given = os.environ.get("PUSHY_BIN")
    binary = pathlib.Path(given) if given else ROOT / "target" / "release" / "pushy"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: cargo build --release (or set PUSHY_BIN)")
    return binary


DAEMONS: List["Daemon"] = []


class Daemon:
    """A ``pushy serve`` child; its stderr is kept (checked for panics
    after every test)."""

    def __init__(self, directory: pathlib.Path, *flags: str) -> None:
        DAEMONS.append(self)
        self.token_file = directory / "token"
        self.token_file.write_text(TOKEN)
        self.token_file.chmod(0o600)
        self.process = subprocess.Popen(
            [str(pushy_binary()), "serve", "--listen", "127.0.0.1:0",
             "--token-file", str(self.token_file), *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: List[str] = []
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if line.startswith("pushy: listening on "):
                self.address = line.split("listening on ", 1)[1].strip()
                break
        else:
            raise RuntimeError("pushy serve exited early: " + "".join(self.stderr))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    @property
    def url(self) -> str:
        return f"daemon:{self.address}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = Daemon(tmp_path_factory.mktemp("daemon"))
    yield running
    running.stop()
    panics = [line for line in running.stderr if "panicked at" in line]
    assert not panics, "the daemon panicked:\n" + "".join(running.stderr)


TARGETS = ["embedded:", "local:", "daemon"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    """A target URL; ``daemon`` is the session's daemon."""
    if request.param == "daemon":
        return request.getfixturevalue("daemon").url
    return request.param


@pytest.fixture
def connect(target: str, request: pytest.FixtureRequest):
    """``connect(**options)``: a connection to this test's target, closed
    after the test."""
    made: List[pushy.Connection] = []

    def make(**options: object) -> pushy.Connection:
        if target.startswith("daemon:"):
            options.setdefault("token_file", request.getfixturevalue("daemon").token_file)
        con = pushy.connect(target, **options)
        made.append(con)
        return con

    yield make
    for con in made:
        con.close()


@pytest.fixture
def con(connect) -> pushy.Connection:
    return connect()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test whose captured stderr (its own, a local: host's, a panic of
    the extension's threads) says 'panicked at' fails."""
    outcome = yield
    report = outcome.get_result()
    if "panicked at" in (report.capstderr or "") and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = "a panic was printed to stderr:\n" + report.capstderr


@pytest.fixture(autouse=True)
def _daemons_did_not_panic() -> Iterator[None]:
    yield
    for running in DAEMONS:
        panics = [line for line in running.stderr if "panicked at" in line]
        assert not panics, "a daemon panicked:\n" + "".join(running.stderr)
