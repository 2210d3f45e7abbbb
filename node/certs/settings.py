"""The `[certs]` section of node.toml (all optional):

[certs]
status_ttl_seconds = 3600   # how long a published status list may be relied on
refresh_seconds = 600       # how often peers' status lists are fetched
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from node.config import ConfigError


@dataclass(frozen=True)
class CertSettings:
    status_ttl_seconds: int = 3600
    refresh_seconds: float = 600.0

    @classmethod
    def load(cls, config_path: Path) -> CertSettings:
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8")).get("certs", {})
        except (OSError, tomllib.TOMLDecodeError):
            raw = {}
        try:
            settings = cls(**raw)
        except TypeError as error:
            raise ConfigError(f"{config_path} [certs]: {error}") from None
        if settings.status_ttl_seconds < 2:
            raise ConfigError("certs.status_ttl_seconds must be at least 2")
        if settings.refresh_seconds < 1:
            raise ConfigError("certs.refresh_seconds must be at least 1")
        return settings
