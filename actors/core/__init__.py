"""The actor core: one session actor per WhatsApp session, their supervisor, and the outbox sender.

Pure parts (the state transition table, backoff maths) sit beside the trio
parts that use them; none of it knows which transport it drives.
"""

from ._actor import ActorHost, ActorPolicy, ActorStatistics, Command, Connect, Disconnect, Logout, SessionActor
from ._backoff import Backoff, CrashWindow
from ._outbox import Claimed, OutboundQueue, Pacing, PrepareFailed, Sender
from ._state import InvalidTransition, SessionState, check_transition
from ._supervisor import Supervisor, SupervisorStatistics

__all__ = [
    "ActorHost", "ActorPolicy", "ActorStatistics", "Backoff", "Claimed", "Command", "Connect", "CrashWindow",
    "Disconnect", "InvalidTransition", "Logout", "OutboundQueue", "Pacing", "PrepareFailed", "Sender",
    "SessionActor", "SessionState", "Supervisor", "SupervisorStatistics", "check_transition",
]
