"""Cluster mode on PostgreSQL: the node registry and session leases.

Every time here is the server's clock (`now()`), so nodes need no synchronised
clocks: a lease "expires" when the database says so, for every node alike.
Within one statement (or one transaction) `now()` is a single instant, so a
heartbeat that extends the node row and its leases uses one expiry for all.

Taking leases is one statement: candidates are picked, then inserted or
updated `ON CONFLICT ... WHERE expired`. PostgreSQL takes the row lock and
re-checks that WHERE against the newest row version, so two nodes racing for
one session cannot both win; the loser simply gets no row back. Candidates
are written in id order, so racing nodes lock rows in one order and never
deadlock.

`FENCE_SQL` is the clause a fenced write adds: the write applies only while the
writer holds that epoch of the session's lease, unexpired. Fenced writes are
batched (`_batch`), so "unexpired" is judged at the statement's own start
(`statement_timestamp()`), not at `now()`, which is when its batch's
transaction began. The lease bookkeeping here runs alone, one transaction per
call, so within it `now()` is one instant, as said above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .._records import Fence, LeaseOwner, NodeRecord, Renewal
from .._rows import LEASE_OWNER_COLUMNS, held_lease, lease_owner, node, node_columns
from ._base import Conn, PostgresBase

# `{sid}` is the SQL expression for the session id of the row being written.
FENCE_SQL: Final = ("EXISTS (SELECT 1 FROM session_leases f WHERE f.session_id = {sid} AND f.node_id = %s "
                    "AND f.epoch = %s AND f.expires_at > statement_timestamp())")
_TTL: Final = "now() + %s * interval '1 second'"
_MS: Final = "(extract(epoch FROM {}) * 1000)::BIGINT"
# Times are TIMESTAMPTZ here, read as milliseconds; "now" is the server's clock.
_NODE_COLUMNS: Final = node_columns(_MS.format, "now()")


def fence_clause(sid: str, fence: Fence | None) -> tuple[str, list[Any]]:
    """` AND <fence>` for a WHERE clause, and its parameters (nothing without a fence)."""
    if fence is None:
        return "", []
    return " AND " + FENCE_SQL.format(sid=sid), [fence.node_id, fence.epoch]


class PostgresCluster(PostgresBase):
    async def register_node(self, node_id: str, *, address: str, token: str, host: str, pid: int,
                            ttl: float) -> None:
        await self._execute_alone(
            "INSERT INTO cluster_nodes (id, address, token, host, pid, started_at, heartbeat_at, expires_at) "
            f"VALUES (%s, %s, %s, %s, %s, now(), now(), {_TTL}) ON CONFLICT (id) DO UPDATE SET "
            "address = excluded.address, token = excluded.token, heartbeat_at = now(), "
            "expires_at = excluded.expires_at", (node_id, address, token, host, pid, ttl))

    async def renew_node(self, node_id: str, ttl: float) -> Renewal:
        def tx(conn: Conn) -> Renewal:
            conn.execute(f"UPDATE cluster_nodes SET heartbeat_at = now(), expires_at = {_TTL} WHERE id = %s",
                         (ttl, node_id))
            rows = conn.execute(
                f"UPDATE session_leases l SET expires_at = {_TTL} FROM sessions s "
                "WHERE l.node_id = %s AND l.expires_at > now() AND s.id = l.session_id "
                "RETURNING l.session_id, l.epoch, s.connect_on_start", (ttl, node_id)).fetchall()
            counts = conn.execute(
                "SELECT (SELECT COUNT(*) FROM cluster_nodes WHERE expires_at > now()), "
                "(SELECT COUNT(*) FROM sessions WHERE connect_on_start)").fetchone()
            assert counts is not None  # a SELECT without FROM has its one row
            nodes, wanted = counts
            return Renewal(leases=[held_lease(r) for r in rows], live_nodes=nodes, wanted=wanted)

        return await self._tx(tx)

    async def acquire_leases(self, node_id: str, ttl: float, *, limit: int = 0,
                             session_ids: list[str] | None = None) -> dict[str, int]:
        if session_ids is not None:
            if not session_ids:
                return {}
            pick = ("SELECT s.id FROM sessions s LEFT JOIN session_leases l ON l.session_id = s.id "
                    "WHERE s.id = ANY(%s::text[]) AND (l.session_id IS NULL OR l.expires_at <= now())")
            params: list[Any] = [list(session_ids)]
        else:
            if limit <= 0:
                return {}
            # random(): racing nodes mostly pick different sessions, so few of their picks collide.
            pick = ("SELECT s.id FROM sessions s LEFT JOIN session_leases l ON l.session_id = s.id "
                    "WHERE s.connect_on_start AND (l.session_id IS NULL OR l.expires_at <= now()) "
                    "ORDER BY random() LIMIT %s")
            params = [limit]
        rows = await self._run(lambda c: c.execute(
            f"WITH candidates AS ({pick}) "
            "INSERT INTO session_leases AS l (session_id, node_id, epoch, acquired_at, expires_at) "
            f"SELECT id, %s, 1, now(), {_TTL} FROM candidates ORDER BY id "
            "ON CONFLICT (session_id) DO UPDATE SET node_id = excluded.node_id, epoch = l.epoch + 1, "
            "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at WHERE l.expires_at <= now() "
            "RETURNING l.session_id, l.epoch", (*params, node_id, ttl)).fetchall())
        return {r[0]: r[1] for r in rows}

    async def release_leases(self, node_id: str, session_ids: list[str] | None = None) -> int:
        only = ""
        params: list[Any] = [node_id]
        if session_ids is not None:
            only = " AND session_id = ANY(%s::text[])"
            params.append(list(session_ids))
        return await self._execute_alone(
            f"UPDATE session_leases SET expires_at = now() WHERE node_id = %s AND expires_at > now(){only}", params)

    async def leave_cluster(self, node_id: str) -> None:
        def tx(conn: Conn) -> None:
            conn.execute("UPDATE session_leases SET expires_at = now() WHERE node_id = %s AND expires_at > now()",
                         (node_id,))
            conn.execute("UPDATE cluster_nodes SET expires_at = now() WHERE id = %s", (node_id,))

        await self._tx(tx)

    async def lease_owner(self, session_id: str) -> LeaseOwner | None:
        return await self._one(
            f"SELECT {LEASE_OWNER_COLUMNS} FROM session_leases l JOIN cluster_nodes n ON n.id = l.node_id "
            "WHERE l.session_id = %s AND l.expires_at > now() AND n.expires_at > now()", (session_id,), lease_owner)

    async def list_nodes(self) -> list[NodeRecord]:
        return await self._all(f"SELECT {_NODE_COLUMNS} FROM cluster_nodes n ORDER BY n.started_at, n.id", (), node)

    async def forget_nodes(self, dead_for: float) -> int:
        return await self._execute_alone(
            "DELETE FROM cluster_nodes WHERE expires_at < now() - %s * interval '1 second'", (dead_for,))

    async def query_one(self, query: str, params: Sequence[Any] = ()) -> Any:
        """One statement's first row (a tuple), or None (see ClusterStore)."""
        return await self._run(lambda c: c.execute(query, params).fetchone())
