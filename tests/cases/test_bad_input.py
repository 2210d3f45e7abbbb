"""Bad input at the window gets an error that says what to fix, and the nodes keep serving."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from federation.client import channel_options
from node.cases import chunkwire
from node.cases.blobs import CHUNK
from node.cases.materials import FETCH_METHOD
from tests.cases.support import CHEN, Hall, scan_pdf, write
from tongban_api.v1 import cases_pb2

pytestmark = pytest.mark.e2e

ITEM = "pension-balance-withdrawal"
FORM = ("--form", "bank_account=6222021234567890123", "--form", "reason=其他")


def open_args(tmp_path: Path, **changes: str) -> list[str]:
    id_card = write(tmp_path, "id.pdf", scan_pdf("id"))
    form = write(tmp_path, "form.pdf", scan_pdf("form"))
    values = {"item": ITEM, "applicant-id": CHEN, "id-card": str(id_card), "application-form": str(form)}
    values.update(changes)
    args = [
        "case",
        "open",
        "--item",
        values["item"],
        "--applicant-name",
        "陈添荣",
        "--applicant-id",
        values["applicant-id"],
    ]
    for kind in ("id-card", "application-form"):
        if values[kind]:
            args += ["--material", f"{kind}={values[kind]}"]
    return [*args, *FORM]


def test_bad_input_is_refused_with_what_to_fix(halls: tuple[Hall, Hall], tmp_path: Path) -> None:
    wujiang, huoqiu = halls
    wrong_check = CHEN[:17] + ("1" if CHEN[17] != "1" else "2")
    assert "check character (GB 11643)" in wujiang.fail(*open_args(tmp_path, **{"applicant-id": wrong_check}))
    unknown = wujiang.fail(*open_args(tmp_path, item="moon-landing-permit"))
    assert "cn-341522 has no service item 'moon-landing-permit'" in unknown
    assert "[INVALID_ARGUMENT]" in unknown
    missing = wujiang.fail(*open_args(tmp_path, **{"application-form": ""}))
    assert "missing mandatory application-form (养老保险待遇申请表)" in missing

    program = write(tmp_path, "scan.pdf", b"\x7fELF\x02\x01\x01\x00" + bytes(4096))
    renamed = wujiang.fail(*open_args(tmp_path, **{"id-card": str(program)}))
    assert "a Linux program (ELF)" in renamed
    big = write(tmp_path, "big.pdf", scan_pdf("big") + bytes(11 << 20))
    over = wujiang.fail(*open_args(tmp_path, **{"id-card": str(big)}))
    assert "over cn-341522's limit of 10 MiB" in over
    assert "[RESOURCE_EXHAUSTED]" in over

    escape = wujiang.fail(*open_args(tmp_path), "--material", f"../../etc/passwd={tmp_path / 'id.pdf'}")
    assert "../../etc/passwd is not listed for pension-balance-withdrawal" in escape
    blobs = wujiang.node.home / "blobs"
    assert all(p.resolve().is_relative_to(blobs.resolve()) for p in blobs.rglob("*"))
    assert not (wujiang.node.home.parent / "etc").exists()

    assert (
        "no case '320509-20991231-000001' at cn-320509"
        in wujiang.node.cli("case", "show", "320509-20991231-000001").stderr
    )
    assert "[NOT_FOUND]" in wujiang.fail("case", "accept", "no-such-case")
    assert "--clerk NAME" in wujiang.node.cli(*open_args(tmp_path)).stderr, "acting needs a clerk"

    opened = wujiang.do(*open_args(tmp_path))
    number = opened["number"]
    huoqiu.wait_state(number, "received")
    early = huoqiu.fail("case", "complete", number, "--result", "准予")
    assert f"case {number} is received; complete needs it to be accepted" in early
    assert "[FAILED_PRECONDITION]" in early
    assert "only the holder" in wujiang.fail("case", "accept", number)
    assert "only the accepting node" in huoqiu.fail("case", "deliver", number)
    assert "not a node ID" in huoqiu.fail("case", "transfer", number, "--to", "cn-34", "--reason", "x")


def test_a_peer_without_access_to_the_item_is_refused_on_both_sides(
    halls: tuple[Hall, Hall], tmp_path: Path
) -> None:
    wujiang, huoqiu = halls
    huoqiu.node.json("peer", "deny", "cn-320509", ITEM)
    refused = wujiang.do(*open_args(tmp_path))
    view = wujiang.wait_state(refused["number"], "rejected")
    assert view["history"][-1]["action"] == "refused-by-peer"
    assert "cn-320509 may not send cases for pension-balance-withdrawal" in view["history"][-1]["reason"]
    assert "no case" in huoqiu.node.cli("case", "show", refused["number"]).stderr

    wujiang.node.json("peer", "deny", "cn-341522", ITEM)
    denied = wujiang.fail(*open_args(tmp_path))
    assert "[PERMISSION_DENIED]" in denied
    assert f"tongban peer allow cn-341522 {ITEM}" in denied
    assert wujiang.node.json("status")["node_id"] == "cn-320509", "the node keeps serving"


def test_a_clerk_acts_with_their_own_token_and_a_forged_one_is_refused(
    halls: tuple[Hall, Hall], tmp_path: Path
) -> None:
    import json
    import os
    import subprocess

    from tests.utils import ROOT, TONGBAN

    wujiang, _ = halls
    issued = wujiang.node.json("clerk", "add", "赵敏", "--no-save")
    assert issued["saved"] is False
    assert "赵敏" not in (wujiang.node.home / "clerk-tokens.json").read_text(encoding="utf-8")

    def open_as(token: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TONGBAN_CLERK_TOKEN": token}
        env.pop("TONGBAN_CLERK", None)
        return subprocess.run(
            [*TONGBAN, *open_args(tmp_path), "--json", "--home", str(wujiang.node.home)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )

    opened = open_as(issued["token"])
    assert opened.returncode == 0, opened.stderr
    case = json.loads(opened.stdout)
    assert (case["history"][0]["node"], case["history"][0]["clerk"]) == ("cn-320509", "赵敏")
    forged = open_as(issued["token"][:-2] + "xx")
    assert "the clerk token presented is not known here" in forged.stderr
    assert "[UNAUTHENTICATED]" in forged.stderr
    assert [c["name"] for c in wujiang.node.json_lines("clerk", "list")] == ["王芳", "赵敏"]


def _fetch_as(fetcher: Hall, source: Hall, digest: str, case_id: str) -> bytes:
    """FetchMaterial on `source`'s federation port over `fetcher`'s own mutual TLS, as its node would."""
    keys = fetcher.node.home / "keys"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(source.node.home / "keys" / "tls.crt").read_bytes(),
        private_key=(keys / "tls.key").read_bytes(),
        certificate_chain=(keys / "tls.crt").read_bytes(),
    )
    with grpc.secure_channel(
        f"127.0.0.1:{source.node.listen_port}", credentials, channel_options(source.node.node_id, 16 << 20)
    ) as channel:
        fetch = channel.unary_stream(
            FETCH_METHOD,
            request_serializer=cases_pb2.FetchMaterialRequest.SerializeToString,
            response_deserializer=chunkwire.decode,
        )
        request = cases_pb2.FetchMaterialRequest(sha256=digest, case_id=case_id, chunk_size=CHUNK)
        return b"".join(bytes(chunk.data) for chunk in fetch(request, timeout=30))


def test_only_the_nodes_of_a_case_may_fetch_its_materials(
    three: tuple[Hall, Hall, Hall], tmp_path: Path
) -> None:
    wujiang, huoqiu, luan = three
    opened = wujiang.do(*open_args(tmp_path))
    view = huoqiu.wait_state(opened["number"], "received")
    material = next(m for m in view["materials"] if m["kind"] == "id-card")
    digest, case_id = material["sha256"], view["case_id"]

    # Huoqiu, the competent node, gets the very bytes (the check lets the right peer through).
    assert hashlib.sha256(_fetch_as(huoqiu, wujiang, digest, case_id)).hexdigest() == digest

    # Lu'an is a peer of Wujiang but takes no part in this case.
    with pytest.raises(grpc.RpcError) as refused:
        _fetch_as(luan, wujiang, digest, case_id)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"cn-341500 takes no part in a case {case_id}" in (refused.value.details() or "")

    # Huoqiu asking for a material that is not this case's is refused too, and garbage is named.
    other = hashlib.sha256(b"another applicant's scan").hexdigest()
    with pytest.raises(grpc.RpcError) as foreign:
        _fetch_as(huoqiu, wujiang, other, case_id)
    assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as garbage:
        _fetch_as(huoqiu, wujiang, "../../etc/passwd", case_id)
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a SHA-256 digest (64 hexadecimal characters)" in (garbage.value.details() or "")
    assert wujiang.node.json("status")["node_id"] == "cn-320509", "the node keeps serving"
