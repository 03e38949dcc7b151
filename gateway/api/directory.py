"""Contacts, on-WhatsApp checks and groups (session key)."""

from __future__ import annotations

from typing import Annotated

import msgspec
import trio
from msgspec import Meta

from actors import GroupInfo, GroupNotFound, OnWhatsApp, phone_from_jid, user_jid

from .._patterns import NOT_BLANK_PATTERN
from .._phone import group_jid_at, phone_at, recipient_at
from .._requests import PhoneNumber, Recipient, Request
from ..errors import NotFound, SessionNotConnected, Unauthorized, ValidationError, WhatsAppError
from ..store import ContactRecord, iso_ms
from ._pagination import PAGE_PARAMS, next_cursor, read_page
from ._routing import Api, Auth, Ctx, Live
from ._schemas import Answer


ContactName = Annotated[str, Meta(min_length=1, max_length=256)]


class UpsertContact(Request):
    """`fullName` is the seed's name for the contact's name; `name` is accepted as the same field."""

    phone_number: PhoneNumber
    full_name: Annotated[ContactName | None, Meta(description="The contact's name.")] = None
    name: Annotated[ContactName | None, Meta(description="Older spelling of `fullName`; give one of the two.")] = None


class Contact(Answer):
    phone_number: str
    jid: str
    full_name: str | None
    name: Annotated[str | None, Meta(description="The same as `fullName` (kept for older clients).")]
    created_at: str
    updated_at: str


class ContactList(Answer):
    data: list[Contact]
    next_cursor: str | None


class OnWhatsAppAnswer(Answer):
    phone_number: str
    on_whatsapp: bool = msgspec.field(name="onWhatsApp")
    jid: str | None
    verified_name: str | None
    cached: bool


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


def contact_out(c: ContactRecord) -> Contact:
    return Contact(phone_number=c.phone_number, jid=user_jid(c.phone_number), full_name=c.name, name=c.name,
                   created_at=iso_ms(c.created_at) or "", updated_at=iso_ms(c.updated_at) or "")


def group_out(g: GroupInfo) -> Group:
    return Group(jid=g.jid, name=g.name, topic=g.topic, owner=g.owner, created_at=iso_ms(g.created_at_ms),
                 participants=[participant_out(p) for p in g.participants])


def participant_out(p) -> Participant:
    return Participant(jid=p.jid, phone_number=p.phone_number or phone_from_jid(p.jid), is_admin=p.is_admin,
                       is_super_admin=p.is_super_admin)


def _phone_param(raw: str) -> str:
    if len(raw) > 32:
        raise ValidationError.at("path.phone", "must be at most 32 characters")
    return phone_at(raw, "path.phone")


def _group_param(raw: str) -> str:
    return group_jid_at(raw, "path.jid")


async def _whatsapp(call):
    """Run a transport call under a deadline (its own failures are answered through the error table)."""
    try:
        with trio.fail_after(30):
            return await call
    except trio.TooSlowError:
        raise WhatsAppError("WhatsApp did not answer within 30 s") from None


_LIVE_ERRORS = [Unauthorized, SessionNotConnected, WhatsAppError]


def register(api: Api) -> None:
    _register_contacts(api)
    _register_groups(api)


def _register_contacts(api: Api) -> None:
    one = _LIVE_ERRORS

    @api.route("GET", "/contacts", summary="List contacts", tag="Contacts", auth=Auth.SESSION,
               answer=ContactList, query=PAGE_PARAMS, errors=[Unauthorized, ValidationError])
    async def list_contacts(ctx: Ctx) -> ContactList:
        """The session's address book, ordered by phone number, one page at a time."""
        after, limit = read_page(ctx.query)
        rows = await ctx.gateway.store.list_contacts(ctx.session.session_id, after=after, limit=limit)
        return ContactList(data=[contact_out(c) for c in rows],
                           next_cursor=next_cursor([c.phone_number for c in rows], limit))

    @api.route("PUT", "/contacts", summary="Upsert contact", tag="Contacts", auth=Auth.SESSION, body=UpsertContact,
               answer=Contact, errors=[Unauthorized, ValidationError])
    async def upsert_contact(ctx: Ctx) -> Contact:
        """Create or update a contact, keyed by its phone number."""
        phone = phone_at(ctx.body.phone_number, "$.phoneNumber")
        full_name, name = ctx.body.full_name, ctx.body.name
        if full_name is not None and name is not None and full_name != name:
            raise ValidationError.at("$.name", "give fullName or name, not two different names")
        at = ctx.gateway.clock.now_ms()
        stored = await ctx.gateway.store.upsert_contact(ContactRecord(
            session_id=ctx.session.session_id, phone_number=phone, name=full_name if full_name is not None else name,
            created_at=at, updated_at=at))
        return contact_out(stored)

    @api.route("GET", "/contacts/<phone>", summary="Get contact", tag="Contacts", auth=Auth.SESSION, answer=Contact,
               errors=[Unauthorized, ValidationError, NotFound])
    async def get_contact(ctx: Ctx, phone: str) -> Contact:
        """One contact by phone number (any accepted phone format)."""
        found = await ctx.gateway.store.get_contact(ctx.session.session_id, _phone_param(phone))
        if found is None:
            raise NotFound("No contact with that phone number in this session")
        return contact_out(found)

    @api.route("GET", "/on-whatsapp/<phone>", summary="Check if number is on WhatsApp", tag="Contacts",
               auth=Auth.SESSION, answer=OnWhatsAppAnswer, errors=[*one, ValidationError], live=Live.OWNER)
    async def on_whatsapp(ctx: Ctx, phone: str) -> OnWhatsAppAnswer:
        """Asks WhatsApp (through the session) whether the number has an account. Answers are cached for
        GATEWAY_ON_WHATSAPP_TTL seconds."""
        number = _phone_param(phone)
        sid = ctx.session.session_id
        cache = ctx.gateway.on_whatsapp_cache
        cached = cache.get((sid, number))
        if cached is None:
            transport = ctx.gateway.control.require_connected(sid)
            answers = await _whatsapp(transport.is_on_whatsapp([number]))
            cached = answers[0] if answers else OnWhatsApp(phone_number=number, exists=False)
            cache.put((sid, number), cached)
            hit = False
        else:
            hit = True
        return OnWhatsAppAnswer(phone_number=number, on_whatsapp=cached.exists, jid=cached.jid,
                                verified_name=cached.verified_name, cached=hit)



def _register_groups(api: Api) -> None:
    one = _LIVE_ERRORS
    in_group = [*one, ValidationError, GroupNotFound]  # routes that name a group by its JID

    @api.route("GET", "/groups", summary="List groups", tag="Groups", auth=Auth.SESSION, answer=GroupList,
               errors=one, live=Live.OWNER)
    async def list_groups(ctx: Ctx) -> GroupList:
        """Groups the session's account belongs to."""
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return GroupList(data=[group_out(g) for g in await _whatsapp(transport.list_groups())])

    @api.route("POST", "/groups", summary="Create group", tag="Groups", auth=Auth.SESSION, body=CreateGroup,
               status=201, answer=Group, errors=[*one, ValidationError], live=Live.OWNER)
    async def create_group(ctx: Ctx) -> Group:
        """Create a group with the given participants (phone numbers or JIDs)."""
        name = ctx.body.name.strip()
        members = [recipient_at(p, f"$.participants[{i}]") for i, p in enumerate(ctx.body.participants)]
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return group_out(await _whatsapp(transport.create_group(name, list(dict.fromkeys(members)))))

    @api.route("GET", "/groups/<jid>", summary="Get group metadata", tag="Groups", auth=Auth.SESSION,
               answer=Group, errors=in_group, live=Live.OWNER)
    async def get_group(ctx: Ctx, jid: str) -> Group:
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        return group_out(await _whatsapp(transport.group_info(_group_param(jid))))

    @api.route("GET", "/groups/<jid>/participants", summary="List participants", tag="Groups",
               auth=Auth.SESSION, answer=ParticipantList, errors=in_group, live=Live.OWNER)
    async def group_participants(ctx: Ctx, jid: str) -> ParticipantList:
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        info = await _whatsapp(transport.group_info(_group_param(jid)))
        return ParticipantList(data=[participant_out(p) for p in info.participants])

    async def change(ctx: Ctx, jid: str, action: str) -> ParticipantResults:
        group = _group_param(jid)
        members = [recipient_at(p, f"$.participants[{i}]") for i, p in enumerate(ctx.body.participants)]
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        results = await _whatsapp(transport.update_participants(group, list(dict.fromkeys(members)), action))
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
        await _whatsapp(transport.leave_group(group))
        return Left(jid=group, left=True)
