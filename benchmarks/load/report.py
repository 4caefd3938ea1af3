"""Turns a load run's measurements into the Markdown section and the PNG plots.

Reads locust's ``--csv`` files (``*_stats.csv`` for the whole run,
``*_stats_history.csv`` with ``--csv-full-history`` for the per-second view) and
the :class:`procstats.ProcessSampler` samples.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

from procstats import GROUPS, ProcessSampler  # noqa: E402

AGGREGATED = "Aggregated"
MB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """One of issue #8's latency targets: a request type's p99 bound in milliseconds."""

    label: str
    pattern: str
    p99_ms: float


TARGETS = (
    Target("submit answer p99 < 1 s", r"^submit answer \[(formula|free_text|multiple_choice|numeric)\]$", 1000.0),
    Target("start interview p99 < 200 ms", r"^start interview", 200.0),
    Target("get question p99 < 100 ms", r"^get question$", 100.0),
    Target("health p99 < 50 ms", r"^health \(liveness\)$", 50.0),
)
REPORTS_PER_MIN_TARGET = 1000
REQUESTS_PER_MIN_TARGET = 100_000


@dataclass(frozen=True)
class Row:
    """One line of locust's ``*_stats.csv``."""

    kind: str
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max_ms: float


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def read_stats(path: Path) -> list[Row]:
    """Rows of ``*_stats.csv``, the Aggregated row last."""
    with path.open(newline="") as handle:
        return [
            Row(r["Type"], r["Name"], int(r["Request Count"]), int(r["Failure Count"]), _number(r["Requests/s"]),
                _number(r["50%"]), _number(r["95%"]), _number(r["99%"]), _number(r["Max Response Time"]))
            for r in csv.DictReader(handle)
        ]


def read_history(path: Path) -> dict[str, list[dict[str, float]]]:
    """``*_stats_history.csv`` by request name: seconds since start, users, rates and current percentiles."""
    series: dict[str, list[dict[str, float]]] = {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return series
    start = min(int(r["Timestamp"]) for r in rows)
    for r in rows:
        series.setdefault(r["Name"], []).append({
            "t": int(r["Timestamp"]) - start, "users": _number(r["User Count"]), "rps": _number(r["Requests/s"]),
            "fps": _number(r["Failures/s"]), "p50": _number(r["50%"]), "p95": _number(r["95%"]),
            "p99": _number(r["99%"]),
        })
    return series


def plot(history: dict[str, list[dict[str, float]]], sampler: ProcessSampler, out_dir: Path) -> list[Path]:
    """Writes latency.png, throughput.png and cpu.png; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = history.get(AGGREGATED, [])
    t = [p["t"] for p in total]
    paths = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for key in ("p50", "p95", "p99"):
        ax.plot(t, [p[key] for p in total], label=f"all requests {key}")
    for name, points in sorted(history.items()):
        if name.startswith("submit answer [") and "same key" not in name:
            ax.plot([p["t"] for p in points], [p["p99"] for p in points], linestyle="--", label=f"{name} p99")
    ax.set(xlabel="seconds since start", ylabel="latency (ms, last ~10 s window)", yscale="log",
           title="Latency percentiles over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    users = ax.twinx()
    users.plot(t, [p["users"] for p in total], color="grey", alpha=0.5)
    users.set_ylabel("users (grey)")
    paths.append(_save(fig, out_dir / "latency.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(t, [p["rps"] for p in total], label="all requests/s")
    ax.plot(t, [p["fps"] for p in total], label="failures/s", color="red", linewidth=2)
    for name in ("start interview (accept invite)", "report"):
        points = history.get(name, [])
        ax.plot([p["t"] for p in points], [p["rps"] for p in points], label=f"{name}/s")
    # Each answer kind is its own row and starts at its own time: add them up per second.
    submits: dict[float, float] = {}
    for name, points in history.items():
        if name.startswith("submit answer [") and "same key" not in name:
            for p in points:
                submits[p["t"]] = submits.get(p["t"], 0.0) + p["rps"]
    ax.plot(sorted(submits), [submits[k] for k in sorted(submits)], label="submit answer/s", color="purple")
    ax.set(xlabel="seconds since start", ylabel="requests per second", title="Throughput over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    paths.append(_save(fig, out_dir / "throughput.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in GROUPS:
        ax.plot(sampler.times, sampler.groups[name].cpu_percent, label=name)
    ax.axhline(100 * _cores(), color="black", linestyle=":", label="all cores")
    ax.set(xlabel="seconds since locust started", ylabel="CPU % of one core", title="CPU per process group")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    paths.append(_save(fig, out_dir / "cpu.png"))
    return paths


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(value: float) -> str:
    return f"{value:,.0f}"


def request_table(rows: list[Row], seconds: float) -> str:
    """Per request type: count, failures, rate, p50/p95/p99/max."""
    lines = ["| request | type | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r.name}**" if r.name == AGGREGATED else r.name
        lines.append(f"| {name} | {r.kind} | {r.requests:,} | {r.failures:,} | {r.requests / seconds:,.1f} | "
                     f"{_ms(r.p50)} | {_ms(r.p95)} | {_ms(r.p99)} | {_ms(r.max_ms)} |")
    return "\n".join(lines)


def process_table(sampler: ProcessSampler, requests: int) -> str:
    """Per process group: CPU (mean, peak, per request) and resident memory."""
    lines = ["| process | mean CPU % | peak CPU % | CPU s | CPU µs / request | mean RSS MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for name in GROUPS:
        g = sampler.groups[name]
        per_request = 1e6 * g.cpu_seconds / requests if requests else 0.0
        lines.append(f"| {name} | {g.mean_cpu:.0f} | {g.peak_cpu:.0f} | {g.cpu_seconds:.1f} | {per_request:,.0f} | "
                     f"{g.mean_rss / MB:,.0f} | {g.peak_rss / MB:,.0f} |")
    total_cpu = sum(g.cpu_seconds for g in sampler.groups.values())
    mean_total = sum(g.mean_cpu for g in sampler.groups.values())
    lines.append(f"| **all** | {mean_total:.0f} (of {100 * _cores()}) | | {total_cpu:.1f} | "
                 f"{1e6 * total_cpu / requests if requests else 0:,.0f} | | |")
    return "\n".join(lines)


TARGET_CANDIDATES = 10_000
TARGET_THINK_S = 30.0


def versus_target(candidates: int, think_s: float) -> str:
    """How a run's scenario differs from issue #8's (10,000 candidates, 30 s think time)."""
    differences = []
    if candidates != TARGET_CANDIDATES:
        differences.append(f"{candidates:,} candidates instead of {TARGET_CANDIDATES:,}")
    if think_s != TARGET_THINK_S:
        differences.append(f"a {think_s:g} s think time instead of {TARGET_THINK_S:g} s")
    if not differences:
        return "the target scenario"
    # The candidates' requests a second scale with users / think time.
    share = (candidates / think_s) / (TARGET_CANDIDATES / TARGET_THINK_S)
    return f"{' and '.join(differences)}, {share:.0%} of the target scenario's request rate"


def target_lines(rows: list[Row], seconds: float) -> list[str]:
    """Issue #8's targets with the measured figure and met / not met."""
    lines = []
    for target in TARGETS:
        matched = [r for r in rows if re.search(target.pattern, r.name)]
        if not matched:
            lines.append(f"- {target.label}: not measured in this run")
            continue
        worst = max(matched, key=lambda r: r.p99)
        failures = sum(r.failures for r in matched)
        verdict = "met" if worst.p99 < target.p99_ms and failures == 0 else "NOT met"
        lines.append(f"- {target.label}: {verdict} — p99 {_ms(worst.p99)} ms ({worst.name}), {failures:,} failures")
    reports = sum(r.requests for r in rows if r.name == "report")
    per_min = 60 * reports / seconds
    lines.append(f"- ≥ {REPORTS_PER_MIN_TARGET:,} reports/min: {'met' if per_min >= REPORTS_PER_MIN_TARGET else 'NOT met'} "
                 f"— {per_min:,.0f} reports/min")
    total = next((r for r in rows if r.name == AGGREGATED), None)
    if total is not None:
        rate = 60 * total.requests / seconds
        verdict = "met" if rate >= REQUESTS_PER_MIN_TARGET and total.failures == 0 else "NOT met"
        lines.append(f"- ≥ {REQUESTS_PER_MIN_TARGET:,} requests/min, 0 errors: {verdict} — {rate:,.0f} requests/min, "
                     f"{total.failures:,} failures (this run is bounded by think time, not a throughput test)")
    return lines


def busiest(sampler: ProcessSampler) -> str:
    """One sentence naming where the CPU went."""
    ranked = sorted(GROUPS, key=lambda n: sampler.groups[n].cpu_seconds, reverse=True)
    total = sum(g.cpu_seconds for g in sampler.groups.values()) or 1.0
    shares = ", ".join(f"{n} {100 * sampler.groups[n].cpu_seconds / total:.0f}%" for n in ranked[:4])
    return f"Share of the CPU the measured processes used: {shares}."


def write_section(readme: Path, name: str, markdown: str) -> None:
    """Replaces ``<!-- name:start -->`` ... ``<!-- name:end -->`` in ``readme`` (appends it when missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{markdown.rstrip()}\n{end}"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    head, found, rest = text.partition(start)
    if found and end in rest:
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    readme.write_text(text)


def publish(readme: Path, name: str, markdown: str, write: bool) -> None:
    """Prints a benchmark's section and, when ``write``, puts it in ``readme`` (see :func:`write_section`)."""
    print(markdown)
    if write:
        write_section(readme, name, markdown)
        print(f"\nupdated {readme}")
