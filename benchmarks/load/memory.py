"""Memory per active interview, measured at 1k, 3k and 10k sessions and projected to 100k.

Starts the whole stack on embedded defaults in a temporary directory, then grows the
number of active interviews level by level. Each new interview is created through the
admin API, its invite accepted (the session starts), its first question answered (one
stored, scored turn), and its candidate page's live-event stream opened and held
(``GET /api/v1/sessions/{id}/events``, one HTTP connection per candidate, as a browser
keeps it). At each level, once the stack settles, it records every process group's
proportional set size (PSS: shared pages split among the processes sharing them, so
PostgreSQL's shared buffers count once), PostgreSQL's database size, Redis's
``used_memory`` and client count, and the gateway's open file descriptors.

A least-squares line through the levels gives the bytes each further active interview
costs (its slope) and the projection to 100,000. The streams are held by this process,
whose memory is not counted.

    make bench-memory
    .venv/bin/python benchmarks/load/memory.py --levels 100,300 --no-readme   # a smoke run

Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
import redis

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO_ROOT)]

from answers import rest_answer  # noqa: E402
from procstats import GROUPS, group_of, raise_open_files  # noqa: E402
from report import publish  # noqa: E402
from run import (  # noqa: E402
    RATE_LIMIT_ENV,
    README,
    REMOTE_ENV,
    Candidate,
    accept_all,
    code_state,
    database_size,
    machine,
    seed,
)
from stack.runner import Stack  # noqa: E402
from stack.settings import StackSettings  # noqa: E402

SECTION = "memory"
PROJECT_TO = 100_000
MB = 1024 * 1024
# Services and backing servers whose memory is counted (locust does not run here).
MEASURED = tuple(g for g in GROUPS if g != "locust")


@dataclass
class Level:
    """What one level measured."""

    sessions: int
    pss: dict[str, int]
    database_bytes: int
    redis_used_bytes: int
    redis_clients: int
    gateway_fds: int
    seconds: float


class HeldStreams:
    """Opens candidates' event streams and keeps them open, reading what arrives."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self, candidates: Sequence[Candidate], concurrency: int = 32) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(candidate: Candidate) -> None:
            async with gate:
                reader, writer = await asyncio.open_connection(self._host, self._port)
                writer.write(
                    f"GET /api/v1/sessions/{candidate.session_id}/events HTTP/1.1\r\nHost: {self._host}\r\n"
                    f"Authorization: Bearer {candidate.token}\r\nAccept: text/event-stream\r\n\r\n".encode()
                )
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b": subscribed"), 30)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"event stream refused: {head[:200]!r}")
                self._writers.append(writer)
                self._tasks.append(asyncio.create_task(self._drain(reader)))

        await asyncio.gather(*(one(c) for c in candidates))

    @staticmethod
    async def _drain(reader: asyncio.StreamReader) -> None:
        while await reader.read(4096):
            pass

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def answer_first_questions(base_url: str, candidates: Sequence[Candidate], concurrency: int = 8) -> None:
    """Each candidate answers the question the interview started with, once."""
    rng = random.Random(20261126)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        gate = asyncio.Semaphore(concurrency)

        async def answer(candidate: Candidate) -> None:
            _, text = rest_answer(candidate.question, rng)
            async with gate:
                reply = await client.post(
                    f"/api/v1/sessions/{candidate.session_id}/answers",
                    json={"item_id": candidate.item_id, "answer": text, "idempotency_key": "memory-1"},
                    headers={"authorization": f"Bearer {candidate.token}"},
                )
                reply.raise_for_status()

        await asyncio.gather(*(answer(c) for c in candidates))


def pss_by_group() -> dict[str, int]:
    """Bytes of PSS per process group, over every descendant of this process."""
    totals = dict.fromkeys(MEASURED, 0)
    for process in psutil.Process().children(recursive=True):
        group = group_of(process)
        if group not in totals:
            continue
        try:
            totals[group] += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return totals


def gateway_fds(stack: Stack) -> int:
    """Open file descriptors of the gateway process (its workers too)."""
    root = psutil.Process(stack.process("gateway").pid)
    return sum(p.num_fds() for p in [root, *root.children(recursive=True)])


def fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of ys against xs."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(intercept), float(slope)


def table(levels: list[Level]) -> str:
    """Per level, per-session slope and the 100k projection, in MB (slopes in KB)."""
    columns: list[tuple[str, list[float]]] = [(f"{g} PSS", [lv.pss[g] for lv in levels]) for g in MEASURED]
    columns += [
        ("PostgreSQL on disk", [lv.database_bytes for lv in levels]),
        ("Redis used_memory", [lv.redis_used_bytes for lv in levels]),
    ]
    total = [sum(lv.pss.values()) for lv in levels]
    columns.append(("all processes PSS", total))
    sessions = [lv.sessions for lv in levels]
    lines = [
        "| | " + " | ".join(f"{lv.sessions:,} sessions" for lv in levels) + " | per extra session | "
        f"projected at {PROJECT_TO:,} |",
        "|---|" + "---|" * (len(levels) + 2),
    ]
    for name, values in columns:
        intercept, slope = fit(sessions, values)
        cells = " | ".join(f"{v / MB:,.1f} MB" for v in values)
        lines.append(f"| {name} | {cells} | {slope / 1024:,.1f} KB | {(intercept + slope * PROJECT_TO) / MB:,.0f} MB |")
    lines.append("| Redis clients | " + " | ".join(str(lv.redis_clients) for lv in levels) + " | | |")
    lines.append("| gateway open fds | " + " | ".join(f"{lv.gateway_fds:,}" for lv in levels) + " | | |")
    return "\n".join(lines)


async def grow(stack: Stack, levels: list[int], settle_s: float) -> list[Level]:
    """Adds interviews up to each level and measures there."""
    streams = HeldStreams(stack.settings.host, stack.settings.gateway_port)
    measured: list[Level] = []
    active = 0
    client = redis.Redis.from_url(stack.redis_url)
    try:
        for level in levels:
            started = time.monotonic()
            invites = await seed(stack.gateway_url, level - active)
            candidates = await accept_all(stack.gateway_url, invites)
            await answer_first_questions(stack.gateway_url, candidates)
            await streams.open(candidates)
            active = level
            await asyncio.sleep(settle_s)
            info = client.info()
            measured.append(Level(
                sessions=level,
                pss=pss_by_group(),
                database_bytes=await database_size(stack.database_url),
                redis_used_bytes=int(info["used_memory"]),
                redis_clients=int(info["connected_clients"]),
                gateway_fds=gateway_fds(stack),
                seconds=time.monotonic() - started,
            ))
            print(f"{level:,} active sessions measured ({measured[-1].seconds:.0f} s to add them)", flush=True)
    finally:
        await streams.close()
        client.close()
    return measured


def main() -> None:
    """Measures each level and writes the ``memory`` section of benchmarks/README.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1000,3000,10000", help="active sessions to measure at, ascending")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before measuring a level")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args()
    levels = sorted({int(v) for v in args.levels.split(",")})
    # Every held stream is a socket here and in the gateway.
    raise_open_files(levels[-1] + 1024)
    os.environ.update(RATE_LIMIT_ENV)
    for name in REMOTE_ENV:
        os.environ.pop(name, None)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        settings = StackSettings.isolated(Path(tmp) / "data")
        print(f"starting the stack in {settings.data_dir} ...", flush=True)
        with Stack(settings) as stack:
            measured = asyncio.run(grow(stack, levels, args.settle))
    load_after = os.getloadavg()[0]
    section = "\n".join([
        "## memory (`make bench-memory`)",
        "",
        f"{dt.date.today().isoformat()}, {code_state()}, {machine()}; the stack on embedded PostgreSQL, Redis and "
        f"Triton (CPU), one gateway worker. 1-minute load average before/after: {load_before:.1f}/{load_after:.1f}. "
        "Each active interview: created, invite accepted, first question answered and scored, and its candidate "
        "page's event stream held open (one HTTP connection each). Memory is PSS (shared pages split among the "
        "processes sharing them); the per-session column is the slope of a least-squares line through the levels, "
        f"the last column that line at {PROJECT_TO:,}.",
        "",
        table(measured),
        "",
        "What 100k would need besides memory: one socket per open candidate page in the gateway (100k file "
        "descriptors, so several gateway processes or hosts, each with a raised open-files limit), while every "
        "gateway process keeps one Redis subscriber connection for all its streams. PostgreSQL's on-disk growth is "
        "per interview stored, not per interview active; it stays after the interview ends.",
    ])
    publish(README, SECTION, section, write=not args.no_readme)


if __name__ == "__main__":
    main()
