"""An answer sent before the request body was read never wedges the keep-alive connection.

Pooled clients (httpx, requests/urllib3, undici) reuse a connection after any
answer. If the gateway answers early (413 from Content-Length, 401 before
reading, 415, 429) and leaves the body unread, the next request on that
connection must still be answered at once. Checked on a real `gateway serve`
with raw sockets (headers and body sent apart, as urllib3 does) and with httpx.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from ._procs import base_env, serving

SECOND_REQUEST_DEADLINE = 5.0


def _read_response(sock: socket.socket, deadline: float) -> bytes:
    """One whole HTTP/1.1 response (headers and a Content-Length body) from `sock`."""
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        if chunk == b"":
            break
        if chunk:
            data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                return data
    return data


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = base_env(tmp_path_factory.mktemp("keepalive"), GATEWAY_MAX_BODY="1024")
    with serving(env) as (base, _proc):
        yield base


def _early(server: str, method: str, path: str, headers: str, body: bytes, *, pause: float) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode())
        time.sleep(pause)  # the body comes after the headers, as urllib3 sends it
        try:
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a server that closed after answering has done nothing wrong
        first = _read_response(sock, time.monotonic() + 5)
        assert 400 <= _status(first) < 500, first[:200]
        if b"connection: close" in first.lower():
            return  # told to close: the client opens a new connection, nothing is wedged
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        second = _read_response(sock, started + SECOND_REQUEST_DEADLINE)
        assert _status(second) == 200, (first[:120], second[:200])
        assert time.monotonic() - started < SECOND_REQUEST_DEADLINE


JSON = "Content-Type: application/json\r\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["413", "413-media", "401", "415", "405", "404"])
def test_an_early_answer_leaves_the_connection_usable(server, case):
    small = b'{"name": "x"}'
    if case == "413":
        _early(server, "POST", "/api/v1/whatsapp-sessions", JSON, b"x" * 1_100_000, pause=0.05)
    elif case == "413-media":
        _early(server, "POST", "/api/v1/send-message", JSON + "Authorization: Bearer wgs_x_y\r\n",
               b"x" * 200_000, pause=0.05)
    elif case == "401":
        _early(server, "POST", "/api/v1/whatsapp-sessions", JSON, small, pause=0.05)
    elif case == "415":
        _early(server, "POST", "/api/v1/whatsapp-sessions", "Content-Type: text/plain\r\n", small, pause=0.05)
    elif case == "405":
        _early(server, "PATCH", "/api/v1/whatsapp-sessions", JSON, small, pause=0.05)
    else:
        _early(server, "POST", "/no/such/route", JSON, small, pause=0.05)


@pytest.mark.timeout(60)
def test_a_pooled_client_gets_its_next_answer_after_a_413(server):
    with httpx.Client(base_url=server, timeout=SECOND_REQUEST_DEADLINE) as client:
        r = client.post("/api/v1/whatsapp-sessions", content=b"x" * 1_100_000,
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert client.get("/healthz").status_code == 200
        r = client.post("/api/v1/whatsapp-sessions", json={"name": "x"})
        assert r.status_code == 401
        assert client.get("/healthz").status_code == 200
