"""The PostgreSQL driver of the store, the engine of cluster mode (see `_store`)."""

from ._base import DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE, DEFAULT_OPEN_TIMEOUT, PoolStatistics
from ._schema import MIGRATIONS
from ._store import PostgresStore

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_MIN_SIZE", "DEFAULT_OPEN_TIMEOUT", "MIGRATIONS", "PoolStatistics",
           "PostgresStore"]
