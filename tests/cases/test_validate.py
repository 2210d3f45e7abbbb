"""Identifiers, forms and materials: what passes, and what each refusal says to fix."""

from __future__ import annotations

import pytest

from federation.errors import FederationError, InvalidArgument
from node.cases import validate
from node.catalog import parse_catalog
from tests.cases.support import CHEN, resident_id
from tests.utils import ROOT


def test_a_resident_id_with_its_check_character_passes() -> None:
    assert validate.resident_id(CHEN) == CHEN
    assert validate.resident_id("11010519491231002x") == "11010519491231002X"  # GB 11643's own example


def test_a_wrong_check_character_names_the_expected_one() -> None:
    wrong = CHEN[:17] + ("1" if CHEN[17] != "1" else "2")
    with pytest.raises(
        InvalidArgument, match=rf"ends in {wrong[17]}, but its check character \(GB 11643\) is {CHEN[17]}"
    ):
        validate.resident_id(wrong)


def test_an_id_without_a_real_birth_date_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="no real birth date"):
        validate.resident_id(resident_id("34152219801301123"))


def test_a_short_id_says_how_long_it_must_be() -> None:
    with pytest.raises(InvalidArgument, match="must be 18 characters"):
        validate.resident_id("3415221980")


def test_unified_social_credit_codes_are_checked_by_gb_32100() -> None:
    assert validate.credit_code("91350100M000100Y43") == "91350100M000100Y43"
    with pytest.raises(InvalidArgument, match="check character \\(GB 32100\\) is 3"):
        validate.credit_code("91350100M000100Y44")
    with pytest.raises(InvalidArgument, match="never uses"):
        validate.credit_code("91350100M000100I43")


def test_phone_numbers() -> None:
    assert validate.phone("13812345678") == "13812345678"
    assert validate.phone("0512-63000000") == "0512-63000000"
    with pytest.raises(InvalidArgument, match="neither a mobile number"):
        validate.phone("12345")


ITEM = parse_catalog(
    (ROOT / "config" / "catalog-cn-341522.toml").read_text(encoding="utf-8"), node_id="cn-341522"
).require("pension-balance-withdrawal")


def test_form_problems_are_listed_all_at_once() -> None:
    with pytest.raises(InvalidArgument) as error:
        validate.form(ITEM, {"bank_account": "12ab", "reason": "想用钱", "colour": "red"}, "cn-341522")
    message = error.value.message
    assert "colour is not a field of pension-balance-withdrawal" in message
    assert "bank_account (收款银行账号) '12ab' does not match" in message
    assert "reason (提取原因) must be one of" in message


def test_missing_and_extra_materials_and_wrong_formats() -> None:
    with pytest.raises(InvalidArgument) as error:
        validate.materials(ITEM, {"id-card": ("png", 1000), "selfie": ("jpeg", 10)}, "cn-341522")
    message = error.value.message
    assert "selfie is not listed for pension-balance-withdrawal" in message
    assert "missing mandatory application-form (养老保险待遇申请表)" in message
    with pytest.raises(
        InvalidArgument, match="application-form is a PNG file, but cn-341522 accepts pdf, ofd"
    ):
        validate.materials(ITEM, {"id-card": ("pdf", 1), "application-form": ("png", 1)}, "cn-341522")


def test_a_file_over_the_limit_is_resource_exhausted() -> None:
    with pytest.raises(FederationError, match="over cn-341522's limit of 10 MiB") as error:
        validate.materials(ITEM, {"id-card": ("pdf", 11 << 20), "application-form": ("pdf", 1)}, "cn-341522")
    assert error.value.code.name == "RESOURCE_EXHAUSTED"


def test_the_division_code_is_read_from_either_kind_of_number() -> None:
    assert validate.division_of(CHEN) == "341522"
    assert validate.division_of("91350100M000100Y43") == "350100"
