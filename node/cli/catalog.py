"""The service catalog: import this node's, show this node's or a peer's, refresh peers'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from node.cli.output import CliError, Context, common, iso, when


def _client(ctx: Context) -> Any:
    from node.api.client import ApiClient

    return ApiClient(ctx.home)


@click.group()
def catalog() -> None:
    """The service items this node handles, and its peers' (fetched and cached)."""


@catalog.command(name="import")
@common
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_catalog(ctx: Context, file: Path) -> None:
    """Load this node's catalog from a TOML file (a new version only if something changed)."""
    from tongban_api.v1 import catalog_pb2

    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{file} is not UTF-8 text; save the catalog as UTF-8 TOML") from None
    with _client(ctx) as client:
        reply = client.call(
            client.catalog.Import, catalog_pb2.ImportCatalogRequest(toml=text, source=file.name)
        )
    if ctx.out.as_json:
        ctx.out.document(
            {"version": reply.version, "changed": reply.changed, "items": reply.items, "digest": reply.digest}
        )
        return
    if reply.changed:
        ctx.out.say(
            f"catalog version {reply.version} published: {reply.items} items (digest {reply.digest[:16]})"
        )
    else:
        ctx.out.say(f"catalog unchanged: still version {reply.version} with {reply.items} items")


@catalog.command()
@common
@click.option("--peer", default="", help="A peer's catalog (fetched when none is cached).")
@click.option("--refresh", is_flag=True, help="Fetch the peer's catalog again first.")
def show(ctx: Context, peer: str, refresh: bool) -> None:
    """Items with names, required materials, form fields, time limit, modes, certificate types."""
    from tongban_api.v1 import catalog_pb2

    with _client(ctx) as client:
        view = client.call(client.catalog.Show, catalog_pb2.ShowCatalogRequest(peer=peer, refresh=refresh))
    if ctx.out.as_json:
        ctx.out.document(view_json(view))
        return
    c = view.catalog
    ctx.out.say(
        f"Catalog of {c.node_id}, version {c.version}, published {when(c.published_at)}"
        + (f", cached {when(view.fetched_at)}" if view.source == "peer" else "")
    )
    for item in c.items:
        ctx.out.say("")
        ctx.out.fields(
            f"{item.code}  {item.name}",
            [
                ("English", item.name_en),
                ("department", item.department),
                ("time limit", f"{item.time_limit_days} working days"),
                ("modes", ", ".join(item.modes)),
                ("certificates", ", ".join(item.certificate_types) or "-"),
            ],
        )
        if item.materials:
            ctx.out.table(
                None,
                ["MATERIAL", "NAME", "MANDATORY", "FORMATS", "MAX"],
                [
                    (m.kind, m.name, "yes" if m.mandatory else "no", ",".join(m.formats), _size(m.max_bytes))
                    for m in item.materials
                ],
            )
        if item.fields:
            ctx.out.table(
                None,
                ["FIELD", "LABEL", "REQUIRED", "TYPE", "RULE"],
                [
                    (f.key, f.label, "yes" if f.required else "no", f.type, f.pattern or "/".join(f.choices))
                    for f in item.fields
                ],
            )


@catalog.command()
@common
@click.option("--peer", default="", help="Only this peer (default: every active peer).")
def refresh(ctx: Context, peer: str) -> None:
    """Fetch peers' catalogs now (an unchanged catalog costs one small call and no writes)."""
    from tongban_api.v1 import catalog_pb2

    with _client(ctx) as client:
        reply = client.call(client.catalog.Refresh, catalog_pb2.RefreshCatalogRequest(peer=peer))
    rows = [
        {"peer": r.peer, "version": r.version, "changed": r.changed, "error": r.error} for r in reply.results
    ]
    if ctx.out.as_json:
        ctx.out.lines(rows)
        return
    ctx.out.table(
        None,
        ["PEER", "VERSION", "RESULT"],
        [
            (r["peer"], r["version"], r["error"] or ("new version cached" if r["changed"] else "unchanged"))
            for r in rows
        ],
    )


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def view_json(view: Any) -> dict[str, Any]:
    c = view.catalog
    return {
        "node_id": c.node_id,
        "version": c.version,
        "published_at": iso(c.published_at),
        "digest": view.digest,
        "source": view.source,
        "fetched_at": iso(view.fetched_at),
        "items": [
            {
                "code": i.code,
                "name": i.name,
                "name_en": i.name_en,
                "department": i.department,
                "time_limit_days": i.time_limit_days,
                "modes": list(i.modes),
                "certificate_types": list(i.certificate_types),
                "materials": [
                    {
                        "kind": m.kind,
                        "name": m.name,
                        "mandatory": m.mandatory,
                        "formats": list(m.formats),
                        "max_bytes": m.max_bytes,
                    }
                    for m in i.materials
                ],
                "fields": [
                    {
                        "key": f.key,
                        "label": f.label,
                        "required": f.required,
                        "type": f.type,
                        "pattern": f.pattern,
                        "choices": list(f.choices),
                    }
                    for f in i.fields
                ],
            }
            for i in c.items
        ],
    }
