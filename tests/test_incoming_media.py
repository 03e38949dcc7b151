"""Received media: the file store (atomic writes, ids that cannot name a path, one session's files), the
store table on both drivers, the download rules (cap, timeout, transport errors) and the retention purge
on the mock clock. End to end through the simulator: tests/test_e2e_sim.py."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio
import trio.testing

from actors import MessageReceived, TransportError
from gateway._incoming import IncomingMedia
from gateway._media_store import FileMediaStore, is_media_id, new_media_id
from gateway.api.media import content_disposition, content_type
from gateway.store import MediaRecord, open_store

from ._pg import pg_url_fixture  # noqa: F401  (registers `pg_url`)

T0 = 1_700_000_000_000


@pytest.fixture
async def sqlite_store(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/g.db")
    await store.migrate()
    yield store
    await store.aclose()


async def read_all(stored) -> bytes:
    return b"".join([chunk async for chunk in stored.chunks])


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- the store table, on both drivers -------------------------------------------------

async def test_media_records_on_sqlite(sqlite_store):
    await check_media_records(sqlite_store)


async def test_media_records_on_postgres(pg_url):
    store = await open_store(pg_url)
    try:
        await store.migrate()
        await check_media_records(store)
    finally:
        await store.aclose()


async def check_media_records(store):
    records = [MediaRecord(id=new_media_id(), session_id="s1", mimetype="image/png", size=i, sha256="ab" * 32,
                           filename="a.png" if i else None, created_at=T0 + i) for i in range(5)]
    for r in records:
        await store.add_media(r)
    assert await store.get_media(records[1].id) == records[1]
    assert await store.get_media(new_media_id()) is None
    assert await store.delete_media(records[4].id) is True
    assert await store.delete_media(records[4].id) is False
    assert await store.delete_media_before(T0 + 3, 2) == records[:2]
    assert await store.delete_media_before(T0 + 3, 10) == [records[2]]
    assert await store.get_media(records[3].id) == records[3]


# -- FileMediaStore ---------------------------------------------------------------------

async def test_put_get_serves_one_sessions_own_bytes(sqlite_store, tmp_path):
    media = FileMediaStore(tmp_path / "media", sqlite_store)
    data = os.urandom(600_000)  # several chunks
    record = await media.put(session_id="s1", data=data, mimetype="image/jpeg", filename="p.jpg", at=T0)
    assert is_media_id(record.id) and record.size == len(data)
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert await sqlite_store.get_media(record.id) == record
    stored = await media.get("s1", record.id)
    assert stored is not None and stored.record == record and await read_all(stored) == data
    assert await media.get("s2", record.id) is None  # another session's file does not exist for it
    assert files_under(tmp_path / "media") == [f"{record.id[4:6]}/{record.id}"]  # no temporary file left


@pytest.mark.parametrize("bad", ["../../etc/passwd", "med_../../x", "med_" + "0" * 31, "MED_" + "0" * 32,
                                 "med_" + "0" * 32 + "/x", "", "med_" + "g" * 32, "med_" + "0" * 32 + "\n"])
async def test_ids_are_checked_before_any_path_is_built(sqlite_store, tmp_path, bad):
    media = FileMediaStore(tmp_path / "media", sqlite_store)
    with pytest.raises(ValueError):
        media.path(bad)
    assert await media.get("s1", bad) is None
    assert await media.delete(bad) is False


async def test_a_failed_write_leaves_no_file_and_no_row(sqlite_store, tmp_path, monkeypatch):
    media = FileMediaStore(tmp_path / "media", sqlite_store)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        await media.put(session_id="s1", data=b"x" * 100, mimetype="image/png", filename=None, at=T0)
    assert files_under(tmp_path / "media") == []
    assert await sqlite_store.delete_media_before(T0 + 1, 10) == []


async def test_a_row_that_cannot_be_written_takes_its_file_back(sqlite_store, tmp_path):
    media = FileMediaStore(tmp_path / "media", sqlite_store)
    await sqlite_store.aclose()  # every store call now fails
    with pytest.raises(RuntimeError, match="store is closed"):
        await media.put(session_id="s1", data=b"x", mimetype="image/png", filename=None, at=T0)
    assert files_under(tmp_path / "media") == []


async def test_delete_and_purge_remove_file_and_row(sqlite_store, tmp_path):
    media = FileMediaStore(tmp_path / "media", sqlite_store)
    old = await media.put(session_id="s1", data=b"old", mimetype="audio/ogg", filename=None, at=T0)
    gone = await media.put(session_id="s1", data=b"gone", mimetype="audio/ogg", filename=None, at=T0)
    new = await media.put(session_id="s1", data=b"new", mimetype="audio/ogg", filename=None, at=T0 + 10_000)
    assert await media.delete(gone.id) is True
    assert await media.purge_older_than(T0 + 5_000) == 1
    assert await media.get("s1", old.id) is None and await sqlite_store.get_media(old.id) is None
    assert files_under(tmp_path / "media") == [f"{new.id[4:6]}/{new.id}"]


# -- what the route answers with ------------------------------------------------------

def test_content_type_and_disposition_are_safe():
    assert content_type("image/png") == "image/png"
    assert content_type("audio/ogg; codecs=opus") == "audio/ogg; codecs=opus"
    for bad in ("text/html\r\nSet-Cookie: a=b", "nonsense", "", "image/png; x=\"a\nb\""):
        assert content_type(bad) == "application/octet-stream"
    assert content_disposition(None) == "attachment"
    assert content_disposition("report.pdf") == "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    evil = content_disposition('../../a"b\r\nX: y;ñ.pdf')
    assert "\r" not in evil and "\n" not in evil and "/" not in evil.split("filename*")[0]
    assert evil.startswith('attachment; filename="a_b__X_ y;_.pdf"')
    assert evil.endswith("filename*=UTF-8''a%22b%0D%0AX%3A%20y%3B%C3%B1.pdf")


# -- downloads: cap, timeout, transport errors ---------------------------------------------

class Downloads:
    """A transport's download side only: returns `data`, raises `error`, or hangs."""

    def __init__(self, data: bytes = b"", error: Exception | None = None, hang: bool = False) -> None:
        self.data, self.error, self.hang, self.calls = data, error, hang, 0

    async def download_media(self, message: MessageReceived) -> bytes:
        self.calls += 1
        if self.hang:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error
        return self.data


def image(**data: object) -> MessageReceived:
    return MessageReceived(message_id="M1", chat="1@s.whatsapp.net", sender="1@s.whatsapp.net", timestamp_ms=T0,
                           type="image", data={"mimetype": "image/png", **data}, media_ref=b"ref")


class TrioClock:
    """Wall time that moves with trio's (mock) clock."""

    def now_ms(self) -> int:
        return T0 + int(trio.current_time() * 1000)

    def monotonic(self) -> float:
        return trio.current_time()


def intake(sqlite_store, tmp_path, **kw) -> IncomingMedia:
    kw.setdefault("max_bytes", 100)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("retention", 3600.0)
    return IncomingMedia(FileMediaStore(tmp_path / "media", sqlite_store), clock=TrioClock(), **kw)


async def test_fetch_stores_or_says_why_not(sqlite_store, tmp_path):
    incoming = intake(sqlite_store, tmp_path)
    ok = await incoming.fetch("s1", Downloads(b"png!"), image(file_length=4))
    assert ok.id is not None and ok.url == f"/api/v1/media/{ok.id}" and ok.size == 4 and ok.error is None
    assert ok.sha256 == hashlib.sha256(b"png!").hexdigest()

    announced = Downloads(b"x")
    big = await incoming.fetch("s1", announced, image(file_length=101))
    assert big.id is None and big.url is None and big.size == 101 and announced.calls == 0  # refused before fetching
    assert big.error == "101 bytes is larger than GATEWAY_MEDIA_MAX_BYTES (100 bytes)"
    liar = await incoming.fetch("s1", Downloads(b"x" * 101), image(file_length=5))
    assert liar.id is None and liar.error == "101 bytes is larger than GATEWAY_MEDIA_MAX_BYTES (100 bytes)"

    failed = await incoming.fetch("s1", Downloads(error=TransportError("download failed with status code 410")),
                                  image())
    assert failed.id is None and failed.error == "download failed: download failed with status code 410"
    text = MessageReceived(message_id="M2", chat="c", sender="c", timestamp_ms=T0, type="text", text="hi")
    assert await incoming.fetch("s1", Downloads(b"x"), text) is None
    assert await incoming.fetch("s1", None, image()) == incoming_failed("the transport cannot download media")


def incoming_failed(reason: str):
    from gateway._event_schemas import MediaInfo

    return MediaInfo(id=None, mimetype="image/png", size=None, error=reason)


async def test_a_download_that_hangs_times_out(sqlite_store, tmp_path, autojump_clock):
    incoming = intake(sqlite_store, tmp_path, timeout=30.0)
    start = trio.current_time()
    media = await incoming.fetch("s1", Downloads(hang=True), image())
    assert media.id is None and media.error == "the download took longer than GATEWAY_MEDIA_TIMEOUT (30 s)"
    assert trio.current_time() - start == pytest.approx(30.0)


async def test_downloads_share_a_bounded_limiter(sqlite_store, tmp_path, autojump_clock):
    incoming = intake(sqlite_store, tmp_path, concurrency=2, timeout=10.0)
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(incoming.fetch, "s1", Downloads(hang=True), image())
        await trio.sleep(1)
        stats = incoming.statistics()
        assert stats.borrowed_tokens == 2 and stats.tasks_waiting == 3


# -- retention ----------------------------------------------------------------------------

class WatchedStore(FileMediaStore):
    """The file store, telling the test each time a purge has finished."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.purged = trio.Semaphore(0, max_value=1000)

    async def purge_older_than(self, before: int) -> int:
        try:
            return await super().purge_older_than(before)
        finally:
            self.purged.release()


async def test_the_purge_task_deletes_media_past_the_retention(sqlite_store, tmp_path, mock_clock):
    # The mock clock moves only when told (store calls run in threads, and an autojumping clock could
    # race through days of purges while one runs).
    store = WatchedStore(tmp_path / "media", sqlite_store)
    incoming = IncomingMedia(store, max_bytes=100, timeout=5.0, retention=7 * 24 * 3600.0, clock=TrioClock())
    first = await incoming.fetch("s1", Downloads(b"old"), image())
    async with trio.open_nursery() as nursery:
        await nursery.start(incoming.purge_loop)
        await store.purged.acquire()  # the purge at start
        mock_clock.jump(3 * 24 * 3600)
        await store.purged.acquire()
        assert await store.get("s1", first.id) is not None  # within its retention
        second = await incoming.fetch("s1", Downloads(b"newer"), image())
        mock_clock.jump(4 * 24 * 3600 + 1)  # the first is past its retention; the next purge is due
        await store.purged.acquire()
        assert await store.get("s1", first.id) is None
        assert await sqlite_store.get_media(first.id) is None
        assert files_under(tmp_path / "media") == [f"{second.id[4:6]}/{second.id}"]
        stored = await store.get("s1", second.id)
        assert stored is not None and await read_all(stored) == b"newer"
        nursery.cancel_scope.cancel()


async def test_a_retention_of_zero_keeps_media_forever(sqlite_store, tmp_path, autojump_clock):
    incoming = intake(sqlite_store, tmp_path, retention=0)
    kept = await incoming.fetch("s1", Downloads(b"keep"), image())
    with trio.fail_after(1):
        await incoming.purge_loop()  # returns at once: nothing to do, ever
    await trio.sleep(365 * 24 * 3600)
    assert await incoming.store.get("s1", kept.id) is not None
