"""The sim transport's device store: one small JSON file of credentials per paired session.

Like a whatsmeow device store, it is what lets a session resume without a new
QR scan after a dropped link, a gateway restart or a simulator restart.
Synchronous on purpose: a few hundred bytes, written once per pairing and read
once per transport, cost less than a thread hop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final
from urllib.parse import quote

import msgspec

from .._transport import ConnectFailed
from ._protocol import Creds

_decoder: Final = msgspec.json.Decoder(Creds)
_encoder: Final = msgspec.json.Encoder()
_PLAIN: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _file_name(session_id: str) -> str:
    plain = session_id and set(session_id) <= _PLAIN  # uuids and slugs need no quoting
    return (session_id if plain else quote(session_id, safe="")) + ".json"


class SimDeviceStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._dir = str(directory)
        self._made = False
        # File names, listed once: 10,000 fresh sessions skip 10,000 failing opens.
        self._names: set[str] | None = None

    def path(self, session_id: str) -> Path:
        return self.directory / _file_name(session_id)

    def load(self, session_id: str) -> Creds | None:
        """The session's credentials, or None if it never paired. ConnectFailed (final) if unreadable."""
        name = _file_name(session_id)
        if self._names is None:
            try:
                self._names = {entry.name for entry in os.scandir(self._dir)}
            except FileNotFoundError:
                self._names = set()
        if name not in self._names:
            return None
        path = os.path.join(self._dir, name)
        try:
            with open(path, "rb") as f:
                return _decoder.decode(f.read())
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as exc:
            raise ConnectFailed(f"cannot read the device store {path}: {exc}", retryable=False) from exc

    def save(self, session_id: str, creds: Creds) -> None:
        if not self._made:
            os.makedirs(self._dir, exist_ok=True)
            self._made = True
        name = _file_name(session_id)
        path = os.path.join(self._dir, name)
        with open(path + ".tmp", "wb") as f:
            f.write(_encoder.encode(creds))
        os.replace(path + ".tmp", path)  # never a half-written store
        if self._names is not None:
            self._names.add(name)

    def forget(self, session_id: str) -> None:
        name = _file_name(session_id)
        try:
            os.unlink(os.path.join(self._dir, name))
        except FileNotFoundError:
            pass
        if self._names is not None:
            self._names.discard(name)
