"""Personal data is masked in logs and lists."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from node import logs
from node.privacy import mask_field, mask_id_number, mask_name, mask_phone, mask_text


@pytest.mark.parametrize(
    ("masker", "value", "shown"),
    [
        (mask_id_number, "34152219800101123X", "341522********123X"),
        (mask_id_number, "341522800101123", "341522******123"),
        (mask_phone, "13812345678", "138****5678"),
        (mask_phone, "+86 138 1234 5678", "138****5678"),
        (mask_name, "陈添荣", "陈*荣"),
        (mask_name, "陈荣", "陈*"),
        (mask_name, "欧阳娜娜", "欧**娜"),
    ],
)
def test_masks(masker, value: str, shown: str) -> None:  # type: ignore[no-untyped-def]
    assert masker(value) == shown


def test_free_text_keeps_case_numbers_but_not_id_or_phone_numbers() -> None:
    text = "申请人34152219800101123X，电话13812345678，办件 320509-20261122-000123"
    assert mask_text(text) == "申请人341522********123X，电话138****5678，办件 320509-20261122-000123"


def test_named_fields_are_masked_by_kind() -> None:
    assert mask_field("applicant_name", "陈添荣") == "陈*荣"
    assert mask_field("applicant_id", "34152219800101123X") == "341522********123X"
    assert mask_field("count", 3) == 3


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The node's log configuration, writing into a string; the test process's own restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("INFO", json_lines=True)
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], root.level = saved
    structlog.reset_defaults()


def test_node_logs_never_show_personal_data(log_stream: io.StringIO) -> None:
    logging.getLogger("tongban.test").info(
        "accepted case for %s, phone %s", "34152219800101123X", "13812345678"
    )
    structlog.get_logger("tongban.test").info(
        "case opened", applicant_name="陈添荣", applicant_id="34152219800101123X"
    )
    written = log_stream.getvalue()
    assert "34152219800101123X" not in written
    assert "13812345678" not in written
    assert "陈添荣" not in written
    lines = [json.loads(line) for line in written.splitlines()]
    assert lines[0]["event"] == "accepted case for 341522********123X, phone 138****5678"
    assert lines[1]["applicant_name"] == "陈*荣"
