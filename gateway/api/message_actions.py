"""Routes for acting on a message already in a chat: react, edit, vote (the use case is `gateway._actions`).

Revoking is `DELETE /messages/:id` (in `messages`), which cancels a message still queued instead.
All of them need the live connection (`Live.OWNER`).
"""

from __future__ import annotations

from typing import Annotated, Final

from msgspec import Meta

from actors import GroupNotFound

from .._actions import EMOJI_PATTERN, MAX_EMOJI_CODE_POINTS
from .._patterns import RECIPIENT_PATTERN
from .._requests import Person, Request
from ..errors import Conflict, NotFound, SessionNotConnected, Unauthorized, ValidationError, WhatsAppError
from ._errors import PayloadTooLarge
from ._routing import Api, Auth, Ctx, Live
from ._schemas import Answer

TAG: Final = "Messages"
MAX_TEXT: Final = 4096
MAX_OPTION: Final = 100
MAX_OPTIONS: Final = 12

Chat = Annotated[str, Meta(max_length=64, pattern=RECIPIENT_PATTERN, description=(
    "The chat a received message is in (a phone number, user JID or group JID); needed only when the id is "
    "not one of this session's sent messages."))]
Author = Annotated[Person, Meta(description="In a group chat: who wrote the received message.")]


class React(Request):
    """A message this session sent is found by its `messageId` or WhatsApp id. Any other id is a received
    message's WhatsApp id: give its `chat` (and in a group, its `sender`); without `chat` such an id is 404."""

    emoji: Annotated[str, Meta(max_length=MAX_EMOJI_CODE_POINTS, pattern=EMOJI_PATTERN, description=(
        "One emoji, e.g. 👍; an empty string removes this account's reaction."))]
    chat: Chat | None = None
    sender: Author | None = None


class EditMessage(Request):
    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT, description=(
        "The new text (of a text message) or caption (of an image, video or document)."))]


class VotePoll(Request):
    """As for a reaction: a poll this session sent by its id, or a received one with its `chat`
    (and in a group its `sender`)."""

    options: Annotated[list[Annotated[str, Meta(min_length=1, max_length=MAX_OPTION)]], Meta(
        max_length=MAX_OPTIONS, description="The option names chosen (an empty list takes the vote back).")]
    chat: Chat | None = None
    sender: Author | None = None


class ReactionSent(Answer):
    message_id: Annotated[str, Meta(description="The message reacted to, as named in the path.")]
    chat: str
    emoji: str
    removed: bool
    whatsapp_id: Annotated[str, Meta(description="WhatsApp id of the reaction itself.")]


class MessageEditSent(Answer):
    message_id: Annotated[str, Meta(description="The gateway's id of the edited message.")]
    whatsapp_id: str
    to: str
    text: str


class VoteSent(Answer):
    message_id: Annotated[str, Meta(description="The poll, as named in the path.")]
    chat: str
    options: list[str]
    whatsapp_id: Annotated[str, Meta(description="WhatsApp id of the vote itself.")]


_ERRORS: Final = [Unauthorized, NotFound, Conflict, ValidationError, SessionNotConnected, WhatsAppError,
                  GroupNotFound, PayloadTooLarge]


def register(api: Api) -> None:
    @api.route("POST", "/messages/<message_id>/reaction", summary="React to a message", tag=TAG,
               auth=Auth.SESSION, body=React, answer=ReactionSent, errors=_ERRORS, live=Live.OWNER)
    async def react(ctx: Ctx, message_id: str) -> ReactionSent:
        """React with an emoji to a message in a chat, sent by this session or received; an empty emoji
        removes the reaction. The other side gets `message.reaction`."""
        body = ctx.body
        target, sent = await ctx.gateway.actions.react(ctx.session, message_id, body.emoji, chat=body.chat,
                                                       sender=body.sender)
        return ReactionSent(message_id=message_id, chat=target.chat, emoji=body.emoji, removed=not body.emoji,
                            whatsapp_id=sent.message_id)

    @api.route("PUT", "/messages/<message_id>", summary="Edit a sent message", tag=TAG, auth=Auth.SESSION,
               body=EditMessage, answer=MessageEditSent, errors=_ERRORS, live=Live.OWNER)
    async def edit(ctx: Ctx, message_id: str) -> MessageEditSent:
        """Change the text, or the caption, of a message this session sent, within 15 minutes of its
        send (WhatsApp's edit window; later is 422). A message not sent yet, or revoked, is 409, and so
        is one of another type than text, image, video and document. The recipient gets `message.edited`, and the
        message's history an `edited` entry."""
        record, _ = await ctx.gateway.actions.edit(ctx.session, message_id, ctx.body.text)
        assert record.wa_id is not None
        return MessageEditSent(message_id=record.id, whatsapp_id=record.wa_id, to=record.to_jid, text=ctx.body.text)

    @api.route("POST", "/messages/<message_id>/vote", summary="Vote on a poll", tag=TAG, auth=Auth.SESSION,
               body=VotePoll, answer=VoteSent, errors=_ERRORS, live=Live.OWNER)
    async def vote(ctx: Ctx, message_id: str) -> VoteSent:
        """Vote on a poll with option names (for a poll this session sent, they are checked against it).
        The poll's author gets `poll.vote` with the names."""
        body = ctx.body
        target, sent = await ctx.gateway.actions.vote(ctx.session, message_id, body.options, chat=body.chat,
                                                      sender=body.sender)
        return VoteSent(message_id=message_id, chat=target.chat, options=list(dict.fromkeys(body.options)),
                        whatsapp_id=sent.message_id)
