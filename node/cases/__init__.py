"""Cases (办件): proxy acceptance and transfer between nodes, with materials and time limits.

Modules: `lifecycle` (the state machine), `book` (the cases one node takes part in, changed
only by events), `materials` and `blobs` (files by SHA-256, fetched in resumable chunks),
`validate` (ID numbers, credit codes, forms, materials against a catalog), `workdays` and
`timers` (time limits), `receipt` (the acceptance receipt), `wire` (protobuf forms),
`component` (the node component).

For other domains:

    from node.cases import holder_of, known_case
    holder_of(session, case) -> str | None   # in db.read / db.write: the node holding case
                                             # `case` (case ID or number) as this node knows it
    known_case(session, case) -> KnownCase | None   # its ID, number and holder
"""

from __future__ import annotations

from node.cases.book import KnownCase, holder_of, known_case

__all__ = ["KnownCase", "holder_of", "known_case"]
