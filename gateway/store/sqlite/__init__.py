"""The embedded SQLite driver of the store (see `_store`)."""

from ._batch import GroupCommit
from ._schema import MIGRATIONS
from ._store import SqliteStore, path_from_url

__all__ = ["MIGRATIONS", "GroupCommit", "SqliteStore", "path_from_url"]
