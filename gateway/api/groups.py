"""Groups (session key): list, create, inspect, change participants, leave."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from actors import GroupInfo, GroupNotFound, phone_from_jid

from .._patterns import NOT_BLANK_PATTERN
from .._phone import group_jid_at, recipient_at
from .._requests import Recipient, Request
from ..errors import ValidationError
from ..store import iso_ms
from ._live import LIVE_ERRORS, whatsapp
from ._routing import Api, Auth, Ctx, Live
from ._schemas import Answer


class Participant(Answer):
    jid: str
    phone_number: str | None
    is_admin: bool
    is_super_admin: bool


class Group(Answer):
    jid: str
    name: str
    topic: str | None
    owner: str | None
    created_at: str | None
    participants: list[Participant]


class GroupList(Answer):
    data: list[Group]


class ParticipantList(Answer):
    data: list[Participant]


class CreateGroup(Request):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=NOT_BLANK_PATTERN,
                              description="1 to 100 characters, not all spaces.")]
    participants: Annotated[list[Recipient], Meta(min_length=1, max_length=1024)]


class ChangeParticipants(Request):
    participants: Annotated[list[Recipient], Meta(min_length=1, max_length=1024)]


class ParticipantResultOut(Answer):
    jid: str
    ok: bool
    error: str | None


class ParticipantResults(Answer):
    results: list[ParticipantResultOut]


class Left(Answer):
    jid: str
    left: bool


def group_out(g: GroupInfo) -> Group:
    return Group(jid=g.jid, name=g.name, topic=g.topic, owner=g.owner, created_at=iso_ms(g.created_at_ms),
                 participants=[participant_out(p) for p in g.participants])


def participant_out(p) -> Participant:
    return Participant(jid=p.jid, phone_number=p.phone_number or phone_from_jid(p.jid), is_admin=p.is_admin,
                       is_super_admin=p.is_super_admin)


def _group_param(raw: str) -> str:
    return group_jid_at(raw, "path.jid")


def register(api: Api) -> None:
    one = LIVE_ERRORS
    in_group = [*one, ValidationError, GroupNotFound]  # routes that name a group by its JID

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
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return group_out(await whatsapp(transport.group_info(_group_param(jid))))

    @api.route("GET", "/groups/<jid>/participants", summary="List participants", tag="Groups",
               auth=Auth.SESSION, answer=ParticipantList, errors=in_group, live=Live.OWNER)
    async def group_participants(ctx: Ctx, jid: str) -> ParticipantList:
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        info = await whatsapp(transport.group_info(_group_param(jid)))
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
        """Remove people; each gets its own result."""
        return await change(ctx, jid, "remove")

    @api.route("POST", "/groups/<jid>/leave", summary="Leave group", tag="Groups", auth=Auth.SESSION, answer=Left,
               errors=in_group, live=Live.OWNER)
    async def leave_group(ctx: Ctx, jid: str) -> Left:
        group = _group_param(jid)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        await whatsapp(transport.leave_group(group))
        return Left(jid=group, left=True)
