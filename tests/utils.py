"""Helpers for the tests: real nodes, in-process and as processes, and waiting with deadlines.

* `FedNode` is a federation of one node inside the test process: a real gRPC server on a
  loopback port with real mutual TLS and a real SQLite (or PostgreSQL) database.
* `NodeProcess` is a real `tongban serve` process with its own home; tests drive it with the
  real `tongban` command.
* `wait_until` / `eventually` poll a condition until a deadline, never sleeping a fixed time.

There are no fakes here: the only things standing in for the real world are the test's own
node IDs and names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from federation import Federation, FederationSettings, NodeIdentity, SenderSettings
from federation.clock import STOP_SECONDS, within
from federation.server import server_options
from federation.store import Database
from node.storage import open_database

ROOT = Path(__file__).resolve().parent.parent
TONGBAN = [sys.executable, "-m", "node"]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_range()
_handed_out: set[int] = set()
_handing = threading.Lock()  # `launch` inits nodes from several threads
_pick = random.SystemRandom()


def _port_range() -> tuple[int, int]:
    """This test process's share of the 12,000 ports below the OS's ephemeral range.

    `make test` runs the suite in several pytest-xdist workers at once; each takes ports from
    its own slice, so that a port one worker's stopped node will bind again (a restart, a
    kill -9 drill) is never handed to a node of another worker.
    """
    low, high = max(1024, _EPHEMERAL[0] - 12_000), _EPHEMERAL[0]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or workers <= 1:
        return low, high
    width = (high - low) // workers
    start = low + int(worker[2:]) * width
    return start, start + width


def free_port() -> int:
    """A port the OS says is free right now, for configurations that must survive restarts.

    A node binds it only when it starts, so the port must not be taken in between: it comes
    from below the OS's ephemeral range (outgoing connections, such as the CLI's calls, take
    their local ports from that range, and bind(0) would hand out one of those), from this
    worker's own slice of it (`_port_range`), is checked by binding it, and is never handed out
    twice by this process.
    """
    low, high = _port_range()
    with _handing:
        for _ in range(200):
            port = _pick.randrange(low, high)
            if port in _handed_out:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as error:  # the thing polled may not be up yet
            last_error = error
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what or predicate}; last error: {last_error}"
    )


async def eventually(
    predicate: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """The async twin of wait_until."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await predicate()
        except Exception as error:
            last_error = error
        else:
            if value:
                return value
        await asyncio.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what or predicate}; last error: {last_error}"
    )


# -- in-process federation nodes ---------------------------------------------------------------


@dataclass
class FedNode:
    """One node's federation in this process, on a real loopback port with real mutual TLS."""

    folder: Path
    node_id: str
    name: str = ""
    db_url: str = ""
    settings: FederationSettings = field(
        default_factory=lambda: FederationSettings(sender=SenderSettings(backoff_base=0.05, backoff_cap=0.5))
    )
    port: int = 0
    federation: Federation = field(init=False)
    db: Database = field(init=False)
    server: grpc.aio.Server = field(init=False)

    async def start(self) -> FedNode:
        keys = self.folder / "keys"
        name = self.name or f"测试节点 {self.node_id}"
        if keys.exists():
            identity = NodeIdentity.load(keys, self.node_id, name)
        else:
            identity = NodeIdentity.create(keys, self.node_id, name)
        url = self.db_url or f"sqlite:///{self.folder / 'tongban.db'}"
        self.db = await asyncio.to_thread(open_database, url)
        self.federation = Federation(identity, self.db, endpoint="", settings=self.settings)
        await self.federation.load()
        self.server = grpc.aio.server(options=server_options(self.settings.max_message_bytes))
        self.federation.add_to_server(self.server)
        self.port = self.server.add_secure_port(
            f"127.0.0.1:{self.port}", self.federation.server_credentials()
        )
        self.federation.endpoint = f"127.0.0.1:{self.port}"
        await self.server.start()
        await self.federation.start()
        return self

    async def stop(self) -> None:
        await within(STOP_SECONDS, self.server.stop(grace=None), f"stopping {self.node_id}'s server")
        await within(3 * STOP_SECONDS, self.federation.stop(), f"stopping {self.node_id}'s federation")
        await asyncio.to_thread(self.db.close)

    async def restart(self) -> FedNode:
        await self.stop()
        return await self.start()


async def peer(inviter: FedNode, joiner: FedNode) -> None:
    """Peer two in-process nodes through a real join token."""
    _, token = await inviter.federation.peering.invite(3600)
    await joiner.federation.peering.join(token)
    await eventually(
        lambda: _has_peer(inviter, joiner.node_id), what=f"{inviter.node_id} to know {joiner.node_id}"
    )


async def _has_peer(node: FedNode, peer_id: str) -> bool:
    return node.federation.peers.get(peer_id) is not None


# -- real node processes -----------------------------------------------------------------------


class CommandFailed(AssertionError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"tongban {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
        self.result = result


def tongban(
    *args: str,
    home: Path | None = None,
    check: bool = True,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `tongban` command (`env`: variables to set on top of this process's)."""
    argv = [*args]
    if home is not None:
        argv += ["--home", str(home)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("TONGBAN_HOME", None)
    result = subprocess.run(
        [*TONGBAN, *argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )
    if check and result.returncode != 0:
        raise CommandFailed(argv, result)
    return result


@dataclass
class NodeProcess:
    """A real `tongban serve` process with its own home folder, on ports fixed at init."""

    root: Path
    node_id: str
    name: str
    db: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    listen_port: int = 0
    api_port: int = 0

    @property
    def home(self) -> Path:
        return self.root / self.node_id

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.node_id}.log"

    def init(self) -> NodeProcess:
        self.listen_port, self.api_port = free_port(), free_port()
        args = [
            "init",
            "--node-id",
            self.node_id,
            "--name",
            self.name,
            "--listen",
            f"127.0.0.1:{self.listen_port}",
            "--api",
            f"127.0.0.1:{self.api_port}",
            "--metrics",
            f"127.0.0.1:{free_port()}",
        ]
        if self.db:
            args += ["--db", self.db]
        tongban(*args, home=self.home)
        if self.config:
            self._apply_config()
        return self

    def _apply_config(self) -> None:
        import tomllib

        import tomli_w

        path = self.home / "node.toml"
        data = tomllib.loads(path.read_text())
        for dotted, value in self.config.items():
            section, _, key = dotted.partition(".")
            data.setdefault(section, {})[key] = value
        path.write_text(tomli_w.dumps(data))

    def start(self, *, wait: bool = True) -> NodeProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process, closed below
        self.process = subprocess.Popen(
            [*TONGBAN, "serve", "--home", str(self.home), "--json"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        # The node writes its run file once both servers listen: poll that cheaply (a `tongban`
        # process per poll would compete with the starting node for the CPU), then ask the node.
        def written() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.node_id} exited with {self.process.returncode}:\n{self.log()}")
            info = self.run_info()
            return bool(info) and info.get("pid") == (self.process.pid if self.process else None)

        def ready() -> bool:
            return written() and self.cli("status").returncode == 0

        try:
            wait_until(written, timeout=timeout, interval=0.05, what=f"{self.node_id} to write its run file")
            wait_until(ready, timeout=timeout, interval=0.2, what=f"{self.node_id} to serve")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- log of {self.node_id} ---\n{self.log()}") from None

    def run_info(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.home / "run" / "node.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a clean shutdown."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cli(
        self, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return tongban(*args, home=self.home, check=False, timeout=timeout, env=env)

    def json(self, *args: str, timeout: float = 120.0) -> Any:
        """Run a command with --json and parse the one document it prints."""
        result = tongban(*args, "--json", home=self.home, timeout=timeout)
        return json.loads(result.stdout)

    def json_lines(self, *args: str, timeout: float = 120.0) -> list[Any]:
        """Run a list command with --json and parse its JSON lines."""
        result = tongban(*args, "--json", home=self.home, timeout=timeout)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")[-8000:]
        return ""

    def database(self) -> Path:
        return self.home / "tongban.db"


def launch(*nodes: NodeProcess) -> tuple[NodeProcess, ...]:
    """Init and start several nodes at once, so that their start-ups overlap; waits for all."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(lambda node: node.init(), [n for n in nodes if not n.home.exists()]))
    try:
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_ready()
    except BaseException:
        # The caller's fixture never got the nodes: stop them here, or they outlive the test.
        for node in nodes:
            if node.running:
                node.kill()
        raise
    return nodes


def peer_processes(inviter: NodeProcess, joiner: NodeProcess) -> dict[str, Any]:
    """Peer two running nodes with the real commands; returns what the joiner pinned."""
    invite = inviter.json("peer", "invite", "--ttl", "10m")
    pinned: dict[str, Any] = joiner.json("peer", "join", invite["token"])
    wait_until(
        lambda: any(p["node_id"] == joiner.node_id for p in inviter.json_lines("peer", "list")),
        what=f"{inviter.node_id} to list {joiner.node_id}",
    )
    return pinned
