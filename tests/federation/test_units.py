"""Small parts of the federation: node IDs, backoff, wire decoding, join certificates."""

from __future__ import annotations

import random
import time

import pytest
from ulid import ULID

from federation.address import InvalidNodeId, NodeId, validate_node_id
from federation.clock import now_us
from federation.envelope import open_envelope, seal
from federation.keys import Signer
from federation.outbox import new_message_ids
from federation.sender import backoff_delay
from federation.tls import fingerprint, join_identity
from federation.units import Envelope
from federation.wire import WireError, decode_token, ping_payload, unpack
from tongban_api.v1 import envelope_pb2


@pytest.mark.parametrize(
    ("text", "level", "route"),
    [
        ("cn-341522", "county", ["cn-341522", "cn-341500", "cn-340000"]),
        ("cn-341500", "city", ["cn-341500", "cn-340000"]),
        ("cn-340000", "province", ["cn-340000"]),
        (" cn-320509 ", "county", ["cn-320509", "cn-320500", "cn-320000"]),
    ],
)
def test_node_ids_route_county_city_province(text: str, level: str, route: list[str]) -> None:
    node = NodeId.parse(text)
    assert node.level == level
    assert [str(n) for n in node.route()] == route


@pytest.mark.parametrize("text", ["320509", "cn-3205", "CN-320509", "cn-32050x", "cn-000000", "cn-3205091"])
def test_bad_node_ids_say_what_a_node_id_looks_like(text: str) -> None:
    with pytest.raises(InvalidNodeId, match="cn-320509"):
        validate_node_id(text)


def test_backoff_grows_exponentially_is_jittered_and_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 300.0, rng) for n in range(1, 20)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(300.0, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 300.0
    assert delays[-1] >= 150.0
    assert len({round(d, 6) for d in delays[-5:]}) == 5, "capped delays still spread out"
    assert backoff_delay(0, 0.5, 300.0) == 0.0


def test_an_envelope_survives_sealing_and_opening_byte_for_byte() -> None:
    signer = Signer.generate()
    envelope = Envelope(
        message_id="01JD0000000000000000000000",
        sender="cn-320509",
        recipient="cn-341522",
        kind="ping",
        created_at_us=now_us(),
        payload=ping_payload("陈添荣的养老保险"),
        case_id="320509-20261122-000123",
        case_seq=4,
        headers=(("trace", "abc"),),
    )
    sealed = seal(envelope, signer)
    opened = open_envelope(sealed.wire)
    assert opened.envelope == envelope
    assert opened.envelope_bytes == sealed.envelope_bytes
    assert unpack(opened.envelope.payload, envelope_pb2.Ping()).note == "陈添荣的养老保险"


def test_a_payload_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(WireError, match=r"expected tongban\.v1\.Receipt"):
        unpack(ping_payload(), envelope_pb2.Receipt())


def test_join_certificates_are_the_same_on_both_sides_and_differ_per_secret() -> None:
    one, again, other = join_identity(b"s" * 32), join_identity(b"s" * 32), join_identity(b"t" * 32)
    assert one.cert_pem == again.cert_pem
    assert one.key_pem == again.key_pem
    assert fingerprint(one.cert_der) != fingerprint(other.cert_der)


@pytest.mark.parametrize("token", ["", "hello", "tbj1.", "tbj1.!!!!", "tbj1.AAAA"])
def test_bad_tokens_are_wire_errors(token: str) -> None:
    with pytest.raises(WireError):
        decode_token(token)


def test_message_ids_made_in_bulk_are_ulids_of_now_in_increasing_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_message_ids(1000)
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    for text in ids[:3] + ids[-3:]:
        parsed = ULID.from_str(text)
        assert str(parsed) == text, "python-ulid reads it back as the same ULID"
        assert before <= int(parsed.milliseconds) <= after
    assert new_message_ids(1)[0] != ids[-1], "a new start each time"
