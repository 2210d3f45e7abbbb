"""The call's units as typed Python objects: what travels between nodes, what a node records.

`video.convert` turns them into protobuf payloads and back (the only module of `video` besides
the servicer and the session client that imports the generated package). The media side
(`endpoint`, `recorder`) fills `Figures` and `StreamSummary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Federation message kinds, each tied to the case by the envelope's case_id.
INVITE = "video.invite"
ANSWER = "video.answer"
DECLINE = "video.decline"
HANGUP = "video.hangup"
TIMEOUT = "video.timeout"

# Local events: what this node's clerks (through their endpoints) and timers did.
PLACE = "video.call.place"
ANSWERED = "video.call.answer"
DECLINED = "video.call.decline"
CONNECTED = "video.call.connected"
FINISH = "video.call.finish"
TIMED_OUT = "video.call.timeout"
RECORDED = "video.recording"

# Call states and outcomes.
RINGING, ANSWERED_STATE, ACTIVE, ENDED = "ringing", "answered", "active", "ended"
ONGOING = (RINGING, ANSWERED_STATE, ACTIVE)
OUTCOMES = ("completed", "declined", "refused", "missed", "cancelled", "failed")


@dataclass
class Figures:
    """A call's figures at one endpoint (CallFigures in video.proto says what each means)."""

    setup_seconds: float = 0.0
    ring_seconds: float = 0.0
    frames_sent: int = 0
    frames_received: int = 0
    share_frames_sent: int = 0
    share_frames_received: int = 0
    audio_frames_received: int = 0
    fps_received: float = 0.0
    bitrate_sent_kbps: float = 0.0
    bitrate_received_kbps: float = 0.0
    round_trip_ms: float = 0.0
    packet_loss: float = 0.0
    duration_seconds: float = 0.0
    width_received: int = 0
    height_received: int = 0
    recording_dropped: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class StreamSummary:
    name: str
    kind: str
    frames: int
    duration_seconds: float
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class RecordingSummary:
    duration_seconds: float
    streams: tuple[StreamSummary, ...]
    readable: bool = True
    problem: str = ""

    def stream(self, name: str) -> StreamSummary | None:
        return next((item for item in self.streams if item.name == name), None)


@dataclass(frozen=True)
class Invite:
    call_id: str
    case_id: str
    offer_sdp: str
    caller_shares: bool = False
    caller_records: bool = False
    ring_timeout_seconds: float = 60.0
    caller_label: str = ""
    case_number: str = ""


@dataclass(frozen=True)
class Answer:
    call_id: str
    answer_sdp: str
    callee_label: str = ""


@dataclass(frozen=True)
class Decline:
    call_id: str
    reason: str


@dataclass(frozen=True)
class Hangup:
    call_id: str
    reason: str
    outcome: str = "completed"


@dataclass(frozen=True)
class Timeout:
    call_id: str
    waited_seconds: float


@dataclass(frozen=True)
class Placed:
    peer: str
    invite: Invite


@dataclass(frozen=True)
class Connected:
    call_id: str
    setup_seconds: float


@dataclass(frozen=True)
class Finished:
    call_id: str
    reason: str
    outcome: str = "completed"
    figures: Figures | None = None


@dataclass(frozen=True)
class TimedOut:
    call_id: str
    waited_seconds: float
    tell_peer: bool


@dataclass(frozen=True)
class Recorded:
    recording_id: str
    call_id: str
    case_id: str
    sha256: str
    size_bytes: int
    duration_seconds: float
    complete: bool
    note: str = ""
    streams: tuple[StreamSummary, ...] = field(default_factory=tuple)
    container: str = "matroska"
