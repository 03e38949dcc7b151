"""Building every outbound message type offline, with the upload step replaced.

No Go and no network: `upload` is a fake that returns a plausible UploadResponse.
ffmpeg/ffprobe are either reported missing (shutil.which patched, so the tests
hold on machines that have them) or replaced by small scripts on PATH; the
tool runs carry build's own subprocess timeout. Nothing here can block
otherwise; pytest-timeout bounds the rest.
"""

from __future__ import annotations

import io
import shutil
import stat
import sys
from pathlib import Path

import pytest

pytest.importorskip("neonize")

from neonize.proto.Neonize_pb2 import UploadResponse  # noqa: E402
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message  # noqa: E402
from neonize.utils.enum import MediaType  # noqa: E402
from PIL import Image  # noqa: E402

from actors import (  # noqa: E402
    ContactContent, LocationContent, MediaContent, MediaToolMissing, OutboundMessage, PollContent, ReplyTo,
    TextContent, TransportError,
)
from actors.neonize._build import build_message, vcard  # noqa: E402

TO = "15551234567@s.whatsapp.net"
GROUP = "120363001@g.us"


class FakeUpload:
    def __init__(self) -> None:
        self.calls: list[tuple[int, MediaType]] = []

    def __call__(self, data: bytes, media_type: MediaType) -> UploadResponse:
        self.calls.append((len(data), media_type))
        return UploadResponse(url="https://mmg.whatsapp.net/v/t62/abc", DirectPath="/v/t62/abc",
                              Handle="", MediaKey=b"k" * 32, FileEncSHA256=b"e" * 32, FileSHA256=b"s" * 32,
                              FileLength=len(data))


@pytest.fixture
def upload() -> FakeUpload:
    return FakeUpload()


def png(w: int = 640, h: int = 480, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (w, h), "red").save(out, format="PNG")
    return out.getvalue()


def roundtrip(msg: Message) -> Message:
    wire = msg.SerializeToString()
    back = Message.FromString(wire)
    assert back == msg and wire
    return back


def build(content, upload, **kw) -> Message:  # type: ignore[no-untyped-def]
    return roundtrip(build_message(OutboundMessage(to=kw.pop("to", TO), content=content, **kw), upload))


# -- text ---------------------------------------------------------------------------

def test_plain_text_is_a_conversation(upload):
    msg = build(TextContent(body="hello"), upload)
    assert msg.conversation == "hello" and not msg.HasField("extendedTextMessage")
    assert upload.calls == []


def test_mentions_make_an_extended_text(upload):
    msg = build(TextContent(body="hi @15550000002"), upload, mentions=["15550000002@s.whatsapp.net"])
    ext = msg.extendedTextMessage
    assert ext.text == "hi @15550000002" and list(ext.contextInfo.mentionedJID) == ["15550000002@s.whatsapp.net"]
    assert not msg.conversation


def test_reply_quotes_the_message(upload):
    reply = ReplyTo(message_id="3EB0QUOTED", chat=GROUP, sender="15550000009@s.whatsapp.net", text="original")
    msg = build(TextContent(body="answer"), upload, to=GROUP, reply_to=reply)
    ctx = msg.extendedTextMessage.contextInfo
    assert (ctx.stanzaID, ctx.participant, ctx.quotedMessage.conversation) == (
        "3EB0QUOTED", "15550000009@s.whatsapp.net", "original")
    assert not ctx.remoteJID  # same chat


def test_reply_in_a_direct_chat_defaults_the_author_to_the_peer(upload):
    msg = build(TextContent(body="ok"), upload, reply_to=ReplyTo(message_id="X1", chat=TO))
    assert msg.extendedTextMessage.contextInfo.participant == TO


# -- media ----------------------------------------------------------------------------

def test_image_with_caption_view_once_mentions_and_quote(upload):
    content = MediaContent(kind="image", data=png(), mimetype="image/png", caption="look @15550000002")
    msg = build(content, upload, view_once=True, mentions=["15550000002@s.whatsapp.net"],
                reply_to=ReplyTo(message_id="Q1", chat=TO, text="?"))
    img = msg.imageMessage
    assert (img.caption, img.mimetype, img.width, img.height, img.viewOnce) == (
        "look @15550000002", "image/png", 640, 480, True)
    assert img.URL.startswith("https://") and img.directPath == "/v/t62/abc" and img.mediaKey == b"k" * 32
    assert img.fileLength == len(content.data)
    thumb = Image.open(io.BytesIO(img.JPEGThumbnail))
    assert thumb.format == "JPEG" and max(thumb.size) <= 200
    assert list(img.contextInfo.mentionedJID) == ["15550000002@s.whatsapp.net"]
    assert img.contextInfo.stanzaID == "Q1"
    assert upload.calls == [(len(content.data), MediaType.MediaImage)]


def test_unreadable_image_is_a_transport_error_before_upload(upload):
    with pytest.raises(TransportError, match="cannot read the image"):
        build(MediaContent(kind="image", data=b"not an image", mimetype="image/png"), upload)
    assert upload.calls == []


def test_document(upload):
    data = b"%PDF-1.4 test"
    msg = build(MediaContent(kind="document", data=data, mimetype="application/pdf", caption="invoice",
                             filename="inv.pdf"), upload)
    doc = msg.documentMessage
    assert (doc.mimetype, doc.caption, doc.fileName, doc.title) == ("application/pdf", "invoice", "inv.pdf",
                                                                     "inv.pdf")
    assert upload.calls == [(len(data), MediaType.MediaDocument)]


def test_static_sticker_is_a_512px_webp(upload):
    msg = build(MediaContent(kind="sticker", data=png(300, 100, "RGBA"), mimetype="image/png"), upload)
    st = msg.stickerMessage
    assert (st.mimetype, st.isAnimated, st.width, st.height) == ("image/webp", False, 512, 512)
    assert upload.calls[0][1] == MediaType.MediaImage


def test_animated_webp_sticker_passes_through(upload):
    frames = [Image.new("RGBA", (512, 512), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
    msg = build(MediaContent(kind="sticker", data=out.getvalue(), mimetype="image/webp"), upload)
    assert msg.stickerMessage.isAnimated and upload.calls == [(len(out.getvalue()), MediaType.MediaImage)]


@pytest.mark.parametrize(("kind", "mimetype", "needs"), [
    ("video", "video/mp4", "ffmpeg"), ("video", "video/mp4", "ffprobe"), ("audio", "audio/ogg", "ffprobe"),
    ("sticker", "video/mp4", "ffmpeg"),
])
def test_missing_media_tools_are_reported_before_upload(upload, monkeypatch, kind, mimetype, needs):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == needs else real_which(name))
    with pytest.raises(MediaToolMissing, match=needs) as exc:
        build(MediaContent(kind=kind, data=b"\x00\x00\x00\x18ftypmp42", mimetype=mimetype), upload)
    assert "not installed" in exc.value.reason
    assert upload.calls == []


def test_view_once_is_refused_where_whatsapp_has_none(upload):
    with pytest.raises(TransportError, match="view_once"):
        build(MediaContent(kind="document", data=b"x", mimetype="text/plain"), upload, view_once=True)
    with pytest.raises(TransportError, match="view_once"):
        build(TextContent(body="x"), upload, view_once=True)


# -- with stand-in ffmpeg / ffprobe -----------------------------------------------------

FAKE_FFPROBE = """\
import json
print(json.dumps({"format": {"duration": "7.6"},
                  "streams": [{"codec_type": "audio"}, {"codec_type": "video", "width": 640, "height": 360}]}))
"""
FAKE_FFMPEG = """\
import sys
from PIL import Image
out = sys.argv[-1]
if out.endswith(".webp"):
    frames = [Image.new("RGBA", (512, 512), c) for c in ("red", "blue")]
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
else:
    Image.new("RGB", (200, 112), "green").save(out, format="JPEG")
"""


@pytest.fixture
def fake_tools(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("ffprobe", FAKE_FFPROBE), ("ffmpeg", FAKE_FFMPEG)):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return bin_dir


def test_video_with_tools(upload, fake_tools):
    data = b"\x00\x00\x00\x18ftypmp42fake"
    msg = build(MediaContent(kind="video", data=data, mimetype="video/mp4", caption="clip"), upload,
                view_once=True)
    v = msg.videoMessage
    assert (v.caption, v.seconds, v.width, v.height, v.viewOnce, v.mimetype) == ("clip", 8, 640, 360, True,
                                                                                  "video/mp4")
    assert Image.open(io.BytesIO(v.JPEGThumbnail)).format == "JPEG"
    assert upload.calls == [(len(data), MediaType.MediaVideo)]


def test_voice_note_with_tools(upload, fake_tools):
    msg = build(MediaContent(kind="audio", data=b"OggS fake", mimetype="audio/ogg; codecs=opus", ptt=True),
                upload)
    a = msg.audioMessage
    assert (a.PTT, a.seconds, a.mimetype) == (True, 8, "audio/ogg; codecs=opus")
    assert upload.calls[0][1] == MediaType.MediaAudio


def test_animated_sticker_from_video_with_tools(upload, fake_tools):
    msg = build(MediaContent(kind="sticker", data=b"\x00\x00\x00\x18ftypmp42", mimetype="video/mp4"), upload)
    assert msg.stickerMessage.isAnimated and msg.stickerMessage.mimetype == "image/webp"


def test_failing_tool_is_a_transport_error(upload, fake_tools):
    (fake_tools / "ffprobe").write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('moov atom not found')\n"
                                        "sys.exit(1)\n")
    with pytest.raises(TransportError, match="moov atom not found"):
        build(MediaContent(kind="audio", data=b"junk", mimetype="audio/mpeg"), upload)
    assert upload.calls == []


# -- location, contact, poll -------------------------------------------------------------

def test_location(upload):
    msg = build(LocationContent(latitude=52.52, longitude=13.405, name="Berlin", address="Mitte"), upload,
                reply_to=ReplyTo(message_id="Q", chat=TO))
    loc = msg.locationMessage
    assert (loc.degreesLatitude, loc.degreesLongitude, loc.name, loc.address) == (52.52, 13.405, "Berlin", "Mitte")
    assert loc.contextInfo.stanzaID == "Q"


def test_contact_vcard(upload):
    msg = build(ContactContent(full_name="Ann; Lee", phone_number="+14155552671"), upload)
    c = msg.contactMessage
    assert c.displayName == "Ann; Lee"
    assert "FN:Ann\\; Lee" in c.vcard and "waid=14155552671:+1 415-555-2671" in c.vcard
    assert c.vcard.startswith("BEGIN:VCARD") and c.vcard.endswith("END:VCARD")
    assert "waid=999:+999" in vcard("X", "+999")  # unparseable numbers still produce a card


@pytest.mark.parametrize(("count", "expected"), [(1, 1), (2, 2), (0, 0), (9, 0)])
def test_poll_matches_whatsmeows_builder(upload, count, expected):
    # whatsmeow's BuildPollCreation (neonize build_poll_vote_creation, checked offline) gives a v1
    # pollCreationMessage and a 32-byte messageSecret; SINGLE is 1, MULTIPLE is 0.
    msg = build(PollContent(question="Lunch?", options=["pizza", "salad", "soup"], selectable_count=count), upload)
    poll = msg.pollCreationMessage
    assert poll.name == "Lunch?" and [o.optionName for o in poll.options] == ["pizza", "salad", "soup"]
    assert poll.selectableOptionsCount == expected
    assert len(msg.messageContextInfo.messageSecret) == 32


def test_poll_needs_two_distinct_options(upload):
    for options in (["only"], ["a", "a"], [str(i) for i in range(13)]):
        with pytest.raises(TransportError, match="distinct options"):
            build(PollContent(question="?", options=options), upload)

