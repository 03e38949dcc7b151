"""Wire frames shared by the simulator and its clients (the `sim` transport, the control client).

They live in actors, beside the `sim` transport, so that actors never imports
bench; the simulator (`bench.simulator`) imports them from `actors.sim`.

Two websocket paths:

- `/` (any path but `/control`) is a **link**: one per gateway process, carrying
  every session of that process. Frames are msgpack; each websocket message is
  a *list* of frames, so one socket write carries many frames under load.
  Frames are `array_like` structs (a tag then the fields in order), which keeps
  them small and fast to encode.
- `/control` carries JSON `ControlRequest` / `ControlReply` pairs for tests,
  bench and humans (`websocat ws://127.0.0.1:8765/control` works).

Flow control on a link is per session and credit based: the server keeps at
most `window` (sent in `Hello`) pushed-but-unacknowledged events per session,
and the client acknowledges with `Ack` once it has handed events to the
session's consumer. The client can therefore hand events over with
`send_nowait` into a buffer of `window + CONTROL_MARGIN`: a slow session never
blocks the link's reader (which would stall every other session and could
deadlock a session waiting for an RPC reply behind its own events).
Unacknowledged events are redelivered after a drop, so delivery is
at-least-once and a duplicate carries the same message id.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from .._messages import OutboundMessage
from .._transport import AnyEvent, ChatState, GroupSettings, ParticipantAction

PROTOCOL_VERSION: Final = 1
CONTROL_PATH: Final = "/control"
DEFAULT_WINDOW: Final = 128
# Frames that bypass the credit window (QR codes, Paired, End): a client's
# per-session buffer holds window + this many items.
CONTROL_MARGIN: Final = 16
# Media travels as bytes inside a Call; 32 MiB request bodies decode to less.
MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024
NIL: Final = msgspec.Raw(b"\xc0")  # msgpack nil, the empty result


class Creds(msgspec.Struct, frozen=True, kw_only=True):
    """A paired device, as the `sim` transport stores it in `<data_dir>/sim/<session>.json`.

    The simulator trusts credentials it does not know (it may have been
    restarted and forgotten them), so presenting them re-registers the account:
    like a whatsmeow device store, they survive restarts of either side.
    """

    phone: str  # E.164
    device_id: str
    token: str


class Frame(msgspec.Struct, frozen=True, array_like=True, tag_field="k"):
    pass


# -- operations (inside Call) -------------------------------------------------

class Op(msgspec.Struct, frozen=True, kw_only=True, tag_field="op"):
    pass


class SendOp(Op, tag="send"):
    message: OutboundMessage
    message_id: str | None = None  # a retried send reuses its id; the network deduplicates


class OnWhatsAppOp(Op, tag="on_whatsapp"):
    phones: list[str]


class ContactsOp(Op, tag="contacts"):
    pass


class ListGroupsOp(Op, tag="list_groups"):
    pass


class CreateGroupOp(Op, tag="create_group"):
    name: str
    participants: list[str]


class GroupInfoOp(Op, tag="group_info"):
    jid: str


class UpdateParticipantsOp(Op, tag="update_participants"):
    jid: str
    participants: list[str]
    action: ParticipantAction


class LeaveGroupOp(Op, tag="leave_group"):
    jid: str


class SendPresenceOp(Op, tag="send_presence"):
    available: bool


class SubscribePresenceOp(Op, tag="subscribe_presence"):
    jid: str


class TypingOp(Op, tag="typing"):
    chat: str
    state: ChatState


class MarkReadOp(Op, tag="mark_read"):
    chat: str
    message_ids: list[str]
    sender: str


class LogoutOp(Op, tag="logout"):
    pass


class PairPhoneOp(Op, tag="pair_phone"):
    phone: str


class ReactOp(Op, tag="react"):
    chat: str
    message_id: str
    emoji: str
    sender: str | None = None  # the message's author; None: the caller


class EditOp(Op, tag="edit"):
    chat: str
    message_id: str
    text: str


class RevokeOp(Op, tag="revoke"):
    chat: str
    message_id: str
    sender: str | None = None


class VoteOp(Op, tag="vote"):
    chat: str
    poll_id: str
    options: list[str]
    sender: str | None = None


class DownloadMediaOp(Op, tag="download_media"):
    """The bytes of media this session received (the `media_ref` of its MessageReceived)."""

    media_id: str


# -- contacts and identity (bench/simulator/_identity.py) --

class PictureOp(Op, tag="picture"):
    jid: str  # a user or a group


class UserInfoOp(Op, tag="user_info"):
    jids: list[str]


class BlocklistOp(Op, tag="blocklist"):
    pass


class BlockOp(Op, tag="block"):
    jid: str
    block: bool


class LidForPhoneOp(Op, tag="lid_for_phone"):
    jid: str


class PhoneForLidOp(Op, tag="phone_for_lid"):
    lid: str


# -- group administration (bench/simulator/_groups.py) --

class GroupSettingsOp(Op, tag="group_settings"):
    jid: str
    settings: GroupSettings


class GroupPictureOp(Op, tag="group_picture"):
    jid: str
    jpeg: bytes | None = None  # None removes it


class InviteLinkOp(Op, tag="invite_link"):
    jid: str
    reset: bool = False


class InviteInfoOp(Op, tag="invite_info"):
    code: str


class JoinInviteOp(Op, tag="join_invite"):
    code: str


AnyOp = (SendOp | OnWhatsAppOp | ContactsOp | ListGroupsOp | CreateGroupOp | GroupInfoOp | UpdateParticipantsOp
         | LeaveGroupOp | SendPresenceOp | SubscribePresenceOp | TypingOp | MarkReadOp | LogoutOp | PairPhoneOp
         | ReactOp | EditOp | RevokeOp | VoteOp | DownloadMediaOp | PictureOp | UserInfoOp | BlocklistOp | BlockOp
         | LidForPhoneOp | PhoneForLidOp | GroupSettingsOp | GroupPictureOp | InviteLinkOp | InviteInfoOp
         | JoinInviteOp)


# -- client → server ----------------------------------------------------------

class Hello(Frame, tag="hello"):
    version: int
    window: int = DEFAULT_WINDOW
    name: str = ""


class Attach(Frame, tag="attach"):
    """Start (or resume, with `creds`) a session on this link."""

    session: str
    phone: str | None = None
    creds: Creds | None = None
    proxy: str | None = None  # the proxy URL the session was told to use (the simulator shows it, masked)


class Detach(Frame, tag="detach"):
    """The session's `run` ended; its unacknowledged events go back to its backlog."""

    session: str


class Ack(Frame, tag="ack"):
    session: str
    count: int


class Call(Frame, tag="call"):
    rid: int
    session: str
    op: AnyOp


ClientFrame = Hello | Attach | Detach | Ack | Call


# -- server → client ----------------------------------------------------------

ErrorKind = Literal["recipient", "not_authorized", "group_not_found", "not_connected", "error"]


class Welcome(Frame, tag="welcome"):
    version: int
    link: int


class Reply(Frame, tag="reply"):
    rid: int
    result: msgspec.Raw = NIL  # msgpack of the op's result type
    error: str | None = None
    kind: ErrorKind | None = None


class Push(Frame, tag="push"):
    session: str
    event: AnyEvent


class Paired(Frame, tag="paired"):
    """The session just paired: store these credentials before announcing Connected."""

    session: str
    creds: Creds


EndKind = Literal["dropped", "logged_out"]


class End(Frame, tag="end"):
    """The server ended the session: `dropped` (fault, stream replaced) or `logged_out`."""

    session: str
    kind: EndKind
    reason: str


ServerFrame = Welcome | Reply | Push | Paired | End

link_encoder: Final = msgspec.msgpack.Encoder()
client_frames_decoder: Final = msgspec.msgpack.Decoder(list[ClientFrame])
server_frames_decoder: Final = msgspec.msgpack.Decoder(list[ServerFrame])


# -- control (JSON) -----------------------------------------------------------

class ControlRequest(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    op: str
    args: dict[str, Any] = {}


class ControlReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: int
    ok: bool
    result: Any = None
    error: str | None = None


class RecordEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One message the network accepted. A duplicate is a resend of a known (sender, id)."""

    seq: int
    message_id: str
    sender: str  # JID
    recipient: str  # user or group JID
    type: str
    timestamp_ms: int
    duplicate: bool = False
    session_id: str | None = None  # the sending gateway session; None for injected messages
    text: str | None = None  # first 256 characters of the text or caption


class RecordCounts(msgspec.Struct, frozen=True, kw_only=True):
    total: int  # every accepted send, duplicates included
    distinct: int  # distinct (sender, message id) pairs
    duplicates: int  # total - distinct


class SimStats(msgspec.Struct, frozen=True, kw_only=True):
    links: int
    sessions_attached: int  # sessions with a run on some link
    sessions_connected: int  # of those, paired and online
    sessions_pairing: int
    accounts: int
    devices: int
    groups: int
    messages_routed: int  # distinct messages accepted
    duplicates: int
    events_pushed: int
    receipts: int
    send_failures: int  # injected by the error rate
    backlog: int  # events waiting for offline or slow devices
    backlog_dropped: int  # lost to a full backlog (MAX_BACKLOG per device)


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    link: int
    connected: bool
    phone: str | None = None
    qr: str | None = None
    proxy: str | None = None  # the session's proxy URL with any password replaced by ***


control_encoder: Final = msgspec.json.Encoder()
control_request_decoder: Final = msgspec.json.Decoder(ControlRequest)
control_reply_decoder: Final = msgspec.json.Decoder(ControlReply)
