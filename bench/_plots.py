"""PNG plots of a result (matplotlib, no display): latency, throughput and RSS over time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MIB = 1024 * 1024


def write_plots(result: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    written = []
    runs = result.get("series") or {}
    rounds = len(result.get("rounds") or [])
    # with several rounds, the series are the median round's (and the batches, run once)
    of = f" (single sends: the median round of {rounds})" if rounds > 1 else ""
    if runs:
        written.append(_plot(out_dir / f"{stem}-latency.png", f"{stem}: latency per second{of}",
                             "seconds into the run", "latency (ms)", [
                                 (f"{name} {pct}", s["t"], s[f"{pct}_ms"])
                                 for name, s in runs.items() for pct in ("p50", "p99")], log=True))
        written.append(_plot(out_dir / f"{stem}-throughput.png", f"{stem}: throughput per second{of}",
                             "seconds into the run", "requests/s", [
                                 (f"{name} ({'accepted' if name.startswith('gateway') else 'answered'})", s["t"],
                                  s["ok_rps"] if name.startswith("gateway") else s["rps"])
                                 for name, s in runs.items()]))
    res = result.get("resources") or {}
    if res.get("t"):
        written.append(_resources(out_dir / f"{stem}-rss.png", stem, res))
    for label, run in (result.get("runs") or {}).items():  # one gateway per run (stores, workers)
        if (run.get("resources") or {}).get("t"):
            written.append(_resources(out_dir / f"{stem}-rss-{label}.png", f"{stem} {label}", run["resources"]))
    return written


def _plot(path: Path, title: str, xlabel: str, ylabel: str, lines: list[tuple[str, list[float], list[float]]],
          *, log: bool = False) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    for label, xs, ys in lines:
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _resources(path: Path, stem: str, res: dict[str, Any]) -> Path:
    fig, (ax, load) = plt.subplots(2, 1, figsize=(9, 6.5), dpi=100, sharex=True, height_ratios=[2, 1])
    ax.plot(res["t"], [r / MIB for r in res["rss_bytes"]], color="tab:blue", label="gateway RSS (MiB)")
    ax.set_ylabel("RSS (MiB)", color="tab:blue")
    ax.grid(True, alpha=0.3)
    fds = ax.twinx()
    fds.plot(res["t"], res["fds"], color="tab:orange", linewidth=1, label="open fds")
    fds.set_ylabel("open file descriptors", color="tab:orange")
    for mark in res.get("marks", []):
        ax.axvline(mark["t"], color="grey", linestyle=":", linewidth=1)
        ax.text(mark["t"], ax.get_ylim()[1], f" {mark['label']}", rotation=90, va="top", fontsize="x-small")
    ax.set_title(f"{stem}: gateway RSS and open fds over time")
    t, cpu = res["t"], res.get("cpu_s", [])
    if len(cpu) == len(t) > 1:
        gateway = [0.0] + [100 * (cpu[i] - cpu[i - 1]) / max(t[i] - t[i - 1], 1e-9) for i in range(1, len(t))]
        load.plot(t, gateway, color="tab:green", linewidth=0.8, label="gateway CPU (% of one core)")
    busy = res.get("machine_busy", [])
    if len(busy) == len(t):
        load.plot(t, [100 * b * (os.cpu_count() or 1) for b in busy], color="grey", linewidth=0.8,
                  label="whole machine busy (% of one core)")
    load.set_ylabel("CPU %")
    load.set_xlabel("seconds since bench started watching the gateway")
    load.grid(True, alpha=0.3)
    load.legend(loc="upper left", fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
