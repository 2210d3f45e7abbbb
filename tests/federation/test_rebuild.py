"""The recorded log a rebuild replays: it names the first entry the replay does not reproduce."""

from __future__ import annotations

import pytest

from federation import wire
from federation.rebuild import Divergence, SourceLog
from federation.units import LocalEvent, LogRecord, Payload


def local(seq: int, kind: str) -> bytes:
    body = wire.local_event_bytes(LocalEvent(kind, Payload("t/x", b"")))
    return wire.log_record_bytes(LogRecord(seq, 1000 * seq, "local", "local", "", body))


def source(records: list[bytes], batch: int = 2) -> SourceLog:
    def read(after: int, limit: int) -> list[tuple[int, bytes]]:
        return [(seq, data) for seq, data in enumerate(records, 1) if seq > after][:limit]

    return SourceLog("cn-320509", read, batch=batch)


def test_the_source_reads_in_chunks_and_knows_where_it_ends() -> None:
    log = source([local(1, "a"), local(2, "b"), local(3, "c")])
    assert [log.get(seq).record.seq for seq in (1, 2, 3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert log.get(4) is None


def test_an_identical_record_passes_the_check() -> None:
    source([local(1, "clerk.add")]).check(1, local(1, "clerk.add"))


def test_a_record_the_replay_writes_differently_is_named() -> None:
    with pytest.raises(Divergence, match=r"entry 2 was not reproduced: the log holds local local case\.open"):
        source([local(1, "clerk.add"), local(2, "case.open")]).check(2, local(2, "case.act"))


def test_a_record_past_the_end_of_the_log_is_named() -> None:
    with pytest.raises(Divergence, match=r"wrote entry 2 .* but the recorded log ends before it"):
        source([local(1, "clerk.add")]).check(2, local(2, "case.open"))


def test_an_envelope_where_a_local_event_is_recorded_is_refused() -> None:
    with pytest.raises(Divergence, match=r"as entry 1, but it holds local local clerk\.add"):
        source([local(1, "clerk.add")]).envelope(
            1,
            to="cn-341522",
            kind="case.submit",
            payload=Payload("t/x", b""),
            case_id="c",
            case_seq=1,
            created_at_us=1000,
        )
