"""Cases at the cross-region window, and the clerks who handle them.

Every command that changes a case acts as a clerk: `--clerk NAME` (the token `tongban clerk
add NAME` stored in the home), or the token itself in $TONGBAN_CLERK_TOKEN. Lists mask ID
numbers, phone numbers and names; `case show` gives them in full.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from node.cli.output import CliError, Context, common, iso, shown_us

CHUNK = 1024 * 1024


def _tokens_path(ctx: Context) -> Path:
    return ctx.home.root / "clerk-tokens.json"


def _saved_tokens(ctx: Context) -> dict[str, str]:
    try:
        data = json.loads(_tokens_path(ctx).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _client(ctx: Context, clerk: str | None = None) -> Any:
    from node.api.client import ApiClient

    token = ""
    if clerk:
        token = _saved_tokens(ctx).get(clerk, "")
        if not token:
            raise CliError(
                f"no token for clerk {clerk} in {_tokens_path(ctx)}; `tongban clerk add {clerk}` makes one, "
                "or set TONGBAN_CLERK_TOKEN"
            )
    else:
        token = os.environ.get("TONGBAN_CLERK_TOKEN", "")
    return ApiClient(ctx.home, clerk_token=token)


clerk_option = click.option(
    "--clerk", default=None, envvar="TONGBAN_CLERK", help="The acting clerk (default: $TONGBAN_CLERK)."
)


# -- clerks -----------------------------------------------------------------------------------------


@click.group()
def clerk() -> None:
    """Clerks: credentials for the people who act on cases."""


@clerk.command(name="add")
@common
@click.argument("name")
@click.option(
    "--no-save",
    is_flag=True,
    help="Only print the token (hand it to the clerk for $TONGBAN_CLERK_TOKEN); keep no copy in the home.",
)
def add_clerk(ctx: Context, name: str, no_save: bool) -> None:
    """Make a clerk's credential; its token is shown once and kept in the home for --clerk."""
    from federation.files import write_secret
    from tongban_api.v1 import cases_pb2

    with _client(ctx) as client:
        reply = client.call(client.clerks.AddClerk, cases_pb2.AddClerkRequest(name=name))
    if not no_save:
        tokens = _saved_tokens(ctx)
        tokens[reply.name] = reply.token
        write_secret(_tokens_path(ctx), json.dumps(tokens, ensure_ascii=False, indent=2).encode())
    if ctx.out.as_json:
        ctx.out.document({"name": reply.name, "token": reply.token, "saved": not no_save})
        return
    ctx.out.say(f"clerk {reply.name} added; token (shown once): {reply.token}")
    if no_save:
        ctx.out.say("Only the clerk holds it now: they act with TONGBAN_CLERK_TOKEN=<token>.")
    else:
        ctx.out.say(
            f"Act as this clerk with --clerk {reply.name} (the token is kept in {_tokens_path(ctx)})."
        )


@clerk.command(name="list")
@common
def list_clerks(ctx: Context) -> None:
    """The clerks of this node."""
    from federation.clock import iso as iso_us
    from tongban_api.v1 import cases_pb2

    with _client(ctx) as client:
        reply = client.call(client.clerks.ListClerks, cases_pb2.ListClerksRequest())
    rows = [{"name": c.name, "created_at": iso_us(c.created_at_us)} for c in reply.clerks]
    if ctx.out.as_json:
        ctx.out.lines(rows)
        return
    ctx.out.table(None, ["CLERK", "ADDED"], [(r["name"], r["created_at"]) for r in rows])


# -- uploading --------------------------------------------------------------------------------------


def _pairs(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest:
            raise CliError(f"{what} {value!r} must be written KEY=VALUE, e.g. id-card=scan.pdf")
        pairs.append((key.strip(), rest))
    return pairs


def _upload(client: Any, kind: str, path: Path) -> Any:
    """Put a file in the node's blob store (unless it is there already); its MaterialRef."""
    from node.api.client import ApiError
    from tongban_api.v1 import cases_pb2

    if not path.is_file():
        raise CliError(f"material {kind}: {path} is not a file")
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            hasher.update(block)
            size += len(block)
    digest = hasher.hexdigest()
    try:
        ref = client.call(client.cases.StatBlob, cases_pb2.StatBlobRequest(sha256=digest))
    except ApiError as error:
        if error.code.name != "NOT_FOUND":
            raise

        def chunks() -> Iterator[Any]:
            yield cases_pb2.UploadChunk(sha256=digest, size=size, filename=path.name)
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    yield cases_pb2.UploadChunk(data=block)

        ref = client.call(client.cases.Upload, chunks(), timeout=600)
    return cases_pb2.MaterialRef(
        kind=kind, sha256=ref.sha256, size=ref.size, format=ref.format, filename=path.name
    )


# -- cases ------------------------------------------------------------------------------------------


@click.group()
def case() -> None:
    """Cases (办件): open, follow, decide, transfer."""


@case.command(name="open")
@common
@clerk_option
@click.option("--item", required=True, help="The service item code (see `tongban catalog show --peer ID`).")
@click.option("--applicant-name", default="", help="The applicant's name, e.g. 陈添荣.")
@click.option("--applicant-id", default="", help="Resident ID number (or unified social credit code).")
@click.option("--phone", default="", help="The applicant's phone number.")
@click.option(
    "--to", "to", default="", help="The competent node (default: from the applicant's division code)."
)
@click.option("--material", "materials", multiple=True, help="KIND=PATH, once per material.")
@click.option("--form", "form", multiple=True, help="KEY=VALUE, once per form field.")
@click.option(
    "--receipt-pdf", type=click.Path(dir_okay=False, path_type=Path), help="Write the receipt as PDF."
)
@click.option(
    "--batch", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A CSV of applicants."
)
def open_case(
    ctx: Context,
    clerk: str | None,
    item: str,
    applicant_name: str,
    applicant_id: str,
    phone: str,
    to: str,
    materials: tuple[str, ...],
    form: tuple[str, ...],
    receipt_pdf: Path | None,
    batch: Path | None,
) -> None:
    """Check an application against the competent node's catalog, send it, print the receipt."""
    from tongban_api.v1 import cases_pb2

    common_materials = _pairs(materials, "--material")
    common_form = dict(_pairs(form, "--form"))
    with _client(ctx, clerk) as client:
        if batch is not None:
            _open_batch(ctx, client, batch, item, to, common_materials, common_form)
            return
        refs = [_upload(client, kind, Path(path)) for kind, path in common_materials]
        view = client.call(
            client.cases.Open,
            cases_pb2.OpenCaseRequest(
                item=item,
                applicant=cases_pb2.Applicant(name=applicant_name, id_number=applicant_id, phone=phone),
                to=to,
                materials=refs,
                form=common_form,
            ),
        )
        receipt = client.call(client.cases.Receipt, cases_pb2.CaseRequest(case=view.case.case_id))
    if receipt_pdf is not None:
        receipt_pdf.write_bytes(receipt.pdf)
    if ctx.out.as_json:
        ctx.out.document({**case_json(view), "receipt": receipt.text, "receipt_pdf": str(receipt_pdf or "")})
        return
    ctx.out.say(f"case {view.case.number} opened and sent to {view.case.holder}\n")
    ctx.out.say(receipt.text.rstrip())
    if receipt_pdf is not None:
        ctx.out.say(f"\nreceipt PDF written to {receipt_pdf}")


def _open_batch(
    ctx: Context,
    client: Any,
    batch: Path,
    item: str,
    to: str,
    common_materials: list[tuple[str, str]],
    common_form: dict[str, str],
) -> None:
    """One case per CSV row: applicant_name, applicant_id[, phone][, to], material:KIND, form:KEY."""
    from node.api.client import ApiError
    from tongban_api.v1 import cases_pb2

    try:
        with batch.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise CliError(f"{batch} is not a UTF-8 CSV file: {error}") from None
    if not rows or "applicant_id" not in rows[0] or "applicant_name" not in rows[0]:
        raise CliError(
            f"{batch} needs a header with applicant_name and applicant_id (and optionally phone, to, material:KIND, form:KEY)"
        )
    shared = {kind: _upload(client, kind, Path(path)) for kind, path in common_materials}
    results: list[dict[str, Any]] = []

    def one(number: int, row: dict[str, str]) -> dict[str, Any]:
        try:
            refs = dict(shared)
            fields = dict(common_form)
            for key, value in row.items():
                if key and key.startswith("material:") and value:
                    refs[key[9:]] = _upload(client, key[9:], (batch.parent / value).resolve())
                elif key and key.startswith("form:") and value:
                    fields[key[5:]] = value
            view = client.call(
                client.cases.Open,
                cases_pb2.OpenCaseRequest(
                    item=item,
                    applicant=cases_pb2.Applicant(
                        name=row.get("applicant_name", ""),
                        id_number=row.get("applicant_id", ""),
                        phone=row.get("phone", "") or "",
                    ),
                    to=row.get("to", "") or to,
                    materials=list(refs.values()),
                    form=fields,
                ),
            )
            return {
                "row": number,
                "ok": True,
                "number": view.case.number,
                "holder": view.case.holder,
                "error": "",
            }
        except (ApiError, CliError) as error:
            message = error.message if isinstance(error, ApiError) else error.format_message()
            return {"row": number, "ok": False, "number": "", "holder": "", "error": message}

    if not ctx.out.as_json and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("opening cases"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as progress:
            task = progress.add_task("batch", total=len(rows))
            for number, row in enumerate(rows, start=2):
                results.append(one(number, row))
                progress.advance(task)
    else:
        for number, row in enumerate(rows, start=2):
            results.append(one(number, row))
            if not ctx.out.as_json:
                click.echo(f"\ropening cases: {len(results)}/{len(rows)}", err=True, nl=False)
        if not ctx.out.as_json:
            click.echo("", err=True)
    failed = [r for r in results if not r["ok"]]
    if ctx.out.as_json:
        ctx.out.lines(results)
    else:
        ctx.out.table(
            f"{len(results) - len(failed)} of {len(results)} cases opened",
            ["CSV LINE", "RESULT", "CASE / WHY NOT"],
            [(r["row"], "opened" if r["ok"] else "failed", r["number"] or r["error"]) for r in results],
        )
    if failed:
        raise CliError(
            f"{len(failed)} of {len(results)} rows were not opened; each row's reason is listed above"
        )


@case.command(name="list")
@common
@click.option("--inbox", "box", flag_value="inbox", help="Cases this node holds.")
@click.option("--outbox", "box", flag_value="outbox", help="Cases this node accepted for others.")
@click.option("--all", "box", flag_value="all", default=True, help="Every case this node knows (default).")
@click.option("--state", default="", help="Only cases in this state.")
@click.option("--overdue", is_flag=True, help="Only overdue cases.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def list_cases(ctx: Context, box: str, state: str, overdue: bool, limit: int) -> None:
    """Cases, newest change first; personal data masked."""
    from federation.clock import iso as iso_us
    from tongban_api.v1 import cases_pb2

    with _client(ctx) as client:
        reply = client.call(
            client.cases.List, cases_pb2.ListCasesRequest(box=box, state=state, overdue=overdue, limit=limit)
        )
    rows = [
        {
            "case_id": c.case_id,
            "number": c.number,
            "item": c.item_code,
            "state": c.state,
            "holder": c.holder,
            "accepting_node": c.accepting_node,
            "applicant_name": c.applicant_name,
            "applicant_id": c.applicant_id,
            "phone": c.applicant_phone,
            "due_date": c.due_date,
            "overdue": c.overdue,
            "updated_at": iso_us(c.updated_at_us),
        }
        for c in reply.cases
    ]
    if ctx.out.as_json:
        ctx.out.lines(rows)
        return
    if not rows:
        ctx.out.say("no cases")
        return
    ctx.out.table(
        f"{reply.total} cases" + (f" (newest {len(rows)})" if reply.total > len(rows) else ""),
        ["CASE", "ITEM", "STATE", "HOLDER", "APPLICANT", "ID NUMBER", "DUE"],
        [
            (
                r["number"],
                r["item"],
                r["state"],
                r["holder"],
                r["applicant_name"],
                r["applicant_id"],
                (r["due_date"] + (" OVERDUE" if r["overdue"] else "")),
            )
            for r in rows
        ],
    )


@case.command()
@common
@click.argument("case_ref", metavar="CASE")
def show(ctx: Context, case_ref: str) -> None:
    """State, holder, due date, every transition, materials with SHA-256 (personal data in full)."""
    from tongban_api.v1 import cases_pb2

    with _client(ctx) as client:
        view = client.call(client.cases.Show, cases_pb2.CaseRequest(case=case_ref))
    _print_case(ctx, view)


@case.command()
@common
@click.argument("case_ref", metavar="CASE")
@click.option(
    "--pdf", "pdf_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the PDF here."
)
def receipt(ctx: Context, case_ref: str, pdf_path: Path | None) -> None:
    """The acceptance receipt (受理回执) of a case, as text (and PDF)."""
    from tongban_api.v1 import cases_pb2

    with _client(ctx) as client:
        reply = client.call(client.cases.Receipt, cases_pb2.CaseRequest(case=case_ref))
    if pdf_path is not None:
        pdf_path.write_bytes(reply.pdf)
    if ctx.out.as_json:
        ctx.out.document({"text": reply.text, "pdf": str(pdf_path or "")})
        return
    ctx.out.say(reply.text.rstrip())


def _act(ctx: Context, clerk: str | None, case_ref: str, action: str, **fields: Any) -> None:
    from tongban_api.v1 import cases_pb2

    attach: Path | None = fields.pop("attach", None)
    with _client(ctx, clerk) as client:
        attachments = [_upload(client, "result", attach)] if attach is not None else []
        view = client.call(
            client.cases.Act,
            cases_pb2.ActRequest(case=case_ref, action=action, attachments=attachments, **fields),
        )
    if ctx.out.as_json:
        ctx.out.document(case_json(view))
        return
    last = view.case.history[-1] if view.case.history else None
    ctx.out.say(
        f"case {view.case.number}: {last.action if last else action} → {view.case.state}"
        f" (holder {view.case.holder}"
        + (f", transfer to {view.case.transfer_to} pending" if view.case.transfer_to else "")
        + ")"
    )


def _simple(action: str, doc: str, *options: Any) -> None:
    def command(ctx: Context, clerk: str | None, case_ref: str, **fields: Any) -> None:
        _act(ctx, clerk, case_ref, action, **{k: v for k, v in fields.items() if v is not None})

    command.__doc__ = doc
    decorated: Any = command
    for option in reversed(options):
        decorated = option(decorated)
    decorated = click.argument("case_ref", metavar="CASE")(decorated)
    decorated = clerk_option(decorated)
    decorated = common(decorated)
    case.command(name=action)(decorated)


_reason = click.option("--reason", required=True, help="Why (the applicant is told).")
_simple("accept", "Take the case on (受理); the time limit starts.")
_simple("reject", "Refuse the case (不予受理), with the reason.", _reason)
_simple(
    "complete",
    "Decide the case (办结) with its result.",
    click.option("--result", required=True, help="The decision, e.g. 准予提取."),
    click.option(
        "--attach", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A result document."
    ),
)
_simple("deliver", "The result was handed to the applicant (送达).")
_simple("withdraw", "The applicant withdraws the application.", _reason)
_simple(
    "transfer",
    "Offer the case to the competent node (转办).",
    click.option("--to", "to", required=True, help="The node to transfer to."),
    _reason,
)
_simple("transfer-accept", "Accept a case offered to this node.")
_simple("transfer-refuse", "Refuse a case offered to this node.", _reason)


@case.command()
@common
@clerk_option
@click.argument("case_ref", metavar="CASE")
@click.option("--need", "needs", required=True, help="The material kinds needed, KIND[,KIND], all at once.")
@click.option("--note", default="", help="What is wrong or missing, for the applicant.")
def supplement(ctx: Context, clerk: str | None, case_ref: str, needs: str, note: str) -> None:
    """Ask for more or corrected materials (一次性告知补正)."""
    _act(
        ctx,
        clerk,
        case_ref,
        "supplement",
        needs=[n.strip() for n in needs.split(",") if n.strip()],
        note=note,
    )


@case.command()
@common
@clerk_option
@click.argument("case_ref", metavar="CASE")
@click.option(
    "--stars", required=True, type=click.IntRange(1, 5), help="1 (very dissatisfied) to 5 (very satisfied)."
)
@click.option("--comment", default="", help="The applicant's words.")
def rate(ctx: Context, clerk: str | None, case_ref: str, stars: int, comment: str) -> None:
    """The applicant's rating (好差评); closes the case."""
    _act(ctx, clerk, case_ref, "rate", stars=stars, note=comment)


@case.group()
def material() -> None:
    """A case's materials: add (supplement) or fetch a copy."""


@material.command(name="add")
@common
@clerk_option
@click.argument("case_ref", metavar="CASE")
@click.argument("materials", nargs=-1, required=True, metavar="KIND=PATH...")
def add_material(ctx: Context, clerk: str | None, case_ref: str, materials: tuple[str, ...]) -> None:
    """Add materials to a case (a supplement goes back once everything asked for is in)."""
    from tongban_api.v1 import cases_pb2

    with _client(ctx, clerk) as client:
        refs = [_upload(client, kind, Path(path)) for kind, path in _pairs(materials, "material")]
        view = client.call(
            client.cases.AddMaterial, cases_pb2.AddMaterialRequest(case=case_ref, materials=refs)
        )
    if ctx.out.as_json:
        ctx.out.document(case_json(view))
        return
    ctx.out.say(f"case {view.case.number}: {len(refs)} material(s) added; state {view.case.state}")


@material.command(name="get")
@common
@click.argument("case_ref", metavar="CASE")
@click.argument("kind")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def get_material(ctx: Context, case_ref: str, kind: str, output: Path) -> None:
    """Write a copy of a case's material to a file."""
    from tongban_api.v1 import cases_pb2

    hasher = hashlib.sha256()
    size = 0
    with _client(ctx) as client, output.open("wb") as handle:
        for chunk in client.stream(
            client.cases.GetMaterial, cases_pb2.GetMaterialRequest(case=case_ref, kind=kind)
        ):
            data = chunk.data  # read once: each read of the field is a fresh copy
            handle.write(data)
            hasher.update(data)
            size += len(data)
    if ctx.out.as_json:
        ctx.out.document({"path": str(output), "sha256": hasher.hexdigest(), "size": size})
        return
    ctx.out.say(f"{kind} written to {output} ({size} bytes, SHA-256 {hasher.hexdigest()})")


# -- showing ------------------------------------------------------------------------------------------


def _when_us(us: int) -> str:
    return shown_us(us)


def case_json(view: Any) -> dict[str, Any]:
    c = view.case
    missing = set(view.materials_missing)
    return {
        "case_id": c.case_id,
        "number": c.number,
        "item_code": c.item_code,
        "item_name": c.item_name,
        "state": c.state,
        "holder": c.holder,
        "accepting_node": c.accepting_node,
        "transfer_to": c.transfer_to,
        "role": view.role,
        "applicant": {
            "name": c.applicant.name,
            "id_number": c.applicant.id_number,
            "phone": c.applicant.phone,
        },
        "form": dict(c.form),
        "due_date": c.due_date,
        "overdue": view.overdue,
        "result": c.result,
        "stars": c.stars,
        "opened_at": iso(None) if not c.opened_at_us else _iso_us(c.opened_at_us),
        "materials": [
            {
                "kind": m.kind,
                "sha256": m.sha256,
                "size": m.size,
                "format": m.format,
                "filename": m.filename,
                "present": m.kind not in missing,
            }
            for m in c.materials
        ],
        "history": [
            {
                "event_id": e.event_id,
                "action": e.action,
                "node": e.node,
                "clerk": e.clerk,
                "at_us": e.at_us,
                "at": _iso_us(e.at_us),
                "reason": e.reason,
                "state": e.state,
                "holder": e.holder,
                "needs": list(e.needs),
                "result": e.result,
                "stars": e.stars,
                "due_date": e.due_date,
                "transfer_to": e.transfer_to,
                "note": e.note,
                "materials": [m.sha256 for m in e.materials],
            }
            for e in c.history
        ],
    }


def _iso_us(us: int) -> str:
    from federation.clock import iso as iso_us

    return iso_us(us)


def _print_case(ctx: Context, view: Any) -> None:
    if ctx.out.as_json:
        ctx.out.document(case_json(view))
        return
    c = view.case
    ctx.out.fields(
        f"Case {c.number}  {c.item_name}",
        [
            ("item", c.item_code),
            ("state", c.state + ("  (OVERDUE)" if view.overdue else "")),
            ("holder", c.holder + (f"  (transfer to {c.transfer_to} pending)" if c.transfer_to else "")),
            ("accepting node", c.accepting_node),
            ("this node is", view.role),
            ("applicant", f"{c.applicant.name}  {c.applicant.id_number}  {c.applicant.phone}".rstrip()),
            ("form", ", ".join(f"{k}={v}" for k, v in sorted(c.form.items())) or "-"),
            ("due date", c.due_date or "-"),
            ("result", c.result or "-"),
            ("rating", f"{c.stars} stars" if c.stars else "-"),
        ],
    )
    missing = set(view.materials_missing)
    ctx.out.table(
        "\nMaterials",
        ["KIND", "FORMAT", "SIZE", "SHA-256", "HERE"],
        [
            (m.kind, m.format, m.size, m.sha256, "arriving" if m.kind in missing else "yes")
            for m in c.materials
        ],
    )
    ctx.out.table(
        "\nHistory",
        ["WHEN", "ACTION", "NODE", "CLERK", "STATE", "DETAIL"],
        [
            (
                _when_us(e.at_us),
                e.action,
                e.node,
                e.clerk or "(system)",
                e.state,
                "; ".join(
                    x
                    for x in (
                        e.reason,
                        ("needs " + ",".join(e.needs)) if e.needs else "",
                        e.note,
                        e.result,
                        f"due {e.due_date}" if e.due_date else "",
                        f"to {e.transfer_to}" if e.transfer_to else "",
                        f"{e.stars} stars" if e.stars else "",
                        f"{len(e.materials)} material(s)" if e.materials else "",
                    )
                    if x
                ),
            )
            for e in c.history
        ],
    )
