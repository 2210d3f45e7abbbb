"""Signals for asyncio programs (`tongban serve`, a video call from the CLI), heard also when busy.

asyncio learns of a signal from a byte the C-level handler writes into its wake-up socket, the
same socket that every `call_soon_threadsafe` writes a byte into. While the loop is busy in one
callback, a few hundred wake-ups from the database, crypto and gRPC threads fill that socket; the
signal's byte is then dropped and a callback given to `loop.add_signal_handler` never runs (a
loaded node once ignored SIGTERM this way). So the callback runs from a Python-level handler,
which Python calls on the main thread whatever the socket holds. asyncio's handler stays in
place with nothing to do: its wake-up byte is what rouses an idle loop when the signal lands on
another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable


def on_signals(loop: asyncio.AbstractEventLoop, handlers: dict[int, Callable[[], object]]) -> None:
    """Run each callback on the loop once its signal arrives (main thread only; else nothing)."""
    for signum, callback in handlers.items():

        def handler(number: int, frame: object, callback: Callable[[], object] = callback) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to stop
                loop.call_soon_threadsafe(callback)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signum, _wake)
            signal.signal(signum, handler)


def _wake() -> None:
    """asyncio's share of a signal: the loop is awake now; the Python-level handler does the work."""
