"""The neonize transport's actions on messages (react, edit, revoke, vote) over the fake client: the neonize
calls they make, their guards and their error mapping; and how the gateway names a vote neonize reports as
option hashes."""

from __future__ import annotations

import hashlib

import pytest
import trio

pytest.importorskip("neonize.proto.Neonize_pb2")

from neonize.exc import SendMessageError  # noqa: E402

from actors import NotConnected, PollVoted, RecipientError, SendResult, TransportError  # noqa: E402
from actors.neonize import _build  # noqa: E402
from gateway._event_schemas import action_payload  # noqa: E402

from .test_neonize_transport import RESULTS, FakeClient, connected_transport, make  # noqa: E402

PEER = "15552223333@s.whatsapp.net"
GROUP = "120363001@g.us"


@pytest.fixture(autouse=True)
def _results(monkeypatch):
    built, sent = _build.Message(conversation="a built action"), RESULTS["send_message"]
    for name, value in {"build_reaction": built, "edit_message": sent, "revoke_message": sent,
                        "build_poll_vote": built}.items():
        monkeypatch.setitem(RESULTS, name, value)


async def test_each_action_reaches_neonize_with_its_arguments():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            results = [await t.react(PEER, "3EB0A", "👍", sender=PEER), await t.react(GROUP, "3EB0B", ""),
                       await t.edit_message(PEER, "3EB0C", "fixed"),
                       await t.edit_message(PEER, "3EB0D", "new caption", caption_of="image"),
                       await t.revoke_message(PEER, "3EB0E"),
                       await t.vote_poll(GROUP, "3EB0F", ["Pizza"], sender=PEER)]
            await t.disconnect()
        assert all(r == SendResult(message_id="3EB0SENT", timestamp_ms=1_700_000_000_000) for r in results)
        calls = [(n, a) for n, a in fake.calls if n != "send_message"]
        (_, (chat, sender, mid, emoji)), (_, (gchat, me, gmid, none)) = calls[0], calls[1]
        assert (chat.User, sender.User, mid, emoji) == ("15552223333", "15552223333", "3EB0A", "👍")
        assert (gchat.Server, me.User, gmid, none) == ("g.us", "15550001111", "3EB0B", "")  # own: get_me's JID
        (_, (chat, mid, text)), (_, (_, _, caption)) = calls[2], calls[3]
        assert (chat.User, mid, text.conversation) == ("15552223333", "3EB0C", "fixed")
        assert caption.imageMessage.caption == "new caption"
        _, (chat, author, mid) = calls[4]
        assert (chat.User, author.User, mid) == ("15552223333", "15550001111", "3EB0E")
        _, (info, options) = calls[5]
        assert (info.ID, info.MessageSource.Chat.Server, info.MessageSource.Sender.User) == (
            "3EB0F", "g.us", "15552223333")
        assert info.MessageSource.IsGroup and not info.MessageSource.IsFromMe and options == ["Pizza"]
        assert [n for n, _ in fake.calls].count("send_message") == 3  # reaction and vote are built, then sent


async def test_actions_never_reach_go_unconnected_and_bad_input_is_refused_before_go():
    fake = FakeClient()
    t = make(fake)
    for call in (t.react(PEER, "A", "👍"), t.edit_message(PEER, "A", "x"), t.revoke_message(PEER, "A"),
                 t.vote_poll(PEER, "A", ["x"])):
        with pytest.raises(NotConnected):
            await call
    assert fake.calls == []
    with pytest.raises(RecipientError):
        await t.react("not-a-jid", "A", "👍")
    with pytest.raises(TransportError, match="no caption"):
        _build.edited_content("x", "sticker")


@pytest.mark.parametrize(("go_text", "cls"), [
    ("websocket not connected", NotConnected),
    ("info query returned status 404: item-not-found", RecipientError),
    ("server returned error 479", TransportError),
])
async def test_action_errors_are_mapped(go_text, cls):
    with trio.fail_after(10):
        fake = FakeClient()
        fake.fail["edit_message"] = SendMessageError(go_text)
        fake.fail["revoke_message"] = SendMessageError(go_text)
        fake.fail["send_message"] = SendMessageError(go_text)
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            for call in (t.edit_message(PEER, "A", "x"), t.revoke_message(PEER, "A"), t.react(PEER, "A", "👍"),
                         t.vote_poll(PEER, "A", ["x"])):
                with pytest.raises(cls) as exc:
                    await call
                assert exc.value.reason == go_text
            await t.disconnect()


def test_a_vote_reported_as_hashes_is_named_from_the_poll():
    def h(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()
    vote = PollVoted(event_id="V", chat=PEER, sender=PEER, timestamp_ms=1, poll_id="P",
                     option_hashes=[h("Sushi"), h("Gone")])
    name, data = action_payload(vote, poll_options=["Pizza", "Sushi"])
    assert name == "poll.vote" and (data.message_id, data.options, data.unknown_options) == ("P", ["Sushi"], 1)
    _, unknown = action_payload(vote)
    assert (unknown.options, unknown.unknown_options) == ([], 2)
