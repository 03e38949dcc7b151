"""`GATEWAY_SQLITE_SYNCHRONOUS`: the SQLite store's connection syncs as configured.

`PRAGMA synchronous` belongs to a connection, not to the file, so it is read
back through the store's own connection: once on the read path (`_run`) and
once inside a write transaction (`_write`, the group commit), the two ways
the store uses it. Another connection opened on the same file would report
its own default and prove nothing.
"""

from __future__ import annotations

import pytest
import trio

from gateway import Config, create_app
from gateway.app import running_gateway
from gateway.store import open_store

from ._fake_transport import FakeFactory

NORMAL, FULL = 1, 2  # what `PRAGMA synchronous` reads back


async def _synchronous(store) -> tuple[int, int]:
    pragma = "PRAGMA synchronous"
    read = await store._run(lambda c: c.execute(pragma).fetchone()[0])
    written = await store._write(lambda c: c.execute(pragma).fetchone()[0])
    return read, written


@pytest.mark.parametrize("level,expected", [("normal", NORMAL), ("full", FULL)])
async def test_the_store_connection_syncs_as_asked(tmp_path, level, expected):
    with trio.fail_after(10):
        store = await open_store(f"sqlite:///{tmp_path}/sync.db", sqlite_synchronous=level)
        try:
            await store.migrate()
            assert await _synchronous(store) == (expected, expected)
            journal = await store._run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
            assert journal == "wal"
        finally:
            await store.aclose()


async def test_the_default_is_normal(tmp_path):
    with trio.fail_after(10):
        store = await open_store(f"sqlite:///{tmp_path}/default.db")
        try:
            assert await _synchronous(store) == (NORMAL, NORMAL)
        finally:
            await store.aclose()


async def test_an_unknown_level_is_refused(tmp_path):
    with trio.fail_after(10), pytest.raises(ValueError, match="synchronous"):
        await open_store(f"sqlite:///{tmp_path}/bad.db", sqlite_synchronous="off")
    assert not (tmp_path / "bad.db").exists()


@pytest.mark.parametrize("level,expected", [("normal", NORMAL), ("full", FULL)])
async def test_the_gateway_opens_its_store_with_the_setting(tmp_path, level, expected):
    config = Config.from_env({"GATEWAY_SQLITE_SYNCHRONOUS": level.upper()},
                             database_url=f"sqlite:///{tmp_path}/gateway.db", data_dir=str(tmp_path / "data"),
                             transport="sim")
    app = create_app(config, transport_factory=FakeFactory())
    with trio.fail_after(20):
        async with app.test_app():
            assert await _synchronous(running_gateway(app).store) == (expected, expected)
