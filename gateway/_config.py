"""The gateway's one typed configuration object.

`Config` is built from the environment (`GATEWAY_*`) and command-line flags by
`Config.from_env`, then passed explicitly to whatever needs it: there is no
global configuration. `SETTINGS` describes every setting once; the README's
settings table is checked against it by the test suite.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, Final, Literal

import msgspec

KIB: Final = 1024
MIB: Final = 1024 * KIB
SECONDS: Final = 1.0
LIMIT_OFF: Final = "off"  # a rate-limit setting that turns that limit off (load tests)
MINUTES: Final = 60 * SECONDS


class ConfigError(ValueError):
    """Raised when a setting has a value that cannot be used."""


@dataclass(frozen=True)
class Setting:
    env: str
    field: str
    default: str
    doc: str


# Every setting the gateway reads. Order is the README table's order.
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("GATEWAY_DATABASE_URL", "database_url", "sqlite:///./data/gateway.db",
            "Store location. `sqlite:///PATH` (embedded, the default) or `postgresql://...`."),
    Setting("GATEWAY_SQLITE_SYNCHRONOUS", "sqlite_synchronous", "normal",
            "SQLite only. `normal`: WAL with `synchronous=NORMAL`; a killed process loses no commit, a power "
            "cut or OS crash may lose the last ones. `full`: each commit is fsynced before it is answered, "
            "at a cost in write latency. See Durability."),
    Setting("GATEWAY_BIND", "bind", "127.0.0.1:8080",
            "HOST:PORT to listen on. When unset and `$PORT` is set, `0.0.0.0:$PORT` is used."),
    Setting("GATEWAY_TRANSPORT", "transport", "whatsapp",
            "`whatsapp` (real WhatsApp through neonize) or `sim` (the bundled simulator)."),
    Setting("GATEWAY_SIM_URL", "sim_url", "ws://127.0.0.1:8765",
            "WebSocket URL of `gateway simulator`, used when the transport is `sim`."),
    Setting("GATEWAY_PROXY_URL", "proxy_url", "",
            "Proxy for sessions that have no `proxyUrl` of their own: `http://`, `https://` or "
            "`socks5://[USER:PASSWORD@]HOST:PORT`, no path. Shown with `***` for its password. Empty: those "
            "sessions connect directly. Read at start-up. See Proxies."),
    Setting("GATEWAY_SMTP_URL", "smtp_url", "",
            "Mail server for password-reset links: `smtp://[USER:PASSWORD@]HOST[:PORT]` (port 25, STARTTLS "
            "when offered), `smtp+starttls://...` (587, STARTTLS required) or `smtps://...` (465, TLS); "
            "USER and PASSWORD percent-encoded, `?verify=false` accepts a self-signed certificate. Empty: "
            "reset links are written to the log (WARNING) instead of mailed."),
    Setting("GATEWAY_SMTP_FROM", "smtp_from", "gateway@localhost",
            "From address of the gateway's mail (`gateway@example.com` or `Gateway <gateway@example.com>`)."),
    Setting("GATEWAY_DATA_DIR", "data_dir", "./data",
            "Directory for per-session WhatsApp device stores, and for received media (`media/`)."),
    Setting("GATEWAY_CONNECT_ATTEMPTS", "connect_attempts", "3",
            "Failed connection attempts in a row before a session that never connected is marked FAILED. "
            "A session that was connected keeps retrying with capped backoff."),
    Setting("GATEWAY_RECONNECT_MAX_DELAY", "reconnect_max_delay", "60",
            "Longest wait, in seconds, between reconnection attempts (exponential backoff with jitter)."),
    Setting("GATEWAY_PAIRING_TIMEOUT", "pairing_timeout", "120",
            "Seconds an unpaired session waits for a QR scan or pairing code before it gives up."),
    Setting("GATEWAY_QR_WAIT", "qr_wait", "3",
            "Seconds `connect` waits for the first QR code so it can include it in its answer."),
    Setting("GATEWAY_ALLOW_PRIVATE_URLS", "allow_private_urls", "false",
            "Allow webhook and media URLs that resolve to loopback, private, link-local "
            "or metadata addresses. Keep off in production (SSRF)."),
    Setting("GATEWAY_MAX_BODY", "max_body", str(1 * MIB),
            "Largest request body, in bytes, on ordinary routes (413 beyond it)."),
    Setting("GATEWAY_MAX_MEDIA_BODY", "max_media_body", str(32 * MIB),
            "Largest request body, in bytes, on routes that carry base64 media."),
    Setting("GATEWAY_LIMIT_SEND", "limit_send", "10/minute",
            "Messages per session (COUNT/PERIOD, PERIOD second, minute or hour; at most 1000/second). "
            "A batch counts each message. A session can have its own through `sendLimit`. Every "
            "`GATEWAY_LIMIT_*` also takes `off`, for load tests."),
    Setting("GATEWAY_LIMIT_API", "limit_api", "100/minute",
            "Authenticated requests per user, across all of that user's tokens and session keys."),
    Setting("GATEWAY_LIMIT_AUTH", "limit_auth", "5/minute",
            "Auth attempts per client IP: failed API authentications and dashboard logins, and every sign-up, "
            "forgot-password and reset request. Past it, that IP gets 429 until the bucket refills; a valid "
            "API key is never refused by it."),
    Setting("GATEWAY_LIMIT_FORGOT", "limit_forgot", "3/hour", "Password-reset requests per email."),
    Setting("GATEWAY_SIGNUP", "signup", "open",
            "`open`: anyone who reaches the dashboard may sign up. `closed`: a private instance; users are "
            "created with `gateway users create`."),
    Setting("GATEWAY_PUBLIC_URL", "public_url", "",
            "The gateway's public base URL (`https://wa.example.com`), used in password-reset links. Empty: "
            "`http://` + GATEWAY_BIND (a wildcard host reads as localhost); the request's Host header is never "
            "used, so a forged one cannot redirect a reset link."),
    Setting("GATEWAY_LOGIN_TTL", "login_ttl", "604800",
            "Seconds a dashboard login lasts without use; each use extends it. Logging out or changing the "
            "password ends it at once."),
    Setting("GATEWAY_CORS_ORIGINS", "cors_origins", "",
            "Comma-separated origins (`https://app.example.com`) whose web pages may call the API from a "
            "browser, or `*` for any. Empty: no cross-origin calls."),
    Setting("GATEWAY_TRUSTED_PROXIES", "trusted_proxies", "",
            "Comma-separated proxy addresses or CIDRs whose X-Forwarded-For is believed. Empty: use the "
            "socket address only."),
    Setting("GATEWAY_SEND_MIN_GAP", "send_min_gap", "1.0",
            "Seconds between two sends of one session (ban protection)."),
    Setting("GATEWAY_SEND_JITTER", "send_jitter", "1.0",
            "Up to this many random seconds added to each gap."),
    Setting("GATEWAY_SEND_TYPING", "send_typing", "false",
            "Show a typing indicator for about a second before each message."),
    Setting("GATEWAY_QUEUE_TTL", "queue_ttl", "86400",
            "Seconds a queued message may wait (e.g. for a reconnect) before it fails as expired."),
    Setting("GATEWAY_MEDIA_TIMEOUT", "media_timeout", "30",
            "Seconds allowed for downloading one media URL (connect + transfer), and for downloading one "
            "received media file from WhatsApp."),
    Setting("GATEWAY_MEDIA_MAX_BYTES", "media_max_bytes", str(64 * MIB),
            "Largest received media file, in bytes, that a session downloads and keeps: checked against the size "
            "WhatsApp announces before the download, and on the bytes. A larger one still gives its "
            "`message.received`, with `media.error` saying why it was not fetched."),
    Setting("GATEWAY_MEDIA_RETENTION", "media_retention", str(7 * 24 * 3600),
            "Seconds received media is kept under `GATEWAY_DATA_DIR/media/` (served at `/api/v1/media/{id}`); "
            "an hourly task deletes older files and their records. `0` keeps them forever."),
    Setting("GATEWAY_ON_WHATSAPP_TTL", "on_whatsapp_ttl", "3600",
            "Seconds an on-WhatsApp answer is cached per session and number."),
    Setting("GATEWAY_WEBHOOK_MAX_ATTEMPTS", "webhook_max_attempts", "14",
            "Attempts per webhook delivery before it goes to the dead letter; the default schedule spans "
            "about a day."),
    Setting("GATEWAY_WEBHOOK_TIMEOUT", "webhook_timeout", "15",
            "Seconds one webhook attempt may take (connect, send, answer)."),
    Setting("GATEWAY_WEBHOOK_CONCURRENCY", "webhook_concurrency", "128",
            "Webhook attempts in flight at once, over all endpoints."),
    Setting("GATEWAY_WEBHOOK_PER_ENDPOINT", "webhook_per_endpoint", "8",
            "Webhook attempts in flight at once to one endpoint (a slow endpoint uses only these)."),
    Setting("GATEWAY_STREAM_BUFFER", "stream_buffer", "256",
            "Events a live-stream (WebSocket) client may fall behind before it is cut off (close code 4008)."),
    Setting("GATEWAY_AUTH_CACHE_TTL", "auth_cache_ttl", "10",
            "Seconds a verified key stays cached in a process. Revocation in another "
            "process takes effect within this time; in the same process it is immediate."),
    Setting("GATEWAY_SHUTDOWN_TIMEOUT", "shutdown_timeout", "10",
            "Seconds a graceful shutdown may take before tasks are cancelled."),
    Setting("GATEWAY_WORKERS", "workers", "1",
            "Processes `gateway serve` runs on this host (`--workers`), sharing the public port. More than one "
            "needs PostgreSQL: each process is a cluster node."),
    Setting("GATEWAY_LEASE_TTL", "lease_ttl", "10",
            "Cluster mode: seconds a node keeps its sessions without a heartbeat (it renews every quarter of "
            "this). A node that dies loses them after at most this long, and the others resume them."),
    Setting("GATEWAY_INTERNAL_BIND", "internal_bind", "127.0.0.1:0",
            "Cluster mode: HOST:PORT where a node takes requests routed from other nodes. Port 0: a free "
            "port per process; a fixed port P: worker i of `--workers` uses P+i."),
    Setting("GATEWAY_NODE_HOST", "node_host", "",
            "Cluster mode: the host or IP other nodes reach this one at. Empty: the host of "
            "`GATEWAY_INTERNAL_BIND`, which then must not be a wildcard such as 0.0.0.0."),
    Setting("GATEWAY_LOG_LEVEL", "log_level", "INFO",
            "DEBUG, INFO, WARNING or ERROR. Logs are JSON lines on stderr."),
)

def settings_markdown() -> str:
    """The README's settings table (README.md holds exactly this text)."""
    rows = [f"| `{s.env}` | `{s.default}` | {s.doc} |" for s in SETTINGS]
    return "\n".join(["| Variable | Default | Meaning |", "|---|---|---|", *rows])


_BOOL_TRUE = {"1", "true", "yes", "on"}
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})
_BOOL_FALSE = {"0", "false", "no", "off", ""}
_SQLITE_SYNCHRONOUS: Final = frozenset({"normal", "full"})


class Config(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "sqlite:///./data/gateway.db"
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    bind: str = "127.0.0.1:8080"
    transport: Literal["whatsapp", "sim"] = "whatsapp"
    sim_url: str = "ws://127.0.0.1:8765"
    proxy_url: str = ""
    smtp_url: str = ""
    smtp_from: str = "gateway@localhost"
    data_dir: str = "./data"
    connect_attempts: int = 3
    reconnect_max_delay: float = 60 * SECONDS
    pairing_timeout: float = 2 * MINUTES
    qr_wait: float = 3 * SECONDS
    allow_private_urls: bool = False
    max_body: int = 1 * MIB
    max_media_body: int = 32 * MIB
    limit_send: str = "10/minute"
    limit_api: str = "100/minute"
    limit_auth: str = "5/minute"
    limit_forgot: str = "3/hour"
    signup: Literal["open", "closed"] = "open"
    public_url: str = ""
    login_ttl: float = 7 * 24 * 60 * MINUTES
    cors_origins: str = ""
    trusted_proxies: str = ""
    send_min_gap: float = 1.0 * SECONDS
    send_jitter: float = 1.0 * SECONDS
    send_typing: bool = False
    queue_ttl: float = 24 * 60 * MINUTES
    media_timeout: float = 30 * SECONDS
    media_max_bytes: int = 64 * MIB
    media_retention: float = 7 * 24 * 60 * MINUTES
    on_whatsapp_ttl: float = 60 * MINUTES
    webhook_max_attempts: int = 14
    webhook_timeout: float = 15 * SECONDS
    webhook_concurrency: int = 128
    webhook_per_endpoint: int = 8
    stream_buffer: int = 256
    auth_cache_ttl: float = 10 * SECONDS
    shutdown_timeout: float = 10 * SECONDS
    workers: int = 1
    lease_ttl: float = 10 * SECONDS
    internal_bind: str = "127.0.0.1:0"
    node_host: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a Config from `GATEWAY_*` variables, then flags (`overrides`).

        Overrides whose value is None are ignored, so argparse results can be
        passed straight through.
        """
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for s in SETTINGS:
            if s.env in env:
                raw[s.field] = env[s.env]
        if "bind" not in raw and env.get("PORT"):
            raw["bind"] = f"0.0.0.0:{env['PORT']}"
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Config:
        fields = {f for f in cls.__struct_fields__}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = _coerce(cls, key, value)
        try:
            config = msgspec.convert(values, cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(_explain(exc)) from None
        config.validate()
        return config

    def validate(self) -> None:
        parse_bind(self.bind)
        if not (self.database_url.startswith("sqlite:///") or self.cluster):
            raise ConfigError("GATEWAY_DATABASE_URL must start with sqlite:/// or postgresql://")
        if self.workers < 1:
            raise ConfigError("GATEWAY_WORKERS (--workers) must be at least 1")
        if self.workers > 1 and not self.cluster:
            raise ConfigError(f"--workers {self.workers} needs PostgreSQL: the embedded SQLite store belongs to "
                              "one process. Set GATEWAY_DATABASE_URL=postgresql://... (cluster mode), or run "
                              "one worker")
        if self.lease_ttl < 1:
            raise ConfigError("GATEWAY_LEASE_TTL must be at least 1 second")
        host, _ = parse_bind(self.internal_bind)
        if self.cluster and not self.node_host and host in _WILDCARDS:
            raise ConfigError(f"GATEWAY_INTERNAL_BIND is {self.internal_bind}, which other nodes cannot dial: "
                              "set GATEWAY_NODE_HOST to this host's address on the nodes' network")
        if self.max_body <= 0 or self.max_media_body < self.max_body:
            raise ConfigError("GATEWAY_MAX_BODY must be positive and at most GATEWAY_MAX_MEDIA_BODY")
        from ratelimit import RateParseError, parse_rate

        for field in ("limit_send", "limit_api", "limit_auth", "limit_forgot"):
            if getattr(self, field) == LIMIT_OFF:
                continue
            try:
                parse_rate(getattr(self, field))
            except RateParseError as exc:
                raise ConfigError(f"{_env_name(field)}: {exc}") from None
        self._check_mail()
        self.default_proxy_url()
        self.proxy_networks()
        if min(self.webhook_max_attempts, self.webhook_concurrency, self.webhook_per_endpoint,
               self.stream_buffer) < 1 or self.webhook_timeout <= 0:
            raise ConfigError("webhook and stream settings must be positive")
        if self.connect_attempts < 1:
            raise ConfigError("GATEWAY_CONNECT_ATTEMPTS must be at least 1")
        if min(self.auth_cache_ttl, self.shutdown_timeout, self.qr_wait, self.reconnect_max_delay,
               self.pairing_timeout, self.send_min_gap, self.send_jitter, self.queue_ttl,
               self.on_whatsapp_ttl) < 0 or self.media_timeout <= 0:
            raise ConfigError("timeouts must not be negative")

        if self.public_url and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", self.public_url):
            raise ConfigError(f"GATEWAY_PUBLIC_URL must be an http(s) base URL, got {self.public_url!r}")
        if self.login_ttl < 60:
            raise ConfigError("GATEWAY_LOGIN_TTL must be at least 60 seconds")
        if self.media_max_bytes < 1:
            raise ConfigError("GATEWAY_MEDIA_MAX_BYTES must be at least 1")
        if self.media_retention < 0:
            raise ConfigError("GATEWAY_MEDIA_RETENTION must not be negative (0 keeps media forever)")

    def base_url(self) -> str:
        """Where people reach the gateway: GATEWAY_PUBLIC_URL, else the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = parse_bind(self.bind)
        host = "localhost" if host in _WILDCARDS else host
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def _check_mail(self) -> None:
        from ._mail import parse_smtp_url

        if self.smtp_url.strip():
            try:
                parse_smtp_url(self.smtp_url)
            except ValueError as exc:
                raise ConfigError(f"GATEWAY_SMTP_URL: {exc}") from None
        _, address = parseaddr(self.smtp_from)
        if "@" not in address:
            raise ConfigError(f"GATEWAY_SMTP_FROM must be an email address, got {self.smtp_from!r}")

    def default_proxy_url(self) -> str | None:
        """GATEWAY_PROXY_URL checked and normalized (what sessions without their own use), or None."""
        from ._control import BadProxyURL, parse_proxy_url

        if not self.proxy_url.strip():
            return None
        try:
            return parse_proxy_url(self.proxy_url.strip())
        except BadProxyURL as exc:  # the message never holds the URL: it may carry a password
            raise ConfigError(f"GATEWAY_PROXY_URL: the proxy URL {exc}") from None

    def cors_origin_set(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(ipaddress.ip_network(p.strip(), strict=False)
                         for p in self.trusted_proxies.split(",") if p.strip())
        except ValueError as exc:
            raise ConfigError(f"GATEWAY_TRUSTED_PROXIES: {exc}") from None

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_bind(self.bind)

    @property
    def cluster(self) -> bool:
        """Cluster mode: the store is PostgreSQL, and this process is one node of N (N may be 1)."""
        return self.database_url.startswith(("postgresql://", "postgres://"))


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def _coerce(cls: type[Config], key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    annotation = cls.__annotations__[key]
    if annotation == "bool":
        lowered = value.strip().lower()
        if lowered in _BOOL_TRUE:
            return True
        if lowered in _BOOL_FALSE:
            return False
        raise ConfigError(f"{_env_name(key)} must be true or false, got {value!r}")
    if annotation in ("int", "float"):
        try:
            return int(value) if annotation == "int" else float(value)
        except ValueError:
            raise ConfigError(f"{_env_name(key)} must be a number, got {value!r}") from None
    if key == "log_level":
        return value.upper()
    if key == "signup":
        return value.strip().lower()
    if key == "sqlite_synchronous":
        lowered = value.strip().lower()
        if lowered not in _SQLITE_SYNCHRONOUS:
            raise ConfigError(f"{_env_name(key)} must be normal or full, got {value!r}")
        return lowered
    return value


def _env_name(field: str) -> str:
    return next((s.env for s in SETTINGS if s.field == field), field)


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    marker = " - at `$."
    if marker in text:
        msg, _, rest = text.partition(marker)
        return f"{_env_name(rest.rstrip('`'))}: {msg}"
    return text
