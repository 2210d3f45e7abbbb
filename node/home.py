"""A node's home folder: where its configuration, keys, database and run files live.

    node.toml        configuration (see node.config)
    api.token        bearer token for the local API, mode 0600
    keys/            signing keys and TLS material (see federation.identity)
    tongban.db       the SQLite database (unless storage.url points elsewhere)
    blobs/           materials and recordings, addressed by SHA-256
    run/node.json    written by a running node: pid, bound addresses, start time
    run/serve.lock   held by the running node, so that two cannot serve one home

The home is chosen by --home, else $TONGBAN_HOME, else ~/.tongban.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from federation.files import write_atomic, write_secret


class HomeError(Exception):
    """The home folder is not usable as it is; the message says what to do."""


def resolve_home(option: str | None) -> Path:
    chosen = option or os.environ.get("TONGBAN_HOME") or str(Path.home() / ".tongban")
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "node.toml"

    @property
    def token_path(self) -> Path:
        return self.root / "api.token"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def db_path(self) -> Path:
        return self.root / "tongban.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def run_path(self) -> Path:
        return self.root / "run" / "node.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "run" / "serve.lock"

    def default_db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def exists(self) -> bool:
        return self.config_path.exists()

    def prepare(self) -> None:
        """Create the folders of a new home (private to the operator)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for folder in (self.keys, self.blobs, self.run_path.parent):
            folder.mkdir(exist_ok=True, mode=0o700)

    def create_token(self) -> str:
        token = secrets.token_urlsafe(32)
        write_secret(self.token_path, token.encode() + b"\n", exclusive=True)
        return token

    def token(self) -> str:
        try:
            return self.token_path.read_text().strip()
        except FileNotFoundError:
            raise HomeError(
                f"{self.token_path} is missing: is {self.root} a node home? (`tongban init`)"
            ) from None

    def write_run_file(self, info: dict[str, Any]) -> None:
        write_atomic(self.run_path, json.dumps(info, indent=2).encode() + b"\n", mode=0o600)

    def run_info(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.run_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return info if isinstance(info, dict) else None

    def clear_run_file(self) -> None:
        self.run_path.unlink(missing_ok=True)

    def lock(self) -> IO[str]:
        """Hold the serve lock for as long as the returned file stays open."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held open while the node serves
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise HomeError(f"another `tongban serve` is running on {self.root}; stop it first") from None
        return handle
