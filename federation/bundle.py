"""Log bundles: a run of the message log packed with everything needed to check it elsewhere.

`tongban log export` writes one; `tongban log verify --file`, `log ls --file`, `log trace --file`
and `log replay` read one. The file is "TBLOG1\\n" and a serialized `tongban.v1.LogBundle`
(proto/tongban_api/v1/log.proto): a *contiguous* run of entries (seq, serialized LogRecord,
chain hash, whether the export's filter chose it), the node's key history with its rotation
endorsements, the key histories of the peers whose envelopes and receipts appear, and the signed
checkpoints that anchor both ends of the run. The run starts right after a signed checkpoint (or
at the start of the log) and ends on one, so that nothing can be added, removed or changed
without `verify` noticing: entries a filter did not choose are still carried, unmarked, to keep
the chain whole from checkpoint to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.keys import KeyHistory


@dataclass(frozen=True)
class BundleEntry:
    seq: int
    record: bytes
    hash: bytes
    selected: bool = True


@dataclass(frozen=True)
class Bundle:
    node_id: str
    exported_at_us: int
    keys: KeyHistory
    peer_keys: tuple[KeyHistory, ...] = ()
    previous_hash: bytes = bytes(32)
    entries: tuple[BundleEntry, ...] = ()
    checkpoints: tuple[bytes, ...] = ()
    selection: str = ""

    @property
    def selected(self) -> list[BundleEntry]:
        return [entry for entry in self.entries if entry.selected]
