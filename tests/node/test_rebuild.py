"""Comparing live and rebuilt tables: every differing cell, rows on one side only, data masked."""

from __future__ import annotations

from node.rebuild import Difference, compare


def test_a_changed_cell_is_named_by_table_key_and_column() -> None:
    live = {"cases": {("c1",): {"case_id": "c1", "state": "accepted", "stars": 5}}}
    rebuilt = {"cases": {("c1",): {"case_id": "c1", "state": "closed", "stars": 5}}}
    assert compare(live, rebuilt) == [Difference("cases", "c1", "state", "accepted", "closed")]


def test_equal_tables_give_no_difference() -> None:
    rows = {"peers": {("cn-341522",): {"node_id": "cn-341522", "name": "霍邱"}}}
    assert compare(rows, {"peers": dict(rows["peers"])}) == []


def test_rows_on_one_side_only_are_reported_whole() -> None:
    live = {"clerks": {("王芳",): {"name": "王芳"}}}
    rebuilt = {"clerks": {("李明",): {"name": "李明"}}}
    assert compare(live, rebuilt) == [
        Difference("clerks", "李明", "*", "missing", "present"),
        Difference("clerks", "王芳", "*", "present", "missing"),
    ]


def test_personal_data_in_a_difference_is_masked() -> None:
    live = {"cases": {("c1",): {"applicant_phone": "13812345678"}}}
    rebuilt = {"cases": {("c1",): {"applicant_phone": "13812345679"}}}
    [difference] = compare(live, rebuilt)
    assert "12345678" not in difference.live
    assert difference.live.startswith("138")
