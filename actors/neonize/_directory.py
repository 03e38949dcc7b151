"""The neonize transport's contact, identity and group calls: a mixin of `NeonizeTransport` (`_transport`).

Every call goes through `_call`: a worker thread, the shared Go lock, and
only while connected. That guard matters more here than anywhere: neonize's
`GetLIDFromPN`/`GetPNFromLID` dereference the Go client's store without a
nil check, so on a client that is not connected they would abort the process.

Errors: calls addressed to a group map Go's errors with `group_error`, so a
group that does not exist or that this account is not in is GroupNotFound
(whatsmeow answers a bare 404 or 403 for most group calls); not being an
admin (401, not-authorized) is a RecipientError, as a refused recipient is.

Not in neonize 0.5.2: removing a group picture (its `set_group_photo` always
sends an image; whatsmeow removes one only for a nil avatar), so
`set_group_picture(jid, None)` raises TransportError before Go.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._jid import LID_SERVER, USER_SERVER
from .._transport import (
    ContactInfo, GroupInfo, GroupSettings, ParticipantAction, ParticipantResult, ProfilePicture, RecipientError,
    TransportError, UserInfo,
)
from ._attempt import nz

log = logging.getLogger("actors._neonize")


class DirectoryCalls:
    session_id: str
    _client: Any
    _call: Callable[..., Awaitable[Any]]

    def _lookup(self, fn: Callable[[Any], Any], jid: Any, server: str) -> str | None:
        """One LID-map read inside a `_call` (already under the lock): None when unknown or it fails."""
        lib = nz()
        try:
            return lib.answers.store_jid(fn(jid), server)
        except lib.NeonizeError as exc:
            log.debug("neonize LID map read failed (session %s): %s", self.session_id, lib.conv.go_text(exc))
            return None

    # -- contacts and identity ----------------------------------------------------

    async def get_contacts(self) -> list[ContactInfo]:
        """The contact store, each phone contact with its LID from the store's LID map when it has one."""
        conv = nz().conv

        def work() -> list[ContactInfo]:
            out = []
            for c in self._client.contact.get_all_contacts():
                lid = None
                if c.JID.Server == USER_SERVER:
                    lid = self._lookup(self._client.get_lid_from_pn, c.JID, LID_SERVER)
                if (info := conv.contact_info(c, lid)) is not None:
                    out.append(info)
            return out
        return await self._call(work)

    async def get_picture(self, jid: str) -> ProfilePicture:
        lib = nz()
        target = lib.conv.parse_jid(jid)
        target.Device = target.RawAgent = 0
        name = lib.conv.jid_str(target) or jid

        def work() -> Any:
            try:
                return self._client.get_profile_picture(target)
            except lib.NeonizeError as exc:
                if lib.answers.picture_absent(lib.conv.go_text(exc)):
                    return None  # none, or hidden from this account: not an error
                raise
        return lib.answers.profile_picture(name, await self._call(work))

    async def get_user_info(self, jids: list[str]) -> list[UserInfo]:
        answers = nz().answers
        targets = [answers.user_jid(j) for j in jids]
        if not targets:
            return []

        def work() -> tuple[Any, dict[str, str | None]]:
            found = list(self._client.get_user_info(*targets))
            # neonize drops the LID whatsmeow got; whatsmeow stored it in the LID map
            lids = {nz().conv.jid_str(f.JID) or "": self._lookup(self._client.get_lid_from_pn, f.JID, LID_SERVER)
                    for f in found if f.JID.Server == USER_SERVER}
            return found, lids
        found, lids = await self._call(work)
        return answers.user_infos(jids, found, lids)

    async def get_blocklist(self) -> list[str]:
        return nz().answers.blocklist(await self._call(self._client.get_blocklist))

    async def update_blocklist(self, jid: str, block: bool) -> list[str]:
        lib = nz()
        action = lib.enum.BlocklistAction.BLOCK if block else lib.enum.BlocklistAction.UNBLOCK
        target = lib.answers.user_jid(jid)
        return lib.answers.blocklist(await self._call(self._client.update_blocklist, target, action))

    async def lid_for_phone(self, jid: str) -> str | None:
        lib = nz()
        target = lib.answers.user_jid(jid)
        if target.Server != USER_SERVER:
            return None  # a LID has no LID of its own
        return lib.answers.store_jid(await self._call(self._client.get_lid_from_pn, target), LID_SERVER)

    async def phone_for_lid(self, lid: str) -> str | None:
        lib = nz()
        target = lib.answers.user_jid(lid)
        if target.Server != LID_SERVER:
            return None
        return lib.answers.store_jid(await self._call(self._client.get_pn_from_lid, target), USER_SERVER)

    # -- groups -------------------------------------------------------------------

    async def _group_call(self, fn: Callable[..., Any], group_jid: str, *args: Any) -> Any:
        return await self._call(fn, _group(group_jid), *args, errors=nz().conv.group_error)

    async def list_groups(self) -> list[GroupInfo]:
        return [nz().conv.group_info(g) for g in await self._call(self._client.get_joined_groups)]

    async def create_group(self, name: str, participants: list[str]) -> GroupInfo:
        jids = [nz().conv.parse_jid(p) for p in participants]
        return nz().conv.group_info(await self._call(self._client.create_group, name, jids))

    async def group_info(self, group_jid: str) -> GroupInfo:
        return nz().conv.group_info(await self._group_call(self._client.get_group_info, group_jid))

    async def update_participants(self, group_jid: str, participants: list[str],
                                  action: ParticipantAction) -> list[ParticipantResult]:
        lib = nz()
        change = lib.enum.ParticipantChange
        try:
            how = {"add": change.ADD, "remove": change.REMOVE, "promote": change.PROMOTE,
                   "demote": change.DEMOTE}[action]
        except KeyError:
            raise TransportError(f"unknown participant action {action!r}") from None
        jids = [lib.conv.parse_jid(p) for p in participants]
        changed = await self._group_call(self._client.update_group_participants, group_jid, jids, how)
        return lib.conv.participant_results(participants, changed)

    async def leave_group(self, group_jid: str) -> None:
        await self._group_call(self._client.leave_group, group_jid)

    async def update_group_settings(self, group_jid: str, settings: GroupSettings) -> None:
        """Each setting that is not None, in turn (name, description, announce, locked); a failure stops
        there, and the settings before it stay applied."""
        _group(group_jid)  # refuse a JID that is no group even when there is nothing to change
        c = self._client
        steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        if settings.name is not None:
            steps.append((c.set_group_name, (settings.name,)))
        if settings.topic is not None:
            # whatsmeow fills empty topic ids itself: the previous one from the group's info, a new
            # one generated; "" as the topic deletes the description
            steps.append((c.set_group_topic, ("", "", settings.topic)))
        if settings.announce is not None:
            steps.append((c.set_group_announce, (settings.announce,)))
        if settings.locked is not None:
            steps.append((c.set_group_locked, (settings.locked,)))
        for fn, args in steps:
            await self._group_call(fn, group_jid, *args)

    async def set_group_picture(self, group_jid: str, jpeg: bytes | None) -> str | None:
        _group(group_jid)
        if jpeg is None:
            raise TransportError("removing a group picture is not supported by neonize 0.5.2")
        if not nz().answers.is_jpeg(jpeg):
            raise TransportError("a group picture must be a JPEG image")
        picture_id = await self._group_call(self._client.set_group_photo, group_jid, bytes(jpeg))
        return picture_id or None

    async def group_invite_link(self, group_jid: str, *, reset: bool = False) -> str:
        link = await self._group_call(self._client.get_group_invite_link, group_jid, reset)
        if not link:
            raise TransportError("WhatsApp returned no invite link")
        return link

    async def group_info_from_invite(self, code: str) -> GroupInfo:
        lib = nz()
        info = await self._call(self._client.get_group_info_from_link, lib.answers.invite_code(code),
                                errors=lib.conv.group_error)
        return lib.conv.group_info(info)

    async def join_group_with_invite(self, code: str) -> str:
        lib = nz()
        jid = await self._call(self._client.join_group_with_link, lib.answers.invite_code(code),
                               errors=lib.conv.group_error)
        group = lib.conv.jid_str(jid)
        if not group:
            raise TransportError("WhatsApp returned no group for the invite")
        return group


def _group(jid: str) -> Any:
    if not jid.endswith("@g.us"):
        raise RecipientError(f"not a group JID: {jid!r}")
    return nz().conv.parse_jid(jid)
