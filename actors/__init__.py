"""Session actors, their supervisor, and the WhatsApp transports.

The parts, one folder each: `core/` (actors, supervisor, outbox), `neonize/`
and `sim/` (the transports; import them from `actors.neonize` and
`actors.sim`). The vocabulary they share sits here: the `Transport` protocol
and its events (`_transport`), outbound messages (`_messages`), JIDs (`_jid`).
"""

from ._jid import GROUP_SERVER, USER_SERVER, is_group_jid, phone_from_jid, split_jid, user_jid
from ._messages import (
    MEDIA_TOOLS, ContactContent, Content, LocationContent, MediaContent, OutboundMessage, PollContent, ReplyTo,
    SendResult, TextContent, missing_media_tools, missing_tools,
)
from ._transport import (
    ChatPresence, ChatState, Connected, ConnectFailed, ContactInfo, Disconnected, EventSendChannel, GroupInfo,
    GroupEvent, GroupJoined, GroupLeft, GroupNotFound, GroupParticipant, GroupParticipantsChanged, GroupSettings,
    GroupUpdated, LoggedOut, NotAuthorized, ParticipantAction, ProfilePicture, UserInfo, MediaToolMissing, MessageAction, MessageEdited, MessageReceived,
    MessageRevoked, NotConnected, OnWhatsApp, PairingCode, PairingTimeout, ParticipantResult, PollVoted, Presence,
    QRCode, ReactionReceived, Receipt, RecipientError, SessionSpec, Transport, TransportError, TransportEvent,
    TransportFactory,
)
from .core import (
    ActorHost, ActorPolicy, ActorStatistics, Backoff, Claimed, Command, Connect, CrashWindow, Disconnect,
    InvalidTransition, Logout, OutboundQueue, Pacing, PrepareFailed, Sender, SessionActor, SessionState, Supervisor,
    SupervisorStatistics, check_transition,
)

__all__ = [
    "GROUP_SERVER", "MEDIA_TOOLS", "USER_SERVER", "missing_media_tools", "missing_tools",
    "ActorHost", "ActorPolicy", "ActorStatistics", "Backoff", "ChatPresence", "ChatState", "Claimed", "Command",
    "Connect",
    "ConnectFailed", "Connected", "ContactContent", "ContactInfo", "Content", "CrashWindow", "Disconnect",
    "Disconnected", "EventSendChannel", "GroupInfo", "GroupParticipant", "InvalidTransition", "LocationContent",
    "LoggedOut", "Logout", "MediaContent", "MediaToolMissing", "MessageReceived", "NotConnected", "OnWhatsApp",
    "OutboundMessage", "OutboundQueue", "Pacing", "PairingCode", "PairingTimeout", "ParticipantResult", "PollContent",
    "GroupNotFound", "PrepareFailed", "Presence", "QRCode", "Receipt", "RecipientError", "ReplyTo", "SendResult", "Sender",
    "SessionActor", "SessionSpec", "SessionState", "Supervisor", "SupervisorStatistics", "TextContent", "Transport",
    "TransportError", "TransportEvent", "TransportFactory", "check_transition", "is_group_jid", "phone_from_jid",
    "split_jid", "user_jid", "GroupEvent", "GroupJoined", "GroupLeft", "GroupParticipantsChanged",
    "GroupSettings", "GroupUpdated", "NotAuthorized", "ParticipantAction", "ProfilePicture", "UserInfo", "MessageAction", "MessageEdited", "MessageRevoked", "PollVoted", "ReactionReceived",
]
