"""OutboundMessage → the `waE2E.Message` protobuf neonize sends.

The builders are our own rather than neonize's `build_*_message` helpers, which
fetch URLs without a timeout, guess mimetypes with libmagic, parse "@digits"
out of captions as mentions, call Go for group mentions and need a full
`MessageEv` to quote. Here the only network step is `upload`, passed in
(normally `client.upload` behind the transport's lock), so every message type
builds offline in tests. Media is bytes, fetched and checked by the HTTP layer.

Video and audio need ffprobe (duration) and video also ffmpeg (thumbnail);
animated stickers other than ready-made animated WebP need ffmpeg. A missing
tool raises `MediaToolMissing` before anything is uploaded. The tools run as
subprocesses with a timeout on a temporary file.

Importing this module imports neonize (see `_transport` on logging).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any, Final

import phonenumbers
from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource, UploadResponse
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage, ContactMessage, ContextInfo, DocumentMessage, ExtendedTextMessage, ImageMessage, LocationMessage,
    Message, PollCreationMessage, StickerMessage, VideoMessage,
)
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, MediaType
from PIL import Image, UnidentifiedImageError

from .._jid import is_group_jid
from .._messages import (
    MEDIA_TOOLS, ContactContent, LocationContent, MediaContent, OutboundMessage, PollContent, TextContent,
    missing_tools,
)
from .._transport import ChatState, MediaToolMissing, TransportError

Upload = Callable[[bytes, MediaType], UploadResponse]

THUMBNAIL_PX: Final = 200
STICKER_PX: Final = 512
TOOL_TIMEOUT: Final = 60.0  # seconds for one ffmpeg/ffprobe run
POLL_OPTIONS_MAX: Final = 12
VIEW_ONCE_KINDS: Final = frozenset({"image", "video", "audio"})


def build_message(message: OutboundMessage, upload: Upload) -> Message:
    """Build (and, for media, upload) the protobuf for `message`.

    Raises MediaToolMissing, or TransportError for unreadable media and for a
    message shape WhatsApp does not support (view_once on a document, a poll
    with one option): the message fails; the session goes on.
    """
    content = message.content
    if message.view_once and not (isinstance(content, MediaContent) and content.kind in VIEW_ONCE_KINDS):
        raise TransportError("view_once is only supported for image, video and audio messages")
    ctx = context_info(message)
    match content:
        case TextContent(body=body):
            if ctx is None:
                return Message(conversation=body)
            return Message(extendedTextMessage=ExtendedTextMessage(text=body, contextInfo=ctx))
        case MediaContent():
            return _MEDIA[content.kind](content, message.view_once, ctx, upload)
        case LocationContent():
            return Message(locationMessage=LocationMessage(
                degreesLatitude=content.latitude, degreesLongitude=content.longitude,
                name=content.name, address=content.address, contextInfo=ctx))
        case ContactContent():
            return Message(contactMessage=ContactMessage(
                displayName=content.full_name, vcard=vcard(content.full_name, content.phone_number),
                contextInfo=ctx))
        case PollContent():
            return poll_message(content, ctx)
    raise TransportError(f"unsupported content: {type(content).__name__}")


def context_info(message: OutboundMessage) -> ContextInfo | None:
    """Mentions and the quoted message, or None when there are neither."""
    reply = message.reply_to
    if not message.mentions and reply is None:
        return None
    ctx = ContextInfo(mentionedJID=list(message.mentions))
    if reply is not None:
        ctx.stanzaID = reply.message_id
        # The quoted message's author: given for groups; in a 1:1 chat, the chat peer by default.
        participant = reply.sender or (None if is_group_jid(reply.chat) else reply.chat)
        if participant:
            ctx.participant = participant
        ctx.quotedMessage.CopyFrom(Message(conversation=reply.text or ""))
        if reply.chat != message.to:
            ctx.remoteJID = reply.chat
    return ctx


def vcard(full_name: str, phone_e164: str) -> str:
    digits = phone_e164.removeprefix("+")
    try:
        shown = phonenumbers.format_number(phonenumbers.parse("+" + digits),
                                           phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        shown = "+" + digits
    name = (full_name.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r", "").replace("\n", "\\n"))
    return (f"BEGIN:VCARD\nVERSION:3.0\nN:;{name};;;\nFN:{name}\n"
            f"TEL;type=CELL;type=VOICE;waid={digits}:{shown}\nEND:VCARD")


def poll_message(content: PollContent, ctx: ContextInfo | None) -> Message:
    """What whatsmeow's BuildPollCreation makes: v1 poll plus a 32-byte message secret (votes are encrypted with it)."""
    options = content.options
    if not 2 <= len(options) <= POLL_OPTIONS_MAX or len(set(options)) != len(options):
        raise TransportError(f"a poll needs 2 to {POLL_OPTIONS_MAX} distinct options")
    selectable = content.selectable_count if 1 <= content.selectable_count <= len(options) else 0
    msg = Message(pollCreationMessage=PollCreationMessage(
        name=content.question, options=[PollCreationMessage.Option(optionName=o) for o in options],
        selectableOptionsCount=selectable, contextInfo=ctx))
    msg.messageContextInfo.messageSecret = os.urandom(32)
    return msg


# -- media ------------------------------------------------------------------------

def require_tools(kind: str, *tools: str) -> None:
    missing = missing_tools(*tools)
    if missing:
        raise MediaToolMissing(f"{kind} messages need {' and '.join(tools)}, which is not installed "
                               f"(missing: {', '.join(missing)})")


def _uploaded(up: UploadResponse) -> dict[str, Any]:
    return {"URL": up.url, "directPath": up.DirectPath, "mediaKey": up.MediaKey,
            "fileEncSHA256": up.FileEncSHA256, "fileSHA256": up.FileSHA256, "fileLength": up.FileLength}


def _image(c: MediaContent, view_once: bool, ctx: ContextInfo | None, upload: Upload) -> Message:
    width, height, thumb = image_thumbnail(c.data)
    up = upload(c.data, MediaType.MediaImage)
    return Message(imageMessage=ImageMessage(
        **_uploaded(up), mimetype=c.mimetype, caption=c.caption, width=width, height=height,
        JPEGThumbnail=thumb, viewOnce=view_once, contextInfo=ctx))


def _video(c: MediaContent, view_once: bool, ctx: ContextInfo | None, upload: Upload) -> Message:
    require_tools("video", *MEDIA_TOOLS["video"])
    info = probe(c.data)
    thumb = video_thumbnail(c.data)
    up = upload(c.data, MediaType.MediaVideo)
    return Message(videoMessage=VideoMessage(
        **_uploaded(up), mimetype=c.mimetype, caption=c.caption, seconds=info["seconds"],
        width=info["width"], height=info["height"], JPEGThumbnail=thumb, viewOnce=view_once, contextInfo=ctx))


def _audio(c: MediaContent, view_once: bool, ctx: ContextInfo | None, upload: Upload) -> Message:
    require_tools("audio", *MEDIA_TOOLS["audio"])
    info = probe(c.data)
    up = upload(c.data, MediaType.MediaAudio)
    return Message(audioMessage=AudioMessage(
        **_uploaded(up), mimetype=c.mimetype, seconds=info["seconds"], PTT=c.ptt, viewOnce=view_once,
        contextInfo=ctx))


def _document(c: MediaContent, view_once: bool, ctx: ContextInfo | None, upload: Upload) -> Message:
    up = upload(c.data, MediaType.MediaDocument)
    return Message(documentMessage=DocumentMessage(
        **_uploaded(up), mimetype=c.mimetype, caption=c.caption, fileName=c.filename, title=c.filename,
        contextInfo=ctx))


def _sticker(c: MediaContent, view_once: bool, ctx: ContextInfo | None, upload: Upload) -> Message:
    webp, animated = sticker_webp(c.data, c.mimetype)
    up = upload(webp, MediaType.MediaImage)
    return Message(stickerMessage=StickerMessage(
        **_uploaded(up), mimetype="image/webp", isAnimated=animated, width=STICKER_PX, height=STICKER_PX,
        contextInfo=ctx))


_MEDIA: Final[dict[str, Callable[[MediaContent, bool, ContextInfo | None, Upload], Message]]] = {
    "image": _image, "video": _video, "audio": _audio, "document": _document, "sticker": _sticker,
}


def image_thumbnail(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, JPEG thumbnail) of an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            img.convert("RGB").save(out, format="JPEG", quality=70)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise TransportError(f"cannot read the image: {exc}") from exc
    return width, height, out.getvalue()


def sticker_webp(data: bytes, mimetype: str) -> tuple[bytes, bool]:
    """A 512×512 WebP sticker and whether it is animated."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            animated = getattr(img, "n_frames", 1) > 1
            if animated and img.format == "WEBP":
                return data, True  # already an animated WebP sticker: send as is
            if not animated:
                img = img.convert("RGBA")
                img.thumbnail((STICKER_PX, STICKER_PX))
                canvas = Image.new("RGBA", (STICKER_PX, STICKER_PX), (0, 0, 0, 0))
                canvas.paste(img, ((STICKER_PX - img.width) // 2, (STICKER_PX - img.height) // 2))
                out = io.BytesIO()
                canvas.save(out, format="WEBP", quality=80)
                return out.getvalue(), False
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        if not mimetype.startswith("video/"):
            raise TransportError(f"cannot read the sticker image: {exc}") from exc
    require_tools("animated sticker", "ffmpeg")
    vf = (f"fps=15,scale={STICKER_PX}:{STICKER_PX}:force_original_aspect_ratio=decrease,"
          f"pad={STICKER_PX}:{STICKER_PX}:(ow-iw)/2:(oh-ih)/2:color=0x00000000")
    return _ffmpeg_convert(data, ["-t", "10", "-vf", vf, "-loop", "0", "-an", "-c:v", "libwebp", "-q:v", "50"],
                           ".webp"), True


# -- ffmpeg / ffprobe ---------------------------------------------------------------

def _run(args: list[str]) -> bytes:
    try:
        done = subprocess.run(args, capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TransportError(f"{args[0]} failed: {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise TransportError(f"{args[0]} failed ({done.returncode}): {err}")
    return done.stdout


def probe(data: bytes) -> dict[str, int]:
    """Duration (whole seconds, at least 1) and the first video stream's size, through ffprobe."""
    with tempfile.TemporaryDirectory(prefix="wa-media-") as tmp:
        src = os.path.join(tmp, "in")
        with open(src, "wb") as f:
            f.write(data)
        out = _run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", src])
    try:
        info = json.loads(out)
        seconds = float(info.get("format", {}).get("duration") or 0)
    except (ValueError, TypeError, AttributeError) as exc:
        raise TransportError(f"ffprobe output not understood: {exc}") from exc
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), {})
    return {"seconds": max(1, round(seconds)), "width": int(video.get("width") or 0),
            "height": int(video.get("height") or 0)}


def video_thumbnail(data: bytes) -> bytes | None:
    """A JPEG of the first frame, or None if ffmpeg cannot make one (the message is still sendable)."""
    try:
        return _ffmpeg_convert(data, ["-frames:v", "1", "-vf", f"scale={THUMBNAIL_PX}:-2", "-f", "image2",
                                      "-c:v", "mjpeg"], ".jpg")
    except TransportError:
        return None


def _ffmpeg_convert(data: bytes, args: list[str], suffix: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="wa-media-") as tmp:
        src, dst = os.path.join(tmp, "in"), os.path.join(tmp, "out" + suffix)
        with open(src, "wb") as f:
            f.write(data)
        _run(["ffmpeg", "-v", "error", "-y", "-i", src, *args, dst])
        try:
            with open(dst, "rb") as f:
                return f.read()
        except OSError as exc:
            raise TransportError(f"ffmpeg wrote no output: {exc}") from exc


# -- chat presence ---------------------------------------------------------------

_CHAT_PRESENCE: Final = {
    # whatsmeow's SendChatPresence(jid, state, media): recording is "composing" with audio media
    "composing": (ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT),
    "recording": (ChatPresence.CHAT_PRESENCE_COMPOSING, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO),
    "paused": (ChatPresence.CHAT_PRESENCE_PAUSED, ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT),
}


def chat_presence(state: ChatState) -> tuple[ChatPresence, ChatPresenceMedia]:
    """The (state, media) pair `send_chat_presence` takes for one of our chat states."""
    try:
        return _CHAT_PRESENCE[state]
    except KeyError:
        raise TransportError(f"unknown chat state {state!r}") from None


def edited_content(text: str, caption_of: str | None) -> Message:
    """The new content an edit carries: a text, or the caption of a media message of kind `caption_of`."""
    if caption_of is None:
        return Message(conversation=text)
    if caption_of == "image":
        return Message(imageMessage=ImageMessage(caption=text))
    if caption_of == "video":
        return Message(videoMessage=VideoMessage(caption=text))
    if caption_of == "document":
        return Message(documentMessage=DocumentMessage(caption=text))
    raise TransportError(f"a {caption_of} message has no caption to edit")


def poll_info(chat: JID, author: JID, poll_id: str, *, from_me: bool) -> MessageInfo:
    """The poll's `MessageInfo`, as whatsmeow's BuildPollVote wants it (it finds the poll's secret by it)."""
    source = MessageSource(Chat=chat, Sender=author, IsFromMe=from_me, IsGroup=chat.Server == "g.us")
    return MessageInfo(ID=poll_id, MessageSource=source)

