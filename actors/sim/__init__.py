"""The `sim` transport and the wire protocol it speaks with `gateway simulator`.

The protocol lives here, beside its client, so that actors never imports
bench; the simulator server (`bench.simulator`) takes its frames, encoders and
decoders from this package.
"""

from ._link import SimLink, SimLinkStatistics
from ._protocol import (
    CONTROL_MARGIN, CONTROL_PATH, DEFAULT_WINDOW, MAX_MESSAGE_SIZE, NIL, PROTOCOL_VERSION, Ack, AnyOp, Attach, Call,
    ClientFrame, ContactsOp, ControlReply, ControlRequest, CreateGroupOp, Creds, Detach, DownloadMediaOp, EditOp, End,
    EndKind, ErrorKind, Frame, GroupInfoOp, Hello, LeaveGroupOp, ListGroupsOp, LogoutOp, MarkReadOp, OnWhatsAppOp, Op,
    Paired,
    PairPhoneOp, Push, ReactOp, RecordCounts, RecordEntry, Reply, RevokeOp, SendOp, SendPresenceOp, ServerFrame,
    SessionInfo, SimStats, SubscribePresenceOp, TypingOp, UpdateParticipantsOp, VoteOp, Welcome, client_frames_decoder,
    control_encoder, control_reply_decoder, control_request_decoder, link_encoder, server_frames_decoder,
    BlocklistOp, BlockOp, GroupPictureOp, GroupSettingsOp, InviteInfoOp, InviteLinkOp, JoinInviteOp, LidForPhoneOp,
    PhoneForLidOp, PictureOp, UserInfoOp,
)
from ._transport import SimTransport, SimTransportFactory, open_sim_transport_factory

__all__ = [
    "CONTROL_MARGIN", "CONTROL_PATH", "DEFAULT_WINDOW", "MAX_MESSAGE_SIZE", "NIL", "PROTOCOL_VERSION", "Ack", "AnyOp",
    "Attach", "Call", "ClientFrame", "ContactsOp", "ControlReply", "ControlRequest", "CreateGroupOp", "Creds", "Detach",
    "End", "EndKind", "ErrorKind", "Frame", "GroupInfoOp", "Hello", "LeaveGroupOp", "ListGroupsOp", "LogoutOp",
    "MarkReadOp",
    "OnWhatsAppOp", "Op", "PairPhoneOp", "Paired", "Push", "RecordCounts", "RecordEntry", "Reply", "SendOp",
    "SendPresenceOp", "ServerFrame", "SessionInfo", "SimLink", "SimLinkStatistics", "SimStats", "SimTransport",
    "SimTransportFactory", "SubscribePresenceOp", "TypingOp", "UpdateParticipantsOp", "Welcome",
    "client_frames_decoder", "control_encoder", "control_reply_decoder", "control_request_decoder", "link_encoder",
    "open_sim_transport_factory", "server_frames_decoder", "EditOp", "ReactOp", "RevokeOp", "VoteOp",
    "DownloadMediaOp", "BlocklistOp", "BlockOp", "GroupPictureOp", "GroupSettingsOp", "InviteInfoOp", "InviteLinkOp",
    "JoinInviteOp", "LidForPhoneOp", "PhoneForLidOp", "PictureOp", "UserInfoOp",
]
