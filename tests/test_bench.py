"""bench at a tiny size, so it cannot rot: every scenario against spawned gateway and simulator processes.

Figures are not asserted (this machine is shared and noisy); the shape of
every report is, and that each scenario really measured something.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
import trio

from bench._http import Endpoint, HttpConnection, MessageReader, build_request
from bench._loadgen import accepted_count
from bench._procs import pinned, plan_pinning, tree_cpu_seconds, tree_pids
from bench._receiver import open_dead_endpoint, open_receiver
from bench._stats import growth, latency_summary, per_second, value_at

from ._pg import PG_URL

pytestmark = pytest.mark.slow


def bench(tmp_path, *args: str, timeout: float = 60, plots: tuple[str, ...] = ("rss",)) -> dict:
    out = tmp_path / "out"
    # a session of its own: on a timeout the gateway, simulator and load generators bench started go with it
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args, "--spawn", "--quiet", "--no-wrk", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"bench {args[0]} took more than {timeout:g}s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    result = json.loads((out / f"{args[0]}.json").read_text())
    assert result["scenario"] == args[0]
    assert result["command"].startswith("python -m bench ")
    assert result["machine"]["cpus"] >= 1
    for plot in (result.get("series") and ["latency", "throughput"] or []) + list(plots):
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
              "--e2e-sample", "20", timeout=90)
    assert_load(r["gateway"])
    assert_load(r["baseline"])
    assert_load(r["quart"])  # the framework ceiling, measured in the same run
    assert r["quart"]["errors"] == {}, r["quart"]["errors"]  # it decoded the very body the gateway got
    assert r["gateway"]["accepted"] > 0, r["gateway"]["errors"]
    assert r["ratios"]["accepted_per_s"] > 0 and r["ratios"]["p99"] > 0
    assert r["ratios"]["quart_per_s"] > 0 and r["ratios"]["gateway_to_quart_per_s"] > 0
    assert r["gateway"]["gateway_cpu_ms_per_accepted"] > 0
    assert set(r["targets"]) == {"throughput_at_least_0.80x_bare", "p99_at_most_1.5x_bare",
                                 "batch_messages_at_least_10x_single"}
    assert_batch(r)
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


def assert_batch(r: dict) -> None:
    """The batch phase of `send`: same connections, 100 messages a request, messages counted from the answers."""
    batch = r["batch"]
    assert_load(batch)
    assert batch["connections"] == r["gateway"]["connections"] and batch["duration_s"] == r["gateway"]["duration_s"]
    assert batch["errors"] == {}, batch["errors"]
    assert batch["messages_accepted"] == batch["accepted"] * r["parameters"]["batch_size"] > 0
    assert batch["messages_accepted_per_s"] > 0 and batch["gateway_cpu_ms_per_accepted"] > 0
    assert r["ratios"]["batch_to_single_messages_per_s"] > 0
    assert r["ratios"]["batch_to_single_cpu_per_message"] > 0
    assert r["targets"]["batch_messages_at_least_10x_single"] in (True, False)
    assert sum(r["series"]["gateway batch"]["ok_rps"]) == batch["accepted"]


@pytest.mark.parametrize("args", [["--rounds", "2"], ["--rounds", "0", "--api-only"]])
def test_rounds_need_api_only_and_at_least_one(tmp_path, args):
    done = subprocess.run([sys.executable, "-m", "bench", "send", "--spawn", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--rounds must be at least 1" in done.stderr


def test_sessions(tmp_path):
    r = bench(tmp_path, "sessions", "--sessions", "20", "--concurrency", "8", "--baseline-duration", "1")
    assert r["summary"]["sessions"] == 20 and r["summary"]["total_s"] > 0
    assert r["memory"]["available"] and r["memory"]["rss_connected_bytes"] > r["memory"]["rss_before_bytes"] * 0.5
    assert r["ratios"]["connect_per_s"] > 0
    assert all(v is None for v in r["targets"].values())  # the targets are for 10,000 sessions
    assert r["notes"]


@pytest.mark.timeout(180)
def test_send_api_only_stores_without_sending(tmp_path):
    r = bench(tmp_path, "send", "--sessions", "2", "--clients", "4", "--duration", "1.5", "--warmup", "0.5",
              "--api-only", "--rounds", "3", timeout=150)
    assert r["parameters"]["api_only"] is True
    # three rounds of bare, Quart and gateway: the ratios are the rounds' medians, the figures the median round's
    rounds = r["rounds"]
    assert len(rounds) == r["parameters"]["rounds"] == 3
    assert all(x["bare_per_s"] > 0 and x["gateway_per_s"] > 0 and x["gateway_cpu_ms_per_accepted"] > 0
               and x["bare_cpu_ms_per_request"] > 0 and x["quart_cpu_ms_per_request"] > 0 for x in rounds)
    assert r["ratios"]["cpu_per_request"] == sorted(x["ratio_cpu_per_request"] for x in rounds)[1]
    for key in ("accepted_per_s", "p99", "quart_per_s"):
        assert r["ratios"][key] == sorted(x[f"ratio_{key}"] for x in rounds)[1]
    middle = sorted(rounds, key=lambda x: x["ratio_accepted_per_s"])[1]
    assert r["gateway"]["accepted_per_s"] == middle["gateway_per_s"]
    assert r["baseline"]["requests_per_s"] == middle["bare_per_s"]
    assert r["gateway"]["accepted"] > 0, r["gateway"]["errors"]
    assert r["quart"]["errors"] == {} and r["quart"]["requests"] > 0  # decoded the same scheduled body
    e2e = r["end_to_end"]
    assert e2e["available"] is False and e2e["checked"] > 0
    assert e2e["still_queued"] == e2e["checked"]  # scheduled a day ahead: stored, nothing sent
    assert_batch(r)  # batch items scheduled the same way


def schema_exists(schema: str) -> bool:
    with psycopg.connect(PG_URL, connect_timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()[0] > 0


def assert_store_run(run: dict, store: str, workers: int = 1) -> None:
    assert (run["store"], run["gateway_workers"]) == (store, workers)
    assert_load(run)
    assert run["accepted"] > 0, run["errors"]
    assert run["gateway_cpu_ms_per_accepted"] > 0 and run["gateway_cpu_cores"] > 0
    assert run["gateway_processes"] >= (workers + 1 if workers > 1 else 1)  # the parent and its workers
    if store == "postgresql":  # the server runs on this host here: its backends' CPU is read from /proc
        backends = run["postgres_backends"]
        assert backends["available"] is True and backends["backends"] > 0, backends
        assert backends["cpu_ms_per_accepted"] > 0
        assert not schema_exists(run["schema"])  # the fresh schema was dropped afterwards


# PostgreSQL is the real server here (tests/_pg.py): an unreachable one makes bench, and so these tests, fail
@pytest.mark.timeout(120)
def test_stores_sqlite_against_postgres(tmp_path):
    r = bench(tmp_path, "stores", "--postgres", PG_URL, "--sessions", "2", "--clients", "4", "--duration", "1.5",
              "--warmup", "0.5", timeout=100, plots=("rss-sqlite", "rss-postgresql"))
    assert set(r["runs"]) == {"sqlite", "postgresql"}
    assert_store_run(r["runs"]["sqlite"], "sqlite")
    assert_store_run(r["runs"]["postgresql"], "postgresql")
    assert r["parameters"]["schemas"] == [r["runs"]["postgresql"]["schema"]] and r["parameters"]["api_only"]
    assert r["ratios"]["postgres_to_sqlite_cpu_per_message"] > 0
    assert r["ratios"]["postgres_to_sqlite_accepted_per_s"] > 0
    assert r["ratios"]["postgres_with_backends_to_sqlite_cpu_per_message"] > 0
    assert set(r["targets"]) == {"postgres_cpu_per_message_at_most_1.5x_sqlite"}
    assert r["targets"]["postgres_cpu_per_message_at_most_1.5x_sqlite"] in (True, False)
    assert set(r["series"]) == {"gateway sqlite", "gateway postgresql"}


@pytest.mark.timeout(150)
def test_workers_one_against_two(tmp_path):
    r = bench(tmp_path, "workers", "--postgres", PG_URL, "--gateway-workers", "2", "--sessions", "2",
              "--clients", "4", "--duration", "1.5", "--warmup", "0.5", timeout=130,
              plots=("rss-workers_1", "rss-workers_2"))
    assert set(r["runs"]) == {"workers_1", "workers_2"}
    assert_store_run(r["runs"]["workers_1"], "postgresql", 1)
    assert_store_run(r["runs"]["workers_2"], "postgresql", 2)
    assert len(set(r["parameters"]["schemas"])) == 2  # a fresh schema for each
    assert r["ratios"]["workers_2_to_1_accepted_per_s"] > 0 and r["ratios"]["workers_2_to_1_cpu_per_message"] > 0
    pin = r["pinning"]
    if len(pin["cores"]) >= 3:  # a core per gateway worker and one for the rest
        assert pin["applied"] and pin["gateway_cores"] == {"workers_1": pin["cores"][:1],
                                                           "workers_2": pin["cores"][:2]}
    else:  # this machine (2 cores): said plainly
        assert not pin["applied"] and r["scaling_figure"] is False
        assert any("not a scaling figure" in n for n in r["notes"])


def test_pinning_plan_and_taskset():
    assert plan_pinning([0, 1], 2)[0] is None  # 2 cores: nothing left for the rest
    plan, _ = plan_pinning([3, 0, 1, 2], 2)
    assert plan is not None and plan.gateway == (0, 1) and plan.others == (2, 3) and plan.for_gateway(1) == (0,)
    assert plan_pinning([0, 1, 2], 2, have_taskset=False)[0] is None
    assert pinned(["x"], None) == ["x"] and pinned(["x"], (2, 3)) == ["taskset", "-c", "2,3", "x"]
    proc = subprocess.Popen(pinned(["sh", "-c", "sleep 30 & wait"], (0,)))
    pids: list[int] = []
    try:
        for _ in range(50):  # sh, then its sleep
            pids = tree_pids(proc.pid)
            if len(pids) == 2:
                break
            time.sleep(0.1)
        assert pids[0] == proc.pid and len(pids) == 2
        for pid in pids:  # pinned by taskset, and inherited by the child
            status = Path(f"/proc/{pid}/status").read_text()
            assert "Cpus_allowed_list:\t0\n" in status
        assert tree_cpu_seconds(proc.pid) >= 0
    finally:
        for pid in reversed(pids or [proc.pid]):
            os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_batch_answer_count_and_counter_interpolation():
    assert accepted_count(b'{"accepted":100,"rejected":0,"results":[]}') == 100
    assert accepted_count(b'{"accepted":7}') == 7 and accepted_count(b'{"messageId":"m"}') == 0
    assert value_at([0.0, 1.0, 2.0], [0.0, 1.0, 3.0], 1.5) == pytest.approx(2.0)
    assert value_at([0.0, 1.0], [0.0, 1.0], 1.5) is None and value_at([0.0], [0.0], 0.0) is None


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
