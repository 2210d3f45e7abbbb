"""A node's configuration: `node.toml` in its home, written by `tongban init`.

[node]
id = "cn-320509"
name = "吴江区政务服务中心"

[federation]
listen = "127.0.0.1:7301"      # mutual-TLS port for peers (port 0: any free port)
advertise = ""                 # host:port peers should use; default: the bound listen address
max_batch = 64                 # envelopes per DeliverBatch call
max_in_flight = 4              # calls in flight per peer
unary = false                  # one Deliver call per message instead of batches (then give it
                               # more calls in flight, up to 256: each waits for a group commit)
park_after = 10                # failed attempts before a message is parked
backoff_cap_seconds = 300

[api]
listen = "127.0.0.1:7401"      # local API for clerks and operators, loopback by default
metrics = "127.0.0.1:7501"     # Prometheus /metrics; "" turns it off

[storage]
url = ""                       # empty: SQLite file tongban.db in the home; or postgresql://...
sqlite_synchronous = "NORMAL"  # or FULL

[log]
checkpoint_seconds = 60        # how often the message log's head is signed

[video]
ice_servers = []               # STUN/TURN URLs; none by default (government networks)
ring_timeout_seconds = 60      # a call nobody answers stops ringing
connect_timeout_seconds = 20   # an answered call whose media does not start ends as failed
media_timeout_seconds = 10     # no media from the other side this long ends the call
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from federation.address import InvalidNodeId, validate_node_id


class ConfigError(ValueError):
    """A configuration value that cannot work, with what to write instead."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    """host:port (IPv6 in brackets); port 0 means any free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text!r} is not host:port; write for example 127.0.0.1:7301")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class NodeSection:
    id: str
    name: str


@dataclass
class FederationSection:
    listen: str = "127.0.0.1:7301"
    advertise: str = ""
    max_batch: int = 64
    max_in_flight: int = 4
    unary: bool = False
    park_after: int = 10
    backoff_cap_seconds: float = 300.0


@dataclass
class ApiSection:
    listen: str = "127.0.0.1:7401"
    metrics: str = "127.0.0.1:7501"


@dataclass
class StorageSection:
    url: str = ""
    sqlite_synchronous: str = "NORMAL"


@dataclass
class LogSection:
    checkpoint_seconds: float = 60.0


@dataclass
class VideoSection:
    ice_servers: list[Any] = field(default_factory=list)  # URLs, or tables for TURN (video.ice)
    ring_timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 20.0
    media_timeout_seconds: float = 10.0


@dataclass
class NodeConfig:
    node: NodeSection
    federation: FederationSection = field(default_factory=FederationSection)
    api: ApiSection = field(default_factory=ApiSection)
    storage: StorageSection = field(default_factory=StorageSection)
    log: LogSection = field(default_factory=LogSection)
    video: VideoSection = field(default_factory=VideoSection)

    def validate(self) -> None:
        try:
            self.node.id = validate_node_id(self.node.id)
        except InvalidNodeId as error:
            raise ConfigError(str(error)) from None
        if not self.node.name.strip():
            raise ConfigError("the node needs a name, for example --name '吴江区政务服务中心'")
        parse_address(self.federation.listen, "federation listen address")
        if self.federation.advertise:
            parse_address(self.federation.advertise, "advertised federation address")
        parse_address(self.api.listen, "API address")
        if self.api.metrics:
            parse_address(self.api.metrics, "metrics address")
        if not 1 <= self.federation.max_batch <= 1024:
            raise ConfigError("federation.max_batch must be between 1 and 1024")
        if not 1 <= self.federation.max_in_flight <= 256:
            raise ConfigError("federation.max_in_flight must be between 1 and 256")
        if self.federation.park_after < 1:
            raise ConfigError("federation.park_after must be at least 1")
        if self.storage.sqlite_synchronous.upper() not in {"NORMAL", "FULL"}:
            raise ConfigError("storage.sqlite_synchronous must be NORMAL or FULL")
        if self.log.checkpoint_seconds < 1:
            raise ConfigError("log.checkpoint_seconds must be at least 1")
        for key in ("ring_timeout_seconds", "connect_timeout_seconds", "media_timeout_seconds"):
            if not 1 <= getattr(self.video, key) <= 3600:
                raise ConfigError(f"video.{key} must be between 1 and 3600 seconds")
        from video.ice import IceConfigError, parse_ice_servers

        try:
            parse_ice_servers(self.video.ice_servers)
        except IceConfigError as error:
            raise ConfigError(str(error)) from None

    def to_toml(self) -> str:
        return tomli_w.dumps(asdict(self))

    @classmethod
    def from_toml(cls, text: str, source: str = "node.toml") -> NodeConfig:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{source} is not valid TOML: {error}") from None
        try:
            config = cls(
                node=NodeSection(**raw["node"]),
                federation=FederationSection(**raw.get("federation", {})),
                api=ApiSection(**raw.get("api", {})),
                storage=StorageSection(**raw.get("storage", {})),
                log=LogSection(**raw.get("log", {})),
                video=VideoSection(**raw.get("video", {})),
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(
                f"{source}: {error}; compare it with the layout in `tongban init --help`"
            ) from None
        config.validate()
        return config

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        if not path.exists():
            raise ConfigError(
                f"{path} does not exist: is {path.parent} a node home? Create one with `tongban init`"
            )
        return cls.from_toml(path.read_text(encoding="utf-8"), str(path))

    def with_overrides(self, overrides: dict[str, Any]) -> NodeConfig:
        """A copy with dotted keys replaced, e.g. {"federation.max_batch": 1}."""
        raw = asdict(self)
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            raw[section][key] = value
        return NodeConfig.from_toml(tomli_w.dumps(raw))
