"""The node itself: init, serve, status, ping, keys rotate."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from typing import Any

import click

from node.cli.output import CliError, Context, ago, common, duration, iso, short_fingerprint, when


def _client(ctx: Context) -> Any:
    from node.api.client import ApiClient

    return ApiClient(ctx.home)


@click.command()
@common
@click.option("--node-id", required=True, help="cn- and the six-digit division code, e.g. cn-320509.")
@click.option("--name", required=True, help="The service hall's name, e.g. 吴江区政务服务中心.")
@click.option("--listen", default="127.0.0.1:7301", show_default=True, help="Federation port (mutual TLS).")
@click.option("--api", "api", default="127.0.0.1:7401", show_default=True, help="Local API (loopback).")
@click.option("--metrics", default=None, help="Prometheus endpoint (default: API port + 100; '' for none).")
@click.option("--advertise", default="", help="host:port peers use to reach this node (default: --listen).")
@click.option(
    "--db", "db", default="", help="Database URL (default: SQLite in the home), e.g. postgresql://…"
)
def init(
    ctx: Context, node_id: str, name: str, listen: str, api: str, metrics: str | None, advertise: str, db: str
) -> None:
    """Create a node's home: configuration, keys, API token, database."""
    from federation.files import FileExists
    from federation.identity import NodeIdentity
    from node.config import (
        ApiSection,
        ConfigError,
        FederationSection,
        NodeConfig,
        NodeSection,
        StorageSection,
    )
    from node.config import parse_address as parse
    from node.storage import masked, normalize_url, open_database

    os.umask(0o077)  # everything the node writes is the operator's alone
    home = ctx.home
    if home.exists() or (home.keys.exists() and any(home.keys.iterdir())):
        raise CliError(f"{home.root} already holds a node; refusing to overwrite anything there")
    try:
        if metrics is None:
            host, port = parse(api, "API address")
            metrics = f"{host}:{port + 100}" if port else f"{host}:0"
        config = NodeConfig(
            node=NodeSection(id=node_id, name=name),
            federation=FederationSection(listen=listen, advertise=advertise),
            api=ApiSection(listen=api, metrics=metrics),
            storage=StorageSection(url=db),
        )
        config.validate()
    except ConfigError as error:
        raise CliError(str(error)) from None
    url = normalize_url(db or home.default_db_url())
    home.prepare()
    try:
        database = open_database(url)
        database.close()
    except Exception as error:
        raise CliError(f"cannot use the database {masked(url)}: {error}") from None
    try:
        identity = NodeIdentity.create(home.keys, config.node.id, name)
        home.create_token()
    except FileExists as error:
        raise CliError(str(error)) from None
    home.config_path.write_text(config.to_toml(), encoding="utf-8")
    summary = {
        "home": str(home.root),
        "node_id": config.node.id,
        "name": name,
        "federation": listen,
        "api": api,
        "metrics": metrics,
        "database": masked(url),
        "signing_key_id": identity.signer.key_id,
        "tls_fingerprint": identity.tls.fingerprint,
    }
    if ctx.out.as_json:
        ctx.out.document(summary)
        return
    ctx.out.fields(
        f"Created node {config.node.id} in {home.root}",
        [
            ("name", name),
            ("federation", listen),
            ("api", api),
            ("metrics", metrics or "off"),
            ("database", masked(url)),
            ("signing key", identity.signer.key_id),
            ("TLS fingerprint", short_fingerprint(identity.tls.fingerprint)),
        ],
    )
    ctx.out.say(f"\nNext: tongban serve --home {home.root}")


@click.command()
@common
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
def serve(ctx: Context, log_level: str) -> None:
    """Run the node in the foreground until SIGTERM or Ctrl-C."""
    import asyncio

    from node import logs
    from node.config import ConfigError, NodeConfig
    from node.runtime import Node

    os.umask(0o077)
    try:
        config = NodeConfig.load(ctx.home.config_path)
    except ConfigError as error:
        raise CliError(str(error)) from None
    logs.configure(log_level.upper(), json_lines=True if ctx.out.as_json else None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Node(ctx.home, config).run())


@click.command()
@common
def status(ctx: Context) -> None:
    """The node, its ports and uptime; each peer with last contact and outbox figures."""
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        reply = client.call(client.admin.Status, node_pb2.StatusRequest())
    if ctx.out.as_json:
        ctx.out.document(
            {
                "node_id": reply.node_id,
                "name": reply.name,
                "version": reply.version,
                "federation": reply.federation_endpoint,
                "api": reply.api_endpoint,
                "metrics": reply.metrics_endpoint,
                "started_at": iso(reply.started_at),
                "uptime_seconds": reply.uptime_seconds,
                "signing_key_id": reply.signing_key_id,
                "tls_fingerprint": reply.tls_fingerprint,
                "database": reply.database,
                "log_head": reply.log_head,
                "log_checkpoint": reply.log_checkpoint,
                "log_checkpoint_at": iso(
                    reply.log_checkpoint_at, present=reply.HasField("log_checkpoint_at")
                ),
                "peers": [peer_status_json(p) for p in reply.peers],
            }
        )
        return
    ctx.out.fields(
        f"{reply.node_id}  {reply.name}",
        [
            ("version", reply.version),
            ("uptime", f"{duration(reply.uptime_seconds)} (since {when(reply.started_at)})"),
            ("federation", reply.federation_endpoint),
            ("api", reply.api_endpoint),
            ("metrics", reply.metrics_endpoint or "off"),
            ("signing key", reply.signing_key_id),
            ("TLS fingerprint", short_fingerprint(reply.tls_fingerprint)),
            ("database", reply.database),
            (
                "message log",
                f"{reply.log_head} entries; last checkpoint at entry {reply.log_checkpoint}"
                + (f" ({when(reply.log_checkpoint_at)})" if reply.HasField("log_checkpoint_at") else ""),
            ),
        ],
    )
    peers = [p for p in reply.peers if p.state == "active"]
    if not peers:
        ctx.out.say("\nNo peers yet: `tongban peer invite` here, `tongban peer join TOKEN` there.")
        return
    ctx.out.say("")
    ctx.out.table(
        "Peers",
        ["PEER", "NAME", "ENDPOINT", "LAST CONTACT", "PENDING", "PARKED", "SENT", "RECEIVED", "PROBLEM"],
        [
            (
                p.node_id,
                p.name,
                p.endpoint,
                ago(p.last_contact, present=p.HasField("last_contact")),
                p.pending,
                p.parked,
                p.sent,
                p.received,
                _problem(p),
            )
            for p in peers
        ],
    )


def _problem(peer: Any) -> str:
    parts = []
    if peer.last_error:
        parts.append(peer.last_error[:120])
    if peer.HasField("retry_at"):
        parts.append(f"retry at {when(peer.retry_at)}")
    if peer.parked:
        parts.append(f"{peer.parked} parked: `tongban outbox list --parked`")
    return "; ".join(parts)


def peer_status_json(p: Any) -> dict[str, Any]:
    return {
        "node_id": p.node_id,
        "name": p.name,
        "endpoint": p.endpoint,
        "state": p.state,
        "last_contact": iso(p.last_contact, present=p.HasField("last_contact")),
        "pending": p.pending,
        "parked": p.parked,
        "sent": p.sent,
        "received": p.received,
        "last_error": p.last_error,
        "retry_at": iso(p.retry_at, present=p.HasField("retry_at")),
        "oldest_pending": iso(p.oldest_pending, present=p.HasField("oldest_pending")),
    }


@click.command()
@common
@click.argument("peer")
@click.option("--count", "-c", default=1, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--no-wait", is_flag=True, help="Return once all pings are queued.")
@click.option("--size", default=0, type=click.IntRange(0, 1_000_000), help="Padding bytes per ping.")
@click.option(
    "--timeout", default=0.0, type=float, help="Seconds to wait for receipts (default: scaled by count)."
)
def ping(ctx: Context, peer: str, count: int, no_wait: bool, size: int, timeout: float) -> None:
    """Send signed pings through the outbox and wait for every signed receipt."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tongban_api.v1 import node_pb2

    request = node_pb2.PingRequest(
        peer=peer, count=count, no_wait=no_wait, payload_bytes=size, timeout_seconds=timeout
    )
    show_progress = not ctx.out.as_json and sys.stderr.isatty() and not no_wait and count > 1
    final = None
    with _client(ctx) as client:
        if show_progress:
            with Progress(
                TextColumn(f"ping {peer}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=True,
            ) as bar:
                task = bar.add_task("ping", total=count)
                for update in client.stream(client.admin.Ping, request):
                    bar.update(task, completed=update.receipted)
                    final = update
        else:
            for update in client.stream(client.admin.Ping, request):
                final = update
    if final is None or not final.done:
        raise CliError("the node ended the ping without a result")
    rtts = sorted(final.rtt_ms)
    figures = _rtt_figures(rtts)
    if ctx.out.as_json:
        ctx.out.document(
            {
                "peer": peer,
                "count": count,
                "queued": final.queued,
                "receipted": final.receipted,
                "waited": not no_wait,
                "elapsed_seconds": round(final.elapsed_seconds, 4),
                "rtt_ms": figures,
                "message_ids": list(final.message_ids),
            }
        )
        return
    if no_wait:
        ctx.out.say(f"queued {final.queued} signed pings to {peer}; they leave through the outbox")
        return
    ctx.out.say(
        f"{peer}: {final.receipted} of {count} signed pings receipted in {final.elapsed_seconds:.3f} s"
    )
    if figures:
        ctx.out.table(
            None,
            ["round trip (ms)", "min", "p50", "avg", "p99", "max"],
            [("", figures["min"], figures["p50"], figures["avg"], figures["p99"], figures["max"])],
        )


def _rtt_figures(rtts: list[float]) -> dict[str, float]:
    if not rtts:
        return {}

    def pick(fraction: float) -> float:
        return rtts[min(len(rtts) - 1, int(fraction * len(rtts)))]

    return {
        "min": round(rtts[0], 2),
        "p50": round(pick(0.5), 2),
        "avg": round(statistics.fmean(rtts), 2),
        "p99": round(pick(0.99), 2),
        "max": round(rtts[-1], 2),
    }


@click.group()
def keys() -> None:
    """The node's signing keys."""


@keys.command()
@common
def rotate(ctx: Context) -> None:
    """Make a new signing key; old messages still verify, peers learn the new key."""
    from tongban_api.v1 import node_pb2

    with _client(ctx) as client:
        reply = client.call(client.admin.RotateKeys, node_pb2.RotateKeysRequest())
    if ctx.out.as_json:
        ctx.out.document(
            {
                "previous_key_id": reply.previous_key_id,
                "key_id": reply.key_id,
                "valid_from": iso(reply.valid_from),
                "peers_told": list(reply.peers_told),
                "peers_not_reached": list(reply.peers_not_reached),
            }
        )
        return
    ctx.out.fields(
        "Signing key rotated",
        [
            ("previous key", reply.previous_key_id),
            ("new key", reply.key_id),
            ("valid from", when(reply.valid_from)),
            ("peers told", ", ".join(reply.peers_told) or "none"),
            ("not reached", ", ".join(reply.peers_not_reached) or "none"),
        ],
    )
    if reply.peers_not_reached:
        ctx.out.say("Peers not reached learn the new key the next time this node contacts them.")
