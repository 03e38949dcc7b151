"""bench at a tiny size, so it cannot rot: every scenario against spawned gateway and simulator processes.

Figures are not asserted (this machine is shared and noisy); the shape of
every report is, and that each scenario really measured something.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import trio

from bench._http import Endpoint, HttpConnection, MessageReader, build_request
from bench._receiver import open_dead_endpoint, open_receiver
from bench._stats import growth, latency_summary, per_second

pytestmark = pytest.mark.slow


def bench(tmp_path, *args: str, timeout: float = 60) -> dict:
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "bench", *args, "--spawn", "--quiet", "--no-wrk", "--out", str(out)],
                         capture_output=True, text=True, timeout=timeout, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / f"{args[0]}.json").read_text())
    assert result["scenario"] == args[0]
    assert result["command"].startswith("python -m bench ")
    assert result["machine"]["cpus"] >= 1
    for plot in (result.get("series") and ["latency", "throughput"] or []) + ["rss"]:
        png = out / f"{args[0]}-{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    return result


def assert_load(summary: dict) -> None:
    assert summary["requests"] > 0 and summary["requests_per_s"] > 0
    for p in ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms"):
        assert summary["latency_ms"][p] > 0


def test_help_explains_every_scenario():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0
    for word in ("send", "sessions", "webhooks", "soak", "--spawn", "GATEWAY_LIMIT_SEND", "ceiling"):
        assert word in out.stdout


def test_send(tmp_path):
    r = bench(tmp_path, "send", "--sessions", "2", "--clients", "4", "--duration", "1.5", "--warmup", "0.5",
              "--e2e-sample", "20")
    assert_load(r["gateway"])
    assert_load(r["baseline"])
    assert_load(r["quart"])  # the framework ceiling, measured in the same run
    assert r["quart"]["errors"] == {}, r["quart"]["errors"]  # it decoded the very body the gateway got
    assert r["gateway"]["accepted"] > 0, r["gateway"]["errors"]
    assert r["ratios"]["accepted_per_s"] > 0 and r["ratios"]["p99"] > 0
    assert r["ratios"]["quart_per_s"] > 0 and r["ratios"]["gateway_to_quart_per_s"] > 0
    assert r["gateway"]["gateway_cpu_ms_per_accepted"] > 0
    assert set(r["targets"]) == {"throughput_at_least_0.80x_bare", "p99_at_most_1.5x_bare"}
    assert r["client_not_bottleneck"]["client_cpu_ms_per_request"] > 0
    e2e = r["end_to_end"]
    assert e2e["accepted_to_sent_ms"]["count"] == e2e["sample"] > 0
    hook = e2e["webhook"]
    assert hook["available"] is True or "no webhook delivery" in hook["reason"]
    if hook["available"]:
        assert hook["accepted_to_webhook_ms"]["count"] > 0
    series = r["series"]["gateway"]
    assert len(series["t"]) == 2 and sum(series["ok_rps"]) == r["gateway"]["accepted"]
    assert r["resources"]["rss_bytes"] and r["resources"]["fds"]


def test_sessions(tmp_path):
    r = bench(tmp_path, "sessions", "--sessions", "20", "--concurrency", "8", "--baseline-duration", "1")
    assert r["summary"]["sessions"] == 20 and r["summary"]["total_s"] > 0
    assert r["memory"]["available"] and r["memory"]["rss_connected_bytes"] > r["memory"]["rss_before_bytes"] * 0.5
    assert r["ratios"]["connect_per_s"] > 0
    assert all(v is None for v in r["targets"].values())  # the targets are for 10,000 sessions
    assert r["notes"]


def test_send_api_only_stores_without_sending(tmp_path):
    r = bench(tmp_path, "send", "--sessions", "2", "--clients", "4", "--duration", "1.5", "--warmup", "0.5",
              "--api-only")
    assert r["parameters"]["api_only"] is True
    assert r["gateway"]["accepted"] > 0, r["gateway"]["errors"]
    assert r["quart"]["errors"] == {} and r["quart"]["requests"] > 0  # decoded the same scheduled body
    e2e = r["end_to_end"]
    assert e2e["available"] is False and e2e["checked"] > 0
    assert e2e["still_queued"] == e2e["checked"]  # scheduled a day ahead: stored, nothing sent


@pytest.mark.timeout(200)
def test_webhooks(tmp_path):  # about 22 s here: two capacity bursts and two phases, with room for a slow machine
    r = bench(tmp_path, "webhooks", "--sessions", "2", "--rate", "20", "--duration", "1.5", "--clients", "2",
              "--grace", "8", "--inbound", "40", timeout=150)
    capacity = r["capacity"]
    assert capacity["injected"] == 40 and capacity["delivered"] == 40 and capacity["unique"] == 40
    assert capacity["deliveries_per_s"] > 0 and capacity["lag_ms"]["count"] == 40
    asgi = r["asgi_receiver"]  # the same burst to a plain ASGI receiver, counted there
    assert asgi["injected"] == 40 and asgi["delivered"] == 40 and asgi["deliveries_per_s"] > 0
    if r["receiver_ceiling"] is not None:  # wrk installed
        assert r["receiver_ceiling"]["requests_per_s"] > 0
        assert r["ratios"]["capacity_to_receiver_ceiling"] > 0
    else:
        assert r["ratios"]["capacity_to_receiver_ceiling"] is None
    verdict = r["webhooks"]
    if verdict["available"]:
        healthy = r["phases"]["healthy"]
        assert healthy["deliveries"] > 0 and healthy["lag_ms"]["count"] > 0
        assert r["phases"]["with_dead_endpoint"]["deliveries"] > 0
        assert verdict["healthy_rate_ratio"] > 0
    else:
        assert "does not deliver webhooks" in verdict["reason"]


def test_soak(tmp_path):
    r = bench(tmp_path, "soak", "--sessions", "2", "--clients", "2", "--rate", "40", "--duration", "4",
              "--warmup", "1", "--baseline-duration", "1")
    assert_load(r["gateway"])
    assert r["memory"]["available"] and r["memory"]["samples"] >= 2
    assert "slope_per_min" in r["memory"]["rss"]
    assert r["targets"]["rss_growth_under_5pct_over_10_min"] is None  # a 4 s soak proves nothing about 10 min
    assert r["targets"]["no_fd_growth"] in (True, False)


# -- the pieces, without processes -------------------------------------------------


def test_queue_list(tmp_path):
    out = tmp_path / "out"  # in process, no gateway process to plot RSS of: not through `bench()`
    run = subprocess.run([sys.executable, "-m", "bench", "queue-list", "--messages", "2000", "--pages", "3",
                          "--quiet", "--out", str(out)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    r = json.loads((out / "queue-list.json").read_text())
    assert r["scenario"] == "queue-list" and r["command"].startswith("python -m bench queue-list")
    kinds = r["stores"]["sqlite"]["kinds"]
    assert set(kinds) >= {"all", "status=queued", "to", "status=queued&to"}
    for k in kinds.values():
        assert k["http_ms"]["count"] == 3 and k["http_ms"]["p99_ms"] > 0 and k["store_ms"]["p50_ms"] > 0
    assert kinds["all"]["items_seen"] == 150 and r["parameters"]["messages"] == 2000


def test_latency_summary_and_series():
    lat = np.concatenate([np.full(990, 0.001), np.full(9, 0.010), [1.0]])
    s = latency_summary(lat)
    assert s["count"] == 1000
    assert s["p50_ms"] == pytest.approx(1.0, rel=0.01)
    assert s["p99_ms"] == pytest.approx(1.0, rel=0.01)
    assert s["p99.9_ms"] == pytest.approx(10.0, rel=0.01)
    assert s["max_ms"] == pytest.approx(1000, rel=0.01)
    starts = np.array([0.1, 0.2, 1.5, 2.9])
    ps = per_second(starts, np.full(4, 0.002), 3.0, np.array([True, False, True, True]))
    assert ps["rps"] == [2.0, 1.0, 1.0] and ps["ok_rps"] == [1.0, 1.0, 1.0]
    g = growth([0, 60, 120], [100.0, 101.0, 102.0])
    assert g["slope_per_min"] == pytest.approx(1.0) and g["growth_pct"] == pytest.approx(2.0)


async def test_client_reads_chunked_and_length_framed_answers_and_the_receiver_records():
    async def server(stream):
        reader = MessageReader(stream)
        await reader.read_message()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await reader.read_message()
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, server, 0)
            port = listeners[0].socket.getsockname()[1]
            ep = Endpoint("127.0.0.1", port)
            conn = HttpConnection(ep)
            first = await conn.request(build_request(ep, "GET", "/a"))
            second = await conn.request(build_request(ep, "POST", "/b", json_body={"x": 1}))
            assert (first.status, first.body, second.status, second.body) == (200, b"abcde", 404, b"no")
            await conn.aclose()
            async with open_receiver() as receiver, open_dead_endpoint() as dead:
                hook = Endpoint.from_url(receiver.url)
                body = {"event": "message.sent", "sessionId": "s1", "timestamp": "2025-01-01T00:00:00.000Z",
                        "data": {"messageId": "m1", "status": "sent"}}
                raw = build_request(hook, "POST", "/s/0", headers={"webhook-id": "msg_1"}, json_body=body)
                conn = HttpConnection(hook)
                assert (await conn.request(raw)).status == 204
                assert (await conn.request(raw)).status == 204  # a retry: same webhook-id
                await conn.aclose()
                d = receiver.deliveries[0]
                assert (d.event, d.session_id, d.message_id, d.webhook_id, d.path) == (
                    "message.sent", "s1", "m1", "msg_1", "/s/0")
                assert d.event_at == 1735689600.0
                assert receiver.unique == 1 and receiver.duplicates == 1
                stream = await trio.open_tcp_stream("127.0.0.1", Endpoint.from_url(dead).port)
                await stream.send_all(build_request(Endpoint.from_url(dead), "POST", "/dead", body=b""))
                with trio.move_on_after(0.3) as waited:
                    await stream.receive_some(10)
                assert waited.cancelled_caught  # the dead endpoint never answers
                await stream.aclose()
            nursery.cancel_scope.cancel()
