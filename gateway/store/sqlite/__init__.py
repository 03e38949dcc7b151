"""The embedded SQLite driver of the store (see `_store`)."""

from ._base import path_from_url
from ._batch import GroupCommit
from ._schema import MIGRATIONS
from ._store import SqliteStore

__all__ = ["MIGRATIONS", "GroupCommit", "SqliteStore", "path_from_url"]
