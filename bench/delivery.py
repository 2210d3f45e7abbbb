"""Delivery benchmark: node-to-node messages against bare gRPC echo, measured in one run.

Baseline: a bare grpc.aio unary echo of 1 KiB with 64 calls in flight, the client in this
process, the server in a child process. The echo is also run with 256 calls in flight, the
per-message delivery's number, to show that the baseline does not gain from more calls: it is
bound by the CPU, where delivery is bound by the time its calls wait for the receiver's commit.

Measured: node-to-node delivery of 1 KiB payloads through the whole path (outbox row and log
entry at the sender, Ed25519 signature, mutual TLS, verification, dedupe, inbox row and log
entries at the receiver, signed receipt, receipt verified and stored, outbox marked) with the
sender node in this process and the receiver a real `tongban serve` process:

* per message: one Deliver call per message, 256 calls in flight, 2,048 messages outstanding so
  that the calls never wait for the queue. A receipt means "committed", so each call waits for
  the receiver's next group commit (a few milliseconds for company, then the transaction); with
  64 calls in flight most of them are waiting there at any moment and the two cores stand idle
  a quarter of the time. 256 cover that wait (Little's law); 512 do no better;
* batched: DeliverBatch calls of up to 512 envelopes, 4 calls in flight, 4,096 messages outstanding.

Both run closed-loop: a new message is queued as soon as one is receipted. Latency is measured
from queueing a message to storing its signed receipt, so it includes the time spent waiting in
the outbox behind the outstanding others.

The machines here change speed from minute to minute, by a fifth and more. So the measurements
run in rounds (echo with 64 and with 256 in flight, per message, batched; a fresh sender node
each time), each round gives its own ratios (against the echo with 64 in flight, the baseline),
and the figures are the medians over the rounds. Also printed: the
idle receiver's resident memory. The last line is the ratio of per-message delivery to bare
echo; the line before it the batched ratio.

    .venv/bin/python bench/delivery.py [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from federation import Federation, FederationSettings, NodeIdentity, SenderSettings  # noqa: E402
from federation.handlers import Delivered  # noqa: E402
from federation.outbox import Draft  # noqa: E402
from federation.wire import ping_payload  # noqa: E402
from node.storage import open_database  # noqa: E402

PAYLOAD = 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by a set of processes between start() and stop()."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.used = 0.0

    def start(self) -> None:
        self._begin = sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> None:
        self.used = sum(cpu_seconds(pid) for pid in self.pids) - self._begin


@dataclass
class Figures:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float = 0.0

    @property
    def cpu_us(self) -> float:
        """CPU time of both processes per message, in microseconds: steadier than rates on a busy machine."""
        return self.cpu_seconds / max(1, self.messages) * 1e6

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def line(self) -> str:
        ordered = sorted(self.latencies_ms)
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{self.name:<28} {self.rate:8.0f} msg/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
            f"{self.cpu_us:6.0f} µs CPU/msg   ({self.messages} in {self.seconds:.1f} s)"
        )


# -- baseline: bare echo ------------------------------------------------------------------------


def _echo_server(port_queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        async def echo(request: bytes, context: object) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


async def bare_echo(seconds: float, in_flight: int = 64) -> Figures:
    # A fresh interpreter, not a fork: forking a process whose gRPC threads are busy can hang the child.
    spawn = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = spawn.Queue()  # type: ignore[type-arg]
    server = spawn.Process(target=_echo_server, args=(queue,), daemon=True)
    server.start()
    port = queue.get(timeout=30)
    latencies: list[float] = []
    done = 0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/bench.Echo/Echo")
            payload = os.urandom(PAYLOAD)
            deadline = 0.0
            measuring = False

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    await call(payload)
                    if measuring:
                        latencies.append((time.perf_counter() - started) * 1000)
                        done += 1

            deadline = time.monotonic() + 1.0  # warm up
            await asyncio.gather(*[worker() for _ in range(in_flight)])
            measuring = True
            meter = CpuMeter(os.getpid(), server.pid or 0)
            meter.start()
            start = time.monotonic()
            deadline = start + seconds
            await asyncio.gather(*[worker() for _ in range(in_flight)])
            elapsed = time.monotonic() - start
            meter.stop()
    finally:
        server.kill()
    return Figures(f"bare echo ({in_flight} in flight)", done, elapsed, latencies, meter.used)


# -- node to node -------------------------------------------------------------------------------


def tongban(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "node", *args], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return done.stdout


class Receiver:
    """A real `tongban serve` process."""

    def __init__(self, folder: Path) -> None:
        self.home = folder / "huoqiu"
        tongban(
            "init",
            "--home",
            str(self.home),
            "--node-id",
            "cn-341522",
            "--name",
            "霍邱县政务服务中心",
            "--listen",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--metrics",
            "",
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node",
                "serve",
                "--home",
                str(self.home),
                "--json",
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                subprocess.run(
                    [sys.executable, "-m", "node", "status", "--home", str(self.home), "--json"],
                    capture_output=True,
                    cwd=ROOT,
                    check=False,
                ).returncode
                == 0
            ):
                return
            time.sleep(0.2)
        raise RuntimeError("the receiver did not start")

    def invite(self) -> str:
        return str(json.loads(tongban("peer", "invite", "--home", str(self.home), "--json"))["token"])

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def sender_node(folder: Path, settings: SenderSettings) -> Federation:
    identity = NodeIdentity.create(folder / "keys", "cn-320509", "吴江区政务服务中心")
    db = await asyncio.to_thread(open_database, f"sqlite:///{folder / 'tongban.db'}")
    federation = Federation(
        identity, db, endpoint="127.0.0.1:1", settings=FederationSettings(sender=settings)
    )
    await federation.load()
    await federation.start()
    return federation


async def delivery(
    name: str, receiver: Receiver, folder: Path, settings: SenderSettings, outstanding: int, seconds: float
) -> Figures:
    federation = await sender_node(folder, settings)
    try:
        await federation.join(receiver.invite())
        padding = os.urandom(PAYLOAD)
        latencies: list[float] = []
        counted = 0
        measuring = False
        stop_at = time.monotonic() + 1.0  # warm up first
        refill: asyncio.Queue[int] = asyncio.Queue()

        def on_delivered(items: list[Delivered]) -> None:
            nonlocal counted
            now = time.time_ns() // 1000
            if measuring:
                counted += len(items)
                latencies.extend((now - item.created_at_us) / 1000 for item in items)
            refill.put_nowait(len(items))

        producers: set[asyncio.Task[object]] = set()

        def queue(count: int) -> None:
            drafts = [Draft("cn-341522", "ping", ping_payload("bench", padding))] * count
            task = asyncio.get_running_loop().create_task(federation.send(drafts))
            producers.add(task)
            task.add_done_callback(producers.discard)

        federation.on_delivered(on_delivered)
        queue(outstanding)

        async def pump(until: float) -> None:
            while time.monotonic() < until:
                try:
                    n = await asyncio.wait_for(refill.get(), timeout=max(0.01, until - time.monotonic()))
                except TimeoutError:
                    break
                while not refill.empty():
                    n += refill.get_nowait()
                queue(n)

        await pump(stop_at)
        measuring = True
        meter = CpuMeter(os.getpid(), receiver.process.pid)
        meter.start()
        start = time.monotonic()
        await pump(start + seconds)
        elapsed = time.monotonic() - start
        meter.stop()
        measuring = False
        await asyncio.gather(*producers, return_exceptions=True)
        return Figures(name, counted, elapsed, latencies, meter.used)
    finally:
        await federation.stop()
        await asyncio.to_thread(federation.db.close)


PER_MESSAGE = SenderSettings(unary=True, max_in_flight=256, max_batch=1)
BATCHED = SenderSettings(unary=False, max_in_flight=4, max_batch=512)


async def main(seconds: float, rounds: int) -> None:
    print(
        f"machine: {os.cpu_count()} cores; payload {PAYLOAD} bytes; {rounds} rounds of echo, per-message "
        f"and batched delivery, {seconds:.0f} s each",
        flush=True,
    )
    per_message_ratios: list[float] = []
    wide_echo_ratios: list[float] = []
    against_wide: list[float] = []
    batched_ratios: list[float] = []
    cpu_ratios: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        receiver = Receiver(folder)
        try:
            await asyncio.sleep(2.0)
            idle_rss = receiver.rss_mb()
            for round_ in range(1, rounds + 1):
                echo = await bare_echo(seconds)
                wide_echo = await bare_echo(seconds, in_flight=PER_MESSAGE.max_in_flight)
                per_message = await delivery(
                    f"delivery, per message ({PER_MESSAGE.max_in_flight})",
                    receiver,
                    folder / f"a{round_}",
                    PER_MESSAGE,
                    8 * PER_MESSAGE.max_in_flight,
                    seconds,
                )
                batched = await delivery(
                    "delivery, batched (512x4)", receiver, folder / f"b{round_}", BATCHED, 4096, seconds
                )
                print(f"round {round_}:", flush=True)
                for figures in (echo, wide_echo, per_message, batched):
                    print("  " + figures.line(), flush=True)
                per_message_ratios.append(per_message.rate / echo.rate)
                wide_echo_ratios.append(wide_echo.rate / echo.rate)
                against_wide.append(per_message.rate / wide_echo.rate)
                batched_ratios.append(batched.rate / echo.rate)
                cpu_ratios.append((per_message.cpu_us / echo.cpu_us, batched.cpu_us / echo.cpu_us))
                print(
                    f"  ratios: per message {per_message_ratios[-1]:.2f}, batched {batched_ratios[-1]:.2f}",
                    flush=True,
                )
        finally:
            receiver.stop()
    print(f"idle node RSS: {idle_rss:.0f} MB (target at most 150 MB)")
    print(
        "CPU per message against echo's CPU per call (median): "
        f"per message {statistics.median(c[0] for c in cpu_ratios):.2f}x, "
        f"batched {statistics.median(c[1] for c in cpu_ratios):.2f}x"
    )
    print(
        f"echo with {PER_MESSAGE.max_in_flight} in flight against 64 (median): "
        f"{statistics.median(wide_echo_ratios):.2f}; per message against it: {statistics.median(against_wide):.2f}"
    )
    print(
        f"batched/echo ratio: {statistics.median(batched_ratios):.2f} (median of {rounds}; target at least 2.0)"
    )
    print(
        f"delivery/echo ratio: {statistics.median(per_message_ratios):.2f} (median of {rounds}; target at least 0.6)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.rounds))
