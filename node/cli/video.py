"""Screen-to-screen video: call, answer, decline, the call list, recordings and their export.

`video call` and `video answer` run the media endpoint in this process (aiortc) and talk to
the node through the local API; the node carries the signaling to its peer.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import signal
import sys
from pathlib import Path
from typing import Any

import click

from node.cli.output import CliError, Context, common, duration, iso, when

CAMERA_HELP = "test (moving pattern with a clock), /dev/videoN, or a video file."
MIC_HELP = "test (1 kHz tone), none, alsa:DEVICE, pulse:DEVICE, or an audio file."
SHARE_HELP = "Show a document (PDF page or image) or `screen` on a second picture."


def _client(ctx: Context) -> Any:
    from node.api.client import ApiClient

    return ApiClient(ctx.home)


@click.group()
def video() -> None:
    """Screen-to-screen calls (屏对屏) about cases, recorded for the case file."""


def _media_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--camera", default="test", show_default=True, help=CAMERA_HELP),
            click.option("--mic", default="test", show_default=True, help=MIC_HELP),
            click.option("--share", default="", help=SHARE_HELP),
            click.option(
                "--page", default=1, show_default=True, type=click.IntRange(1), help="PDF page to share."
            ),
            click.option("--record", is_flag=True, help="Record both directions into the case file."),
            click.option(
                "--duration",
                default=0.0,
                type=click.FloatRange(0),
                help="Hang up after this many seconds of media.",
            ),
            click.option("--label", default="", help="How this window names itself to the other clerk."),
        ]
    ):
        function = option(function)
    return function


@video.command()
@common
@click.argument("case_id", metavar="CASE")
@_media_options
def call(ctx: Context, case_id: str, **media: Any) -> None:
    """Ring the node holding CASE; talk until Ctrl-C, --duration, or the other side hangs up."""
    result = _run(ctx, media, lambda session: session.place(case_id))
    _show_result(ctx, result)


@video.command()
@common
@click.argument("call_id", metavar="[CALL]", required=False, default="")
@click.option("--auto", is_flag=True, help="Wait for the next ringing call and answer it.")
@click.option(
    "--wait", "wait_seconds", default=0.0, type=click.FloatRange(0), help="With --auto: give up after S s."
)
@_media_options
def answer(ctx: Context, call_id: str, auto: bool, wait_seconds: float, **media: Any) -> None:
    """Answer a ringing call (CALL, or the oldest ringing one; --auto waits for one)."""
    result = _run(ctx, media, lambda session: session.answer(call_id, auto=auto, wait_seconds=wait_seconds))
    _show_result(ctx, result)


@video.command()
@common
@click.argument("call_id", metavar="CALL")
@click.option("--reason", required=True, help="Why; the caller sees it.")
def decline(ctx: Context, call_id: str, reason: str) -> None:
    """Decline a ringing call, with a reason for the caller."""
    from tongban_api.v1 import video_pb2

    with _client(ctx) as client:
        reply = client.call(
            client.video.DeclineCall, video_pb2.DeclineCallRequest(call_id=call_id, reason=reason)
        )
    if ctx.out.as_json:
        ctx.out.document(call_json(reply))
        return
    ctx.out.say(
        f"declined call {reply.call_id} from {reply.peer} (case {reply.case_number or reply.case_id}): {reason}"
    )


@video.command(name="calls")
@common
@click.option("--case", "case_id", default="", help="Only calls about this case.")
@click.option("--ongoing", is_flag=True, help="Only ringing and running calls.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def list_calls(ctx: Context, case_id: str, ongoing: bool, limit: int) -> None:
    """Ringing, running and past calls at this node, with their figures."""
    from tongban_api.v1 import video_pb2

    with _client(ctx) as client:
        reply = client.call(
            client.video.ListCalls,
            video_pb2.ListCallsRequest(case_id=case_id, ongoing_only=ongoing, limit=limit),
        )
    if ctx.out.as_json:
        ctx.out.lines(call_json(c) for c in reply.calls)
        return
    if not reply.calls:
        ctx.out.say("No calls yet: `tongban video call CASE` rings the node holding a case.")
        return
    ctx.out.table(
        None,
        [
            "CALL",
            "CASE",
            "PEER",
            "DIR",
            "STATE",
            "STARTED",
            "MEDIA",
            "SETUP",
            "FRAMES ↑/↓",
            "FPS",
            "KBPS ↑/↓",
            "RTT",
            "LOSS",
            "ENDED",
        ],
        [
            (
                c.call_id,
                c.case_number or c.case_id,
                c.peer,
                "→" if c.direction == "out" else "←",
                c.state + (" (live)" if c.live else ""),
                when(c.created_at),
                duration(c.figures.duration_seconds) if c.HasField("figures") else "",
                f"{c.figures.setup_seconds:.2f}s"
                if c.HasField("figures") and c.figures.setup_seconds
                else "",
                f"{c.figures.frames_sent}/{c.figures.frames_received}" if c.HasField("figures") else "",
                f"{c.figures.fps_received:.1f}" if c.HasField("figures") else "",
                _kbps(c.figures) if c.HasField("figures") else "",
                f"{c.figures.round_trip_ms:.0f} ms"
                if c.HasField("figures") and c.figures.round_trip_ms
                else "",
                f"{100 * c.figures.packet_loss:.1f}%" if c.HasField("figures") else "",
                f"{c.outcome}: {c.end_reason}" if c.state == "ended" else "",
            )
            for c in reply.calls
        ],
    )


@video.command()
@common
@click.argument("case_id", metavar="CASE")
def recordings(ctx: Context, case_id: str) -> None:
    """The recordings of a case's calls, with their SHA-256 (also in the message log)."""
    from tongban_api.v1 import video_pb2

    with _client(ctx) as client:
        reply = client.call(client.video.ListRecordings, video_pb2.ListRecordingsRequest(case_id=case_id))
    if ctx.out.as_json:
        ctx.out.lines(recording_json(r) for r in reply.recordings)
        return
    if not reply.recordings:
        ctx.out.say(f"No recordings for case {case_id}: `tongban video call {case_id} --record` makes one.")
        return
    ctx.out.table(
        f"Recordings of case {case_id}",
        ["CALL", "RECORDED", "DURATION", "SIZE", "COMPLETE", "STREAMS", "SHA-256"],
        [
            (
                r.call_id,
                when(r.recorded_at),
                f"{r.duration_seconds:.1f}s",
                _size(r.size_bytes),
                "yes" if r.complete else f"no: {r.note}",
                ", ".join(f"{s.name} ({s.frames})" for s in r.streams),
                r.sha256,
            )
            for r in reply.recordings
        ],
    )


@video.command()
@common
@click.argument("call_id", metavar="CALL")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (.mkv).",
)
@click.option(
    "--recording", "recording_id", default="", help="Which recording of the call (default: the latest)."
)
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def export(ctx: Context, call_id: str, output: Path, recording_id: str, force: bool) -> None:
    """Write a call's recording to a file (Matroska), checked against its SHA-256."""
    from tongban_api.v1 import video_pb2

    if output.exists() and not force:
        raise CliError(f"{output} exists; choose another name or add --force")
    with _client(ctx) as client:
        listed = client.call(client.video.ListRecordings, video_pb2.ListRecordingsRequest(call_id=call_id))
        choices = [r for r in listed.recordings if not recording_id or r.recording_id == recording_id]
        if not choices:
            raise CliError(
                f"no recording of call {call_id} at this node; `tongban video recordings CASE` lists them"
            )
        expected = choices[-1]
        digest = hashlib.sha256()
        partial = output.with_name(output.name + ".part")
        written = 0
        with partial.open("wb") as handle:
            request = video_pb2.ExportRecordingRequest(call_id=call_id, recording_id=expected.recording_id)
            for chunk in client.stream(client.video.ExportRecording, request, timeout=600):
                data = chunk.data  # read once: each read of the field is a fresh copy
                handle.write(data)
                digest.update(data)
                written += len(data)
    if digest.hexdigest() != expected.sha256:
        partial.unlink(missing_ok=True)
        raise CliError(f"the exported bytes do not match the recorded SHA-256 {expected.sha256}; try again")
    partial.replace(output)
    if ctx.out.as_json:
        ctx.out.document({**recording_json(expected), "output": str(output), "bytes_written": written})
        return
    ctx.out.say(f"wrote {output} ({_size(written)}), SHA-256 {expected.sha256} checked")


# -- running a call ---------------------------------------------------------------------------


def _run(ctx: Context, media: dict[str, Any], start: Any) -> Any:
    from node.signals import on_signals
    from video.session import CallOptions, CallSession
    from video.sources import SourceError

    options = CallOptions(**media)
    show = _Display(ctx.out.as_json)

    async def main() -> Any:
        with _client(ctx) as client:
            async with client.aio_channel() as channel:
                session = CallSession(channel, client.metadata, options, show.status)
                on_signals(
                    asyncio.get_running_loop(),
                    {
                        signal.SIGINT: functools.partial(session.hang_up, "hung up (Ctrl-C)"),
                        signal.SIGTERM: functools.partial(session.hang_up, "hung up (terminated)"),
                    },
                )
                return await start(session)

    try:
        return asyncio.run(main())
    except SourceError as error:
        raise CliError(str(error)) from None
    except asyncio.CancelledError:
        raise CliError("stopped before any call was answered") from None
    except Exception as error:
        import grpc

        if isinstance(error, grpc.aio.AioRpcError):
            from node.api.client import ApiError

            raise ApiError(error.code(), error.details() or "") from None
        raise
    finally:
        show.close()


class _Display:
    """Live status on stderr while the call runs (one updating line on a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._pending_line = False

    def status(self, kind: str, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "figures":
            f = info["figures"]
            line = (
                f"{duration(f.duration_seconds):>6}  frames ↑{f.frames_sent} ↓{f.frames_received}  "
                f"{f.fps_received:.1f} fps  {f.bitrate_sent_kbps:.0f}/{f.bitrate_received_kbps:.0f} kbps  "
                f"rtt {f.round_trip_ms:.0f} ms  loss {100 * f.packet_loss:.1f}%"
                + (
                    f"  share ↑{f.share_frames_sent} ↓{f.share_frames_received}"
                    if f.share_frames_sent or f.share_frames_received
                    else ""
                )
            )
            if self.tty:
                click.echo("\r" + line, nl=False, err=True)
                self._pending_line = True
            else:
                click.echo(line, err=True)
            return
        self._end_line()
        call: Any = info.get("call")
        if kind == "placed":
            click.echo(
                f"calling {call.peer} about case {call.case_number or call.case_id} (call {call.call_id})",
                err=True,
            )
        elif kind == "ringing":
            who = f"{call.peer}" + (f" ({call.peer_label})" if call.peer_label else "")
            text = (
                f"ringing at {call.peer}"
                if call.direction == "out"
                else f"call {call.call_id} from {who} about case {call.case_number or call.case_id}"
            )
            click.echo(text, err=True)
        elif kind == "answered":
            click.echo("answered; connecting media", err=True)
        elif kind == "connected":
            click.echo(f"connected: first picture after {info['setup_seconds']:.2f} s", err=True)
        elif kind == "ended":
            click.echo(f"call ended: {info['reason']}", err=True)

    def _end_line(self) -> None:
        if self._pending_line:
            click.echo("", err=True)
            self._pending_line = False

    def close(self) -> None:
        self._end_line()


def _show_result(ctx: Context, result: Any) -> None:
    document = {
        **call_json(result.call),
        "reason": result.reason,
        "ended_here": result.ended_here,
        "figures": figures_json(result.figures),
        "recording": recording_json(result.recording) if result.recording is not None else None,
        "recording_error": result.recording_error or None,
    }
    if ctx.out.as_json:
        ctx.out.document(document)
    else:
        f = result.figures
        ctx.out.fields(
            f"Call {result.call.call_id} about case {result.call.case_number or result.call.case_id} with {result.call.peer}: {result.outcome}",
            [
                ("ended", result.reason),
                ("setup", f"{f.setup_seconds:.2f} s to the first picture" if f.setup_seconds else "-"),
                ("media", f"{f.duration_seconds:.1f} s"),
                ("frames", f"{f.frames_sent} sent, {f.frames_received} received ({f.fps_received:.1f} fps)"),
                ("share", f"{f.share_frames_sent} sent, {f.share_frames_received} received"),
                (
                    "bitrate",
                    f"{f.bitrate_sent_kbps:.0f} kbps sent, {f.bitrate_received_kbps:.0f} kbps received",
                ),
                ("round trip", f"{f.round_trip_ms:.1f} ms"),
                ("packet loss", f"{100 * f.packet_loss:.2f} %"),
                (
                    "CPU",
                    f"{f.cpu_seconds:.1f} s, {f.cpu_seconds / f.duration_seconds:.2f} per call-second"
                    if f.duration_seconds
                    else "-",
                ),
                (
                    "recording",
                    f"{result.recording.sha256} ({_size(result.recording.size_bytes)}, {result.recording.duration_seconds:.1f} s)"
                    if result.recording is not None
                    else (result.recording_error or "-"),
                ),
            ],
        )
    if result.outcome != "completed":
        if ctx.out.as_json:
            raise click.exceptions.Exit(1)
        raise CliError(f"the call {result.outcome}: {result.reason}")


# -- JSON -------------------------------------------------------------------------------------


def figures_json(f: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(f):
        return asdict(f)  # type: ignore[arg-type]
    from video.convert import figures

    return asdict(figures(f))


def call_json(c: Any) -> dict[str, Any]:
    return {
        "call_id": c.call_id,
        "case_id": c.case_id,
        "case_number": c.case_number,
        "peer": c.peer,
        "peer_label": c.peer_label,
        "direction": c.direction,
        "state": c.state,
        "outcome": c.outcome,
        "end_reason": c.end_reason,
        "ended_by": c.ended_by,
        "created_at": iso(c.created_at),
        "answered_at": iso(c.answered_at, present=c.HasField("answered_at")),
        "connected_at": iso(c.connected_at, present=c.HasField("connected_at")),
        "ended_at": iso(c.ended_at, present=c.HasField("ended_at")),
        "caller_shares": c.caller_shares,
        "caller_records": c.caller_records,
        "live": c.live,
        "recordings": c.recordings,
        "figures": figures_json(c.figures) if c.HasField("figures") else None,
    }


def recording_json(r: Any) -> dict[str, Any]:
    return {
        "recording_id": r.recording_id,
        "call_id": r.call_id,
        "case_id": r.case_id,
        "sha256": r.sha256,
        "size_bytes": r.size_bytes,
        "duration_seconds": r.duration_seconds,
        "complete": r.complete,
        "note": r.note,
        "container": r.container,
        "recorded_at": iso(r.recorded_at, present=r.HasField("recorded_at")),
        "streams": [
            {
                "name": s.name,
                "kind": s.kind,
                "frames": s.frames,
                "duration_seconds": s.duration_seconds,
                "width": s.width,
                "height": s.height,
            }
            for s in r.streams
        ],
    }


def _kbps(f: Any) -> str:
    return f"{f.bitrate_sent_kbps:.0f}/{f.bitrate_received_kbps:.0f}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
