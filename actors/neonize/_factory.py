"""The neonize transport factory: one `NeonizeTransport` and one Go client per session id.

Go clients are never churned (see `_transport`): the factory takes a session's
client from the process-wide `_clients` registry, creating it on first use,
and refuses a session id that cannot key a Go client or a device store it
cannot keep apart from other sessions'.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import trio

from .._transport import SessionSpec
from ._attempt import nz
from ._rwlock import GO_LOCK, RWLock
from ._transport import (
    MAX_CONCURRENT_CALLS, PAIRING_DEADLINE, START_HOLD_CAP, STOP_TIMEOUT, NeonizeTransport, _clients, _clients_guard,
)

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class NeonizeTransportFactory:
    """Makes one NeonizeTransport per session id and stops them all on `aclose`.

    `store_name(spec)` names a session's device store; the default is
    `<data_dir>/neonize/<session_id>.sqlite3`. A shared PostgreSQL store
    (`postgres...`) would need each session's JID to avoid resuming another
    session's device, and is refused until sessions persist their JID.
    """

    def __init__(self, *, data_dir: str, pairing_deadline: float = PAIRING_DEADLINE,
                 store_name: Callable[[SessionSpec], str] | None = None, stop_timeout: float = STOP_TIMEOUT,
                 start_hold_cap: float = START_HOLD_CAP, max_concurrent_calls: int = MAX_CONCURRENT_CALLS,
                 lock: RWLock = GO_LOCK) -> None:
        nz()  # import neonize now, after the gateway configured logging
        self._data_dir = Path(data_dir)
        self._store_name = store_name or self._default_store
        self._options = {"lock": lock, "pairing_deadline": pairing_deadline, "stop_timeout": stop_timeout,
                         "start_hold_cap": start_hold_cap}
        self._limiter = trio.CapacityLimiter(max_concurrent_calls)
        self._transports: dict[str, NeonizeTransport] = {}
        self._closed = False

    def _default_store(self, spec: SessionSpec) -> str:
        return str(self._data_dir / "neonize" / f"{spec.session_id}.sqlite3")

    def create(self, spec: SessionSpec) -> NeonizeTransport:
        """The session's transport; the same object for the same session id (its client must not churn),
        taking `spec` for its next run (a proxy may have changed)."""
        if self._closed:
            raise RuntimeError("transport factory is closed")
        if (existing := self._transports.get(spec.session_id)) is not None:
            existing.respec(spec)
            return existing
        if not _SESSION_ID.fullmatch(spec.session_id):
            raise ValueError(f"session id not usable as a neonize key: {spec.session_id!r}")
        store = self._store_name(spec)
        if store.startswith("postgres"):
            raise ValueError("a shared PostgreSQL device store needs per-session JIDs; not supported yet")
        Path(store).parent.mkdir(parents=True, exist_ok=True)
        with _clients_guard:
            client = _clients.get(spec.session_id)
            if client is None:
                client = _clients[spec.session_id] = nz().NewClient(store, uuid=spec.session_id)
                finalizer = getattr(client, "_stop_finalizer", None)  # weakref.finalize → Stop(uuid)
                if finalizer is not None:
                    finalizer.detach()  # only ever stop under the lock
            elif client.name != store:
                raise ValueError(f"session {spec.session_id!r} already uses the device store {client.name!r}")
        transport = NeonizeTransport(spec, client=client, limiter=self._limiter, **self._options)
        self._transports[spec.session_id] = transport
        return transport

    async def aclose(self) -> None:
        self._closed = True
        async with trio.open_nursery() as nursery:
            for transport in self._transports.values():
                nursery.start_soon(transport.aclose)
