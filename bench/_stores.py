"""`stores` and `workers`: the gateway's CPU per accepted message, SQLite against PostgreSQL, 1 worker against N.

Each configuration is a gateway of its own, spawned with the load-test
settings of `--spawn`, on a store of its own: a SQLite file in a temporary
directory, or a fresh PostgreSQL schema (dropped afterwards). Each gets the
same sessions and then the same load as `bench send --api-only`: C
connections posting send-message for a duration, every message scheduled a
day ahead, so that the accept path alone runs (auth, decoding, durable
enqueue, answer). The configurations run one after the other in one run.

The figure compared is CPU per accepted message: the gateway's CPU time over
the load's measured window (warm-up excluded), from /proc, summed over its
processes (`gateway serve --workers N` is a parent and N workers), divided
by the messages accepted in that window. It depends much less than
requests per second on what else the machine is doing. On PostgreSQL, part
of the storage work runs in the server's backends: their CPU per message is
reported beside the gateway's (`postgres_backends`), not added to it.

`workers` pins where the machine allows it (`plan_pinning`): one core per
gateway worker, and the load generator, simulator and the gateway's
PostgreSQL backends on the remaining ones. Without spare cores nothing is
pinned, and the report says that accepted/s across worker counts is then
not a scaling figure; CPU per message still compares what each accepted
message costs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

import trio

from ._http import Endpoint
from ._pg import Backends, fresh_schema
from ._procs import Pinning, plan_pinning, run_admin, tree_pids
from ._runs import Load, Sampler, add_gateway_cpu, day_ahead, load_summary, run_phase, send_requests, series
from ._setup import BenchSession, SetupError, Target, open_target, ready_sessions, wait_connected
from ._stats import met, ratio
from ._ui import Ui

SPREAD_TIMEOUT: Final = 120.0  # lease rounds are a quarter of GATEWAY_LEASE_TTL (10 s): a few of them
TARGET_PG_TO_SQLITE: Final = 1.5


@dataclass
class StoreOptions:
    postgres: str  # a PostgreSQL server URL; each configuration on it gets a fresh schema
    sessions: int = 10
    load: Load = None  # type: ignore[assignment]
    autopair: float = 0.01


async def run_stores(ui: Ui, opts: StoreOptions) -> dict[str, Any]:
    sqlite = await measure(ui, "sqlite", opts)
    postgres = await measure(ui, "postgresql", opts, on_postgres=True)
    sqlite_ms, postgres_ms = sqlite.get("gateway_cpu_ms_per_accepted"), postgres.get("gateway_cpu_ms_per_accepted")
    backends_ms = postgres["postgres_backends"].get("cpu_ms_per_accepted")
    cpu = ratio(postgres_ms, sqlite_ms)
    ratios = {
        "postgres_to_sqlite_cpu_per_message": cpu,
        "postgres_to_sqlite_accepted_per_s": ratio(postgres["accepted_per_s"], sqlite["accepted_per_s"]),
        # with the storage work PostgreSQL's own processes did for that gateway (SQLite's is in the gateway)
        "postgres_with_backends_to_sqlite_cpu_per_message": ratio(
            postgres_ms + backends_ms if postgres_ms is not None and backends_ms is not None else None, sqlite_ms),
    }
    runs = {"sqlite": sqlite, "postgresql": postgres}
    return {
        "scenario": "stores",
        "parameters": _parameters(opts) | {"schemas": [postgres["schema"]]},
        "runs": runs, "ratios": ratios, "summary": _summary(runs),
        "targets": {f"postgres_cpu_per_message_at_most_{TARGET_PG_TO_SQLITE}x_sqlite":
                    met(cpu, lambda r: r <= TARGET_PG_TO_SQLITE)},
        "series": {f"gateway {label}": run.pop("series") for label, run in runs.items()},
        "notes": ["gateway CPU: user + system time of the gateway's processes over the measured window, per "
                  "accepted message; postgres_backends: the server processes serving that gateway (by "
                  "application_name), reported beside it"],
    }


async def run_workers(ui: Ui, opts: StoreOptions, workers: int) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    pinning, why = plan_pinning(cores, workers, have_taskset=shutil.which("taskset") is not None)
    one = await measure(ui, "workers_1", opts, on_postgres=True, workers=1, pinning=pinning)
    many = await measure(ui, f"workers_{workers}", opts, on_postgres=True, workers=workers, pinning=pinning)
    runs = {"workers_1": one, f"workers_{workers}": many}
    pin_errors = sorted({e for r in runs.values() if (e := r["postgres_backends"].get("pin_error"))})
    notes = ["gateway CPU: summed over the gateway's processes (the parent and its workers) over the "
             "measured window, per accepted message"]
    if pinning is None:
        notes.append(f"not pinned ({why}): the gateway, PostgreSQL, the load generator and the simulator share "
                     f"{len(cores)} cores, so accepted/s with {workers} workers against 1 is not a scaling "
                     "figure; CPU per accepted message is a per-message cost, comparable across worker counts")
    elif pin_errors:
        notes.append(f"pinned, but {pin_errors[0]}: PostgreSQL shared the gateway's cores")
    return {
        "scenario": "workers",
        "parameters": _parameters(opts) | {"gateway_workers": [1, workers],
                                            "schemas": [r["schema"] for r in runs.values()]},
        "pinning": {"applied": pinning is not None, "why": why, "cores": cores,
                    "gateway_cores": {label: r["gateway_cores"] for label, r in runs.items()},
                    "other_cores": list(pinning.others) if pinning else None, "postgres_pin_errors": pin_errors},
        "scaling_figure": pinning is not None and not pin_errors,
        "runs": runs,
        "ratios": {
            f"workers_{workers}_to_1_accepted_per_s": ratio(many["accepted_per_s"], one["accepted_per_s"]),
            f"workers_{workers}_to_1_cpu_per_message": ratio(many.get("gateway_cpu_ms_per_accepted"),
                                                             one.get("gateway_cpu_ms_per_accepted")),
        },
        "summary": _summary(runs) | {"accepted/s ratio is a scaling figure": "yes" if pinning and not pin_errors
                                      else f"no: {why if pinning is None else pin_errors[0]}"},
        "series": {f"gateway {label}": run.pop("series") for label, run in runs.items()},
        "notes": notes,
    }


async def measure(ui: Ui, label: str, opts: StoreOptions, *, on_postgres: bool = False, workers: int = 1,
                  pinning: Pinning | None = None) -> dict[str, Any]:
    """One gateway (on SQLite, or on a fresh PostgreSQL schema), its sessions, the api-only load; its figures."""
    gateway_cores = pinning.for_gateway(workers) if pinning else None
    other_cores = pinning.others if pinning else None
    load = dataclasses.replace(opts.load, cores=other_cores)
    async with AsyncExitStack() as stack:
        extra, schema = None, None
        if on_postgres:
            url, schema = await stack.enter_async_context(fresh_schema(opts.postgres, "bench_stores"))
            extra = {"GATEWAY_DATABASE_URL": url}
        target = await stack.enter_async_context(open_target(
            spawn=True, url=None, sim_url=None, token=None, gateway_pid=None, autopair=opts.autopair,
            extra_env=extra, workers=workers, gateway_cores=gateway_cores, other_cores=other_cores))
        ui.log(f"{label}: gateway {target.url} ({workers} worker{'s' if workers > 1 else ''}, "
               f"{'schema ' + schema if schema else 'SQLite'}), preparing {opts.sessions} sessions")
        sessions = await ready_sessions(target, opts.sessions, prefix=label)
        if workers > 1:
            await wait_spread(target, sessions)
        sampler = Sampler(target.gateway_pid, tree=True)
        backends = Backends(opts.postgres, schema, cores=other_cores) if schema else None
        endpoint = Endpoint.from_url(target.url)
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            if backends is not None:
                await nursery.start(backends.run)
            sampler.mark("load")
            sampler.sample()  # both ends of the measured window fall between samples
            result = await run_phase(ui, f"{label}: send --api-only", endpoint,
                                     send_requests(endpoint, sessions, load.connections, send_at=day_ahead()), load)
            sampler.sample()
            processes = len(tree_pids(target.gateway_pid)) if target.gateway_pid else None
            if backends is not None:
                await backends.sample()
            sampler.mark("done")
            nursery.cancel_scope.cancel()
    out = load_summary(result)
    add_gateway_cpu(out, sampler, result)
    out = {"store": "postgresql" if on_postgres else "sqlite", "gateway_workers": workers,
           "gateway_processes": processes, "schema": schema,
           "gateway_cores": list(gateway_cores) if gateway_cores else None, **out}
    if backends is not None:
        out["postgres_backends"] = _backends_summary(backends, result.wall_start, result.duration, out["accepted"])
    out["series"] = series(result)
    out["resources"] = sampler.to_json()
    return out


def _backends_summary(backends: Backends, start: float, duration: float, accepted: int) -> dict[str, Any]:
    cpu = backends.cpu_during(start, start + duration)
    if cpu is None:
        return {"available": False, "reason": backends.unavailable or "too few samples"}
    return {"available": True, "backends": len(backends.pids), "cpu_cores": round(cpu / duration, 2),
            "cpu_ms_per_accepted": round(cpu / accepted * 1000, 4) if accepted else None,
            **({"pin_error": backends.pin_error} if backends.pin_error else {})}


async def wait_spread(target: Target, sessions: list[BenchSession], *, timeout: float = SPREAD_TIMEOUT) -> None:
    """Until every worker is an alive node holding its fair share of the sessions (as `gateway nodes` lists
    them) and every session is CONNECTED again: sessions handed over during the load would answer 409."""
    assert target.spawned is not None
    leases: list[int] = []
    with trio.move_on_after(timeout) as waited:
        while True:
            leases = _alive_leases(await run_admin(target.spawned.env, "nodes"))
            if len(leases) == target.nodes and sum(leases) == len(sessions) and max(leases) - min(leases) <= 1:
                await wait_connected(target, sessions, timeout=timeout)
                return
            await trio.sleep(1.0)
    if waited.cancelled_caught:
        raise SetupError(f"the {target.nodes} workers did not share the {len(sessions)} sessions within "
                         f"{timeout:g}s (`gateway nodes`: {leases})")


def _alive_leases(listing: str) -> list[int]:
    """Sessions held by each alive node, from `gateway nodes` (node, state, sessions, heartbeat, address)."""
    out = []
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3 and cols[1] == "alive" and cols[2].isdigit():
            out.append(int(cols[2]))
    return out


def _parameters(opts: StoreOptions) -> dict[str, Any]:
    return {"sessions": opts.sessions, "connections": opts.load.connections, "duration_s": opts.load.duration,
            "warmup_s": opts.load.warmup, "load_workers": opts.load.workers, "api_only": True}


def _summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, r in runs.items():
        out[f"{label} accepted/s"] = r["accepted_per_s"]
        out[f"{label} gateway CPU ms/message"] = r.get("gateway_cpu_ms_per_accepted")
        pg = r.get("postgres_backends") or {}
        if pg.get("available"):
            out[f"{label} PostgreSQL backends CPU ms/message"] = pg["cpu_ms_per_accepted"]
    return out
