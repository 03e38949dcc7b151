"""Contacts and identity on the simulated network: profile pictures, about texts, blocking, LIDs.

A mixin of `_network.Network`. TO BE BUILT (see the methods' docstrings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import ProfilePicture, TransportEvent, UserInfo

from ._model import Account, OpError

if TYPE_CHECKING:
    from ._network import Network


class IdentityMixin:
    def picture(self: Network, me: Account, jid: str) -> ProfilePicture:
        raise OpError("error", "not built yet")

    def user_info(self: Network, me: Account, jids: list[str]) -> list[UserInfo]:
        raise OpError("error", "not built yet")

    def blocklist(self: Network, me: Account) -> list[str]:
        raise OpError("error", "not built yet")

    def block(self: Network, me: Account, jid: str, block: bool) -> list[str]:
        raise OpError("error", "not built yet")

    def lid_for_phone(self: Network, jid: str) -> str | None:
        raise OpError("error", "not built yet")

    def phone_for_lid(self: Network, lid: str) -> str | None:
        raise OpError("error", "not built yet")

    def inbound(self: Network, recipient: Account, event: TransportEvent) -> TransportEvent | None:
        """What `recipient` gets of a message or action addressed to it: None when it blocked the sender,
        else the event as WhatsApp would address it (by LID when the sender is in LID addressing)."""
        return event
