"""The catalog's TOML form: the demo catalogs load, and mistakes are named with what to fix."""

from __future__ import annotations

import pytest

from node.catalog import CatalogError, parse_catalog
from node.catalog import wire as catalog_wire
from tests.utils import ROOT


@pytest.mark.parametrize("node_id", ["cn-320509", "cn-341522", "cn-341500"])
def test_demo_catalogs_load_and_survive_the_wire(node_id: str) -> None:
    text = (ROOT / "config" / f"catalog-{node_id}.toml").read_text(encoding="utf-8")
    catalog = parse_catalog(text, node_id=node_id)
    assert len(catalog.items) >= 3
    assert catalog_wire.decode(catalog_wire.encode(catalog)) == catalog


def test_certificate_types_are_exposed_per_item_and_per_node() -> None:
    text = (ROOT / "config" / "catalog-cn-341522.toml").read_text(encoding="utf-8")
    catalog = parse_catalog(text, node_id="cn-341522")
    item = catalog.require("pension-balance-withdrawal")
    assert item.certificate_types == ("pension-balance-proof",)
    assert "household-registration-proof" in catalog.certificate_types
    assert catalog.certificate_types_by_item()["social-insurance-proof"] == ("social-insurance-proof",)
    assert item.material("id-card") is not None
    assert item.mandatory_kinds == ("id-card", "application-form")


BASE = """
[catalog]
node = "cn-341522"
[[item]]
code = "pension-balance-withdrawal"
name = "养老保险账户余额一次性提取"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[item.material]]\nkind = "id-card"\nname = "身份证"\nformats = ["doc"]\n',
            "format 'doc' is not one of",
        ),
        ('[[item.material]]\nkind = "id-card"\nname = "身份证"\nmax_mb = 0\n', "max_mb must be"),
        ('modes = ["post"]\n', "mode 'post' is not one of proxy, transfer"),
        ('[[item.field]]\nkey = "x"\nlabel = "X"\ntype = "choice"\n', "lists its choices"),
        ('[[item.field]]\nkey = "x"\nlabel = "X"\npattern = "([0-9"\n', "is not a regular expression"),
        ("time_limit_days = -1\n", "time_limit_days must be"),
    ],
)
def test_catalog_mistakes_say_what_to_fix(extra: str, message: str) -> None:
    with pytest.raises(CatalogError, match="item pension-balance-withdrawal") as error:
        parse_catalog(BASE + extra, node_id="cn-341522")
    assert message in str(error.value)


def test_a_catalog_for_another_node_is_refused() -> None:
    with pytest.raises(CatalogError, match="is the catalog of cn-341522, but this node is cn-320509"):
        parse_catalog(BASE, node_id="cn-320509")


def test_duplicate_item_codes_are_refused() -> None:
    with pytest.raises(CatalogError, match="appears twice"):
        parse_catalog(BASE + BASE.split("[catalog]", 1)[1].split("\n", 2)[2], node_id="cn-341522")
