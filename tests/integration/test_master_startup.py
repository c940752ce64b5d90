"""The real `agentflow-master` program starting, and failing to: every failure to
start is one line naming what failed and a non-zero exit at once (no traceback, no
half-started process keeping a port); --http-port follows --port + 1; an --insecure
master on a non-loopback address says so at every start."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.common.processes import free_ports
from agentflow.master.config import MasterConfig
from agentflow.master.server import Master
from agentflow.master.startup import StartupError

MASTER = [sys.executable, "-m", "agentflow.master.main"]
ENV = dict(os.environ, AGENTFLOW_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
PLAIN = "agentflow-master: error: "


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a master expected to fail; a hang fails the test (run kills it)."""
    return subprocess.run(
        [*MASTER, *args], capture_output=True, text=True, timeout=timeout, check=False, env=ENV
    )


def one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The plain error line, checked: exit 1, no traceback, and stderr is exactly one
    `master.failed` log line and one plain line, which names every needle."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    plain = [line for line in lines if line.startswith(PLAIN)]
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(plain) == 1 and len(lines) == 2, result.stderr
    assert [e["event"] for e in logged] == ["master.failed"], result.stderr
    for needle in needles:
        assert needle in plain[0], plain[0]
        assert needle in f"{logged[0]['what']}: {logged[0]['error']}", logged[0]
    return plain[0]


def pair_ports(count: int) -> list[int]:
    """`count` ports p, each with p + 1 free as well (p's default HTTP port)."""
    found: list[int] = []
    while len(found) < count:
        (port,) = free_ports(1)
        if port < 65535 and port not in found and port - 1 not in found:
            with socket.socket() as probe:
                try:
                    probe.bind(("0.0.0.0", port + 1))
                except OSError:
                    continue
            found.append(port)
    return found


def listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


class Started:
    """A master running as our child; stderr to a file that tests read."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([*MASTER, *args], stdout=out, stderr=out, env=ENV)

    def events(self) -> list[dict[str, object]]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_event(self, event: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(e["event"] == event for e in self.events()) < count:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"no {event} in {self.log.read_text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        self.proc.terminate()  # our own child, by PID
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def started() -> Iterator[list[Started]]:
    masters: list[Started] = []
    yield masters
    for m in masters:
        if m.proc.poll() is None:
            m.stop()


def get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def wait_http(port: int, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(f"http://127.0.0.1:{port}/health")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_http_port_taken_is_one_line_and_frees_the_grpc_port(tmp_path: Path) -> None:
    grpc_port, http_port = free_ports(2)
    with listener(http_port):
        result = run("--port", str(grpc_port), "--http-port", str(http_port),
                     "--data-dir", str(tmp_path / "m"))  # fmt: skip
    one_line_failure(result, f"--http-port {http_port}", "Address already in use")
    with listener(grpc_port):  # released
        pass


async def test_http_bind_failure_stops_the_grpc_server_in_process(tmp_path: Path) -> None:
    grpc_port, http_port = free_ports(2)
    config = MasterConfig(node_id="m1", data_dir=tmp_path, port=grpc_port, http_port=http_port)
    with listener(http_port), pytest.raises(StartupError, match=f"--http-port {http_port}"):
        await Master(config).run()
    # Without SO_REUSEPORT: this bind fails while anything still holds the port.
    with listener(grpc_port):
        pass


def test_grpc_port_taken_is_one_line(tmp_path: Path) -> None:
    (port,) = pair_ports(1)
    with listener(port):
        result = run("--port", str(port), "--data-dir", str(tmp_path / "m"))
    one_line_failure(result, f"--port {port}", "Address already in use")


def test_grpc_port_of_a_running_master_is_refused(tmp_path: Path, started: list[Started]) -> None:
    # gRPC's default SO_REUSEPORT used to let a second master share the port.
    grpc_port, http_port, other = free_ports(3)
    first = Started(tmp_path / "a.log", "--node-id", "a", "--port", str(grpc_port),
                    "--http-port", str(http_port), "--data-dir", str(tmp_path / "a"))  # fmt: skip
    started.append(first)
    first.wait_event("master.listening")
    result = run("--node-id", "b", "--port", str(grpc_port), "--http-port", str(other),
                 "--data-dir", str(tmp_path / "b"))  # fmt: skip
    one_line_failure(result, f"--port {grpc_port}")


def test_data_dir_under_a_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    (port,) = pair_ports(1)
    result = run("--port", str(port), "--data-dir", str(blocker / "m1"))
    one_line_failure(result, f"--data-dir {blocker / 'm1'}", "Not a directory")


def test_data_dir_in_use_by_another_master_is_one_line(
    tmp_path: Path, started: list[Started]
) -> None:
    first_port, second_port = pair_ports(2)
    first = Started(tmp_path / "a.log", "--node-id", "a", "--port", str(first_port),
                    "--data-dir", str(tmp_path / "m"))  # fmt: skip
    started.append(first)
    first.wait_event("master.listening")
    result = run("--node-id", "a", "--port", str(second_port), "--data-dir", str(tmp_path / "m"))
    one_line_failure(result, f"--data-dir {tmp_path / 'm'}", f"pid {first.proc.pid}")


def test_garbage_raft_db_is_one_line_naming_the_file_and_the_recovery(tmp_path: Path) -> None:
    data = tmp_path / "m1"
    data.mkdir()
    (data / "raft.db").write_bytes(b"not a database, just garbage " * 200)
    (port,) = pair_ports(1)
    result = run("--port", str(port), "--data-dir", str(data))
    line = one_line_failure(result, str(data / "raft.db"))
    assert '"Recovering a master" in docs/operations.md' in line


def test_a_damaged_record_in_raft_db_is_one_line(tmp_path: Path, started: list[Started]) -> None:
    data = tmp_path / "m1"
    (port,) = pair_ports(1)
    first = Started(tmp_path / "m1.log", "--node-id", "m1", "--port", str(port),
                    "--data-dir", str(data))  # fmt: skip
    started.append(first)
    first.wait_event("master.listening")
    first.wait_event("raft.role")  # bootstrapped: entries are stored
    assert first.stop() == 0
    with sqlite3.connect(data / "raft.db") as db:
        db.execute("UPDATE entries SET crc = (crc | 1) - (crc & 1)")  # flip the low bit
    result = run("--node-id", "m1", "--port", str(port), "--data-dir", str(data))
    line = one_line_failure(result, "raft.db table entries", "CRC mismatch")
    assert '"Recovering a master" in docs/operations.md' in line
    with listener(port), listener(port + 1):  # nothing left listening
        pass


def test_two_masters_on_one_host_differ_by_port_alone(
    tmp_path: Path, started: list[Started]
) -> None:
    ports = pair_ports(2)
    for i, port in enumerate(ports):
        m = Started(tmp_path / f"m{i}.log", "--node-id", f"m{i}", "--port", str(port),
                    "--data-dir", str(tmp_path / f"m{i}"))  # fmt: skip
        started.append(m)
    for i, (m, port) in enumerate(zip(started, ports, strict=True)):
        m.wait_event("master.listening")
        assert wait_http(port + 1)["node_id"] == f"m{i}"
        listening = next(e for e in m.events() if e["event"] == "master.listening")
        assert listening["http"] == port + 1


def test_insecure_on_a_non_loopback_host_warns_at_every_start(tmp_path: Path) -> None:
    (port,) = pair_ports(1)
    args = ("--host", "0.0.0.0", "--insecure", "--port", str(port),
            "--data-dir", str(tmp_path / "m1"))  # fmt: skip
    for start in (1, 2):
        m = Started(tmp_path / "m1.log", *args)
        try:
            m.wait_event("master.listening", count=start)
            warnings = [e for e in m.events() if e["event"] == "master.insecure"]
            assert len(warnings) == start, m.log.read_text()
            assert warnings[-1]["level"] == "warning" and warnings[-1]["host"] == "0.0.0.0"
        finally:
            assert m.stop() == 0


def test_loopback_with_insecure_does_not_warn(tmp_path: Path, started: list[Started]) -> None:
    (port,) = pair_ports(1)
    m = Started(tmp_path / "m1.log", "--insecure", "--port", str(port),
                "--data-dir", str(tmp_path / "m1"))  # fmt: skip
    started.append(m)
    m.wait_event("raft.role")  # well after the warning would be
    assert not [e for e in m.events() if e["event"] == "master.insecure"]
