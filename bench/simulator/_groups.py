"""Group administration on the simulated network: settings, pictures, invites, and group notifications.

A mixin of `_network.Network`. TO BE BUILT (see the methods' docstrings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import GroupInfo, GroupSettings

from ._model import Account, Group, OpError

if TYPE_CHECKING:
    from ._network import Network


class GroupsMixin:
    def group_settings(self: Network, me: Account, jid: str, settings: GroupSettings) -> None:
        raise OpError("error", "not built yet")

    def set_group_picture(self: Network, me: Account, jid: str, jpeg: bytes | None) -> str | None:
        raise OpError("error", "not built yet")

    def invite_link(self: Network, me: Account, jid: str, reset: bool) -> str:
        raise OpError("error", "not built yet")

    def invite_info(self: Network, code: str) -> GroupInfo:
        raise OpError("error", "not built yet")

    def join_invite(self: Network, me: Account, code: str) -> str:
        raise OpError("error", "not built yet")

    def check_group_send(self: Network, sender: Account, group: Group) -> None:
        """Raise OpError when `sender` may not send to `group` (announce-only and not an admin)."""
