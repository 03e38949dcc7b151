"""Contacts, identity and on-WhatsApp checks (session key).

A session has two address books. The gateway's own is kept in the store
(`PUT /contacts`); the account's WhatsApp contacts (the phone's address book,
as WhatsApp syncs it) are read through the live connection. `GET /contacts`
merges the two by phone number, one keyset page at a time: a page of each,
merged, cut to the limit, so pages stay stable while entries are added. When
the session is not connected (on the node that answers: in cluster mode these
routes run on the session's owner), the gateway's own are listed and the
answer says so (`whatsapp: false`); that is not an error.

Profile pictures, about texts and on-WhatsApp answers are cached per session
and JID for GATEWAY_ON_WHATSAPP_TTL; a number WhatsApp does not have is 404.
`/lids/...` translate between a LID and a phone number, from what the session
learned (`gateway._lids`), else by asking WhatsApp.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, NoReturn, TypeVar

import msgspec
from msgspec import Meta

from actors import (
    ContactInfo,
    NotConnected,
    OnWhatsApp,
    ProfilePicture,
    RecipientError,
    Transport,
    UserInfo,
    phone_from_jid,
    user_jid,
)

from .._lids import MAX_LID_LENGTH, is_lid
from .._lru import LruCache
from .._phone import InvalidPhoneNumber, normalize_phone, phone_at
from .._requests import PhoneNumber, Request
from ..errors import NotFound, SessionNotConnected, Unauthorized, ValidationError, WhatsAppError
from ..store import ContactRecord, iso_ms
from ._live import LIVE_ERRORS, whatsapp
from ._pagination import PAGE_PARAMS, next_cursor, read_page
from ._routing import Api, Auth, Ctx, Live
from ._schemas import Answer

ContactName = Annotated[str, Meta(min_length=1, max_length=256)]
ContactSource = Literal["gateway", "whatsapp", "both"]

T = TypeVar("T")


class UpsertContact(Request):
    """`fullName` is the seed's name for the contact's name; `name` is accepted as the same field."""

    phone_number: PhoneNumber
    full_name: Annotated[ContactName | None, Meta(description="The contact's name.")] = None
    name: Annotated[ContactName | None, Meta(description="Older spelling of `fullName`; give one of the two.")] = None


def _d(text: str) -> Meta:
    return Meta(description=text)


class Contact(Answer):
    phone_number: str
    jid: str
    full_name: Annotated[str | None, _d(
        "The name to show: the gateway's (`PUT /contacts`) when it has one, else the name in the phone's "
        "address book (WhatsApp).")]
    name: Annotated[str | None, _d("The same as `fullName` (kept for older clients).")]
    push_name: Annotated[str | None, _d("The name the contact chose on WhatsApp; null in a `PUT` answer.")]
    business_name: Annotated[str | None, _d("The contact's verified business name; null in a `PUT` answer.")]
    lid: Annotated[str | None, _d("The contact's LID (`…@lid`), when WhatsApp or the session's events told it.")]
    source: Annotated[ContactSource, _d(
        "Where the entry comes from: `gateway` (only `PUT /contacts`; always, in a `PUT` answer), `whatsapp` "
        "(only the account's WhatsApp contacts) or `both`.")]
    created_at: Annotated[str | None, _d("When the gateway's entry was made; null for a WhatsApp-only entry.")]
    updated_at: Annotated[str | None, _d("When the gateway's entry last changed; null for a WhatsApp-only entry.")]


class ContactList(Answer):
    data: list[Contact]
    next_cursor: str | None
    whatsapp: Annotated[bool, _d(
        "True: the account's WhatsApp contacts are merged in. False: the session is not connected, so only "
        "the gateway's own contacts are listed.")]


class OnWhatsAppAnswer(Answer):
    phone_number: str
    on_whatsapp: bool = msgspec.field(name="onWhatsApp")
    jid: str | None
    verified_name: str | None
    cached: bool


class Blocked(Answer):
    jid: str
    blocked: Annotated[bool, _d("Whether the account now blocks this number.")]


class Blocklist(Answer):
    data: Annotated[list[str], _d("The JIDs the account blocks (phone JIDs where the gateway can tell them).")]


class PictureAnswer(Answer):
    jid: str
    url: Annotated[str | None, _d("The picture's URL (WhatsApp's expire after some hours); null when there is "
                                  "none, or the contact's privacy settings hide it.")]
    id: Annotated[str | None, _d("Changes whenever the picture does.")]
    cached: Annotated[bool, _d("Answered from the gateway's cache (GATEWAY_ON_WHATSAPP_TTL).")]


class AboutAnswer(Answer):
    jid: str
    about: Annotated[str | None, _d("The contact's about text; null when unset or hidden from this account.")]
    cached: Annotated[bool, _d("Answered from the gateway's cache (GATEWAY_ON_WHATSAPP_TTL).")]


class LidAnswer(Answer):
    lid: Annotated[str, _d("The LID (`…@lid`).")]
    jid: Annotated[str, _d("The phone JID it stands for.")]
    phone_number: Annotated[str, _d("The same number in E.164.")]


def contact_view(phone: str, record: ContactRecord | None, info: ContactInfo | None, lid: str | None) -> Contact:
    """One entry from the gateway's record and WhatsApp's contact, either of them (not both) missing."""
    full_name = record.name if record is not None and record.name is not None else (info.full_name if info else None)
    source: ContactSource = "both" if record and info else "gateway" if record else "whatsapp"
    return Contact(phone_number=phone, jid=user_jid(phone), full_name=full_name, name=full_name,
                   push_name=info.push_name if info else None, business_name=info.business_name if info else None,
                   lid=lid, source=source, created_at=iso_ms(record.created_at) if record else None,
                   updated_at=iso_ms(record.updated_at) if record else None)


def contact_out(c: ContactRecord) -> Contact:
    return contact_view(c.phone_number, c, None, None)


def _phone_param(raw: str) -> str:
    if len(raw) > 32:
        raise ValidationError.at("path.phone", "must be at most 32 characters")
    return phone_at(raw, "path.phone")


def _lid_param(raw: str) -> str:
    if len(raw) > MAX_LID_LENGTH:
        raise ValidationError.at("path.lid", f"must be at most {MAX_LID_LENGTH} characters")
    if not is_lid(raw):
        raise ValidationError.at("path.lid", "must be a LID: 1 to 20 digits then @lid, such as 123456789012345@lid")
    return raw


def _connected(ctx: Ctx) -> Transport | None:
    """The session's live transport on this node, or None."""
    try:
        return ctx.gateway.control.require_connected(ctx.session.session_id)
    except SessionNotConnected:
        return None


async def _whatsapp_contacts(ctx: Ctx) -> dict[str, ContactInfo] | None:
    """The account's WhatsApp contacts by E.164 number (the LIDs they carry learned); None when the session
    is not connected here. A contact WhatsApp names by a LID the session cannot resolve is left out."""
    transport = _connected(ctx)
    if transport is None:
        return None
    try:
        contacts = await whatsapp(transport.get_contacts())
    except NotConnected:
        return None  # it went down just now
    sid, lids = ctx.session.session_id, ctx.gateway.lids
    await lids.learn(sid, [(c.lid, c.jid) for c in contacts if c.lid])
    out: dict[str, ContactInfo] = {}
    for c in contacts:
        jid = await lids.phone_for(sid, c.jid) if is_lid(c.jid) else c.jid
        try:
            phone = normalize_phone(phone_from_jid(jid or "") or c.phone_number or "")
        except InvalidPhoneNumber:
            continue
        out.setdefault(phone, c if c.lid or not is_lid(c.jid) else msgspec.structs.replace(c, lid=c.jid))
    return out


async def _view(ctx: Ctx, phone: str, record: ContactRecord | None, info: ContactInfo | None) -> Contact:
    lid = info.lid if info is not None else None
    if lid is None:
        lid = await ctx.gateway.lids.lid_for(ctx.session.session_id, user_jid(phone))
    return contact_view(phone, record, info, lid)


async def _cached(cache: LruCache[tuple[str, str], T], key: tuple[str, str],
                  ask: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
    """The cached answer for `key`, else `ask()`'s (then cached); and whether it came from the cache."""
    found = cache.get(key)
    if found is not None:
        return found, True
    found = await ask()
    cache.put(key, found)
    return found, False


async def on_whatsapp_answer(ctx: Ctx, transport: Transport | None, number: str) -> tuple[OnWhatsApp, bool]:
    """WhatsApp's answer for `number`, and whether it came from the cache (GATEWAY_ON_WHATSAPP_TTL)."""
    async def ask() -> OnWhatsApp:
        live = transport or ctx.gateway.control.require_connected(ctx.session.session_id)
        answers = await whatsapp(live.is_on_whatsapp([number]))
        return answers[0] if answers else OnWhatsApp(phone_number=number, exists=False)

    return await _cached(ctx.gateway.on_whatsapp_cache, (ctx.session.session_id, number), ask)


async def _require_on_whatsapp(ctx: Ctx, transport: Transport, number: str) -> None:
    if not (await on_whatsapp_answer(ctx, transport, number))[0].exists:
        raise NotFound(f"{number} is not on WhatsApp")


def register(api: Api) -> None:
    _register_contacts(api)
    _register_identity(api)


def _register_contacts(api: Api) -> None:
    @api.route("GET", "/contacts", summary="List contacts", tag="Contacts", auth=Auth.SESSION, answer=ContactList,
               query=PAGE_PARAMS, errors=[Unauthorized, ValidationError, WhatsAppError], live=Live.OWNER)
    async def list_contacts(ctx: Ctx) -> ContactList:
        """The session's contacts, ordered by phone number, one page at a time: the gateway's own (`PUT
        /contacts`) and, when the session is connected, the account's WhatsApp contacts, merged by number.
        Each entry says where it comes from (`source`) and whose name is which: `fullName` is the gateway's
        name when it has one, else the phone's address-book name; `pushName` the name the contact chose.
        `createdAt`/`updatedAt` belong to the gateway's entry (null for a WhatsApp-only one). Not connected:
        the gateway's own contacts only, with `whatsapp: false`."""
        after, limit = read_page(ctx.query)
        sid = ctx.session.session_id
        found = await _whatsapp_contacts(ctx)
        rows = {c.phone_number: c for c in await ctx.gateway.store.list_contacts(sid, after=after, limit=limit)}
        theirs = sorted(p for p in (found or {}) if after is None or p > after)[:limit]
        keys = sorted(set(rows) | set(theirs))[:limit]
        data = [await _view(ctx, p, rows.get(p), (found or {}).get(p)) for p in keys]
        return ContactList(data=data, next_cursor=next_cursor(keys, limit), whatsapp=found is not None)

    @api.route("PUT", "/contacts", summary="Upsert contact", tag="Contacts", auth=Auth.SESSION, body=UpsertContact,
               answer=Contact, errors=[Unauthorized, ValidationError])
    async def upsert_contact(ctx: Ctx) -> Contact:
        """Create or update the gateway's own contact, keyed by its phone number. The answer is the gateway's
        entry (`source: gateway`); `GET` merges in what WhatsApp knows."""
        phone = phone_at(ctx.body.phone_number, "$.phoneNumber")
        full_name, name = ctx.body.full_name, ctx.body.name
        if full_name is not None and name is not None and full_name != name:
            raise ValidationError.at("$.name", "give fullName or name, not two different names")
        at = ctx.gateway.clock.now_ms()
        stored = await ctx.gateway.store.upsert_contact(ContactRecord(
            session_id=ctx.session.session_id, phone_number=phone, name=full_name if full_name is not None else name,
            created_at=at, updated_at=at))
        return contact_out(stored)

    @api.route("GET", "/contacts/blocklist", summary="List blocked contacts", tag="Contacts", auth=Auth.SESSION,
               answer=Blocklist, errors=LIVE_ERRORS, live=Live.OWNER)
    async def blocklist(ctx: Ctx) -> Blocklist:
        """The numbers the account blocks, as WhatsApp keeps them (a LID the session can resolve is shown as
        its phone JID)."""
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        listed = await whatsapp(transport.get_blocklist())
        resolved = [await ctx.gateway.lids.phone_for(ctx.session.session_id, j) or j if is_lid(j) else j
                    for j in listed]
        return Blocklist(data=sorted(dict.fromkeys(resolved)))

    @api.route("GET", "/contacts/<phone>", summary="Get contact", tag="Contacts", auth=Auth.SESSION, answer=Contact,
               errors=[Unauthorized, ValidationError, NotFound, WhatsAppError], live=Live.OWNER)
    async def get_contact(ctx: Ctx, phone: str) -> Contact:
        """One contact by phone number (any accepted phone format): the gateway's, the account's WhatsApp
        contact (when the session is connected), or both merged, as in the list. 404 when neither has it."""
        number = _phone_param(phone)
        record = await ctx.gateway.store.get_contact(ctx.session.session_id, number)
        info = (await _whatsapp_contacts(ctx) or {}).get(number)
        if record is None and info is None:
            raise NotFound("No contact with that phone number in this session")
        return await _view(ctx, number, record, info)

    async def set_blocked(ctx: Ctx, phone: str, block: bool) -> Blocked:
        number = _phone_param(phone)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        if block:  # unblocking is allowed for a number that has left WhatsApp since
            await _require_on_whatsapp(ctx, transport, number)
        await whatsapp(transport.update_blocklist(user_jid(number), block))
        return Blocked(jid=user_jid(number), blocked=block)

    blocking = [*LIVE_ERRORS, ValidationError, NotFound]

    @api.route("POST", "/contacts/<phone>/block", summary="Block contact", tag="Contacts", auth=Auth.SESSION,
               answer=Blocked, errors=blocking, live=Live.OWNER)
    async def block_contact(ctx: Ctx, phone: str) -> Blocked:
        """Block the number on WhatsApp: its messages, reactions, edits and votes no longer arrive (its sends
        still succeed, without delivery receipts). 404 when the number is not on WhatsApp."""
        return await set_blocked(ctx, phone, True)

    @api.route("POST", "/contacts/<phone>/unblock", summary="Unblock contact", tag="Contacts", auth=Auth.SESSION,
               answer=Blocked, errors=blocking, live=Live.OWNER)
    async def unblock_contact(ctx: Ctx, phone: str) -> Blocked:
        """Unblock the number: what it sends arrives again (what it sent while blocked does not)."""
        return await set_blocked(ctx, phone, False)


def _register_identity(api: Api) -> None:
    profile = [*LIVE_ERRORS, ValidationError, NotFound]

    @api.route("GET", "/contacts/<phone>/picture", summary="Get profile picture", tag="Contacts",
               auth=Auth.SESSION, answer=PictureAnswer, errors=profile, live=Live.OWNER)
    async def contact_picture(ctx: Ctx, phone: str) -> PictureAnswer:
        """The number's profile picture (`url` null: none, or hidden from this account). Cached for
        GATEWAY_ON_WHATSAPP_TTL seconds; 404 when the number is not on WhatsApp."""
        number = _phone_param(phone)
        jid, sid = user_jid(number), ctx.session.session_id

        async def ask() -> ProfilePicture:
            transport = ctx.gateway.control.require_connected(sid)
            await _require_on_whatsapp(ctx, transport, number)
            try:
                return await whatsapp(transport.get_picture(jid))
            except RecipientError as exc:  # it left WhatsApp since the on-WhatsApp answer was cached
                raise NotFound(f"{number} is not on WhatsApp: {exc.reason}") from None

        picture, hit = await _cached(ctx.gateway.picture_cache, (sid, jid), ask)
        return PictureAnswer(jid=jid, url=picture.url, id=picture.id, cached=hit)

    @api.route("GET", "/contacts/<phone>/about", summary="Get about text", tag="Contacts", auth=Auth.SESSION,
               answer=AboutAnswer, errors=profile, live=Live.OWNER)
    async def contact_about(ctx: Ctx, phone: str) -> AboutAnswer:
        """The number's about (status) text. Cached for GATEWAY_ON_WHATSAPP_TTL seconds; 404 when the number
        is not on WhatsApp."""
        number = _phone_param(phone)
        jid, sid = user_jid(number), ctx.session.session_id

        async def ask() -> UserInfo:
            transport = ctx.gateway.control.require_connected(sid)
            infos = await whatsapp(transport.get_user_info([jid]))
            info = next((i for i in infos if phone_from_jid(i.jid) == phone_from_jid(jid)), None)
            if info is None:
                raise NotFound(f"{number} is not on WhatsApp")
            if info.lid:
                await ctx.gateway.lids.learn(sid, [(info.lid, jid)])
            return info

        info, hit = await _cached(ctx.gateway.about_cache, (sid, jid), ask)
        return AboutAnswer(jid=jid, about=info.about, cached=hit)

    @api.route("GET", "/on-whatsapp/<phone>", summary="Check if number is on WhatsApp", tag="Contacts",
               auth=Auth.SESSION, answer=OnWhatsAppAnswer, errors=[*LIVE_ERRORS, ValidationError], live=Live.OWNER)
    async def on_whatsapp(ctx: Ctx, phone: str) -> OnWhatsAppAnswer:
        """Asks WhatsApp (through the session) whether the number has an account. Answers are cached for
        GATEWAY_ON_WHATSAPP_TTL seconds."""
        number = _phone_param(phone)
        answer, hit = await on_whatsapp_answer(ctx, None, number)
        return OnWhatsAppAnswer(phone_number=number, on_whatsapp=answer.exists, jid=answer.jid,
                                verified_name=answer.verified_name, cached=hit)

    lookup = [*LIVE_ERRORS, ValidationError, NotFound]

    @api.route("GET", "/lids/<lid>", summary="Phone number of a LID", tag="Contacts", auth=Auth.SESSION,
               answer=LidAnswer, errors=lookup, live=Live.OWNER)
    async def phone_of_lid(ctx: Ctx, lid: str) -> LidAnswer:
        """The phone number a LID (`…@lid`, WhatsApp's other name for an account) stands for: from what the
        session learned, else asked of WhatsApp (and remembered). 404 when WhatsApp does not know it; 409
        when the session never learned it and is not connected to ask."""
        lid = _lid_param(lid)
        transport = _connected(ctx)
        phone = await whatsapp(ctx.gateway.lids.phone_for(ctx.session.session_id, lid, transport))
        if phone is None:
            _unknown(transport, "This LID")
        return LidAnswer(lid=lid, jid=phone, phone_number=phone_from_jid(phone) or "")

    @api.route("GET", "/lids/by-phone/<phone>", summary="LID of a phone number", tag="Contacts",
               auth=Auth.SESSION, answer=LidAnswer, errors=lookup, live=Live.OWNER)
    async def lid_of_phone(ctx: Ctx, phone: str) -> LidAnswer:
        """The LID of a phone number: from what the session learned, else asked of WhatsApp (and remembered).
        404 when WhatsApp has none for it (not on WhatsApp); 409 as for `/lids/{lid}`."""
        number = _phone_param(phone)
        transport = _connected(ctx)
        lid = await whatsapp(ctx.gateway.lids.lid_for(ctx.session.session_id, user_jid(number), transport))
        if lid is None:
            _unknown(transport, f"{number}'s LID")
        return LidAnswer(lid=lid, jid=user_jid(number), phone_number=number)


def _unknown(transport: Transport | None, what: str) -> NoReturn:
    if transport is None:
        raise SessionNotConnected(f"{what} is not one this session learned, and it is not connected to ask "
                                  "WhatsApp; connect it first (POST .../connect)")
    raise NotFound(f"{what} is not known to WhatsApp")
