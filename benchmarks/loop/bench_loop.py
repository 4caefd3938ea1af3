"""The gRPC services on uvloop against asyncio's default loop, side by side on one stack.

Starts the stack on embedded defaults in a temporary directory (``stack.runner.Stack``): its
orchestrator runs on uvloop (``orchestrator/__main__.py``), its scorer on asyncio's own loop.
Beside them it starts the same two services on the other loop, over the same PostgreSQL, Redis
and Triton (both orchestrators call the stack's scorer). It starts interviews on both
orchestrators over gRPC, then in rounds, each loop first in turn:

1. ``GetCurrentQuestion`` at concurrency 32 over all the interviews;
2. ``SubmitAnswer`` of the item's reference formula, each interview whose first question is a
   formula item answered once (half of them on each orchestrator), at concurrency 32;
3. the scorer's unary ``Score`` of distinct formulas at concurrency 64 (``bench_scorer.py``'s
   item and load).

It reports calls/s, p50/p99 and the CPU per call of the process serving it (psutil), and writes
the ``loop`` section of benchmarks/README.md.

    make bench-loop
    .venv/bin/python benchmarks/loop/bench_loop.py --interviews 600 --seconds 2 --no-readme   # a smoke run

Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(REPO_ROOT / "benchmarks" / "load"), str(REPO_ROOT / "benchmarks" / "scorer"), str(REPO_ROOT)]

from bench_scorer import bench_unary, formula_item, formulas  # noqa: E402
from orchestrator.bank import FormulaItem, load_bank  # noqa: E402
from orchestrator.settings import DEFAULT_BANK_DIR  # noqa: E402
from report import publish  # noqa: E402
from run import REMOTE_ENV, code_state, machine  # noqa: E402
from stack.backing import free_port  # noqa: E402
from stack.runner import REPO_ROOT as STACK_ROOT  # noqa: E402
from stack.runner import Stack  # noqa: E402
from stack.settings import StackSettings  # noqa: E402
from xlinterview.v1 import common_pb2, scorer_pb2  # noqa: E402
from xlinterview.v1 import orchestrator_pb2 as pb  # noqa: E402
from xlinterview.v1 import orchestrator_pb2_grpc as pbg  # noqa: E402

README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "loop"
LOOPS = ("asyncio", "uvloop")
# The loop each service runs on its own (orchestrator/__main__.py, scorer/__main__.py: keep in
# step); the benchmark starts a copy on the other.
OWN_LOOP = {"orchestrator": "uvloop", "scorer": "asyncio"}
# `python -m NAME` on the given loop: a service that calls uvloop.run gets asyncio.run, one that
# calls asyncio.run gets uvloop's (uvloop.run itself starts asyncio.Runner, not asyncio.run).
LAUNCHERS = {
    "asyncio": "import asyncio, runpy, uvloop; uvloop.run = asyncio.run; runpy.run_module({name!r}, run_name='__main__')",
    "uvloop": "import asyncio, runpy, uvloop; asyncio.run = uvloop.run; runpy.run_module({name!r}, run_name='__main__')",
}


@dataclass
class Measured:
    """Calls of one kind on one loop, summed over the rounds."""

    calls: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, calls: int, seconds: float, cpu_s: float, latencies: Sequence[float]) -> None:
        """Adds one round."""
        self.calls += calls
        self.seconds += seconds
        self.cpu_s += cpu_s
        self.latencies.extend(latencies)

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """CPU µs of the serving process per call."""
        return 1e6 * self.cpu_s / self.calls if self.calls else 0.0

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile latency in ms."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def other_loop(name: str) -> str:
    """The loop service ``name`` does not run on by itself."""
    return next(loop for loop in LOOPS if loop != OWN_LOOP[name])


def spawn_on_other_loop(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Starts service ``name`` (``scorer`` or ``orchestrator``) on :func:`other_loop`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHERS[other_loop(name)].format(name=name)],
            env={**os.environ, **env}, cwd=STACK_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )


async def wait_serving(channel: grpc.aio.Channel, timeout: float = 120.0) -> None:
    """Waits until the channel's server answers."""
    await asyncio.wait_for(channel.channel_ready(), timeout)


async def closed_loop(call: Callable[[Any], Awaitable[Any]], work: Iterator[Any], concurrency: int,
                      seconds: float) -> tuple[int, float, list[float]]:
    """Calls ``call`` on ``work``'s items with ``concurrency`` in flight until the time or the work runs out."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        for item in work:
            started = time.perf_counter()
            if started > stop:
                return
            await call(item)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), time.perf_counter() - started, latencies


async def measure(stack: Stack, args: argparse.Namespace, work: Path) -> dict[tuple[str, str], Measured]:
    """Starts the services on their other loop beside the stack's and runs the rounds."""
    orchestrator_address, scorer_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    backing = {"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url, "XLI_DATA_DIR": str(stack.data_dir)}
    second = [
        spawn_on_other_loop("scorer", {**backing, "XLI_SCORER_ADDRESS": scorer_address, "TRITON_URL": stack.triton_url},
                            work / "scorer.log"),
        spawn_on_other_loop("orchestrator", {**backing, "XLI_ORCHESTRATOR_ADDRESS": orchestrator_address,
                                             "XLI_SCORER_ADDRESS": stack.scorer_address}, work / "orchestrator.log"),
    ]
    try:
        return await _rounds(stack, args, {"scorer": (scorer_address, second[0].pid),
                                           "orchestrator": (orchestrator_address, second[1].pid)})
    finally:
        for process in second:
            process.terminate()
            process.wait(timeout=15)


async def _rounds(stack: Stack, args: argparse.Namespace,
                  on_other_loop: dict[str, tuple[str, int]]) -> dict[tuple[str, str], Measured]:
    servers = {
        ("orchestrator", OWN_LOOP["orchestrator"]): (stack.orchestrator_address, stack.process("orchestrator").pid),
        ("orchestrator", other_loop("orchestrator")): on_other_loop["orchestrator"],
        ("scorer", OWN_LOOP["scorer"]): (stack.scorer_address, stack.process("scorer").pid),
        ("scorer", other_loop("scorer")): on_other_loop["scorer"],
    }
    channels = {key: grpc.aio.insecure_channel(address) for key, (address, _) in servers.items()}
    for channel in channels.values():
        await wait_serving(channel)
    orchestrators = {loop: pbg.OrchestratorStub(channels["orchestrator", loop]) for loop in LOOPS}
    scores = {loop: channels["scorer", loop].unary_unary("/xlinterview.v1.Scorer/Score") for loop in LOOPS}
    references = {i.id: i.formula.reference_formula for i in load_bank(DEFAULT_BANK_DIR) if isinstance(i, FormulaItem)}

    gate = asyncio.Semaphore(16)

    async def start(index: int) -> pb.StartInterviewResponse:
        async with gate:
            stub = orchestrators[LOOPS[index % 2]]
            return await stub.StartInterview(pb.StartInterviewRequest(candidate_name=f"Loop Candidate {index}"))

    started = await asyncio.gather(*(start(i) for i in range(args.interviews)))
    sessions = [s.session.session_id for s in started]
    formula_first = [(s.session.session_id, s.question) for s in started
                     if s.question.kind == common_pb2.QUESTION_KIND_FORMULA and s.question.item_id in references]
    print(f"started {len(sessions):,} interviews ({len(formula_first):,} with a formula first)", flush=True)
    to_answer = {loop: iter(formula_first[i::2]) for i, loop in enumerate(LOOPS)}
    item = formula_item()
    payloads = [
        scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id=str(i), text=t)).SerializeToString()
        for i, t in enumerate(formulas(args.score_payloads, 4 * 10**7))
    ]
    for loop in LOOPS:  # warm-up; numbered apart from the measured payloads
        warm = [scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id=f"w{i}", text=t)).SerializeToString()
                for i, t in enumerate(formulas(500, 5 * 10**7 + LOOPS.index(loop) * 1000))]
        await bench_unary(scores[loop], warm, 64, 1.0)

    results: dict[tuple[str, str], Measured] = {}
    sent = {loop: 0 for loop in LOOPS}
    for round_index in range(args.rounds):
        order = LOOPS if round_index % 2 == 0 else LOOPS[::-1]
        for loop in order:
            stub = orchestrators[loop]
            pid = servers["orchestrator", loop][1]

            async def read(session_id: str, stub: pbg.OrchestratorStub = stub) -> None:
                await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=session_id))

            async def answer(pair: tuple[str, pb.Question], stub: pbg.OrchestratorStub = stub) -> None:
                session_id, question = pair
                await stub.SubmitAnswer(pb.SubmitAnswerRequest(
                    session_id=session_id, item_id=question.item_id, answer=references[question.item_id],
                    idempotency_key=uuid.uuid4().hex))

            for name, call, work in (("get current question", read, (sessions[i % len(sessions)] for i in range(10**9))),
                                     ("submit formula answer", answer, to_answer[loop])):
                before = cpu_seconds(pid)
                calls, seconds, latencies = await closed_loop(call, work, 32, args.seconds)
                results.setdefault((name, loop), Measured()).add(calls, seconds, cpu_seconds(pid) - before, latencies)
        for loop in order:
            pid = servers["scorer", loop][1]
            before = cpu_seconds(pid)
            calls, seconds, latencies = await bench_unary(scores[loop], payloads, 64, args.seconds, first=sent[loop])
            sent[loop] += calls
            results.setdefault(("score (unary)", loop), Measured()).add(calls, seconds, cpu_seconds(pid) - before, latencies)
    for channel in channels.values():
        await channel.close()
    return results


def section(results: dict[tuple[str, str], Measured], args: argparse.Namespace, load: tuple[float, float]) -> str:
    """The markdown of the results."""
    rows = [
        "| call | service | asyncio: calls/s | p50 / p99 ms | CPU µs per call | uvloop: calls/s | p50 / p99 ms "
        "| CPU µs per call | uvloop's CPU per call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, service in (("get current question", "orchestrator"), ("submit formula answer", "orchestrator"),
                          ("score (unary)", "scorer")):
        base, fast = results[name, "asyncio"], results[name, "uvloop"]
        cells = [f"{m.rate:,.0f} | {m.percentile_ms(50):.1f} / {m.percentile_ms(99):.1f} | {m.cpu_us:,.0f}"
                 for m in (base, fast)]
        change = fast.cpu_us / base.cpu_us - 1 if base.cpu_us else 0.0
        rows.append(f"| {name} | {service} (runs on {OWN_LOOP[service]}) | {cells[0]} | {cells[1]} | {change:+.0%} |")
    answered = results["submit formula answer", "asyncio"].calls + results["submit formula answer", "uvloop"].calls
    return "\n".join([
        "## event loop (`make bench-loop`)",
        "",
        f"{dt.date.today().isoformat()}, {code_state()}, {machine()}; the stack on embedded PostgreSQL, Redis and "
        "Triton (CPU), its orchestrator on uvloop and its scorer on asyncio's own loop, as they run by themselves, "
        "and beside them the same two services on the other loop, over the same PostgreSQL, Redis and Triton (both "
        f"orchestrators call the stack's scorer, which has the Redis score cache). {args.rounds} rounds of {args.seconds:g} s per call and loop, "
        f"each loop first in turn; {args.interviews:,} interviews started over gRPC, half on each orchestrator; "
        f"{answered:,} answers, each interview answered once. Orchestrator calls at concurrency 32, Score at 64 "
        "(distinct formulas). 1-minute load average before/after: "
        f"{load[0]:.1f}/{load[1]:.1f}. CPU µs per call: the serving process's user + system time (psutil).",
        "",
        *rows,
    ])


def main() -> None:
    """Runs the comparison and writes the results (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interviews", type=int, default=4000, help="interviews started (half on each orchestrator)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds; each runs every call on both loops")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per call, loop and round")
    parser.add_argument("--score-payloads", type=int, default=100_000, help="distinct formulas for Score")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args()
    for name in REMOTE_ENV:
        os.environ.pop(name, None)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        work = Path(tmp)
        settings = StackSettings.isolated(work / "data")
        print(f"starting the stack in {settings.data_dir} ...", flush=True)
        with Stack(settings) as stack:
            results = asyncio.run(measure(stack, args, work))
    publish(README, SECTION, section(results, args, (load_before, os.getloadavg()[0])), write=not args.no_readme)


if __name__ == "__main__":
    main()
