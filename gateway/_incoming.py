"""Incoming media: downloaded as each message arrives, kept in the `MediaStore`, purged after the retention.

`IncomingMedia.fetch` runs in the session's event pump (`SessionHost`), in
order: a message's `message.received` goes out once its media is stored, or
once the download failed. That keeps a session's events in the order they
came, at the cost of holding its later events behind one download; the hold
is bounded by `timeout` (GATEWAY_MEDIA_TIMEOUT). Downloads across all sessions
of the process share a `trio.CapacityLimiter` of `concurrency` (bandwidth and
memory: at most `concurrency` × GATEWAY_MEDIA_MAX_BYTES in flight).

The cap (GATEWAY_MEDIA_MAX_BYTES) is checked twice: against the size WhatsApp
announces (`file_length`), before anything is fetched, and on the bytes that
came. A refused or failed download never loses the event: its `media` says
why, with `id: null` (`failed`).
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from actors import MessageReceived, Transport, TransportError

from ._clock import Clock
from ._event_schemas import MediaInfo
from ._media_store import MediaStore

log = logging.getLogger("gateway.media")

INCOMING_MEDIA_TYPES: Final = frozenset({"image", "video", "audio", "document", "sticker"})
DOWNLOADS_PER_PROCESS: Final = 4
PURGE_INTERVAL: Final = 3600.0  # seconds between retention purges (trio's clock)
MEDIA_PATH: Final = "/api/v1/media/"


def media_url(media_id: str) -> str:
    return MEDIA_PATH + media_id


class IncomingMedia:
    def __init__(self, store: MediaStore, *, max_bytes: int, timeout: float, retention: float, clock: Clock,
                 concurrency: int = DOWNLOADS_PER_PROCESS) -> None:
        self.store = store
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._retention = retention
        self._clock = clock
        self._limiter = trio.CapacityLimiter(concurrency)

    def statistics(self) -> trio.CapacityLimiterStatistics:
        return self._limiter.statistics()

    async def fetch(self, session_id: str, transport: Transport | None, event: MessageReceived) -> MediaInfo | None:
        """The `media` of `event`'s `message.received`: stored, or failed with the reason; None if it has none."""
        if event.type not in INCOMING_MEDIA_TYPES:
            return None
        data = event.data
        mimetype = _text(data.get("mimetype")) or "application/octet-stream"
        filename = _text(data.get("filename"))
        announced = data.get("file_length")
        failed = _failed(mimetype, filename, announced if isinstance(announced, int) else None)
        if isinstance(announced, int) and announced > self._max_bytes:
            return failed(f"{announced} bytes is larger than GATEWAY_MEDIA_MAX_BYTES ({self._max_bytes} bytes)")
        if transport is None:
            return failed("the transport cannot download media")
        async with self._limiter:
            try:
                with trio.fail_after(self._timeout):
                    content = await transport.download_media(event)
            except trio.TooSlowError:
                return failed(f"the download took longer than GATEWAY_MEDIA_TIMEOUT ({self._timeout:g} s)")
            except TransportError as exc:
                return failed(f"download failed: {exc.reason}")
        if len(content) > self._max_bytes:
            return failed(f"{len(content)} bytes is larger than GATEWAY_MEDIA_MAX_BYTES ({self._max_bytes} bytes)")
        try:
            record = await self.store.put(session_id=session_id, data=content, mimetype=mimetype, filename=filename,
                                          at=self._clock.now_ms())
        except OSError as exc:
            log.error("incoming media not stored", extra={"fields": {"session": session_id, "error": str(exc)}})
            return failed(f"the gateway could not store it: {exc.strerror or exc}")
        return MediaInfo(id=record.id, mimetype=record.mimetype, size=record.size, sha256=record.sha256,
                         url=media_url(record.id), filename=record.filename)

    async def purge_loop(self, *, interval: float = PURGE_INTERVAL,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Delete media older than the retention (GATEWAY_MEDIA_RETENTION), now and every `interval`
        seconds; a retention of 0 keeps everything, and the loop ends at once."""
        task_status.started()
        if self._retention <= 0:
            return
        while True:
            try:
                purged = await self.store.purge_older_than(self._clock.now_ms() - int(self._retention * 1000))
                if purged:
                    log.info("old media purged", extra={"fields": {"count": purged}})
            except Exception:
                log.exception("media purge failed")
            await trio.sleep(interval)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _failed(mimetype: str, filename: str | None, size: int | None):  # noqa: ANN202 - a local factory
    def failed(reason: str) -> MediaInfo:
        return MediaInfo(id=None, mimetype=mimetype, size=size, url=None, filename=filename, error=reason)
    return failed
