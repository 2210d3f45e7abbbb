"""ICE servers for the media path, as the node's configuration lists them (`[video] ice_servers`).

None by default: public STUN is unreachable on government networks, and two windows on one
network (or with a route between them) connect on host candidates alone. Each entry is a URL
(`stun:stun.example.gov.cn:3478`) or a table with `urls`, `username` and `credential` for TURN:

    [video]
    ice_servers = ["stun:stun.example.gov.cn:3478",
                   {urls = "turn:turn.example.gov.cn:3478?transport=udp", username = "w", credential = "s"}]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


class IceConfigError(ValueError):
    """An ice_servers entry that cannot work, with what to write instead."""


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""


def parse_ice_servers(entries: list[Any]) -> list[IceServer]:
    servers = []
    for number, entry in enumerate(entries, 1):
        if isinstance(entry, str):
            servers.append(IceServer((_url(entry, number),)))
            continue
        if not isinstance(entry, dict) or "urls" not in entry:
            raise IceConfigError(
                f"video.ice_servers entry {number} must be a URL such as 'stun:host:3478' or a table "
                "{urls = 'turn:host:3478', username = '…', credential = '…'}"
            )
        urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
        server = IceServer(
            tuple(_url(str(url), number) for url in urls),
            str(entry.get("username", "")),
            str(entry.get("credential", "")),
        )
        if any(url.startswith(("turn:", "turns:")) for url in server.urls) and not server.username:
            raise IceConfigError(
                f"video.ice_servers entry {number}: a TURN server needs username and credential"
            )
        servers.append(server)
    return servers


def _url(url: str, number: int) -> str:
    if not url.startswith(SCHEMES):
        raise IceConfigError(
            f"video.ice_servers entry {number} ({url!r}) is not a STUN or TURN URL; "
            "write for example 'stun:stun.example.gov.cn:3478'"
        )
    return url
