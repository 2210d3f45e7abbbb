"""Real node processes for the cases tests: Wujiang and Huoqiu (and Lu'an where three are needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cases.support import HUOQIU, LUAN, WUJIANG, Hall, link, open_halls


@pytest.fixture
def halls(tmp_path: Path) -> Iterator[tuple[Hall, Hall]]:
    wujiang, huoqiu = open_halls(tmp_path, WUJIANG, HUOQIU)
    try:
        link(huoqiu, wujiang)
        yield wujiang, huoqiu
    finally:
        for h in (wujiang, huoqiu):
            if h.node.running:
                h.node.stop()


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Hall, Hall, Hall]]:
    """Wujiang, Huoqiu and Lu'an, each peered with the other two."""
    wujiang, huoqiu, luan = open_halls(tmp_path, WUJIANG, HUOQIU, LUAN)
    try:
        link(huoqiu, wujiang)
        link(luan, huoqiu)
        link(luan, wujiang)
        yield wujiang, huoqiu, luan
    finally:
        for h in (wujiang, huoqiu, luan):
            if h.node.running:
                h.node.stop()
