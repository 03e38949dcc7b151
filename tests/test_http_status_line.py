"""HTTP/1.1 status lines carry the standard reason phrase (`HTTP/1.1 409 Conflict`), not a blank one.

Checked with raw sockets on a real `gateway serve`: the app's answers and
hypercorn's own (a malformed request's 400) alike. The hook itself is tested
directly, without sockets.
"""

from __future__ import annotations

import socket
import time
from http import HTTPStatus

import h11
import pytest

from gateway._status_line import install_reason_phrases, with_reason

from ._procs import base_env, serving


def _status_line(base: str, request: bytes) -> str:
    """The first line the server answers `request` with (the connection is closed after it)."""
    host, port = base.removeprefix("http://").split(":")
    deadline = time.monotonic() + 5
    data = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        while b"\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.partition(b"\r\n")[0].decode("latin-1")


def _expected(code: int) -> str:
    return f"HTTP/1.1 {code} {HTTPStatus(code).phrase}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = base_env(tmp_path_factory.mktemp("status-line"), GATEWAY_MAX_BODY="1024")
    with serving(env) as (base, _proc):
        yield base


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("code,request_bytes", [
    (200, _request("GET", "/healthz")),
    (404, _request("GET", "/no/such/route")),
    (405, _request("PATCH", "/api/v1/whatsapp-sessions", b'{"name": "x"}')),
    (401, _request("POST", "/api/v1/whatsapp-sessions", b'{"name": "x"}')),
    (413, _request("POST", "/api/v1/whatsapp-sessions", b"x" * 2000)),
    (400, b"NOT A REQUEST LINE\r\n\r\n"),  # answered by hypercorn itself, not the app
], ids=["200", "404", "405", "401", "413", "400-from-hypercorn"])
def test_every_status_line_has_its_reason_phrase(server, code, request_bytes):
    assert _status_line(server, request_bytes) == _expected(code)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("code", [200, 202, 409, 413, 422, 429, 503])
def test_a_response_without_a_reason_gets_the_standard_one(code):
    got = with_reason(h11.Response(status_code=code, headers=[(b"content-length", b"0")]))
    assert got.reason == HTTPStatus(code).phrase.encode()
    assert (got.status_code, list(got.headers)) == (code, [(b"content-length", b"0")])


@pytest.mark.timeout(10)
def test_other_events_and_given_or_unknown_reasons_pass_through():
    given = h11.Response(status_code=409, headers=[], reason=b"Taken")
    unknown = h11.Response(status_code=599, headers=[])
    data = h11.Data(data=b"x")
    for event in (given, unknown, data):
        assert with_reason(event) is event
    assert with_reason(h11.InformationalResponse(status_code=100, headers=[])).reason == b"Continue"


@pytest.mark.timeout(10)
def test_installing_twice_wraps_once(monkeypatch):
    from hypercorn.protocol.h11 import H11Protocol

    monkeypatch.setattr(H11Protocol, "_send_h11_event", H11Protocol._send_h11_event)  # restored afterwards
    original = H11Protocol._send_h11_event
    assert install_reason_phrases()
    wrapped = H11Protocol._send_h11_event
    assert wrapped is not original and wrapped.__wrapped__ is original
    assert install_reason_phrases()
    assert H11Protocol._send_h11_event is wrapped
