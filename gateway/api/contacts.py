"""Contacts and on-WhatsApp checks (session key)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from actors import OnWhatsApp, user_jid

from .._phone import phone_at
from .._requests import PhoneNumber, Request
from ..errors import NotFound, Unauthorized, ValidationError
from ..store import ContactRecord, iso_ms
from ._live import LIVE_ERRORS, whatsapp
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


def contact_out(c: ContactRecord) -> Contact:
    return Contact(phone_number=c.phone_number, jid=user_jid(c.phone_number), full_name=c.name, name=c.name,
                   created_at=iso_ms(c.created_at) or "", updated_at=iso_ms(c.updated_at) or "")


def _phone_param(raw: str) -> str:
    if len(raw) > 32:
        raise ValidationError.at("path.phone", "must be at most 32 characters")
    return phone_at(raw, "path.phone")


def register(api: Api) -> None:
    one = LIVE_ERRORS

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
            answers = await whatsapp(transport.is_on_whatsapp([number]))
            cached = answers[0] if answers else OnWhatsApp(phone_number=number, exists=False)
            cache.put((sid, number), cached)
            hit = False
        else:
            hit = True
        return OnWhatsAppAnswer(phone_number=number, on_whatsapp=cached.exists, jid=cached.jid,
                                verified_name=cached.verified_name, cached=hit)
