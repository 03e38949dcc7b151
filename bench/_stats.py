"""Numbers from samples: HDR-histogram percentiles, per-second series, growth slopes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
from hdrh.histogram import HdrHistogram

PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
_US: Final = 1_000_000
_HIGHEST_US: Final = 3600 * _US  # an hour: anything slower is clamped


def latency_summary(seconds: np.ndarray | Sequence[float]) -> dict[str, Any]:
    """p50/p90/p99/p99.9, mean and max in milliseconds, from an HDR histogram (3 significant digits)."""
    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    hist = HdrHistogram(1, _HIGHEST_US, 3)
    micros = np.clip(np.rint(values * _US), 1, _HIGHEST_US).astype(np.int64)
    uniq, counts = np.unique(micros, return_counts=True)
    for value, count in zip(uniq.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    out: dict[str, Any] = {"count": int(values.size)}
    for p in PERCENTILES:
        out[f"p{p:g}_ms"] = hist.get_value_at_percentile(p) / 1000
    out["mean_ms"] = hist.get_mean_value() / 1000
    out["max_ms"] = hist.get_max_value() / 1000
    return out


def per_second(starts: np.ndarray, latencies: np.ndarray, duration: float, ok: np.ndarray | None = None
               ) -> dict[str, list[float]]:
    """Per one-second bucket (by when requests were due): requests/s, ok/s, p50 and p99 in ms."""
    buckets = max(1, int(np.ceil(duration)))
    idx = np.clip(starts.astype(np.int64), 0, buckets - 1)
    total = np.bincount(idx, minlength=buckets)
    good = np.bincount(idx[ok], minlength=buckets) if ok is not None else total
    p50, p99 = [], []
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(buckets + 1))
    for b in range(buckets):
        chunk = latencies[order[bounds[b]:bounds[b + 1]]]
        p50.append(float(np.percentile(chunk, 50) * 1000) if chunk.size else float("nan"))
        p99.append(float(np.percentile(chunk, 99) * 1000) if chunk.size else float("nan"))
    return {"t": [float(b) for b in range(buckets)], "rps": total.astype(float).tolist(),
            "ok_rps": good.astype(float).tolist(), "p50_ms": p50, "p99_ms": p99}


def slope(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope (value units per second); 0 with fewer than two points."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.size < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, v, 1)[0])


def growth(times: Sequence[float], values: Sequence[float]) -> dict[str, float]:
    """Linear fit over a window: slope per minute, and the fitted change as a share of the fitted start."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.size < 2 or np.ptp(t) == 0:
        return {"slope_per_min": 0.0, "growth_pct": 0.0, "start": float(v[0]) if v.size else 0.0,
                "end": float(v[-1]) if v.size else 0.0}
    k, c = np.polyfit(t, v, 1)
    start, end = k * t[0] + c, k * t[-1] + c
    return {"slope_per_min": float(k * 60), "growth_pct": float((end - start) / start * 100) if start else 0.0,
            "start": float(start), "end": float(end), "min": float(v.min()), "max": float(v.max())}


def value_at(times: Sequence[float], values: Sequence[float], at: float) -> float | None:
    """A cumulative counter (CPU seconds) at `at`, interpolated between the samples around it; None outside."""
    if len(times) < 2 or not times[0] <= at <= times[-1]:
        return None
    return float(np.interp(at, times, values))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def met(value: float | None, test: Callable[[float], bool]) -> bool | None:
    """Whether a target is met; None when the figure is missing."""
    return None if value is None else bool(test(value))
