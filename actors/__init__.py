"""Session actors, their supervisor, and the WhatsApp transports."""

from ._actor import ActorHost, ActorPolicy, ActorStatistics, Command, Connect, Disconnect, Logout, SessionActor
from ._backoff import Backoff, CrashWindow
from ._jid import GROUP_SERVER, USER_SERVER, is_group_jid, phone_from_jid, split_jid, user_jid
from ._messages import (
    ContactContent, Content, LocationContent, MediaContent, OutboundMessage, PollContent, ReplyTo, SendResult,
    TextContent,
)
from ._outbox import Claimed, OutboundQueue, Pacing, PrepareFailed, Sender
from ._state import InvalidTransition, SessionState, check_transition
from ._supervisor import Supervisor, SupervisorStatistics
from ._transport import (
    ChatPresence, ConnectFailed, Connected, ContactInfo, Disconnected, EventSink, GroupInfo, GroupParticipant,
    LoggedOut, MediaToolMissing, MessageReceived, NotConnected, OnWhatsApp, PairingCode, PairingTimeout, ParticipantResult, Presence, QRCode,
    Receipt, RecipientError, SessionSpec, Transport, TransportError, TransportEvent, TransportFactory,
)

__all__ = [
    "GROUP_SERVER", "USER_SERVER",
    "ActorHost", "ActorPolicy", "ActorStatistics", "Backoff", "Command", "Connect", "CrashWindow", "Disconnect",
    "InvalidTransition", "Logout", "SessionActor", "SessionState", "Supervisor", "SupervisorStatistics",
    "check_transition", "Claimed", "MediaToolMissing", "OutboundQueue", "Pacing", "PrepareFailed", "Sender",
    "ChatPresence", "ConnectFailed", "Connected", "ContactContent", "ContactInfo", "Content", "Disconnected",
    "EventSink", "GroupInfo", "GroupParticipant", "LocationContent", "LoggedOut", "MediaContent",
    "MessageReceived", "NotConnected", "OnWhatsApp", "OutboundMessage", "PairingCode", "PairingTimeout", "ParticipantResult",
    "PollContent", "Presence", "QRCode", "Receipt", "RecipientError", "ReplyTo", "SendResult", "SessionSpec",
    "TextContent", "Transport", "TransportError", "TransportEvent", "TransportFactory", "is_group_jid",
    "phone_from_jid", "split_jid", "user_jid",
]
