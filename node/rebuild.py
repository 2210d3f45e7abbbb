"""Rebuilding a node's state from its message log (`tongban log rebuild --into NEWHOME`).

Not finished: see CHANGELOG. The command refuses with a clear message instead of pretending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from federation.errors import FederationError

if TYPE_CHECKING:
    from node.home import Home
    from node.runtime import Node


class RebuildError(FederationError):
    """Rebuilding cannot go on; the message says why."""


@dataclass
class Rebuilt:
    entries: int = 0
    tables: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0


_NOT_YET = (
    "log rebuild is not implemented in this version: the replay of local events, inbound envelopes "
    "and receipts into a fresh home is still to be written (see CHANGELOG)"
)


async def rebuild_home(home: Home, into: Path) -> Rebuilt:
    raise RebuildError(_NOT_YET)


async def rebuild_running(node: Node, into: str) -> Rebuilt:
    raise RebuildError(_NOT_YET)
