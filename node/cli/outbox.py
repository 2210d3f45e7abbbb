"""The outbox: list what waits or was parked, resend."""

from __future__ import annotations

from typing import Any

import click

from node.cli.output import Context, common, iso, when


@click.group()
def outbox() -> None:
    """Messages to peers that wait for delivery, or were parked."""


@outbox.command(name="list")
@common
@click.option("--parked", is_flag=True, help="Only parked messages.")
@click.option("--peer", default="", help="Only messages to this peer.")
@click.option("--all", "include_delivered", is_flag=True, help="Delivered messages too.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def list_messages(ctx: Context, parked: bool, peer: str, include_delivered: bool, limit: int) -> None:
    """Undelivered messages, newest first."""
    from node.api.client import ApiClient
    from tongban_api.v1 import node_pb2

    with ApiClient(ctx.home) as client:
        reply = client.call(
            client.outbox.ListMessages,
            node_pb2.ListOutboxRequest(
                parked_only=parked, peer=peer, limit=limit, include_delivered=include_delivered
            ),
        )
    if ctx.out.as_json:
        ctx.out.lines(message_json(m) for m in reply.messages)
        return
    what = "parked messages" if parked else "messages"
    if not reply.messages:
        ctx.out.say(f"no {what}" + (f" to {peer}" if peer else ""))
        return
    ctx.out.table(
        f"{reply.total} {what}"
        + (f" (newest {len(reply.messages)})" if reply.total > len(reply.messages) else ""),
        ["MESSAGE ID", "PEER", "KIND", "CASE", "STATE", "TRIES", "CREATED", "LAST ERROR / OUTCOME"],
        [
            (
                m.message_id,
                m.peer,
                m.kind,
                f"{m.case_id}#{m.case_seq}" if m.case_id else "",
                m.state,
                m.attempts,
                when(m.created_at),
                m.last_error or m.outcome,
            )
            for m in reply.messages
        ],
    )
    if parked:
        ctx.out.say("Resend one with `tongban outbox resend MESSAGE_ID` (it keeps its ID and signature).")


@outbox.command()
@common
@click.argument("message_id")
def resend(ctx: Context, message_id: str) -> None:
    """Put a parked message back in line, with its original message ID."""
    from node.api.client import ApiClient
    from tongban_api.v1 import node_pb2

    with ApiClient(ctx.home) as client:
        message = client.call(client.outbox.Resend, node_pb2.ResendRequest(message_id=message_id))
    if ctx.out.as_json:
        ctx.out.document(message_json(message))
        return
    ctx.out.say(f"{message.message_id} to {message.peer} is back in line (state {message.state})")


def message_json(m: Any) -> dict[str, Any]:
    return {
        "message_id": m.message_id,
        "peer": m.peer,
        "kind": m.kind,
        "case_id": m.case_id,
        "case_seq": m.case_seq,
        "state": m.state,
        "attempts": m.attempts,
        "created_at": iso(m.created_at),
        "next_attempt_at": iso(m.next_attempt_at, present=m.HasField("next_attempt_at")),
        "delivered_at": iso(m.delivered_at, present=m.HasField("delivered_at")),
        "last_error": m.last_error,
        "outcome": m.outcome,
    }
