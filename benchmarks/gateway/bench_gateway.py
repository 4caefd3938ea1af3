"""Gateway throughput with wrk, side by side with a reference REST -> gRPC pair, in one run.

Starts the whole stack on embedded defaults in a temporary directory (``stack.runner.Stack``),
and the reference pair of ``reference.py`` (a bare FastAPI endpoint forwarding to a grpc.aio
echo, under the gateway's uvicorn options). Seeds interviews through the admin API, accepts
their invites as candidates, then runs wrk (a C load generator, so the client costs little
CPU) one phase after another:

1. ``reference``: ``GET /ref`` on the reference pair;
2. ``get question``: ``GET /api/v1/sessions/{id}/question`` over all the seeded sessions;
3. ``submit formula``: ``POST /api/v1/sessions/{id}/answers`` with the item's reference
   formula, each session answered once (its first question is a formula item), so every
   request stores a new answer, scores it through the scorer and Triton, and chooses the
   next question (gateway -> orchestrator -> scorer -> PostgreSQL).

For each phase it reports requests/s, p50/p99, errors, and CPU µs per request of every
process (from psutil CPU times before and after the phase), and writes the ``gateway``
section of benchmarks/README.md.

    make bench-gateway
    .venv/bin/python benchmarks/gateway/bench_gateway.py --duration 5 --no-readme   # a smoke run

Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(REPO_ROOT / "benchmarks" / "load"), str(REPO_ROOT)]

from orchestrator.bank import FormulaItem, load_bank  # noqa: E402
from orchestrator.settings import DEFAULT_BANK_DIR  # noqa: E402
from procstats import group_of  # noqa: E402
from report import publish  # noqa: E402
from run import RATE_LIMIT_ENV, REMOTE_ENV, Candidate, accept_all, code_state, machine, seed  # noqa: E402
from stack.backing import free_port  # noqa: E402
from stack.runner import Stack  # noqa: E402
from stack.settings import StackSettings  # noqa: E402

README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "gateway"
# wrk's Lua done() prints one JSON line after this marker.
MARKER = "XLI-RESULT "
DONE_LUA = f"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{MARKER}{{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non_2xx": %d}}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Phase:
    """What wrk and psutil measured in one phase."""

    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_s: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_us_per_request(self, group: str) -> float:
        return 1e6 * self.cpu_s.get(group, 0.0) / max(self.requests, 1)


def _group(process: psutil.Process) -> str | None:
    try:
        argv = process.cmdline()
        if process.name() == "wrk":
            return "wrk"
        if "--multiprocessing-fork" in argv:
            # A uvicorn worker (XLI_GATEWAY_WORKERS > 1) belongs with its parent.
            parent = process.parent()
            return _group(parent) if parent is not None else None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if any(part.endswith("reference.py") for part in argv[:2]):
        return "reference " + argv[2]
    return group_of(process)


def cpu_by_group() -> dict[str, float]:
    """CPU seconds (user + system) used so far by every descendant of this process, per group."""
    totals: dict[str, float] = {}
    for process in psutil.Process().children(recursive=True):
        group = _group(process)
        if group is None:
            continue
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        totals[group] = totals.get(group, 0.0) + times.user + times.system
    return totals


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for this data


def question_script(candidates: list[Candidate]) -> str:
    """wrk script: each request reads the current question of the next session, round robin."""
    rows = ",\n".join(f"{{{_lua_string(c.session_id)}, {_lua_string(c.token)}}}" for c in candidates)
    return f"""
local sessions = {{
{rows}
}}
local i = 0
request = function()
  i = i % #sessions + 1
  local s = sessions[i]
  return wrk.format("GET", "/api/v1/sessions/" .. s[1] .. "/question", {{["Authorization"] = "Bearer " .. s[2]}})
end
""" + DONE_LUA


def submit_script(candidates: list[Candidate], references: dict[str, str], threads: int) -> str:
    """wrk script: each thread answers its own slice of sessions, each session once."""
    rows = []
    for c in candidates:
        body = json.dumps({"item_id": c.item_id, "answer": references[c.item_id],
                           "idempotency_key": uuid.uuid4().hex})
        rows.append(f"{{{_lua_string(c.session_id)}, {_lua_string(c.token)}, {_lua_string(body)}}}")
    return f"""
local sessions = {{
{",".join(rows)}
}}
local threads = {threads}
local counter = 0
setup = function(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
local n = 0
request = function()
  -- Thread k takes sessions k+1, k+1+threads, ...: disjoint, so no session is answered twice.
  local index = offset + 1 + n * threads
  n = n + 1
  if index > #sessions then
    -- Out of fresh sessions: this request is a replay and counts as one; the report says so.
    index = offset + 1
  end
  local s = sessions[index]
  return wrk.format("POST", "/api/v1/sessions/" .. s[1] .. "/answers",
    {{["Authorization"] = "Bearer " .. s[2], ["Content-Type"] = "application/json"}}, s[3])
end
""" + DONE_LUA


def run_wrk(name: str, url: str, script: str, args: argparse.Namespace, work: Path) -> Phase:
    """One wrk phase with the CPU times of every process around it."""
    path = work / f"{name.replace(' ', '_')}.lua"
    path.write_text(script)
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
               "-s", str(path), url]
    before = cpu_by_group()
    waited_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    after = cpu_by_group()
    waited_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk has exited by now, so it is no longer a child psutil sees; the waited-for
    # children's usage grew by wrk's alone (the services are still running).
    after["wrk"] = (waited_after.ru_utime - waited_before.ru_utime) + (waited_after.ru_stime - waited_before.ru_stime)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"wrk failed in phase {name!r}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(line[len(MARKER):])
    return Phase(
        name=name,
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6 or seconds,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=result["errors"] + result["non_2xx"],
        cpu_s={g: after.get(g, 0.0) - before.get(g, 0.0) for g in after},
    )


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            sys.exit(f"{what} did not start; see {log}")
        time.sleep(0.2)


@contextmanager
def gateway_with_workers(stack: Stack, workers: int, work: Path) -> Iterator[str]:
    """A second gateway on the stack's orchestrator and Redis with ``workers`` processes;
    yields its base URL. Both gateways serve the same sessions, so phases can compare them."""
    port = free_port()
    env = {**os.environ, "XLI_GATEWAY_WORKERS": str(workers), "XLI_GATEWAY_PORT": str(port),
           "XLI_ORCHESTRATOR_ADDRESS": stack.orchestrator_address, "REDIS_URL": stack.redis_url or ""}
    log = work / f"gateway-{workers}-workers.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{base}/readyz", [process], f"the gateway with {workers} workers", log)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def reference_pair(work: Path) -> Iterator[str]:
    """Starts the echo and the forwarding endpoint; yields the endpoint's base URL."""
    echo_port, http_port = free_port(), free_port()
    script = str(HERE / "reference.py")
    logs = (work / "reference.log").open("wb")
    processes = [
        subprocess.Popen([sys.executable, script, "echo", "--port", str(echo_port)], stdout=logs, stderr=logs),
        subprocess.Popen([sys.executable, script, "http", "--port", str(http_port), "--echo",
                          f"127.0.0.1:{echo_port}"], stdout=logs, stderr=logs),
    ]
    base = f"http://127.0.0.1:{http_port}"
    try:
        _wait_ready(f"{base}/ref", processes, "the reference pair", work / "reference.log")
        yield base
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        logs.close()


def table(phases: list[Phase], reference: Phase) -> str:
    """Throughput and latency per phase, and CPU µs per request per process."""
    groups = sorted({g for p in phases for g, s in p.cpu_s.items() if s > 0.01 * p.seconds})
    lines = [
        "| phase | requests/s | vs reference | p50 ms | p99 ms | errors | " + " | ".join(groups) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(groups),
    ]
    for p in phases:
        cpu = " | ".join(f"{p.cpu_us_per_request(g):,.0f}" for g in groups)
        lines.append(f"| {p.name} | {p.rate:,.0f} | {p.rate / reference.rate:.0%} | {p.p50_ms:,.1f} | "
                     f"{p.p99_ms:,.1f} | {p.errors:,} | {cpu} |")
    return "\n".join(lines)


def main() -> None:
    """Runs the three phases and writes the results (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per phase")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--interviews", type=int, default=6000,
                        help="interviews seeded (the two submit phases answer half each)")
    parser.add_argument("--workers", type=int, default=2,
                        help="the gateway's phases run again on a second gateway with this many worker processes")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk; `make bench-gateway` does it)")
    os.environ.update(RATE_LIMIT_ENV)
    for name in REMOTE_ENV:
        os.environ.pop(name, None)
    references = {item.id: item.formula.reference_formula
                  for item in load_bank(DEFAULT_BANK_DIR) if isinstance(item, FormulaItem)}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        settings = StackSettings(
            data_dir=work / "data", gateway_port=free_port(), scorer_port=free_port(),
            orchestrator_port=free_port(), database_url=None, redis_url=None, triton_url=None,
        )
        print(f"starting the stack in {settings.data_dir} ...", flush=True)
        with (Stack(settings) as stack, reference_pair(work) as reference_url,
              gateway_with_workers(stack, args.workers, work) as multi_url):
            started = time.monotonic()
            invites = asyncio.run(seed(stack.gateway_url, args.interviews))
            candidates = asyncio.run(accept_all(stack.gateway_url, invites))
            formula_first = [c for c in candidates if c.kind == "QUESTION_KIND_FORMULA" and c.item_id in references]
            print(f"seeded and accepted {len(candidates):,} interviews in {time.monotonic() - started:.0f} s "
                  f"({len(formula_first):,} start with a formula item)", flush=True)
            # Each submit phase answers its own half of the sessions, so neither replays the other's.
            halves = formula_first[::2], formula_first[1::2]
            many = f"{args.workers} workers"
            plan = [
                ("reference", f"{reference_url}/ref", DONE_LUA),
                ("get question, 1 worker", stack.gateway_url, question_script(candidates)),
                (f"get question, {many}", multi_url, question_script(candidates)),
                ("submit formula, 1 worker", stack.gateway_url, submit_script(halves[0], references, args.threads)),
                (f"submit formula, {many}", multi_url, submit_script(halves[1], references, args.threads)),
            ]
            phases = []
            for name, url, script in plan:
                print(f"wrk: {name} for {args.duration} s ...", flush=True)
                phases.append(run_wrk(name, url, script, args, work))
    load_after = os.getloadavg()[0]
    reference, question, question_many, submit, submit_many = phases
    replays = sum(max(p.requests - len(h), 0) for p, h in zip((submit, submit_many), halves))
    section = "\n".join([
        "## gateway (`make bench-gateway`)",
        "",
        f"wrk, {dt.date.today().isoformat()}, {code_state()}, {machine()}; the stack on embedded PostgreSQL, "
        f"Redis and Triton (CPU); the gateway phases run on the stack's gateway (one worker) and on a second "
        f"gateway with {args.workers} worker processes (`XLI_GATEWAY_WORKERS`) over the same orchestrator and "
        f"Redis; wrk with {args.threads} threads and {args.connections} "
        f"connections, {args.duration} s per phase, all on 127.0.0.1. 1-minute load average before/after: "
        f"{load_before:.1f}/{load_after:.1f}. Reference: a bare FastAPI endpoint forwarding to a grpc.aio echo "
        "under the gateway's uvicorn options (`benchmarks/gateway/reference.py`), one worker. Submit: each of "
        f"{len(formula_first):,} sessions whose first question is a formula item answers it once with the "
        "item's reference formula, half of them through each gateway"
        + (f"; {replays:,} requests ran out of fresh sessions and were idempotent replays" if replays else "")
        + ".",
        "",
        table(phases, reference),
        "",
        "CPU columns: µs of CPU per request of each process group, from psutil CPU times around the phase.",
        "",
        "Targets (issue #7):",
        "",
        *[f"- get question ≥ 70% of the reference's rate, {p.name.split(', ')[1]}: **{p.rate / reference.rate:.0%}** "
          f"({'met' if p.rate >= 0.7 * reference.rate else 'not met'})." for p in (question, question_many)],
        *[f"- submit formula ≥ 500/s with p99 < 100 ms, {p.name.split(', ')[1]}: **{p.rate:,.0f}/s, "
          f"p99 {p.p99_ms:,.0f} ms** ({'met' if p.rate >= 500 and p.p99_ms < 100 else 'not met'})."
          for p in (submit, submit_many)],
        "",
        f"{args.workers} gateway workers against 1: get question {question_many.rate / question.rate:.2f}×, "
        f"submit formula {submit_many.rate / submit.rate:.2f}× the rate.",
    ])
    publish(README, SECTION, section, write=not args.no_readme)


if __name__ == "__main__":
    main()
