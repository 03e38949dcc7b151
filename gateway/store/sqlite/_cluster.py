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
from typing import Any, Final

from .._records import Fence, HeldLease, LeaseOwner, NodeRecord, Renewal
from ..._clock import now_ms

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


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class SqliteCluster:
    async def register_node(self, node_id: str, *, address: str, token: str, host: str, pid: int,
                            ttl: float) -> None:
        at = now_ms()
        await self._write(lambda c: c.execute(  # type: ignore[attr-defined]
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
            return Renewal(leases=[HeldLease(r[0], r[1], bool(r[2])) for r in rows], live_nodes=nodes, wanted=wanted)

        return await self._write(tx)  # type: ignore[attr-defined]

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

        return await self._write(tx)  # type: ignore[attr-defined]

    async def release_leases(self, node_id: str, session_ids: list[str] | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            at = now_ms()
            if session_ids is None:
                return conn.execute("UPDATE session_leases SET expires_at = ? WHERE node_id = ? AND expires_at > ?",
                                    (at, node_id, at)).rowcount
            return sum(conn.execute("UPDATE session_leases SET expires_at = ? WHERE node_id = ? AND expires_at > ? "
                                    "AND session_id = ?", (at, node_id, at, sid)).rowcount for sid in session_ids)

        return await self._write(tx)  # type: ignore[attr-defined]

    async def leave_cluster(self, node_id: str) -> None:
        await self.release_leases(node_id)
        at = now_ms()
        await self._write(lambda c: c.execute(  # type: ignore[attr-defined]
            "UPDATE cluster_nodes SET expires_at = ? WHERE id = ?", (at, node_id)))

    async def lease_owner(self, session_id: str) -> LeaseOwner | None:
        at = now_ms()
        return await self._one(  # type: ignore[attr-defined]
            "SELECT l.session_id, l.node_id, l.epoch, n.address, n.token FROM session_leases l "
            "JOIN cluster_nodes n ON n.id = l.node_id WHERE l.session_id = ? AND l.expires_at > ? "
            "AND n.expires_at > ?", (session_id, at, at),
            lambda r: LeaseOwner(session_id=r[0], node_id=r[1], epoch=r[2], address=r[3], token=r[4]))

    async def list_nodes(self) -> list[NodeRecord]:
        at = now_ms()
        return await self._all(  # type: ignore[attr-defined]
            "SELECT n.id, n.address, n.token, n.host, n.pid, n.started_at, n.heartbeat_at, n.expires_at, "
            "n.expires_at > ?, (SELECT COUNT(*) FROM session_leases l WHERE l.node_id = n.id AND l.expires_at > ?) "
            "FROM cluster_nodes n ORDER BY n.started_at, n.id", (at, at),
            lambda r: NodeRecord(id=r[0], address=r[1], token=r[2], host=r[3], pid=r[4], started_at=r[5],
                                 heartbeat_at=r[6], expires_at=r[7], alive=bool(r[8]), leases=r[9]))

    async def forget_nodes(self, dead_for: float) -> int:
        cur = await self._write(lambda c: c.execute(  # type: ignore[attr-defined]
            "DELETE FROM cluster_nodes WHERE expires_at < ?", (now_ms() - _ms(dead_for),)))
        return cur.rowcount

    async def sessions_with_due_messages(self, session_ids: list[str], now: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [sid for sid in dict.fromkeys(session_ids) if conn.execute(
                "SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_ready WHERE session_id = ? "
                "AND status = 'queued' AND send_at IS NULL AND expires_at > ?) OR EXISTS (SELECT 1 FROM messages "
                "INDEXED BY messages_scheduled WHERE session_id = ? AND status = 'queued' AND send_at IS NOT NULL "
                "AND send_at <= ? AND expires_at > ?)", (sid, now, sid, now, now)).fetchone()[0]]

        return await self._run(read)  # type: ignore[attr-defined]
