"""A real local SMTP server for tests: aiosmtpd in its own thread, on 127.0.0.1, keeping what it gets."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from aiosmtpd.controller import Controller


@dataclass
class Inbox:
    """The aiosmtpd handler: every message it accepted, parsed."""

    mails: list[email.message.EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted"

    async def wait_for(self, to: str, *, count: int = 1, timeout: float = 10.0) -> email.message.EmailMessage:
        """The `count`-th mail to `to`, waiting for it to arrive (mail goes out in the background)."""
        with trio.move_on_after(timeout):
            while len(self.to(to)) < count:
                await trio.sleep(0.05)
        return self._nth(to, count)

    def wait_for_sync(self, to: str, *, count: int = 1, timeout: float = 10.0) -> email.message.EmailMessage:
        """`wait_for`, for tests that are not async (the browser tests)."""
        deadline = time.monotonic() + timeout
        while len(self.to(to)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._nth(to, count)

    def _nth(self, to: str, count: int) -> email.message.EmailMessage:
        mine = self.to(to)
        if len(mine) < count:
            raise TimeoutError(f"no mail #{count} to {to} (got {len(self.mails)} in all)")
        return mine[count - 1]

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.mails if m["To"] == address]


class PortZeroController(Controller):
    """A Controller on port 0: it learns the port the kernel chose before its self-test dials it."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@contextmanager
def smtp_server(**smtp_kwargs: Any) -> Iterator[SmtpServer]:
    inbox = Inbox()
    controller = PortZeroController(inbox, hostname="127.0.0.1", port=0, **smtp_kwargs)
    controller.start()
    try:
        yield SmtpServer(inbox, controller.port)
    finally:
        controller.stop()


def reset_link(mail: email.message.EmailMessage) -> str:
    body = mail.get_content()
    match = re.search(r"https?://\S+/reset\?token=\S+", body)
    assert match, body
    return match.group(0)
