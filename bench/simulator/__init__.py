"""A simulated WhatsApp network: `gateway simulator`, tests, demos and bench.

Run it with `gateway simulator --bind 127.0.0.1:8765 [--autopair SECONDS]
[--receipt-delay SECONDS] [--qr-interval SECONDS] [--closed-world]`, or in-process with
`handle = await nursery.start(serve_simulator, "127.0.0.1", 0)` (keyword
options `autopair`, `receipt_delay`, `qr_interval`, `open_world`). Gateways
reach it through the `sim` transport (`actors.sim`, `GATEWAY_TRANSPORT=sim`);
tests and bench steer it with `bench.simulator.control.open_sim_control`, and
people from a shell: `gateway simulator scan SESSION_ID [--phone P] [--url URL]`
pairs the session showing a QR and prints the number it paired as, `gateway
simulator unregister PHONE [--url URL]` takes a number off WhatsApp (the URL
defaults to `$GATEWAY_SIM_URL`, else `ws://127.0.0.1:8765`; a refusal prints
its reason to stderr and exits 1).

Behaviour
---------
- **Accounts** are keyed by E.164 number. The world is *open* by default:
  every well-formed number (5 to 15 digits) is on WhatsApp, and its account
  is made on first use (a send, a group add, a presence subscription; an
  on-whatsapp check answers yes without making it). Such a "phone" has no
  gateway session, accepts messages and reads them, as control `register`
  makes one (with a push or verified name). Control `unregister(phone)` takes
  a number off WhatsApp, open world or not: its devices are logged out
  (`LoggedOut`, "account deleted"), it leaves its groups, sends to it raise
  `RecipientError` "... is not on WhatsApp", on-whatsapp answers false and
  group adds "404", until `register` or a pairing as it brings it back. A
  *closed* world (`--closed-world`, `open_world=False`, control
  `set_open_world(False)`) has only the numbers a session paired as or
  control registered (or `inject`ed from): the old behaviour, for tests.
- **Pairing.** An unpaired session gets `QRCode` events (`2@...`, a new one
  every 20 s, `--qr-interval`) until control scans one (`scan(session_id, phone)`, from a
  shell `gateway simulator scan`, or `scan_code(code)`), or `--autopair`
  pairs it after that delay. It pairs as
  the scanned number, else as the number its spec carries, else as a fresh
  `+888...` number. `pair_phone` gives an 8-character code that `scan_code`
  accepts.
- **Resuming.** Pairing hands the transport device credentials, stored in
  `<data_dir>/sim/<session_id>.json`. Presenting them resumes the account
  without a scan, even after the simulator restarted (it trusts and
  re-registers credentials it does not know) unless the device was logged out.
- **Messages** go between accounts (1:1, or fanned out to a group's other
  members). The recipient gets `MessageReceived` with the API type (`text`,
  `image`, `video`, `audio`, `document`, `sticker`, `location`, `contact`,
  `poll`) and `data` (the transport's internal keys; the gateway publishes
  them camelCase): media `mimetype`, `file_length`, `sha256` (hex),
  `filename`, `ptt`; location `latitude`, `longitude`, `name`, `address`;
  contact `display_name`, `phone_numbers`, `vcard`; poll `question`, `options`,
  `selectable_count`; and for every type `quoted` ({message_id, chat, sender,
  text}), `view_once: true` and `mentions` when set. The sender gets `Receipt`
  `delivered` once a device got it (or at once for a phone) plus
  `receipt_delay`, then `read` after another `receipt_delay`. Messages and
  receipts for an offline device wait in its backlog (10,000 events at most).
  Sending to a number that is not on WhatsApp (unregistered, or unknown in a
  closed world) raises `RecipientError`.
- **Deduplication.** A resend with a known (sender, message id) is recorded as
  a duplicate and not delivered again. The sim transport uses the message's
  `message_id` attribute when it has one.
- **Presence** (`send_presence`, `subscribe_presence` → `Presence` to
  subscribers, the current state at once). As on WhatsApp, a device gets
  presence only while its own account is available, and a subscription lasts
  one connection of that device (the gateway subscribes again after each
  connect); an account with no device online is unavailable. **Typing**
  (`ChatPresence` composing, recording or paused, to the peer or group
  members). **Read receipts**: by default a session's account reads what it
  gets after two receipt delays; control `set_auto_read(False)` leaves that to
  the session's `mark_read`, which sends `read` to the author. **Groups** (create, info, list, add/remove with
  per-participant "404" not on WhatsApp / "409" already in it / "not-authorized";
  a closed world leaves unknown numbers out of a new group; leave) and **contacts** (every
  account a session exchanged 1:1 messages with, plus `add_contact`).
- **Group administration** (`_groups.py`): settings (name 1-100 characters, a
  description of at most 2048, announce-only, locked; only admins change
  announce and locked, and anything of a locked group), a JPEG picture of at
  most 1 MiB, invite links (22 characters, the same until reset) and joining
  by one, promote and demote. Every change reaches the members as a durable
  notification (`GroupJoined`, `GroupLeft`, `GroupParticipantsChanged`,
  `GroupUpdated`), with `by` the account that acted.
- **Identity** (`_identity.py`). Every number has a LID (`<15 digits>@lid`, the
  same all run; `lid_for_phone`/`phone_for_lid`). Control
  `set_profile(phone, about=..., picture=True|False)` sets the about text (139
  characters at most; "" clears it) and puts up a new picture (a new id each
  time, `https://pps.whatsapp.sim/v/t61/<id>.jpg`) or takes it down;
  `identity(phone)` shows it all. What a blocked number sends (messages,
  reactions, edits, revokes, votes) is never delivered or receipted, though its
  send succeeds; whoever blocked you hides their picture and about text.
  `set_addressing(phone, "off"|"lid"|"lid-only")`: `lid` adds `sender_lid`
  beside the phone JID; `lid-only` names the sender by LID alone (`sender`,
  `sender_lid`, a 1:1 `chat`), with no `sender_phone`.
- **Proxies.** A session's `Attach` may name the proxy its transport was told
  to use; control `sessions` shows it with the password masked.
- **Faults** through control: `drop` one session (its `run` raises
  `ConnectFailed`) or every link; `set_latency` on operations; `set_error_rate`
  on sends; `logout` (the session gets `LoggedOut`, its pairing is forgotten).
- **The record** of every accepted message (`messages`, `record_counts`: total,
  distinct, duplicates) and `statistics()` / control `stats`.

Design: one websocket *link* per gateway process multiplexes all its sessions
(see `actors/sim/_protocol.py` for frames, batching and credit-based flow control).
Delivery is at-least-once: events a session had not acknowledged when its link
dropped are delivered again, with the same message id.
"""

from actors.sim import Creds, RecordCounts, RecordEntry, SessionInfo, SimStats

from ._network import Network
from ._server import SimulatorHandle, run_control_cli, run_simulator_cli, serve_simulator
from .control import SimControl, SimControlError, open_sim_control

__all__ = [
    "Creds", "Network", "RecordCounts", "RecordEntry", "SessionInfo", "SimControl", "SimControlError", "SimStats",
    "SimulatorHandle", "open_sim_control", "run_control_cli", "run_simulator_cli", "serve_simulator",
]
