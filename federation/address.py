"""Node IDs: `cn-` plus a six-digit administrative division code (GB/T 2260).

A node ID names a service hall's node by the division it serves: cn-320509 is Wujiang District
(Suzhou), cn-341522 Huoqiu County (Lu'an), cn-341500 Lu'an City, cn-340000 Anhui Province.
Routing follows the code upwards: county, then city (first four digits + 00), then province
(first two digits + 0000).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NODE_ID = re.compile(r"cn-(\d{6})")


class InvalidNodeId(ValueError):
    """A string that is not a node ID; the message says what a node ID looks like."""


@dataclass(frozen=True, order=True)
class NodeId:
    """A validated node ID."""

    division: str

    @classmethod
    def parse(cls, text: str) -> NodeId:
        match = _NODE_ID.fullmatch(text.strip())
        if not match:
            raise InvalidNodeId(
                f"{text!r} is not a node ID: write 'cn-' and the six-digit division code "
                "(GB/T 2260), for example cn-320509 for Wujiang District"
            )
        division = match.group(1)
        if not 11 <= int(division[:2]) <= 82:
            raise InvalidNodeId(
                f"{text!r} is not a node ID: division codes start with a province code from 11 to 82, "
                "for example cn-320509 for Wujiang District"
            )
        return cls(division)

    def __str__(self) -> str:
        return f"cn-{self.division}"

    @property
    def level(self) -> str:
        """'province', 'city' or 'county', read off the code."""
        if self.division.endswith("0000"):
            return "province"
        if self.division.endswith("00"):
            return "city"
        return "county"

    def route(self) -> list[NodeId]:
        """This node, then its city, then its province: where to look for a competent node."""
        chain = [self]
        city = NodeId(self.division[:4] + "00")
        province = NodeId(self.division[:2] + "0000")
        for candidate in (city, province):
            if candidate not in chain:
                chain.append(candidate)
        return chain


def validate_node_id(text: str) -> str:
    """The canonical form of a node ID, or InvalidNodeId with what to fix."""
    return str(NodeId.parse(text))
