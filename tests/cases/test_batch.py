"""A batch of 200 applicants (the Harbin employer registering its retirees): good rows open,
bad rows say why, and the batch keeps going past them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.cases.support import Hall, resident_id, scan_pdf, write
from tests.utils import tongban, wait_until

pytestmark = pytest.mark.e2e


def test_a_batch_of_200_with_bad_rows_opens_the_good_and_reports_the_bad(
    halls: tuple[Hall, Hall], tmp_path: Path
) -> None:
    wujiang, huoqiu = halls
    rows = []
    bad = {}
    for i in range(200):
        number = resident_id(f"341522196{i % 10}0{1 + i % 9}{10 + i % 18}{i:03d}")
        name = f"退休职工{i:03d}"
        account = f"62220212345{i:06d}"
        if i % 25 == 3:
            number = number[:17] + ("0" if number[17] != "0" else "1")
            bad[i] = "check character (GB 11643)"
        elif i % 25 == 11:
            name = ""
            bad[i] = "the applicant's name is required"
        elif i % 25 == 19:
            account = "not-a-number"
            bad[i] = "does not match the form's rule"
        rows.append(
            {"applicant_name": name, "applicant_id": number, "phone": "", "form:bank_account": account}
        )
    sheet = tmp_path / "retirees.csv"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    id_card = write(tmp_path, "id.pdf", scan_pdf("id"))
    form = write(tmp_path, "form.pdf", scan_pdf("form"))

    result = tongban(
        "case",
        "open",
        "--batch",
        str(sheet),
        "--item",
        "pension-balance-withdrawal",
        "--material",
        f"id-card={id_card}",
        "--material",
        f"application-form={form}",
        "--form",
        "reason=其他",
        "--clerk",
        wujiang.clerk,
        "--json",
        home=wujiang.node.home,
        check=False,
        timeout=600,
    )
    assert result.returncode == 1, "a batch with bad rows says so in its exit status"
    assert f"{len(bad)} of 200 rows were not opened" in result.stderr
    report = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["row"] for r in report] == list(range(2, 202)), (
        "one result per row, in order (CSV line numbers)"
    )
    for i, entry in enumerate(report):
        if i in bad:
            assert not entry["ok"]
            assert bad[i] in entry["error"], entry
        else:
            assert entry["ok"], entry
            assert entry["holder"] == "cn-341522"
    opened = {r["number"] for r in report if r["ok"]}
    assert len(opened) == 200 - len(bad)
    wait_until(
        lambda: len(huoqiu.node.json_lines("case", "list", "--inbox", "--limit", "1000")) == len(opened),
        timeout=120,
        what="Huoqiu to hold every good case",
    )
