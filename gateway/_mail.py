"""Outgoing mail: password-reset links and nothing else.

`open_mailer(GATEWAY_SMTP_URL, GATEWAY_SMTP_FROM)` gives one of two mailers:
- `LogMailer` when no SMTP URL is set: each mail, link included, is written to
  the `gateway.mail` log at WARNING, so a small install works without a mail
  server (the operator reads the link off the log);
- `SmtpMailer` otherwise, speaking SMTP through smtplib in a worker thread.

The SMTP URL is `SCHEME://[USER:PASSWORD@]HOST[:PORT][?verify=false]`:
- `smtp://` (port 25): STARTTLS if the server offers it, plaintext if not;
- `smtp+starttls://` (port 587): STARTTLS, and the mail fails if it is not offered;
- `smtps://` (port 465): TLS from the first byte.
USER and PASSWORD are percent-decoded ASCII; with a USER the client authenticates
(AUTH PLAIN or LOGIN, whichever the server offers). Certificates are verified
against the system's roots unless `verify=false` (self-signed dev servers).
The URL is checked when the mailer is made, so a bad one fails at startup,
and no error message (`ValueError`, `MailError`, `repr`) contains the password.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Final, Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import trio

log = logging.getLogger("gateway.mail")

Security = Literal["opportunistic", "starttls", "tls"]

_SCHEMES: Final[dict[str, tuple[Security, int]]] = {
    "smtp": ("opportunistic", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class Mail(msgspec.Struct, frozen=True):
    to: str
    subject: str
    text: str


class MailError(Exception):
    """A mail could not be handed to the SMTP server. The text never holds the password."""


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...


class LogMailer:
    """Writes each mail to the log instead of sending it (no GATEWAY_SMTP_URL)."""

    async def send(self, mail: Mail) -> None:
        log.warning("no GATEWAY_SMTP_URL is set, so this mail is logged instead of sent: to=%s subject=%r\n%s",
                    mail.to, mail.subject, mail.text,
                    extra={"fields": {"mail_to": mail.to, "mail_subject": mail.subject}})


class SmtpTarget(msgspec.Struct, frozen=True):
    """A parsed SMTP URL. `repr` and `redacted` leave the password out."""

    security: Security
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    verify: bool = True

    def __repr__(self) -> str:
        return f"SmtpTarget({self.redacted!r})"

    @property
    def redacted(self) -> str:
        scheme = next(s for s, (sec, _) in _SCHEMES.items() if sec == self.security)
        user = f"{self.username}:***@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "" if self.verify else "?verify=false"
        return f"{scheme}://{user}{host}:{self.port}{query}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse `SCHEME://[USER:PASSWORD@]HOST[:PORT][?verify=false]`; ValueError if it is not one."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ValueError(f"not a valid SMTP URL ({exc})") from None
    shown = _without_password(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"SMTP URL {shown!r} must start with smtp://, smtp+starttls:// or smtps://")
    security, default_port = _SCHEMES[scheme]
    if not parts.hostname:
        raise ValueError(f"SMTP URL {shown!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"SMTP URL {shown!r} has a port that is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"SMTP URL {shown!r} has port 0")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"SMTP URL {shown!r} must not have a path or fragment")
    verify = True
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"SMTP URL {shown!r} has a malformed query") from None
    for key, value in query:
        if key != "verify":
            raise ValueError(f"SMTP URL {shown!r}: unknown option {key!r} (only verify=false is understood)")
        if value.lower() in _FALSE:
            verify = False
        elif value.lower() not in _TRUE:
            raise ValueError(f"SMTP URL {shown!r}: verify must be true or false, got {value!r}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError(f"SMTP URL {shown!r} has a password but no user name")
    if not (username or "").isascii() or not (password or "").isascii():
        raise ValueError(f"SMTP URL {shown!r}: the user name and password must be ASCII (smtplib sends no other)")
    return SmtpTarget(security=security, host=parts.hostname, port=port or default_port,
                      username=username or None, password=password, verify=verify)


class SmtpMailer:
    """Sends mail through the SMTP server at `url`, as `sender` (the From address)."""

    def __init__(self, url: str, sender: str, *, timeout: float = 20) -> None:
        self.target = parse_smtp_url(url)
        _, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"mail sender {sender!r} is not an email address")
        if timeout <= 0:
            raise ValueError("SMTP timeout must be positive")
        self.sender = sender
        self.timeout = timeout
        self._msgid_domain = address.rpartition("@")[2] or "localhost"
        self._context = ssl.create_default_context()
        if not self.target.verify:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE

    def __repr__(self) -> str:
        return f"SmtpMailer({self.target.redacted!r}, {self.sender!r})"

    async def send(self, mail: Mail) -> None:
        message = self._message(mail)
        await trio.to_thread.run_sync(self._deliver, message, abandon_on_cancel=True)

    def _message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        try:
            message["From"] = self.sender
            message["To"] = mail.to
            message["Subject"] = mail.subject
            message["Date"] = formatdate(usegmt=True)
            message["Message-ID"] = make_msgid(domain=self._msgid_domain)
            message.set_content(mail.text)
        except (ValueError, TypeError, IndexError) as exc:  # e.g. a line break in a header
            raise MailError(f"mail to {mail.to!r} cannot be built: {exc}") from None
        return message

    def _deliver(self, message: EmailMessage) -> None:
        t = self.target
        where = f"{t.host}:{t.port}"
        try:
            client: smtplib.SMTP
            if t.security == "tls":
                client = smtplib.SMTP_SSL(t.host, t.port, timeout=self.timeout, context=self._context)
            else:
                client = smtplib.SMTP(t.host, t.port, timeout=self.timeout)
            with client:
                client.ehlo()
                if client.has_extn("starttls"):
                    if t.security != "tls":
                        client.starttls(context=self._context)
                        client.ehlo()
                elif t.security == "starttls":
                    raise MailError(f"SMTP server {where} does not offer STARTTLS, which smtp+starttls:// requires")
                if t.username is not None:
                    client.login(t.username, t.password or "")
                client.send_message(message)
        except MailError:
            raise
        except smtplib.SMTPResponseException as exc:
            raise MailError(self._scrub(f"SMTP server {where} refused the mail: {exc.smtp_code} "
                                        f"{_text(exc.smtp_error)}")) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(f"{r} ({code} {_text(text)})" for r, (code, text) in exc.recipients.items())
            raise MailError(self._scrub(f"SMTP server {where} refused the recipient: {refused}")) from None
        except ssl.SSLError as exc:
            raise MailError(self._scrub(f"TLS with SMTP server {where} failed: {exc}")) from None
        except (smtplib.SMTPException, OSError, UnicodeError) as exc:
            raise MailError(self._scrub(f"SMTP server {where}: {type(exc).__name__}: {exc}")) from None

    def _scrub(self, text: str) -> str:
        password = self.target.password
        return text.replace(password, "***") if password else text


def open_mailer(url: str | None, sender: str) -> Mailer:
    """The mailer for `GATEWAY_SMTP_URL`: SMTP when it is set, the log when it is not."""
    if not url or not url.strip():
        return LogMailer()
    return SmtpMailer(url, sender)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _without_password(url: str) -> str:
    """`url` for an error message: the password part of its userinfo replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for stop in "/?#":
        i = rest.find(stop)
        if i != -1:
            authority_end = min(authority_end, i)
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hostport = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hostport}{tail}"
