"""What the API edge reads of an HTTP request, however it was served.

The JSON API's routes run the same code (`_routing.serve`) whether Quart
served the request or the lean lane in front of it did (`_lean`): both hand
it a `RequestInfo`. Quart's is a view of `quart.request`; the lean lane's is
built straight from the ASGI scope, without Quart's request machinery.
`headers` answers `get`, `getlist`, `items` and `in`, case-insensitively, as
werkzeug's `Headers` does.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol
from urllib.parse import parse_qsl

from quart import request


class HeaderLookup(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def getlist(self, key: str) -> list[str]: ...

    def items(self) -> Any: ...

    def __contains__(self, key: object) -> bool: ...


class HeaderMap:
    """Request headers from an ASGI scope: latin-1 text, names compared case-insensitively."""

    __slots__ = ("_pairs", "_by_name")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        by_name: dict[str, list[str]] = {}
        for k, v in self._pairs:
            by_name.setdefault(k.lower(), []).append(v)
        self._by_name = by_name

    def get(self, key: str, default: Any = None) -> Any:
        values = self._by_name.get(key.lower())
        return values[0] if values else default

    def getlist(self, key: str) -> list[str]:
        return list(self._by_name.get(key.lower(), ()))

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._by_name


class RequestInfo:
    """One request's method, path, query, headers and peer (not its body: the caller reads that)."""

    __slots__ = ("method", "path", "query_string", "headers", "remote_addr", "_args", "_cookies")

    def __init__(self, method: str, path: str, query_string: bytes, headers: HeaderLookup,
                 remote_addr: str | None) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.remote_addr = remote_addr
        self._args: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    @classmethod
    def from_scope(cls, scope: dict[str, Any]) -> RequestInfo:
        client = scope.get("client")
        return cls(scope["method"], scope["path"], scope.get("query_string", b""), HeaderMap(scope["headers"]),
                   client[0] if client else None)

    @classmethod
    def from_quart(cls) -> RequestInfo:
        """The request Quart is serving now."""
        return cls(request.method, request.path, request.query_string, request.headers, request.remote_addr)

    @property
    def full_path(self) -> str:
        """The path and its query string, as sent (`/a/b?x=1`)."""
        return self.path + ("?" + self.query_string.decode("latin-1") if self.query_string else "")

    @property
    def args(self) -> dict[str, str]:
        """The query parameters: the first value of each name."""
        if self._args is None:
            args: dict[str, str] = {}
            for key, value in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
                args.setdefault(key, value)
            self._args = args
        return self._args

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar: SimpleCookie = SimpleCookie()
            for header in self.headers.getlist("Cookie"):
                try:
                    jar.load(header)
                except CookieError:
                    continue
            self._cookies = {k: m.value for k, m in jar.items()}
        return self._cookies

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    @property
    def mimetype(self) -> str:
        """The Content-Type without its parameters, lower case ("" when there is none)."""
        return str(self.headers.get("Content-Type", "")).split(";", 1)[0].strip().lower()
