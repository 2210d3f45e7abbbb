"""How the domain plugs into the federation: one handler per message kind, and per local action.

`federation` moves envelopes and knows nothing of cases, certificates or calls. A domain module
registers, for each kind it speaks, an `apply` function that the receiver runs inside the
transaction that records the message (so the change and the record commit together or not at
all), and optionally an `on_receipt` function that the sender runs inside the transaction that
stores the receiver's signed receipt (so it can react to a rejection durably).

A clerk's own action (open a case, accept it, add a material...) is a *local event*: the domain
calls `Federation.act(tx, kind, payload)`, which appends the event to the message log and runs
the `local` handler registered for that kind, in the same transaction. Messages the handler
enqueues follow the event in the log.

The contract that makes the log complete (so that a node's state can be rebuilt from its log):
every change of domain state happens inside an `apply` of an incoming message, an `on_receipt`,
or a `local` handler, and depends only on the current state, the message or event, and
`tx.now_us`. Anything else a handler would invent (a case number, an ID, a random salt) is
chosen before the event is recorded and travels inside its payload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from federation.store import Tx
from federation.units import Ack, LocalEvent, SealedEnvelope


@dataclass(frozen=True, slots=True)
class Delivered:
    """An outgoing message whose receipt has just been stored."""

    message_id: str
    peer: str
    kind: str
    case_id: str
    created_at_us: int
    ack: Ack


Apply = Callable[[Tx, SealedEnvelope], None]
OnReceipt = Callable[[Tx, Delivered], None]
ApplyLocal = Callable[[Tx, LocalEvent], Any]


@dataclass(frozen=True)
class Handler:
    kind: str
    apply: Apply
    on_receipt: OnReceipt | None = None
    # False for a handler that changes nothing (a ping): it then needs no savepoint of its own.
    writes: bool = True


class Handlers:
    """The kinds this node understands."""

    def __init__(self) -> None:
        self._by_kind: dict[str, Handler] = {}
        self._local: dict[str, ApplyLocal] = {}

    def register(
        self, kind: str, apply: Apply, on_receipt: OnReceipt | None = None, *, writes: bool = True
    ) -> None:
        if kind in self._by_kind:
            raise ValueError(f"a handler for {kind!r} is already registered")
        self._by_kind[kind] = Handler(kind, apply, on_receipt, writes)

    def get(self, kind: str) -> Handler | None:
        return self._by_kind.get(kind)

    def register_local(self, kind: str, apply: ApplyLocal) -> None:
        """The handler of a local event kind (a clerk's action); see the module docstring."""
        if kind in self._local:
            raise ValueError(f"a local handler for {kind!r} is already registered")
        self._local[kind] = apply

    def local(self, kind: str) -> ApplyLocal | None:
        return self._local.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._by_kind)
