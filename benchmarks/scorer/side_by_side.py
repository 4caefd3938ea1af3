"""Unary Score of the working tree's scorer against another commit's, side by side in one run.

A change to the scorer's hot path moves unary Score by a few percent, less than one run of
``bench_scorer.py`` moves between runs on this shared box. This compares the two versions in
the same run instead: one real ``tritonserver``, the scorer of ``--before`` (its ``scorer`` and
``common`` packages exported with ``git archive``, everything else from this checkout) and the
working tree's scorer as two processes, and a plain grpc.aio echo server; then alternating
rounds of unary Score of formula answers at concurrency 64, each round echo first and the two
scorers in turns. Prints each one's rate as a share of the echo's, p50/p99 and the event-loop
CPU per call. Nothing is written; every load loop is bounded and talks to 127.0.0.1 only.

Usage: ``.venv/bin/python benchmarks/scorer/side_by_side.py --before <commit>``
(or ``make bench-scorer-ab BEFORE=<commit>``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scorer import (  # noqa: E402
    ECHO_SERVER,
    CpuMeter,
    UnaryRun,
    bench_unary,
    formula_item,
    formulas,
    summarise,
    wait_port,
    wait_serving,
)
from stack.backing import TritonServer, free_port  # noqa: E402
from stack.runner import MODEL_REPOSITORY, REPO_ROOT  # noqa: E402
from xlinterview.v1 import scorer_pb2  # noqa: E402

EXPORTED = ("scorer", "common")
CONCURRENCY = 64


def export(commit: str, into: Path) -> None:
    """Writes ``commit``'s copy of the packages in :data:`EXPORTED` into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit, *EXPORTED],
        check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


async def compare(addresses: dict[str, str], pids: dict[str, int], rounds: int, seconds: float) -> str:
    """Alternating rounds against every server; returns the Markdown table."""
    item = formula_item()

    def requests(count: int, offset: int) -> list[bytes]:
        return [
            scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id=str(i), text=text)).SerializeToString()
            for i, text in enumerate(formulas(count, offset))
        ]

    # More answers than a scorer gets through (well under 4,000 calls a second here), and the
    # warm-up's apart: a scorer never meets an answer twice, so its formula cache never helps.
    payloads = requests(max(20_000, int(rounds * seconds * 4_000)), 2 * 10**7)
    warm_up = requests(1_000, 3 * 10**7)
    method = {name: "/bench.Echo/Echo" if name == "echo" else "/xlinterview.v1.Scorer/Score" for name in addresses}
    channels = {name: grpc.aio.insecure_channel(address) for name, address in addresses.items()}
    try:
        calls = {name: channels[name].unary_unary(method[name]) for name in addresses}
        for call in calls.values():
            await bench_unary(call, warm_up, CONCURRENCY, 1.0)
        runs: dict[str, list[UnaryRun]] = {name: [] for name in addresses}
        meters = {name: CpuMeter(pid) for name, pid in pids.items()}
        # The two scorers are separate processes with caches of their own: both send the same answers.
        sent = dict.fromkeys(addresses, 0)
        for index in range(rounds):
            scorers = ["before", "after"] if index % 2 == 0 else ["after", "before"]
            for name in ["echo", *scorers]:
                run = await meters[name].run(bench_unary(calls[name], payloads, CONCURRENCY, seconds, first=sent[name]))
                sent[name] += run[0]
                runs[name].append(run)
    finally:
        for channel in channels.values():
            await channel.close()
    echo_rate = summarise(runs["echo"])[0]
    lines = [
        "| server | calls/s | share of the echo | p50 ms | p99 ms | event-loop CPU µs per call |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("echo", "before", "after"):
        rate, p50, p99 = summarise(runs[name])
        lines.append(
            f"| {name} | {rate:,.0f} | {rate / echo_rate:.0%} | {p50:.1f} | {p99:.1f} | {meters[name].per_call_us()[1]:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit whose scorer is compared with the working tree's")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of each server's turn in a round")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="scorer-ab-") as tmp, TritonServer(MODEL_REPOSITORY, Path(tmp) / "triton") as triton:
        export(args.before, Path(tmp) / "before")
        ports: list[int] = []
        while len(ports) < 3:  # picked once Triton holds its ports
            port = free_port()
            if port not in ports:
                ports.append(port)
        addresses = {name: f"127.0.0.1:{port}" for name, port in zip(("echo", "before", "after"), ports, strict=True)}
        env = {**os.environ, "TRITON_URL": triton.url, "XLI_LOG_LEVEL": "WARNING"}
        env.pop("REDIS_URL", None)  # every answer is scored by the models
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        processes = {
            "echo": subprocess.Popen([sys.executable, "-c", ECHO_SERVER, addresses["echo"]]),
            **{
                # Run from the temporary directory, so the checkout is not the first place
                # Python looks: "before" finds its exported packages first, "after" the checkout's.
                name: subprocess.Popen(
                    [sys.executable, "-m", "scorer"],
                    env={
                        **env,
                        "XLI_SCORER_ADDRESS": addresses[name],
                        "PYTHONPATH": os.pathsep.join([str(Path(tmp) / "before"), path]) if name == "before" else path,
                    },
                    cwd=tmp,
                )
                for name in ("before", "after")
            },
        }
        try:
            for name in ("before", "after"):
                wait_serving(addresses[name], processes[name])
            wait_port(addresses["echo"])
            pids = {name: process.pid for name, process in processes.items()}
            markdown = asyncio.run(compare(addresses, pids, args.rounds, args.seconds))
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(timeout=15)
    print(
        f"Unary Score, formula answers, concurrency {CONCURRENCY}: before = {args.before}, after = the working tree; "
        f"{args.rounds} alternating rounds of {args.seconds:g} s per server; 1-minute load average before/after: "
        f"{load_before:.1f}/{os.getloadavg()[0]:.1f}.\n"
    )
    print(markdown)


if __name__ == "__main__":
    main()
