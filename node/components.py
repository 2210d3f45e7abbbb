"""The domain components a node runs, in start order (see `node.runtime.Component`).

Each domain (cases, certificates, video, ...) adds one line here: a factory that takes the
running `Node` and returns its component.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.runtime import Component, Node


def factories() -> list[Callable[[Node], Component]]:
    """Factories of the node's domain components, in the order they start."""
    from node.cases.component import CasesComponent
    from node.catalog.component import CatalogComponent
    from node.certs.component import CertificatesComponent
    from video.component import VideoComponent

    return [CatalogComponent, CasesComponent, CertificatesComponent, VideoComponent]
