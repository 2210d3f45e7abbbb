"""Peers: invite, join, list, show, remove, allow, deny."""

from __future__ import annotations

import time
from typing import Any

import click

from node.cli.output import CliError, Context, ago, common, iso, parse_duration, short_fingerprint, when


def _client(ctx: Context) -> Any:
    from node.api.client import ApiClient

    return ApiClient(ctx.home)


@click.group()
def peer() -> None:
    """Peering with other nodes, and what each peer may do."""


@peer.command()
@common
@click.option("--ttl", default="1h", show_default=True, help="How long the token works (90s, 15m, 1h, 7d).")
@click.option("--wait", is_flag=True, help="Wait until the token is used and show what was pinned.")
def invite(ctx: Context, ttl: str, wait: bool) -> None:
    """Print a one-time join token for another node's operator."""
    from tongban_api.v1 import node_pb2

    seconds = parse_duration(ttl)
    with _client(ctx) as client:
        created = client.call(client.peering.CreateInvite, node_pb2.CreateInviteRequest(ttl_seconds=seconds))
        if ctx.out.as_json and not wait:
            ctx.out.document(_invite_json(created))
            return
        if not ctx.out.as_json:
            ctx.out.say(created.token)
            ctx.out.say(
                f"\nOne-time join token, valid until {when(created.expires_at)}. On the other node run:\n"
                f"  tongban peer join <token>"
            )
        if not wait:
            return
        current = created
        while current.state == "open":
            time.sleep(0.5)
            current = client.call(
                client.peering.GetInvite, node_pb2.GetInviteRequest(invite_id=created.invite_id)
            )
        if current.state != "used":
            raise CliError(f"the token {current.state} before anyone used it")
        detail = client.call(client.peering.GetPeer, node_pb2.GetPeerRequest(node_id=current.used_by))
    if ctx.out.as_json:
        ctx.out.document({**_invite_json(created), "state": "used", "peer": peer_json(detail)})
        return
    _show_pinned(ctx, detail)


def _invite_json(item: Any) -> dict[str, Any]:
    return {
        "invite_id": item.invite_id,
        "token": item.token,
        "expires_at": iso(item.expires_at),
        "state": item.state,
        "used_by": item.used_by,
    }


def _show_pinned(ctx: Context, detail: Any) -> None:
    ctx.out.fields(
        f"Pinned peer {detail.node_id} ({detail.name})",
        [
            ("endpoint", detail.endpoint),
            ("TLS fingerprint", short_fingerprint(detail.tls_fingerprint)),
            ("signing key", detail.keys[-1].key_id if detail.keys else ""),
        ],
    )


@peer.command()
@common
@click.argument("token")
def join(ctx: Context, token: str) -> None:
    """Use another node's join token; afterwards both nodes trust each other."""
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        detail = client.call(client.peering.Join, node_pb2.JoinPeerRequest(token=token))
    if ctx.out.as_json:
        ctx.out.document(peer_json(detail))
        return
    _show_pinned(ctx, detail)
    ctx.out.say(
        f"\nBoth nodes now trust each other. Allow service items with `tongban peer allow {detail.node_id} ITEM...`."
    )


@peer.command(name="list")
@common
@click.option("--all", "include_removed", is_flag=True, help="Include removed peers.")
def list_peers(ctx: Context, include_removed: bool) -> None:
    """The peers of this node."""
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        reply = client.call(
            client.peering.ListPeers, node_pb2.ListPeersRequest(include_removed=include_removed)
        )
    if ctx.out.as_json:
        ctx.out.lines(peer_json(p) for p in reply.peers)
        return
    if not reply.peers:
        ctx.out.say("No peers yet: `tongban peer invite` here, `tongban peer join TOKEN` there.")
        return
    ctx.out.table(
        None,
        ["PEER", "NAME", "ENDPOINT", "STATE", "TLS FINGERPRINT", "ALLOW", "DENY", "LAST CONTACT"],
        [
            (
                p.node_id,
                p.name,
                p.endpoint,
                p.state,
                short_fingerprint(p.tls_fingerprint)[:19] + "…",
                ", ".join(p.allow) or "-",
                ", ".join(p.deny) or "-",
                ago(p.last_contact, present=p.HasField("last_contact")),
            )
            for p in reply.peers
        ],
    )


@peer.command()
@common
@click.argument("node_id")
def show(ctx: Context, node_id: str) -> None:
    """One peer: identity, pinned fingerprints, keys, access rules, delivery figures."""
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        detail = client.call(client.peering.GetPeer, node_pb2.GetPeerRequest(node_id=node_id))
    if ctx.out.as_json:
        ctx.out.document(peer_json(detail))
        return
    status = detail.status
    ctx.out.fields(
        f"{detail.node_id}  {detail.name}",
        [
            ("endpoint", detail.endpoint),
            ("state", detail.state),
            ("added", when(detail.added_at)),
            ("TLS fingerprint", short_fingerprint(detail.tls_fingerprint)),
            ("allow", ", ".join(detail.allow) or "nothing yet"),
            ("deny", ", ".join(detail.deny) or "-"),
            ("last contact", ago(detail.last_contact, present=detail.HasField("last_contact"))),
            ("outbox", f"{status.pending} pending, {status.parked} parked, {status.sent} delivered"),
            ("received", status.received),
            ("problem", status.last_error or "-"),
        ],
    )
    ctx.out.say("")
    ctx.out.table(
        "Signing keys",
        ["KEY ID", "VALID FROM", "VALID UNTIL"],
        [
            (
                k.key_id,
                when(k.valid_from),
                when(k.valid_until, present=k.HasField("valid_until")) or "current",
            )
            for k in detail.keys
        ],
    )


@peer.command()
@common
@click.argument("node_id")
def remove(ctx: Context, node_id: str) -> None:
    """Stop trusting a peer, at once; its undelivered messages are parked."""
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        detail = client.call(client.peering.RemovePeer, node_pb2.RemovePeerRequest(node_id=node_id))
    if ctx.out.as_json:
        ctx.out.document(peer_json(detail))
        return
    ctx.out.say(f"removed {detail.node_id} ({detail.name}); its connections are refused from now on")


def _access(ctx: Context, node_id: str, items: tuple[str, ...], allow: bool) -> None:
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        detail = client.call(
            client.peering.SetAccess,
            node_pb2.SetAccessRequest(node_id=node_id, allow=allow, items=list(items)),
        )
    if ctx.out.as_json:
        ctx.out.document(peer_json(detail))
        return
    ctx.out.fields(
        f"Access of {detail.node_id}",
        [("allow", ", ".join(detail.allow) or "nothing"), ("deny", ", ".join(detail.deny) or "-")],
    )


@peer.command()
@common
@click.argument("node_id")
@click.argument("items", nargs=-1, required=True)
def allow(ctx: Context, node_id: str, items: tuple[str, ...]) -> None:
    """Let a peer send cases for / request certificates of these service items ('*': all)."""
    _access(ctx, node_id, items, True)


@peer.command()
@common
@click.argument("node_id")
@click.argument("items", nargs=-1, required=True)
def deny(ctx: Context, node_id: str, items: tuple[str, ...]) -> None:
    """Refuse a peer these service items (deny wins over allow, also over '*')."""
    _access(ctx, node_id, items, False)


def peer_json(p: Any) -> dict[str, Any]:
    from node.cli.node_commands import peer_status_json

    return {
        "node_id": p.node_id,
        "name": p.name,
        "endpoint": p.endpoint,
        "state": p.state,
        "tls_fingerprint": p.tls_fingerprint,
        "keys": [
            {
                "key_id": k.key_id,
                "valid_from": iso(k.valid_from),
                "valid_until": iso(k.valid_until, present=k.HasField("valid_until")),
            }
            for k in p.keys
        ],
        "allow": list(p.allow),
        "deny": list(p.deny),
        "added_at": iso(p.added_at),
        "last_contact": iso(p.last_contact, present=p.HasField("last_contact")),
        "status": peer_status_json(p.status) if p.HasField("status") else None,
    }
