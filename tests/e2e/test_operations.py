"""What operators do with real nodes: the token, init, peering mistakes, parking, keys, health, metrics."""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from federation.tls import server_name
from federation.wire import decode_token, encode_token
from tests.utils import NodeProcess, launch, peer_processes, tongban, wait_until
from tongban_api.v1 import node_pb2, node_pb2_grpc

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    wujiang, huoqiu = launch(
        NodeProcess(tmp_path, "cn-320509", "吴江区政务服务中心"),
        NodeProcess(tmp_path, "cn-341522", "霍邱县政务服务中心"),
    )
    yield wujiang, huoqiu
    for node in (wujiang, huoqiu):
        if node.running:
            node.stop()


def test_local_api_refuses_calls_without_the_token_and_keeps_serving(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    wujiang, _ = pair
    with grpc.insecure_channel(f"127.0.0.1:{wujiang.api_port}") as channel:
        admin = node_pb2_grpc.NodeAdminStub(channel)
        for metadata in [(), (("authorization", "Bearer not-the-token"),)]:
            with pytest.raises(grpc.RpcError) as refused:
                admin.Status(node_pb2.StatusRequest(), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "api.token" in refused.value.details()
    assert wujiang.json("status")["node_id"] == "cn-320509"
    token_file = wujiang.home / "api.token"
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_init_over_an_existing_home_is_refused_and_changes_nothing(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    wujiang, _ = pair
    before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in wujiang.home.rglob("*")
        if p.is_file() and p.suffix != ".db" and "run" not in p.parts and not p.name.startswith("tongban.db")
    }
    result = tongban(
        "init",
        "--node-id",
        "cn-320509",
        "--name",
        "另一个",
        "--listen",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
        home=wujiang.home,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing to overwrite" in result.stderr
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    assert after == before
    for key in (wujiang.home / "keys").glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600


def test_init_explains_a_bad_node_id(tmp_path: Path) -> None:
    result = tongban("init", "--node-id", "wujiang", "--name", "吴江", home=tmp_path / "x", check=False)
    assert result.returncode != 0
    assert "is not a node ID" in result.stderr
    assert "cn-320509" in result.stderr
    assert not (tmp_path / "x" / "node.toml").exists()


def test_bad_tokens_at_the_command_line(pair: tuple[NodeProcess, NodeProcess], tmp_path: Path) -> None:
    wujiang, huoqiu = pair
    token = wujiang.json("peer", "invite", "--ttl", "10m")["token"]
    expired = encode_token(dataclasses.replace(decode_token(token), expires_at_us=1_000_000))
    forged = encode_token(dataclasses.replace(decode_token(token), secret=b"\x01" * 32))
    for bad, expected in [(expired, "expired"), (forged, "forged"), (token[:40], "token")]:
        result = huoqiu.cli("peer", "join", bad)
        assert result.returncode == 1, result.stdout
        assert expected in result.stderr
        assert result.stderr.startswith("tongban: error:")
    assert huoqiu.json("peer", "join", token)["node_id"] == "cn-320509"
    luan = NodeProcess(tmp_path, "cn-341500", "六安市政务服务中心").init().start()
    try:
        reused = luan.cli("peer", "join", token)
        assert reused.returncode == 1
        assert "already used by cn-341522" in reused.stderr
    finally:
        luan.stop()
    assert huoqiu.json("ping", "cn-320509")["receipted"] == 1


def test_removed_peer_messages_park_and_resend_after_rejoining(pair: tuple[NodeProcess, NodeProcess]) -> None:
    wujiang, huoqiu = pair
    peer_processes(wujiang, huoqiu)
    assert huoqiu.stop() == 0
    queued = wujiang.json("ping", "cn-341522", "--count", "3", "--no-wait")["message_ids"]
    removed = wujiang.json("peer", "remove", "cn-341522")
    assert removed["state"] == "removed"
    parked = wujiang.json_lines("outbox", "list", "--parked")
    assert sorted(m["message_id"] for m in parked) == sorted(queued)
    assert all("removed" in m["last_error"] for m in parked)
    refused = wujiang.cli("outbox", "resend", queued[0])
    assert refused.returncode == 1
    assert "removed" in refused.stderr
    table = wujiang.cli("outbox", "list", "--parked")
    assert queued[0] in table.stdout
    assert "tongban outbox resend" in table.stdout

    huoqiu.start()
    peer_processes(wujiang, huoqiu)
    for message_id in queued:
        resent = wujiang.json("outbox", "resend", message_id)
        assert resent["message_id"] == message_id
        assert resent["state"] == "pending"
    wait_until(lambda: wujiang.json("status")["peers"][0]["sent"] == 3, what="the resent messages to arrive")
    assert huoqiu.json("status")["peers"][0]["received"] == 3


def test_access_rules_per_peer_and_item(pair: tuple[NodeProcess, NodeProcess]) -> None:
    wujiang, huoqiu = pair
    peer_processes(wujiang, huoqiu)
    wujiang.json("peer", "allow", "cn-341522", "*")
    after = wujiang.json("peer", "deny", "cn-341522", "340000-YL-001")
    assert after["allow"] == ["*"]
    assert after["deny"] == ["340000-YL-001"]
    table = wujiang.cli("peer", "list")
    assert "340000-YL-001" in table.stdout
    missing = wujiang.cli("peer", "allow", "cn-110105", "x")
    assert missing.returncode == 1
    assert "not a peer" in missing.stderr


def test_key_rotation_reaches_peers_and_messages_keep_flowing(pair: tuple[NodeProcess, NodeProcess]) -> None:
    wujiang, huoqiu = pair
    peer_processes(wujiang, huoqiu)
    before = wujiang.json("status")["signing_key_id"]
    rotated = wujiang.json("keys", "rotate")
    assert rotated["previous_key_id"] == before
    assert rotated["key_id"] != before
    assert rotated["peers_told"] == ["cn-341522"]
    keys = huoqiu.json("peer", "show", "cn-320509")["keys"]
    assert [k["key_id"] for k in keys] == [before, rotated["key_id"]]
    assert keys[0]["valid_until"] is not None
    assert keys[1]["valid_until"] is None
    assert wujiang.json("ping", "cn-341522", "--count", "20")["receipted"] == 20


def test_health_and_reflection_on_both_ports_and_metrics(pair: tuple[NodeProcess, NodeProcess]) -> None:
    wujiang, huoqiu = pair
    peer_processes(wujiang, huoqiu)
    wujiang.json("ping", "cn-341522", "--count", "5")
    with grpc.insecure_channel(f"127.0.0.1:{wujiang.api_port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tongban.v1.NodeAdmin")
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        assert "tongban.v1.Peering" in list_services(channel)
    # The federation port speaks only to pinned peers: use Huoqiu's own identity to look.
    keys = huoqiu.home / "keys"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(wujiang.home / "keys" / "tls.crt").read_bytes(),
        private_key=(keys / "tls.key").read_bytes(),
        certificate_chain=(keys / "tls.crt").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", server_name("cn-320509"))]
    with grpc.secure_channel(f"127.0.0.1:{wujiang.listen_port}", credentials, options=options) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tongban.v1.Federation")
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        assert "tongban.v1.Federation" in list_services(channel)
    metrics_address = wujiang.json("status")["metrics"]
    text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode()
    assert 'tongban_messages_sent_total{peer="cn-341522"} 5.0' in text
    assert "tongban_delivery_latency_seconds_bucket" in text
    wujiang.json("status")  # status refreshes the gauges at once (a job does every 15 s)
    text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode()
    assert 'tongban_outbox_backlog{peer="cn-341522"} 0.0' in text


def list_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    return [service.name for answer in answers for service in answer.list_services_response.service]


def test_status_and_lists_read_well_without_json(pair: tuple[NodeProcess, NodeProcess]) -> None:
    wujiang, huoqiu = pair
    peer_processes(wujiang, huoqiu)
    status = wujiang.cli("status")
    assert status.returncode == 0
    for expected in ("cn-320509", "吴江区政务服务中心", "uptime", "cn-341522", "PENDING", "LAST CONTACT"):
        assert expected in status.stdout
    shown = wujiang.cli("peer", "show", "cn-341522").stdout
    assert "Signing keys" in shown
    assert "TLS fingerprint" in shown
    ping = wujiang.cli("ping", "cn-341522", "--count", "3").stdout
    assert "3 of 3 signed pings receipted" in ping
    assert "p99" in ping
