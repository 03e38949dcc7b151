"""Cluster tables on SQLite: the same node and lease contract as PostgreSQL.

SQLite never runs a cluster (`gateway serve --workers N` refuses it), but the
store contract is one: fenced writes and leases behave the same on both
drivers, so the contract suite checks them on both. The clock is this
process's wall clock in milliseconds, which is the only clock a single-file
database has; every statement runs inside `BEGIN IMMEDIATE`, so a
read-then-write here is as atomic as PostgreSQL's upsert.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from ..._clock import now_ms
from .._records import Fence, LeaseOwner, NodeRecord, Renewal
from .._rows import LEASE_OWNER_COLUMNS, held_lease, lease_owner, node, node_columns
from ._base import SqliteBase

FENCE_SQL: Final = ("EXISTS (SELECT 1 FROM session_leases f WHERE f.session_id = {sid} AND f.node_id = ? "
                    "AND f.epoch = ? AND f.expires_at > ?)")


def fence_clause(sid: str, fence: Fence | None) -> tuple[str, list[Any]]:
    """` AND <fence>` for a WHERE clause, and its parameters (nothing without a fence)."""
    if fence is None:
        return "", []
    return " AND " + FENCE_SQL.format(sid=sid), [fence.node_id, fence.epoch, now_ms()]


def fence_holds(conn: sqlite3.Connection, session_id: str, fence: Fence | None) -> bool:
    if fence is None:
        return True
    clause, params = fence_clause("?", fence)
    return conn.execute("SELECT 1 WHERE" + clause[len(" AND"):], (session_id, *params)).fetchone() is not None


# Times are stored in milliseconds already; "now" is a parameter (this process's clock).
_NODE_COLUMNS: Final = node_columns(lambda column: column, "?")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class SqliteCluster(SqliteBase):
    async def register_node(self, node_id: str, *, address: str, token: str, host: str, pid: int,
                            ttl: float) -> None:
        at = now_ms()
        await self._write(lambda c: c.execute(
            "INSERT INTO cluster_nodes (id, address, token, host, pid, started_at, heartbeat_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET address = excluded.address, "
            "token = excluded.token, heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            (node_id, address, token, host, pid, at, at, at + _ms(ttl))))

    async def renew_node(self, node_id: str, ttl: float) -> Renewal:
        def tx(conn: sqlite3.Connection) -> Renewal:
            at = now_ms()
            until = at + _ms(ttl)
            conn.execute("UPDATE cluster_nodes SET heartbeat_at = ?, expires_at = ? WHERE id = ?", (at, until, node_id))
            rows = conn.execute(
                "SELECT l.session_id, l.epoch, s.connect_on_start FROM session_leases l "
                "JOIN sessions s ON s.id = l.session_id WHERE l.node_id = ? AND l.expires_at > ?",
                (node_id, at)).fetchall()
            conn.executemany("UPDATE session_leases SET expires_at = ? WHERE session_id = ?",
                             [(until, r[0]) for r in rows])
            nodes = conn.execute("SELECT COUNT(*) FROM cluster_nodes WHERE expires_at > ?", (at,)).fetchone()[0]
            wanted = conn.execute("SELECT COUNT(*) FROM sessions WHERE connect_on_start = 1").fetchone()[0]
            return Renewal(leases=[held_lease(r) for r in rows], live_nodes=nodes, wanted=wanted)

        return await self._write(tx)

    async def acquire_leases(self, node_id: str, ttl: float, *, limit: int = 0,
                             session_ids: list[str] | None = None) -> dict[str, int]:
        def tx(conn: sqlite3.Connection) -> dict[str, int]:
            at = now_ms()
            free = ("SELECT s.id, l.epoch FROM sessions s LEFT JOIN session_leases l ON l.session_id = s.id "
                    "WHERE (l.session_id IS NULL OR l.expires_at <= ?)")
            if session_ids is not None:
                rows = [r for sid in dict.fromkeys(session_ids)
                        for r in conn.execute(free + " AND s.id = ?", (at, sid)).fetchall()]
            elif limit > 0:
                rows = conn.execute(free + " AND s.connect_on_start = 1 ORDER BY random() LIMIT ?",
                                    (at, limit)).fetchall()
            else:
                rows = []
            taken = {sid: (epoch or 0) + 1 for sid, epoch in rows}
            conn.executemany(
                "INSERT INTO session_leases (session_id, node_id, epoch, acquired_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET node_id = excluded.node_id, "
                "epoch = excluded.epoch, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                [(sid, node_id, epoch, at, at + _ms(ttl)) for sid, epoch in taken.items()])
            return taken

        return await self._write(tx)

    async def release_leases(self, node_id: str, session_ids: list[str] | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            at = now_ms()
            if session_ids is None:
                return conn.execute("UPDATE session_leases SET expires_at = ? WHERE node_id = ? AND expires_at > ?",
                                    (at, node_id, at)).rowcount
            return sum(conn.execute("UPDATE session_leases SET expires_at = ? WHERE node_id = ? AND expires_at > ? "
                                    "AND session_id = ?", (at, node_id, at, sid)).rowcount for sid in session_ids)

        return await self._write(tx)

    async def leave_cluster(self, node_id: str) -> None:
        await self.release_leases(node_id)
        at = now_ms()
        await self._execute("UPDATE cluster_nodes SET expires_at = ? WHERE id = ?", (at, node_id))

    async def lease_owner(self, session_id: str) -> LeaseOwner | None:
        at = now_ms()
        return await self._one(
            f"SELECT {LEASE_OWNER_COLUMNS} FROM session_leases l JOIN cluster_nodes n ON n.id = l.node_id "
            "WHERE l.session_id = ? AND l.expires_at > ? AND n.expires_at > ?", (session_id, at, at), lease_owner)

    async def list_nodes(self) -> list[NodeRecord]:
        at = now_ms()
        return await self._all(f"SELECT {_NODE_COLUMNS} FROM cluster_nodes n ORDER BY n.started_at, n.id",
                               (at, at), node)

    async def forget_nodes(self, dead_for: float) -> int:
        return await self._execute("DELETE FROM cluster_nodes WHERE expires_at < ?", (now_ms() - _ms(dead_for),))

    async def query_one(self, query: str, params: Sequence[Any] = ()) -> Any:
        """A write, since the statements the cluster's components run may change rows (see ClusterStore)."""
        return await self._write(lambda c: c.execute(query, params).fetchone())
