"""`make demo`: a small federation on loopback, narrated as its operators would see it.

Reads a demo file (config/demo.toml), creates a fresh home per node, starts the nodes as real
`tongban serve` processes, peers them by join token, and shows signed messages flowing, printing
each command as it runs it. The nodes are stopped at the end; their homes stay for exploring.

Domain stories (cases, certificates, calls) add themselves as further acts (see `ACTS`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.config import parse_address

ROOT = Path(__file__).resolve().parent.parent


class DemoError(Exception):
    pass


@dataclass
class DemoNode:
    node_id: str
    name: str
    listen: str
    api: str
    metrics: str
    home: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Demo:
    nodes: dict[str, DemoNode]
    peerings: list[dict[str, Any]]
    homes: Path
    verbose: bool = True
    transcript: list[str] = field(default_factory=list)

    # -- narration ----------------------------------------------------------------------------

    def act(self, title: str) -> None:
        self.say(f"\n━━ {title} " + "━" * max(0, 70 - len(title)))

    def say(self, text: str) -> None:
        self.transcript.append(text)
        if self.verbose:
            print(text, flush=True)

    def run(self, *args: str, node: str | None = None, show: bool = True) -> str:
        """Run a tongban command (as the operator of `node`), print it and what it printed."""
        argv = [*args]
        if node is not None:
            argv += ["--home", str(self.nodes[node].home)]
        shown = "tongban " + " ".join(shlex.quote(a) for a in argv)
        self.say(f"$ {shown}")
        done = subprocess.run(
            [sys.executable, "-m", "node", *argv], capture_output=True, text=True, cwd=ROOT, check=False
        )
        if done.returncode != 0:
            raise DemoError(f"`{shown}` failed: {done.stderr.strip()}")
        if show and done.stdout.strip():
            self.say(done.stdout.rstrip())
        return done.stdout

    def run_json(self, *args: str, node: str) -> Any:
        return json.loads(self.run(*args, "--json", node=node, show=False))

    # -- the federation -----------------------------------------------------------------------

    def create(self) -> None:
        self.act("1. Each service hall creates its node")
        if self.homes.exists():
            shutil.rmtree(self.homes)
        self.homes.mkdir(parents=True)
        for node in self.nodes.values():
            self.run(
                "init",
                "--node-id",
                node.node_id,
                "--name",
                node.name,
                "--listen",
                node.listen,
                "--api",
                node.api,
                "--metrics",
                node.metrics,
                node=node.node_id,
            )

    def start(self) -> None:
        self.act("2. The nodes start")
        for node in self.nodes.values():
            log = open(self.homes / f"{node.node_id}.log", "ab")  # noqa: SIM115 - handed to the child
            node.process = subprocess.Popen(
                [sys.executable, "-m", "node", "serve", "--home", str(node.home), "--json"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
            log.close()
        deadline = time.monotonic() + 60
        for node in self.nodes.values():
            while True:
                if node.process is not None and node.process.poll() is not None:
                    raise DemoError(f"{node.node_id} stopped; see {self.homes / (node.node_id + '.log')}")
                if time.monotonic() > deadline:
                    raise DemoError(f"{node.node_id} did not come up; see its log in {self.homes}")
                # The run file appears once the node listens; only then is a `status` worth a process.
                if not _serving(node):
                    time.sleep(0.05)
                    continue
                probe = subprocess.run(
                    [sys.executable, "-m", "node", "status", "--home", str(node.home), "--json"],
                    capture_output=True,
                    cwd=ROOT,
                    check=False,
                )
                if probe.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise DemoError(f"{node.node_id} did not come up; see its log in {self.homes}")
                time.sleep(0.2)
            self.say(f"{node.node_id} {node.name} serves: federation {node.listen}, local API {node.api}")

    def peer(self) -> None:
        self.act("3. Operators peer their nodes with one-time join tokens")
        for peering in self.peerings:
            inviter, joiner = peering["inviter"], peering["joiner"]
            token = self.run_json("peer", "invite", "--ttl", "10m", node=inviter)["token"]
            self.say(f"({self.nodes[inviter].name} hands this token to {self.nodes[joiner].name})")
            self.run("peer", "join", token, node=joiner)
            allow = list(peering.get("allow", []))
            if allow:
                self.run("peer", "allow", joiner, *allow, node=inviter)
                self.run("peer", "allow", inviter, *allow, node=joiner)

    def ping(self) -> None:
        self.act("4. Signed messages flow: pings through the outbox, each with a signed receipt")
        first, second = list(self.nodes)[:2]
        self.run("ping", second, "--count", "100", node=first)
        self.run("ping", first, "--count", "10", node=second)
        self.run("status", node=first)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(30)
                except subprocess.TimeoutExpired:
                    node.process.kill()

    def farewell(self) -> None:
        self.act("The nodes are stopped; their homes stay for you to explore")
        first = next(iter(self.nodes.values()))
        self.say(
            f"Start one again:   .venv/bin/tongban serve --home {first.home}\n"
            f"then look around:  .venv/bin/tongban status --home {first.home}\n"
            f"                   .venv/bin/tongban peer list --home {first.home}"
        )


# Acts after the federation is up; domain stories append theirs (each takes the Demo).
ACTS: list[Callable[[Demo], None]] = []


def _cases_story(demo: Demo) -> None:
    from node.cases.story import seed_story

    seed_story(demo)


ACTS.append(_cases_story)


def _certificates_story(demo: Demo) -> None:
    from node.certs.story import certificate_story

    certificate_story(demo)


ACTS.append(_certificates_story)


def _screen_to_screen(demo: Demo) -> None:
    from video.story import screen_to_screen

    screen_to_screen(demo)


ACTS.append(_screen_to_screen)


def _audit(demo: Demo) -> None:
    """An auditor checks the record: each log verifies, and the case's messages read in order."""
    demo.act("Audit: every node's message log verifies; the case reads the same at both ends")
    for node_id in demo.nodes:
        demo.run("log", "verify", node=node_id)
    first, second = list(demo.nodes)[:2]
    cases = [
        json.loads(line)
        for line in demo.run("case", "list", "--all", "--json", node=first, show=False).splitlines()
        if line.strip()
    ]
    if not cases:
        return
    number = min(c["number"] for c in cases)
    demo.run("log", "trace", number, node=first)
    bundle = demo.homes / f"{number}.tblog"
    demo.run("log", "export", "--case", number, "-o", str(bundle), node=second)
    demo.say(f"(the bundle verifies on any machine, with nothing but the file: {bundle.name})")
    demo.run("log", "verify", "--file", str(bundle))


ACTS.append(_audit)


def _serving(node: DemoNode) -> bool:
    try:
        info = json.loads((node.home / "run" / "node.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
    return node.process is not None and info.get("pid") == node.process.pid


def _free(address: str) -> bool:
    host, port = parse_address(address, "demo address")
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _any_port(address: str) -> str:
    host, _ = parse_address(address, "demo address")
    with socket.socket() as probe:
        probe.bind((host, 0))
        return f"{host}:{probe.getsockname()[1]}"


def load(path: Path, homes: Path | None = None) -> Demo:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    base = homes or (ROOT / raw.get("demo", {}).get("homes", "demo-homes"))
    nodes = {}
    for item in raw["node"]:
        addresses = {key: item[key] for key in ("listen", "api", "metrics")}
        for key, address in addresses.items():
            if not _free(address):  # something else holds the usual port: take another
                addresses[key] = _any_port(address)
        nodes[item["id"]] = DemoNode(
            item["id"],
            item["name"],
            addresses["listen"],
            addresses["api"],
            addresses["metrics"],
            base / item["id"],
        )
    return Demo(nodes, list(raw.get("peering", [])), base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, nargs="?", default=ROOT / "config" / "demo.toml")
    parser.add_argument("--homes", type=Path, default=None, help="where to create the node homes")
    args = parser.parse_args(argv)
    os.umask(0o077)
    demo = load(args.config, args.homes)
    try:
        demo.create()
        demo.start()
        demo.peer()
        demo.ping()
        for act in ACTS:
            act(demo)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    demo.farewell()
    return 0


if __name__ == "__main__":
    sys.exit(main())
