"""A result on disk (JSON and PNGs) and on screen (a rich table of the headline figures)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._plots import write_plots
from ._procs import machine_description


def _clean(value: Any) -> Any:
    """JSON without NaN (empty per-second buckets become null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def finish(result: dict[str, Any], out_dir: Path, *, argv: list[str] | None = None) -> tuple[Path, list[Path]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = result["scenario"]
    result = {
        "scenario": stem,
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        **{k: v for k, v in result.items() if k != "scenario"},
    }
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(_clean(result), indent=1) + "\n")
    plots = write_plots(result, out_dir, stem)
    return path, plots


def headline(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for section in ("gateway", "batch", "quart", "baseline"):
        s = result.get(section)
        if not isinstance(s, dict) or "requests_per_s" not in s:
            continue
        lat = s.get("accepted_latency_ms") if section in ("gateway", "batch") else s.get("latency_ms")
        rows.append((f"{section} req/s", f"{s['requests_per_s']:,.0f} (accepted {s['accepted_per_s']:,.0f}/s)"))
        if "messages_accepted_per_s" in s:
            rows.append((f"{section} messages/s", f"{s['messages_accepted_per_s']:,.0f} accepted"))
        if "gateway_cpu_ms_per_accepted" in s:
            who = "gateway CPU" if section == "gateway" else f"{section}: gateway CPU"
            rows.append((who, f"{s['gateway_cpu_ms_per_accepted']:.3f} ms per accepted message"))
        if "server_cpu_ms_per_request" in s:
            rows.append((f"{section} CPU", f"{s['server_cpu_ms_per_request']:.3f} ms per request"))
        if lat and lat.get("count"):
            rows.append((f"{section} latency ms", "  ".join(f"{p} {lat[f'{p}_ms']:.2f}"
                                                            for p in ("p50", "p90", "p99", "p99.9"))))
        if s.get("errors"):
            rows.append((f"{section} errors", ", ".join(f"{k}: {v}" for k, v in s["errors"].items())))
    rounds = result.get("rounds") or []
    for i, r in enumerate(rounds if len(rounds) > 1 else [], 1):
        rows.append((f"round {i} of {len(rounds)}", f"bare {r['bare_per_s']:,.0f}  quart {r['quart_per_s']:,.0f}  "
                     f"gateway {r['gateway_per_s']:,.0f}/s: {_fmt(r['ratio_accepted_per_s'])}x bare"))
    for key, value in (result.get("ratios") or {}).items():
        # keys that name both sides (`a_to_b_...`) are not ratios to the bare ceiling
        rows.append((f"ratio: {key}" if "_to_" in key else f"ratio to bare: {key}",
                     "n/a" if value is None else f"{value:.3f}x"))
    rows.extend((k, _fmt(v)) for k, v in (result.get("summary") or {}).items())
    e2e = result.get("end_to_end") or {}
    if e2e.get("accepted_to_sent_ms", {}).get("count"):
        a = e2e["accepted_to_sent_ms"]
        rows.append(("accepted → sent ms", f"p50 {a['p50_ms']:.1f}  p99 {a['p99_ms']:.1f}  (n={a['count']})"))
    hook = e2e.get("webhook") or {}
    if hook:
        if hook.get("available"):
            w = hook["accepted_to_webhook_ms"]
            rows.append(("accepted → webhook ms", (f"p50 {w.get('p50_ms', 0):.1f}  p99 {w.get('p99_ms', 0):.1f}"
                                                   f"  (n={w.get('count', 0)})")))
        else:
            rows.append(("accepted → webhook", f"unavailable: {hook.get('reason')}"))
    for key, met in (result.get("targets") or {}).items():
        rows.append((f"target {key}", {True: "MET", False: "NOT MET", None: "n/a"}[met]))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_summary(result: dict[str, Any], path: Path, plots: list[Path], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"bench {result['scenario']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in headline(result):
        table.add_row(what, value)
    console.print(table)
    console.print(f"result: {path}")
    for plot in plots:
        console.print(f"plot:   {plot}")
