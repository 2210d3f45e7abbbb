"""A node stops on SIGTERM also when its event loop is crowded with thread wake-ups."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.utils import ROOT

# A loop busy in one callback while a thread makes 3,000 wake-ups (enough to fill asyncio's
# wake-up socket), then SIGTERM: the node's handlers must still stop it.
_CROWDED = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading
    from node.signals import on_signals

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        {install}

        def crowd() -> None:
            wakers = threading.Thread(
                target=lambda: [loop.call_soon_threadsafe(lambda: None) for _ in range(3000)]
            )
            wakers.start()
            wakers.join()
            os.kill(os.getpid(), signal.SIGTERM)  # while this callback still holds the loop

        loop.call_soon(crowd)
        try:
            await asyncio.wait_for(stop.wait(), 5)
        except TimeoutError:
            sys.exit("SIGTERM was lost")
        print("stopped")

    asyncio.run(main())
    """
)


def run(install: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CROWDED.format(install=install)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_sigterm_stops_a_node_whose_loop_is_crowded_with_wakeups() -> None:
    done = run("on_signals(loop, {signal.SIGTERM: stop.set})")
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr


def test_asyncio_alone_loses_that_sigterm() -> None:
    """Why `on_signals` exists: with asyncio's handler only, the same signal is dropped."""
    done = run("loop.add_signal_handler(signal.SIGTERM, stop.set)")
    if done.returncode == 0:
        pytest.skip("this kernel's wake-up socket held all 3,000 wake-ups: the crowded case did not arise")
    assert "SIGTERM was lost" in done.stderr
