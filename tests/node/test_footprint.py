"""An idle node stays small: heavy libraries load when their first job comes, not at start."""

from __future__ import annotations

import subprocess
import sys

from tests.utils import ROOT

# What `tongban serve` imports before it serves: the CLI, the runtime, the API and every component.
SERVE_IMPORTS = """
import sys
import node.cli, node.runtime, node.api.server, node.components
for factory in node.components.factories():
    pass
print(" ".join(sorted(name for name in ("av", "aiortc", "pypdf", "reportlab", "segno", "PIL") if name in sys.modules)))
"""


def test_serving_does_not_load_pdf_or_media_libraries_until_needed() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", SERVE_IMPORTS], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert loaded == [], (
        f"an idle node loaded {', '.join(loaded)} (tens of MB); import them where they are used"
    )
