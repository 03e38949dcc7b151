"""Outgoing mail against a real SMTP server: aiosmtpd, in a thread, on 127.0.0.1."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import Config, ConfigError
from gateway._mail import LogMailer, Mail, MailError, SmtpMailer, open_mailer, parse_smtp_url

from ._smtp import PortZeroController

SENDER = "Gateway <gateway@example.com>"
LINK = "https://wa.example.com/reset#token=Zm9vYmFyYmF6"
RESET = Mail(to="alice@example.com", subject="Reset your password",
             text=f"Someone asked to reset your password.\n\nOpen {LINK} within an hour.\n")
USER, PASSWORD = "mailer@example.com", "p:ss w0rd/@%"
USER_URL, PASSWORD_URL = "mailer%40example.com", "p%3Ass%20w0rd%2F%40%25"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    tls: bool
    login: LoginPassword | None


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps what it was given."""

    mails: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.mails.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,
                                   session.ssl is not None, session.auth_data))
        return "250 Message accepted"


@dataclass
class Server:
    inbox: Inbox
    port: int
    logins: list[LoginPassword]

    def url(self, scheme: str = "smtp", userinfo: str = "", query: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{query}"


def _authenticator(logins: list[LoginPassword]) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append(auth_data)
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == \
            (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)  # handled=False: aiosmtpd answers 535
    return authenticate


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., Server]]:
    """Starts aiosmtpd servers: `smtp_server(**smtp_kwargs)`; `ssl_context=` makes it implicit TLS."""
    controllers: list[PortZeroController] = []

    def start(**kwargs: Any) -> Server:
        inbox, logins = Inbox(), []
        controller = PortZeroController(inbox, hostname="127.0.0.1", port=0, server_hostname="smtp.test",
                                 authenticator=_authenticator(logins), **kwargs)
        controller.start()
        controllers.append(controller)
        return Server(inbox, controller.port, logins)

    yield start
    for controller in controllers:
        controller.stop()


@dataclass
class Cert:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("smtp-cert")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Cert(cert_file, key_file)


def mailer(url: str) -> SmtpMailer:
    return SmtpMailer(url, SENDER, timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- delivery ---------------------------------------------------------------------------------------------


async def test_plain_delivery_carries_headers_and_the_link(smtp_server):
    server = smtp_server()
    await mailer(server.url()).send(RESET)

    [got] = server.inbox.mails
    assert got.mail_from == "gateway@example.com" and got.rcpt_tos == ["alice@example.com"]
    assert not got.tls and got.login is None
    m = got.message
    assert m["From"] == SENDER and m["To"] == "alice@example.com" and m["Subject"] == "Reset your password"
    assert m["Date"].datetime.tzinfo is not None
    assert m["Message-ID"].startswith("<") and m["Message-ID"].endswith("@example.com>")
    assert LINK in m.get_content()


async def test_auth_with_percent_encoded_user_and_password(smtp_server):
    server = smtp_server(auth_require_tls=False)  # aiosmtpd refuses AUTH over plaintext otherwise
    await mailer(server.url(userinfo=f"{USER_URL}:{PASSWORD_URL}@")).send(RESET)

    [got] = server.inbox.mails
    assert got.login == LoginPassword(USER.encode(), PASSWORD.encode())
    assert LINK in got.message.get_content()


async def test_a_wrong_password_is_a_mail_error_that_does_not_show_it(smtp_server):
    server = smtp_server(auth_require_tls=False)
    with pytest.raises(MailError, match="535") as caught:
        await mailer(server.url(userinfo=f"{USER_URL}:wrong-hunter2@")).send(RESET)
    assert "hunter2" not in str(caught.value) and server.inbox.mails == []
    assert server.logins  # it did try


async def test_auth_against_a_server_without_auth_is_a_mail_error(smtp_server):
    server = smtp_server()  # plaintext: AUTH is not advertised
    with pytest.raises(MailError, match="AUTH") as caught:
        await mailer(server.url(userinfo=f"{USER_URL}:{PASSWORD_URL}@")).send(RESET)
    assert PASSWORD not in str(caught.value) and PASSWORD_URL not in str(caught.value)


# --- TLS --------------------------------------------------------------------------------------------------


async def test_smtp_uses_starttls_when_the_server_offers_it(smtp_server, cert):
    server = smtp_server(tls_context=cert.server_context())
    await mailer(server.url(query="?verify=false")).send(RESET)
    [got] = server.inbox.mails
    assert got.tls


async def test_starttls_then_auth(smtp_server, cert):
    server = smtp_server(tls_context=cert.server_context(), require_starttls=True)  # AUTH only after TLS
    await mailer(server.url("smtp+starttls", f"{USER_URL}:{PASSWORD_URL}@", "?verify=false")).send(RESET)
    [got] = server.inbox.mails
    assert got.tls and got.login == LoginPassword(USER.encode(), PASSWORD.encode())


@pytest.mark.parametrize("scheme", ["smtp", "smtp+starttls", "smtps"])
async def test_an_untrusted_certificate_fails_unless_verify_is_false(smtp_server, cert, scheme):
    if scheme == "smtps":
        server = smtp_server(ssl_context=cert.server_context())
    else:
        server = smtp_server(tls_context=cert.server_context())
    with pytest.raises(MailError, match="certificate") as caught:
        await mailer(server.url(scheme, f"{USER_URL}:{PASSWORD_URL}@")).send(RESET)
    assert PASSWORD_URL not in str(caught.value) and PASSWORD not in str(caught.value)
    assert server.inbox.mails == [] and server.logins == []  # no credentials sent before the failed handshake


async def test_a_trusted_certificate_verifies(smtp_server, cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(cert.cert_file))  # read by ssl.create_default_context()
    server = smtp_server(tls_context=cert.server_context())
    await mailer(server.url("smtp+starttls")).send(RESET)
    [got] = server.inbox.mails
    assert got.tls


async def test_smtps_is_tls_from_the_first_byte(smtp_server, cert):
    server = smtp_server(ssl_context=cert.server_context(), auth_require_tls=False)
    await mailer(server.url("smtps", f"{USER_URL}:{PASSWORD_URL}@", "?verify=false")).send(RESET)
    [got] = server.inbox.mails
    assert got.login == LoginPassword(USER.encode(), PASSWORD.encode())
    assert LINK in got.message.get_content()


async def test_smtp_starttls_fails_when_the_server_does_not_offer_it(smtp_server):
    server = smtp_server(auth_require_tls=False)
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        await mailer(server.url("smtp+starttls", f"{USER_URL}:{PASSWORD_URL}@")).send(RESET)
    assert server.inbox.mails == [] and server.logins == []


# --- failures ---------------------------------------------------------------------------------------------


async def test_a_refused_connection_is_a_mail_error_without_the_password():
    port = free_port()
    secret = "s3cret-hunter2"
    m = mailer(f"smtps://{USER_URL}:{secret}@127.0.0.1:{port}")
    with pytest.raises(MailError, match=f"127.0.0.1:{port}") as caught:
        await m.send(RESET)
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert secret not in repr(m) and secret not in repr(m.target)


async def test_a_line_break_in_a_header_is_a_mail_error(smtp_server):
    server = smtp_server()
    with pytest.raises(MailError, match="cannot be built"):
        await mailer(server.url()).send(Mail(to="alice@example.com", subject="hi\nBcc: eve@example.com",
                                             text="x"))
    assert server.inbox.mails == []


# --- the log mailer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "  "])
async def test_without_a_url_mail_goes_to_the_log(caplog, url):
    m = open_mailer(url, SENDER)
    assert isinstance(m, LogMailer)
    with caplog.at_level(logging.WARNING, logger="gateway.mail"):
        await m.send(RESET)
    [record] = [r for r in caplog.records if r.name == "gateway.mail"]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "GATEWAY_SMTP_URL" in text and LINK in text
    assert "alice@example.com" in text and "Reset your password" in text


def test_open_mailer_gives_smtp_for_a_url():
    m = open_mailer("smtp://mail.example.com", SENDER)
    assert isinstance(m, SmtpMailer) and m.target.port == 25


# --- URLs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url,security,port,verify", [
    ("smtp://mail.example.com", "opportunistic", 25, True),
    ("smtp+starttls://mail.example.com", "starttls", 587, True),
    ("smtps://mail.example.com", "tls", 465, True),
    ("SMTPS://mail.example.com:2465/?verify=false", "tls", 2465, False),
    ("smtp://[::1]:2525?verify=true", "opportunistic", 2525, True),
])
def test_urls_parse(url, security, port, verify):
    t = parse_smtp_url(url)
    assert (t.security, t.port, t.verify, t.username, t.password) == (security, port, verify, None, None)


def test_userinfo_is_percent_decoded():
    t = parse_smtp_url(f"smtp://{USER_URL}:{PASSWORD_URL}@mail.example.com")
    assert (t.username, t.password) == (USER, PASSWORD)
    assert PASSWORD_URL not in t.redacted and PASSWORD not in repr(t)


@pytest.mark.parametrize("url,needle", [
    ("http://mail.example.com", "must start with"),
    ("smtp//mail.example.com", "must start with"),
    ("mail.example.com:25", "must start with"),
    ("smtp://", "no host"),
    ("smtp://:25", "no host"),
    ("smtp://mail.example.com:99999", "port"),
    ("smtp://mail.example.com:twenty-five", "port"),
    ("smtp://mail.example.com:0", "port 0"),
    ("smtp://mail.example.com/inbox", "path"),
    ("smtp://mail.example.com?verify=maybe", "verify must be true or false"),
    ("smtp://mail.example.com?tls=yes", "unknown option"),
    ("smtp://:hunter2@mail.example.com", "no user name"),
    ("smtp://user:hunter2@mail.example.com:port", "port"),
    ("smtp://user:hunter2%C3%A9@mail.example.com", "must be ASCII"),
])
def test_bad_urls_fail_at_construction(url, needle):
    with pytest.raises(ValueError, match=needle) as caught:
        SmtpMailer(url, SENDER)
    assert "hunter2" not in str(caught.value)


def test_a_bad_sender_fails_at_construction():
    with pytest.raises(ValueError, match="sender"):
        SmtpMailer("smtp://mail.example.com", "not an address")


# --- configuration ----------------------------------------------------------------------------------------


def test_config_defaults_send_mail_to_the_log():
    c = Config.from_env({})
    assert (c.smtp_url, c.smtp_from) == ("", "gateway@localhost")
    assert isinstance(open_mailer(c.smtp_url, c.smtp_from), LogMailer)


def test_config_accepts_a_good_smtp_url():
    c = Config.from_env({"GATEWAY_SMTP_URL": f"smtps://{USER_URL}:{PASSWORD_URL}@mail.example.com",
                         "GATEWAY_SMTP_FROM": SENDER})
    assert isinstance(open_mailer(c.smtp_url, c.smtp_from), SmtpMailer)


@pytest.mark.parametrize("env,needle", [
    ({"GATEWAY_SMTP_URL": "smpt://user:hunter2@mail.example.com"}, "GATEWAY_SMTP_URL: .*must start with smtp://"),
    ({"GATEWAY_SMTP_URL": "smtp://mail.example.com:2x5"}, "GATEWAY_SMTP_URL: .*port"),
    ({"GATEWAY_SMTP_URL": "smtp://mail.example.com?verify=nope"}, "GATEWAY_SMTP_URL: .*verify"),
    ({"GATEWAY_SMTP_FROM": "gateway"}, "GATEWAY_SMTP_FROM must be an email address"),
])
def test_config_rejects_bad_mail_settings_at_load(env, needle):
    with pytest.raises(ConfigError, match=needle) as caught:
        Config.from_env(env)
    assert isinstance(caught.value, ValueError) and "hunter2" not in str(caught.value)
