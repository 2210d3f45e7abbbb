"""Between video's typed units and the generated protobuf messages (payloads and the local API).

The one module of `video` (beside the servicer and the endpoint's session client) that imports
`tongban_api`. Decoding a payload that is malformed raises `federation.wire.WireError`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from federation.units import Payload
from federation.wire import pack, unpack
from node.api.convert import ts
from tongban_api.v1 import video_pb2
from video.ice import IceServer
from video.models import CallRow, RecordingRow
from video.units import (
    Answer,
    Connected,
    Decline,
    Figures,
    Finished,
    Hangup,
    Invite,
    Placed,
    Recorded,
    StreamSummary,
    TimedOut,
    Timeout,
)

# -- payloads -------------------------------------------------------------------------------


def _invite_pb(invite: Invite) -> video_pb2.VideoInvite:
    return video_pb2.VideoInvite(**asdict(invite))


def _invite(message: video_pb2.VideoInvite) -> Invite:
    return Invite(
        call_id=message.call_id,
        case_id=message.case_id,
        offer_sdp=message.offer_sdp,
        caller_shares=message.caller_shares,
        caller_records=message.caller_records,
        ring_timeout_seconds=message.ring_timeout_seconds,
        caller_label=message.caller_label,
        case_number=message.case_number,
    )


def invite_payload(invite: Invite) -> Payload:
    return pack(_invite_pb(invite))


def read_invite(payload: Payload) -> Invite:
    return _invite(unpack(payload, video_pb2.VideoInvite()))


def answer_payload(answer: Answer) -> Payload:
    return pack(video_pb2.VideoAnswer(**asdict(answer)))


def read_answer(payload: Payload) -> Answer:
    m = unpack(payload, video_pb2.VideoAnswer())
    return Answer(m.call_id, m.answer_sdp, m.callee_label)


def decline_payload(decline: Decline) -> Payload:
    return pack(video_pb2.VideoDecline(**asdict(decline)))


def read_decline(payload: Payload) -> Decline:
    m = unpack(payload, video_pb2.VideoDecline())
    return Decline(m.call_id, m.reason)


def hangup_payload(hangup: Hangup) -> Payload:
    return pack(video_pb2.VideoHangup(**asdict(hangup)))


def read_hangup(payload: Payload) -> Hangup:
    m = unpack(payload, video_pb2.VideoHangup())
    return Hangup(m.call_id, m.reason, m.outcome)


def timeout_payload(timeout: Timeout) -> Payload:
    return pack(video_pb2.VideoTimeout(**asdict(timeout)))


def read_timeout(payload: Payload) -> Timeout:
    m = unpack(payload, video_pb2.VideoTimeout())
    return Timeout(m.call_id, m.waited_seconds)


# -- local events ---------------------------------------------------------------------------


def placed_payload(placed: Placed) -> Payload:
    return pack(video_pb2.CallPlaced(peer=placed.peer, invite=_invite_pb(placed.invite)))


def read_placed(payload: Payload) -> Placed:
    m = unpack(payload, video_pb2.CallPlaced())
    return Placed(m.peer, _invite(m.invite))


def answered_payload(answer: Answer) -> Payload:
    return pack(video_pb2.CallAnswered(answer=video_pb2.VideoAnswer(**asdict(answer))))


def read_answered(payload: Payload) -> Answer:
    m = unpack(payload, video_pb2.CallAnswered()).answer
    return Answer(m.call_id, m.answer_sdp, m.callee_label)


def connected_payload(connected: Connected) -> Payload:
    return pack(video_pb2.CallConnected(**asdict(connected)))


def read_connected(payload: Payload) -> Connected:
    m = unpack(payload, video_pb2.CallConnected())
    return Connected(m.call_id, m.setup_seconds)


def finished_payload(finished: Finished) -> Payload:
    return pack(
        video_pb2.CallFinished(
            call_id=finished.call_id,
            reason=finished.reason,
            outcome=finished.outcome,
            figures=figures_pb(finished.figures) if finished.figures else None,
        )
    )


def read_finished(payload: Payload) -> Finished:
    m = unpack(payload, video_pb2.CallFinished())
    return Finished(m.call_id, m.reason, m.outcome, figures(m.figures) if m.HasField("figures") else None)


def timed_out_payload(timed_out: TimedOut) -> Payload:
    return pack(video_pb2.CallTimedOut(**asdict(timed_out)))


def read_timed_out(payload: Payload) -> TimedOut:
    m = unpack(payload, video_pb2.CallTimedOut())
    return TimedOut(m.call_id, m.waited_seconds, m.tell_peer)


def recorded_payload(recorded: Recorded) -> Payload:
    values = asdict(recorded)
    values["streams"] = [video_pb2.StreamSummary(**asdict(s)) for s in recorded.streams]
    return pack(video_pb2.RecordingStored(**values))


def read_recorded(payload: Payload) -> Recorded:
    m = unpack(payload, video_pb2.RecordingStored())
    return Recorded(
        recording_id=m.recording_id,
        call_id=m.call_id,
        case_id=m.case_id,
        sha256=m.sha256,
        size_bytes=m.size_bytes,
        duration_seconds=m.duration_seconds,
        complete=m.complete,
        note=m.note,
        streams=tuple(_stream(s) for s in m.streams),
        container=m.container,
    )


def _stream(m: Any) -> StreamSummary:
    return StreamSummary(m.name, m.kind, m.frames, m.duration_seconds, m.width, m.height)


# -- figures --------------------------------------------------------------------------------


def figures_pb(value: Figures) -> video_pb2.CallFigures:
    return video_pb2.CallFigures(**asdict(value))


def figures(message: video_pb2.CallFigures) -> Figures:
    return Figures(**{f.name: getattr(message, f.name) for f in fields(Figures)})


def figures_json(value: Figures | None) -> str:
    return json.dumps(asdict(value)) if value is not None else ""


def figures_from_json(text: str) -> Figures | None:
    if not text:
        return None
    known = {f.name for f in fields(Figures)}
    return Figures(**{k: v for k, v in json.loads(text).items() if k in known})


def streams_json(streams: tuple[StreamSummary, ...]) -> str:
    return json.dumps([asdict(s) for s in streams], ensure_ascii=False)


def streams_from_json(text: str) -> tuple[StreamSummary, ...]:
    return tuple(StreamSummary(**item) for item in json.loads(text or "[]"))


# -- the local API --------------------------------------------------------------------------


def call_pb(row: CallRow, live: Figures | None = None, recordings: int = 0) -> video_pb2.Call:
    shown = live or figures_from_json(row.figures)
    return video_pb2.Call(
        call_id=row.call_id,
        case_id=row.case_id,
        case_number=row.case_number,
        peer=row.peer,
        direction=row.direction,
        state=row.state,
        outcome=row.outcome,
        end_reason=row.end_reason,
        ended_by=row.ended_by,
        created_at=ts(row.created_at_us),
        answered_at=ts(row.answered_at_us),
        connected_at=ts(row.connected_at_us),
        ended_at=ts(row.ended_at_us),
        caller_shares=row.caller_shares,
        caller_records=row.caller_records,
        offer_sdp=row.offer_sdp,
        answer_sdp=row.answer_sdp,
        figures=figures_pb(shown) if shown else None,
        live=live is not None,
        peer_label=row.peer_label,
        recordings=recordings,
    )


def event_pb(kind: str, call: video_pb2.Call) -> video_pb2.CallEvent:
    return video_pb2.CallEvent(type=kind, call=call)


def recording_pb(row: RecordingRow, peer: str = "") -> video_pb2.Recording:
    return video_pb2.Recording(
        recording_id=row.recording_id,
        call_id=row.call_id,
        case_id=row.case_id,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        duration_seconds=row.duration_seconds,
        complete=row.complete,
        note=row.note,
        streams=[video_pb2.StreamSummary(**asdict(s)) for s in streams_from_json(row.streams)],
        recorded_at=ts(row.recorded_at_us),
        container=row.container,
        peer=peer,
    )


def settings_pb(
    node_id: str, servers: list[IceServer], ring: float, connect: float, media: float
) -> video_pb2.VideoSettings:
    return video_pb2.VideoSettings(
        node_id=node_id,
        ice_servers=[
            video_pb2.IceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ],
        ring_timeout_seconds=ring,
        connect_timeout_seconds=connect,
        media_timeout_seconds=media,
    )


def ice_servers(settings: video_pb2.VideoSettings) -> list[IceServer]:
    return [IceServer(tuple(s.urls), s.username, s.credential) for s in settings.ice_servers]
