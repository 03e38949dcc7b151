"""Groups (session key): list, create, inspect, change participants and admins, settings, picture, invite
links, leave.

A group in the path is a group JID (`120363041234567890@g.us`, or the older `15551234567-1600000000@g.us`);
anything else is 422. Whether the group exists is WhatsApp's to say: one that does not, or that this account
is not in, answers 404 GROUP_NOT_FOUND, as does an invite code that is unknown or was revoked. WhatsApp's
refusals (not an admin, a locked group) answer 422 with its reason. Every route that talks to WhatsApp runs
on the session's owner in cluster mode (`Live.OWNER`).

A group picture is a JPEG (its magic bytes are checked) of at most PICTURE_MAX_BYTES, given as base64 or as a
URL the gateway fetches with the send-media rules (`gateway._media.fetch`: the SSRF guard on every redirect
hop, GATEWAY_MEDIA_TIMEOUT, the download cut off at the image cap before the picture's own cap applies).
The base64 is capped in the body type, the body by GATEWAY_MAX_MEDIA_BODY.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import httpx
from msgspec import Meta

from actors import (
    GroupInfo, GroupNotFound, GroupParticipant, GroupSettings, NotAuthorized, RecipientError, Transport, phone_from_jid,
)

from .._media import MediaError, decode_base64, fetch, human_size, sniff
from .._patterns import HTTP_URL_PATTERN, INVITE_CODE_RE, NOT_BLANK_PATTERN
from .._phone import group_jid_at, recipient_at
from .._requests import Recipient, Request
from ..errors import NotFound, ValidationError
from ..store import iso_ms
from ._errors import PayloadTooLarge
from ._live import LIVE_ERRORS, whatsapp
from ._routing import Api, Auth, Ctx, Live
from ._schemas import Answer

MAX_GROUP_JID: Final = 64  # characters; WhatsApp's are 23 (new) to about 30 (old style)
MAX_DESCRIPTION: Final = 2048  # characters, as WhatsApp's group description
# WhatsApp shows a group picture at 640×640, which is far less than this as a JPEG; the simulator takes
# the same cap (bench/simulator/_groups.py).
PICTURE_MAX_BYTES: Final = 1024 * 1024
PICTURE_BASE64_MAX: Final = 4 * -(-PICTURE_MAX_BYTES // 3)
# What follows https://chat.whatsapp.com/ in an invite link (22 letters and digits today).
_INVITE_CODE: Final = re.compile(INVITE_CODE_RE)

GroupName = Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK_PATTERN,
                                description="1 to 100 characters, not all spaces.")]


class Participant(Answer):
    jid: str
    phone_number: str | None
    is_admin: bool
    is_super_admin: bool


class Group(Answer):
    jid: str
    name: str
    topic: Annotated[str | None, Meta(description="The description (the same as `description`).")]
    description: Annotated[str | None, Meta(description="The group's description; null when it has none.")]
    owner: str | None
    created_at: str | None
    announce: Annotated[bool, Meta(description="Only admins may send messages.")]
    locked: Annotated[bool, Meta(description="Only admins may change the name, the description and the picture.")]
    participants: list[Participant]


class GroupList(Answer):
    data: list[Group]


class ParticipantList(Answer):
    data: list[Participant]


class CreateGroup(Request):
    name: GroupName
    participants: Annotated[list[Recipient], Meta(min_length=1, max_length=1024)]


class ChangeParticipants(Request):
    participants: Annotated[list[Recipient], Meta(min_length=1, max_length=1024)]


class UpdateGroupSettings(Request):
    """Give at least one setting; the ones left out stay as they are."""

    name: GroupName | None = None
    description: Annotated[str, Meta(max_length=MAX_DESCRIPTION, description=(
        f"At most {MAX_DESCRIPTION} characters; an empty string removes it."))] | None = None
    announce: Annotated[bool | None, Meta(description="Only admins may send messages.")] = None
    locked: Annotated[bool | None, Meta(description="Only admins may change the name, the description and the "
                                                    "picture.")] = None


class SetGroupPicture(Request):
    """Exactly one of `url` and `base64`: a JPEG of at most 1 MiB."""

    url: Annotated[str, Meta(max_length=2048, pattern=HTTP_URL_PATTERN, description=(
        "http(s) URL of the JPEG; the gateway fetches it (public addresses only, redirects checked)."))] \
        | None = None
    base64: Annotated[str, Meta(max_length=PICTURE_BASE64_MAX, description="The JPEG, base64-encoded.")] | None \
        = None


class ParticipantResultOut(Answer):
    jid: str
    ok: bool
    error: str | None


class ParticipantResults(Answer):
    results: list[ParticipantResultOut]


class Left(Answer):
    jid: str
    left: bool


class GroupPicture(Answer):
    jid: str
    url: Annotated[str, Meta(description="Where to download it (expires after a few hours).")]
    id: Annotated[str | None, Meta(description="Changes whenever the picture does.")]


class PictureChanged(Answer):
    jid: str
    id: Annotated[str | None, Meta(description="The new picture's id; null when it was removed.")]


class InviteLink(Answer):
    link: Annotated[str, Meta(description="https://chat.whatsapp.com/<code>")]
    code: str


class Joined(Answer):
    jid: str


def group_out(g: GroupInfo) -> Group:
    return Group(jid=g.jid, name=g.name, topic=g.topic, description=g.topic, owner=g.owner,
                 created_at=iso_ms(g.created_at_ms), announce=g.announce, locked=g.locked,
                 participants=[participant_out(p) for p in g.participants])


def participant_out(p: GroupParticipant) -> Participant:
    return Participant(jid=p.jid, phone_number=p.phone_number or phone_from_jid(p.jid), is_admin=p.is_admin,
                       is_super_admin=p.is_super_admin)


def _group_param(raw: str) -> str:
    if len(raw) > MAX_GROUP_JID:
        raise ValidationError.at("path.jid", f"must be at most {MAX_GROUP_JID} characters")
    return group_jid_at(raw, "path.jid")


def _in_group(ctx: Ctx, jid: str) -> tuple[str, Transport]:
    """The group JID a path names, and the session's live connection."""
    return _group_param(jid), ctx.gateway.control.require_connected(ctx.session.session_id)


def _code_param(raw: str) -> str:
    if not _INVITE_CODE.fullmatch(raw):
        raise ValidationError.at("path.code", "must be an invite code: the 16 to 32 letters and digits after "
                                              "https://chat.whatsapp.com/")
    return raw


def _invite_out(link: str) -> InviteLink:
    return InviteLink(link=link, code=link.rstrip("/").rsplit("/", 1)[-1])


def _settings(body: UpdateGroupSettings) -> GroupSettings:
    if body.name is None and body.description is None and body.announce is None and body.locked is None:
        raise ValidationError.at("$", "give at least one of name, description, announce, locked")
    return GroupSettings(name=body.name.strip() if body.name is not None else None, topic=body.description,
                         announce=body.announce, locked=body.locked)


def _picture_source(body: SetGroupPicture) -> tuple[str | None, bytes | None]:
    """(url to fetch, or the decoded bytes), after the checks that need no I/O."""
    if (body.url is None) == (body.base64 is None):
        raise ValidationError.at("$", "give exactly one of url and base64")
    if body.url is not None:
        return body.url, None
    try:
        data = decode_base64(body.base64)  # type: ignore[arg-type]
    except MediaError as exc:
        raise ValidationError.at("$.base64", str(exc)) from None
    return None, _check_picture(data, "$.base64")


def _check_picture(data: bytes, path: str) -> bytes:
    if len(data) > PICTURE_MAX_BYTES:
        raise ValidationError.at(path, f"the picture is {human_size(len(data))}; a group picture is at most "
                                       f"{human_size(PICTURE_MAX_BYTES)}")
    seen = sniff(data)
    if seen != "image/jpeg":
        raise ValidationError.at(path, f"a group picture must be a JPEG image; got {seen or 'something else'}")
    return data


async def _download_picture(ctx: Ctx, url: str) -> bytes:
    config = ctx.gateway.config
    # One client per download: a picture is set now and then, and the fetch connects afresh on each hop anyway.
    async with httpx.AsyncClient(timeout=httpx.Timeout(config.media_timeout), follow_redirects=False,
                                 headers={"User-Agent": "trio-whatsapp-gateway"}) as client:
        try:
            data, _ = await fetch(client, url, "image", allow_private=config.allow_private_urls,
                                  timeout=config.media_timeout, max_bytes=PICTURE_MAX_BYTES)
        except MediaError as exc:
            raise ValidationError.at("$.url", str(exc)) from None
    return _check_picture(data, "$.url")


def register(api: Api) -> None:
    one = LIVE_ERRORS
    in_group = [*one, ValidationError, GroupNotFound]  # routes that name a group by its JID
    admin = [*in_group, RecipientError, NotAuthorized]  # ... and that WhatsApp may refuse (not an admin, locked)

    @api.route("GET", "/groups", summary="List groups", tag="Groups", auth=Auth.SESSION, answer=GroupList,
               errors=one, live=Live.OWNER)
    async def list_groups(ctx: Ctx) -> GroupList:
        """Groups the session's account belongs to."""
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return GroupList(data=[group_out(g) for g in await whatsapp(transport.list_groups())])

    @api.route("POST", "/groups", summary="Create group", tag="Groups", auth=Auth.SESSION, body=CreateGroup,
               status=201, answer=Group, errors=[*one, ValidationError], live=Live.OWNER)
    async def create_group(ctx: Ctx) -> Group:
        """Create a group with the given participants (phone numbers or JIDs)."""
        name = ctx.body.name.strip()
        members = [recipient_at(p, f"$.participants[{i}]") for i, p in enumerate(ctx.body.participants)]
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return group_out(await whatsapp(transport.create_group(name, list(dict.fromkeys(members)))))

    @api.route("GET", "/groups/<jid>", summary="Get group metadata", tag="Groups", auth=Auth.SESSION,
               answer=Group, errors=in_group, live=Live.OWNER)
    async def get_group(ctx: Ctx, jid: str) -> Group:
        group, transport = _in_group(ctx, jid)
        return group_out(await whatsapp(transport.group_info(group)))

    @api.route("GET", "/groups/<jid>/participants", summary="List participants", tag="Groups",
               auth=Auth.SESSION, answer=ParticipantList, errors=in_group, live=Live.OWNER)
    async def group_participants(ctx: Ctx, jid: str) -> ParticipantList:
        group, transport = _in_group(ctx, jid)
        info = await whatsapp(transport.group_info(group))
        return ParticipantList(data=[participant_out(p) for p in info.participants])

    async def change(ctx: Ctx, jid: str, action: str) -> ParticipantResults:
        group = _group_param(jid)
        members = [recipient_at(p, f"$.participants[{i}]") for i, p in enumerate(ctx.body.participants)]
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        results = await whatsapp(transport.update_participants(group, list(dict.fromkeys(members)), action))
        return ParticipantResults(results=[ParticipantResultOut(jid=r.jid, ok=r.ok, error=r.error) for r in results])

    @api.route("POST", "/groups/<jid>/participants/add", summary="Add participants", tag="Groups",
               auth=Auth.SESSION, body=ChangeParticipants, answer=ParticipantResults, errors=in_group,
               live=Live.OWNER)
    async def add_participants(ctx: Ctx, jid: str) -> ParticipantResults:
        """Add people; each gets its own result (e.g. `404` not on WhatsApp, `409` already a member)."""
        return await change(ctx, jid, "add")

    @api.route("POST", "/groups/<jid>/participants/remove", summary="Remove participants", tag="Groups",
               auth=Auth.SESSION, body=ChangeParticipants, answer=ParticipantResults,
               errors=in_group, live=Live.OWNER)
    async def remove_participants(ctx: Ctx, jid: str) -> ParticipantResults:
        """Remove people; each gets its own result (`404` not in the group, `not-authorized` for the creator)."""
        return await change(ctx, jid, "remove")

    @api.route("POST", "/groups/<jid>/participants/promote", summary="Make participants admins", tag="Groups",
               auth=Auth.SESSION, body=ChangeParticipants, answer=ParticipantResults, errors=in_group,
               live=Live.OWNER)
    async def promote_participants(ctx: Ctx, jid: str) -> ParticipantResults:
        """Make members admins; each gets its own result (`404` not in the group, `not-authorized` when this
        account is not an admin)."""
        return await change(ctx, jid, "promote")

    @api.route("POST", "/groups/<jid>/participants/demote", summary="Take participants' admin rights",
               tag="Groups", auth=Auth.SESSION, body=ChangeParticipants, answer=ParticipantResults,
               errors=in_group, live=Live.OWNER)
    async def demote_participants(ctx: Ctx, jid: str) -> ParticipantResults:
        """Make admins plain members again; each gets its own result (`404` not in the group,
        `not-authorized` when this account is not an admin, or for the group's creator)."""
        return await change(ctx, jid, "demote")

    @api.route("PUT", "/groups/<jid>/settings", summary="Change group settings", tag="Groups", auth=Auth.SESSION,
               body=UpdateGroupSettings, answer=Group, errors=admin, live=Live.OWNER)
    async def update_settings(ctx: Ctx, jid: str) -> Group:
        """Change the name, the description, who may send (`announce`) and who may edit the group's info
        (`locked`); answers the group after the change. Only admins change `announce` and `locked`; in a
        locked group only admins change the rest."""
        group = _group_param(jid)
        settings = _settings(ctx.body)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        await whatsapp(transport.update_group_settings(group, settings))
        return group_out(await whatsapp(transport.group_info(group)))

    @api.route("GET", "/groups/<jid>/picture", summary="Get group picture", tag="Groups", auth=Auth.SESSION,
               answer=GroupPicture, errors=[*in_group, NotFound], live=Live.OWNER)
    async def get_picture(ctx: Ctx, jid: str) -> GroupPicture:
        """The group's picture (WhatsApp's URLs expire after some hours); 404 when it has none."""
        group, transport = _in_group(ctx, jid)
        picture = await whatsapp(transport.get_picture(group))
        if picture.url is None:
            raise NotFound("This group has no picture")
        return GroupPicture(jid=group, url=picture.url, id=picture.id)

    @api.route("PUT", "/groups/<jid>/picture", summary="Set group picture", tag="Groups", auth=Auth.SESSION,
               body=SetGroupPicture, answer=PictureChanged, errors=[*admin, PayloadTooLarge], media_body=True,
               live=Live.OWNER)
    async def set_picture(ctx: Ctx, jid: str) -> PictureChanged:
        """Set the group's picture from a JPEG (at most 1 MiB), given as base64 or by URL. In a locked group
        only admins may."""
        group = _group_param(jid)
        url, jpeg = _picture_source(ctx.body)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        if url is not None:
            jpeg = await _download_picture(ctx, url)
        return PictureChanged(jid=group, id=await whatsapp(transport.set_group_picture(group, jpeg)))

    @api.route("DELETE", "/groups/<jid>/picture", summary="Remove group picture", tag="Groups",
               auth=Auth.SESSION, answer=PictureChanged, errors=admin, live=Live.OWNER)
    async def remove_picture(ctx: Ctx, jid: str) -> PictureChanged:
        group, transport = _in_group(ctx, jid)
        return PictureChanged(jid=group, id=await whatsapp(transport.set_group_picture(group, None)))

    @api.route("GET", "/groups/<jid>/invite", summary="Get invite link", tag="Groups", auth=Auth.SESSION,
               answer=InviteLink, errors=admin, live=Live.OWNER)
    async def invite_link(ctx: Ctx, jid: str) -> InviteLink:
        """The group's invite link (admins only); the same link until it is revoked."""
        group, transport = _in_group(ctx, jid)
        return _invite_out(await whatsapp(transport.group_invite_link(group)))

    @api.route("POST", "/groups/<jid>/invite/revoke", summary="Revoke invite link", tag="Groups",
               auth=Auth.SESSION, answer=InviteLink, errors=admin, live=Live.OWNER)
    async def revoke_invite(ctx: Ctx, jid: str) -> InviteLink:
        """Revoke the invite link (the old code stops working) and answer the new one (admins only)."""
        group, transport = _in_group(ctx, jid)
        return _invite_out(await whatsapp(transport.group_invite_link(group, reset=True)))

    @api.route("GET", "/groups/invite/<code>", summary="Preview an invite", tag="Groups", auth=Auth.SESSION,
               answer=Group, errors=in_group, live=Live.OWNER)
    async def invite_info(ctx: Ctx, code: str) -> Group:
        """The group an invite code leads to, without joining it; 404 when the code is unknown or revoked."""
        invite = _code_param(code)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return group_out(await whatsapp(transport.group_info_from_invite(invite)))

    @api.route("POST", "/groups/invite/<code>/join", summary="Join by invite", tag="Groups", auth=Auth.SESSION,
               answer=Joined, errors=admin, live=Live.OWNER)
    async def join_invite(ctx: Ctx, code: str) -> Joined:
        """Join the group an invite code leads to (already a member: nothing changes); answers its JID."""
        invite = _code_param(code)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return Joined(jid=await whatsapp(transport.join_group_with_invite(invite)))

    @api.route("POST", "/groups/<jid>/leave", summary="Leave group", tag="Groups", auth=Auth.SESSION, answer=Left,
               errors=in_group, live=Live.OWNER)
    async def leave_group(ctx: Ctx, jid: str) -> Left:
        group, transport = _in_group(ctx, jid)
        await whatsapp(transport.leave_group(group))
        return Left(jid=group, left=True)
