"""Gateway throughput with wrk, side by side with a reference REST -> gRPC pair, in one run.

Starts the whole stack on embedded defaults in a temporary directory (``stack.runner.Stack``),
and the reference pair of ``reference.py`` (a bare FastAPI endpoint forwarding to a grpc.aio
echo, under the gateway's uvicorn options). Seeds interviews through the admin API, accepts
their invites as candidates, then runs wrk (a C load generator, so the client costs little
CPU) one phase after another:

1. ``reference``: ``GET /ref`` on the reference pair; then the same on a second pair that also
   makes the two Redis round trips of a question read (``reference.py --redis``: the gateway's
   rate-limit script and the orchestrator's state read, on the stack's Redis), which bounds
   what a question read can reach beside the reference;
2. ``get question``: ``GET /api/v1/sessions/{id}/question`` over all the seeded sessions
   (these read phases take turns in ``--rounds`` rounds, so a change of the shared machine's
   speed during the run meets them alike);
3. ``submit formula``: ``POST /api/v1/sessions/{id}/answers`` with the item's reference
   formula, each session answered once (its first question is a formula item), so every
   request stores a new answer, scores it through the scorer and Triton, and chooses the
   next question (gateway -> orchestrator -> scorer -> PostgreSQL);
4. ``candidate mix``: the candidate's whole request mix for ``--mix-duration`` seconds (default
   300, issue #8's five minutes): every wrk connection walks interviews end to end as the
   locust candidate does, accepting an invite, answering each question the previous response
   brought, sometimes reloading or resending, finishing, then taking the next invite
   (``mix.lua``); counted per request type.

For each phase it reports requests/s, p50/p99, errors, and CPU µs per request of every
process (from psutil CPU times before and after the phase), and writes the ``gateway``
section of benchmarks/README.md (with ``--only mix``, only the mix's part of it; with
``--only phases``, all but the mix's part). ``--only submit`` runs one submit formula phase over
every formula-first session and prints its figures, to compare two versions of the code.

    make bench-gateway
    make bench-mix                                                                   # the mix alone
    .venv/bin/python benchmarks/gateway/bench_gateway.py --duration 5 --mix-duration 20 --no-readme   # a smoke run

Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(REPO_ROOT / "benchmarks" / "load"), str(REPO_ROOT)]

from answers import FORMULA, FREE_TEXT, NUMERIC, answer_for  # noqa: E402
from orchestrator.bank import FormulaItem, load_bank  # noqa: E402
from orchestrator.settings import DEFAULT_BANK_DIR, OrchestratorSettings  # noqa: E402
from procstats import group_of  # noqa: E402
from report import publish, write_section  # noqa: E402
from run import RATE_LIMIT_ENV, REMOTE_ENV, Candidate, accept_all, code_state, machine, seed  # noqa: E402
from stack.backing import free_port  # noqa: E402
from stack.runner import Stack  # noqa: E402
from stack.settings import StackSettings  # noqa: E402

README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "gateway"
# The mix's part of the gateway section has markers of its own, so `make bench-mix` can
# rewrite it alone.
MIX_SECTION = "gateway-mix"
MIX_SCRIPT = HERE / "mix.lua"
# Issue #8: >= 100,000 requests a minute of the candidate mix for 5 minutes, with 0 errors.
TARGET_RATE = 100_000 / 60
TARGET_SECONDS = 300
MIX_CONNECTIONS = 32
# Invites are seeded for this rate by default: about twice what this 2-core box reaches, so a
# 5-minute run does not run dry here, while seeding for the full target would take minutes
# (connections that run out stop, and the results say so in bold).
MIX_SEED_RATE = 400.0
# wrk's Lua done() prints one JSON line after this marker.
MARKER = "XLI-RESULT "
# A submit thread prints this line once it has answered all its sessions; once every thread has,
# the phase ends (wrk is interrupted), so the rate counts only requests that stored a new answer.
OUT_OF_SESSIONS = "XLI-OUT-OF-SESSIONS"
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
    # Everything the script's done() printed (the mix's counts per request type).
    details: dict[str, Any] = field(default_factory=dict)

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


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by every descendant of this process that
    belongs to a group, by pid, with its group."""
    used: dict[int, tuple[str, float]] = {}
    for process in psutil.Process().children(recursive=True):
        group = _group(process)
        if group is None:
            continue
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        used[process.pid] = (group, times.user + times.system)
    return used


def cpu_used_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each group used between two :func:`cpu_by_process` samples.

    Counted per process, so one that exits meanwhile (a PostgreSQL backend whose connection
    closed) drops out of both samples instead of taking its earlier CPU out of the group's
    sum, which made a quiet group's figure negative; what it used before exiting is lost.
    """
    used: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        used[group] = used.get(group, 0.0) + seconds - before.get(pid, (group, 0.0))[1]
    return used


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
local out = false
request = function()
  -- Thread k takes sessions k+1, k+1+threads, ...: disjoint, so no session is answered twice.
  local index = offset + 1 + n * threads
  n = n + 1
  if index > #sessions then
    -- Out of fresh sessions: the thread stops and says so (bench_gateway.py then ends the phase).
    -- wrk still sends the request returned here, an idempotent replay of the thread's first
    -- session; if its response is counted, the report counts it as a replay.
    if not out then
      out = true
      io.write("{OUT_OF_SESSIONS}\\n")
      io.flush()
      wrk.thread:stop()
    end
    index = offset + 1
  end
  local s = sessions[index]
  return wrk.format("POST", "/api/v1/sessions/" .. s[1] .. "/answers",
    {{["Authorization"] = "Bearer " .. s[2], ["Content-Type"] = "application/json"}}, s[3])
end
""" + DONE_LUA


def run_wrk(name: str, url: str, script: str, args: argparse.Namespace, work: Path) -> Phase:
    """One wrk phase of ``args.duration`` seconds with a script generated for it; it ends
    early when every thread has printed :data:`OUT_OF_SESSIONS`."""
    path = work / f"{name.replace(' ', '_')}.lua"
    path.write_text(script)
    load = [f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    return measure_wrk(name, url, path, load, stop_after=args.threads)


def merge_rounds(name: str, rounds: list[Phase]) -> Phase:
    """One phase measured in rounds, as one phase: requests, time, errors and CPU summed over
    the rounds; p50 the median round's, p99 the highest round's."""
    cpu: dict[str, float] = {}
    for taken in rounds:
        for group, seconds in taken.cpu_s.items():
            cpu[group] = cpu.get(group, 0.0) + seconds
    p50s = sorted(taken.p50_ms for taken in rounds)
    return Phase(
        name=name,
        requests=sum(taken.requests for taken in rounds),
        seconds=sum(taken.seconds for taken in rounds),
        p50_ms=p50s[len(p50s) // 2],
        p99_ms=max(taken.p99_ms for taken in rounds),
        errors=sum(taken.errors for taken in rounds),
        cpu_s=cpu,
    )


def _run_until_out(command: list[str], stop_after: int | None) -> subprocess.CompletedProcess[str]:
    """Runs wrk; once ``stop_after`` threads have printed :data:`OUT_OF_SESSIONS`, interrupts it.

    wrk's own duration would otherwise count the idle time after its threads stopped. On
    SIGINT wrk ends the run there, and its summary (and the script's ``done``) covers the
    time until then.
    """
    # One pipe for both streams: a script error printed on every request would otherwise fill
    # an unread stderr pipe and stall wrk while this reads stdout.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as wrk:
        assert wrk.stdout is not None
        lines, out = [], 0
        for line in wrk.stdout:
            lines.append(line)
            if line.strip() == OUT_OF_SESSIONS:
                out += 1
                if out == stop_after:
                    wrk.send_signal(signal.SIGINT)
    return subprocess.CompletedProcess(command, wrk.returncode, "".join(lines), "")


def measure_wrk(name: str, url: str, script: Path, load: list[str], script_args: tuple[str, ...] = (),
                stop_after: int | None = None) -> Phase:
    """wrk with ``load`` (threads, connections, duration) and ``script``, and the CPU times of
    every process around it; ``stop_after``: see :func:`_run_until_out`."""
    command = ["wrk", *load, "--timeout", "10s", "-s", str(script), url]
    if script_args:
        command += ["--", *script_args]
    before = cpu_by_process()
    waited_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = _run_until_out(command, stop_after)
    seconds = time.monotonic() - started
    cpu_s = cpu_used_between(before, cpu_by_process())
    waited_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk has exited by now, so it is no longer a child psutil sees; the waited-for
    # children's usage grew by wrk's alone (the services are still running).
    cpu_s["wrk"] = (waited_after.ru_utime - waited_before.ru_utime) + (waited_after.ru_stime - waited_before.ru_stime)
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
        cpu_s=cpu_s,
        details=result,
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
def reference_pair(work: Path, redis_url: str = "") -> Iterator[str]:
    """Starts the echo and the forwarding endpoint (making a question read's Redis round trips
    too, with ``redis_url``); yields the endpoint's base URL."""
    echo_port, http_port = free_port(), free_port()
    script = str(HERE / "reference.py")
    redis = ["--redis", redis_url] if redis_url else []
    log = work / ("reference-redis.log" if redis_url else "reference.log")
    logs = log.open("wb")
    processes = [
        subprocess.Popen([sys.executable, script, "echo", "--port", str(echo_port), *redis], stdout=logs, stderr=logs),
        subprocess.Popen([sys.executable, script, "http", "--port", str(http_port), "--echo",
                          f"127.0.0.1:{echo_port}", *redis], stdout=logs, stderr=logs),
    ]
    base = f"http://127.0.0.1:{http_port}"
    try:
        _wait_ready(f"{base}/ref", processes, "the reference pair", log)
        yield base
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        logs.close()


def _busy_groups(phases: list[Phase]) -> list[str]:
    """The process groups that used more than 1% of a core in some phase: the CPU columns."""
    return sorted({g for p in phases for g, s in p.cpu_s.items() if s > 0.01 * p.seconds})


def _cpu_cells(phase: Phase, groups: list[str]) -> str:
    return " | ".join(f"{phase.cpu_us_per_request(g):,.0f}" for g in groups)


def table(phases: list[Phase], reference: Phase) -> str:
    """Throughput and latency per phase, and CPU µs per request per process."""
    groups = _busy_groups(phases)
    lines = [
        "| phase | requests/s | vs reference | p50 ms | p99 ms | errors | " + " | ".join(groups) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(groups),
    ]
    for p in phases:
        lines.append(f"| {p.name} | {p.rate:,.0f} | {p.rate / reference.rate:.0%} | {p.p50_ms:,.1f} | "
                     f"{p.p99_ms:,.1f} | {p.errors:,} | {_cpu_cells(p, groups)} |")
    return "\n".join(lines)


def shortest_interview_requests() -> int:
    """Requests of the shortest interview the mix can walk: accept, an answer per question,
    finish (no reloads or resends). The orchestrator's settings come from this environment,
    which the stack passes on, so this is the stack's fewest questions."""
    return OrchestratorSettings().cat_min_items + 2


def mix_invites_needed(rate: float, seconds: int, connections: int) -> int:
    """Invites for ``connections`` to run ``seconds`` at ``rate`` requests/s in all.

    Counted as if every interview were the shortest, with a quarter more on top and two per
    connection, since each connection has its own slice and they do not run at quite the
    same speed. Unused invites cost only the seeding.
    """
    interviews = rate * seconds / shortest_interview_requests()
    return int(1.25 * interviews) + 2 * connections


def write_answer_pool(path: Path, per_kind: int, rng_seed: int = 8) -> None:
    """The answers mix.lua picks from, from the generator locust's users use (answers.py),
    each a JSON string, which the script puts in the request body as it is.

    Multiple choice is left to the script, which needs the question's options.
    """
    rng = random.Random(rng_seed)
    # Formulas over a sheet of the bank's usual size (A1:D10): the script does not read the sheet.
    lines = [f"{kind}\t{json.dumps(answer_for(kind, rng, rows=10, columns=4))}"
             for kind in (FORMULA, FREE_TEXT, NUMERIC) for _ in range(per_kind)]
    path.write_text("\n".join(lines) + "\n")


def run_mix(url: str, invites: list[str], args: argparse.Namespace, work: Path) -> Phase:
    """The candidate mix with mix.lua, one connection per wrk thread (the script's state is per thread)."""
    invites_path, answers_path = work / "mix-invites.txt", work / "mix-answers.txt"
    invites_path.write_text("\n".join(invites) + "\n")
    write_answer_pool(answers_path, per_kind=1000)
    n = args.mix_connections
    return measure_wrk("candidate mix", url, MIX_SCRIPT, [f"-t{n}", f"-c{n}", f"-d{args.mix_duration}s"],
                       (str(invites_path), str(answers_path), str(n)))


def mix_section(mix: Phase, args: argparse.Namespace, seeded: int, seed_s: float, load: tuple[float, float]) -> str:
    """The mix's markdown: the run, its table, the requests per type and issue #8's target."""
    details = mix.details
    types: dict[str, list[int]] = details["types"]
    counted = sum(n for n, _ in types.values())
    groups = _busy_groups([mix])
    rows = [f"| {name} | {n:,} | {n / max(counted, 1):.1%} | {bad:,} |" for name, (n, bad) in types.items()]
    # wrk's clock stops a few milliseconds past -d, never before it.
    five_minutes = mix.seconds >= 0.99 * TARGET_SECONDS
    met = mix.rate >= TARGET_RATE and mix.errors == 0 and five_minutes
    if mix.rate >= TARGET_RATE:
        versus = f"{mix.rate / TARGET_RATE:.2f}× the target rate"
    else:
        versus = f"{mix.rate / TARGET_RATE:.1%} of the target rate" + (
            f" ({TARGET_RATE / mix.rate:.1f}× short)" if mix.rate else "")
    dry, lost = details["threads_out_of_invites"], details["lost"]
    # Status 0 is a request whose response never came.
    failures = sorted(details["failures"].items(), key=lambda failure: -failure[1])
    failed = ", ".join(f"{what.strip()} × {n:,}" for what, n in failures)
    changed = [f"--{flag} {value:g}" for flag, value, default in (
        ("mix-duration", args.mix_duration, TARGET_SECONDS), ("mix-connections", args.mix_connections, MIX_CONNECTIONS),
        ("mix-seed-rate", args.mix_seed_rate, MIX_SEED_RATE)) if value != default]
    reproduce = "make bench-mix"
    if changed:
        reproduce = " ".join(["python benchmarks/gateway/bench_gateway.py --only mix", *changed])
    return "\n".join([
        "### candidate mix (`make bench-mix`)",
        "",
        f"wrk with `benchmarks/gateway/mix.lua`, {dt.date.today().isoformat()}, {code_state()}, {machine()}; the "
        f"stack's gateway (one worker); {args.mix_connections} connections, one per wrk thread, "
        f"{mix.seconds:.0f} s, on 127.0.0.1. 1-minute load average before/after: {load[0]:.1f}/{load[1]:.1f}. "
        f"Reproduce: `{reproduce}`. "
        "Each connection walks interviews end to end as the locust candidate does: accept an invite (start "
        "interview, which brings the first question), answer it with what `benchmarks/load/answers.py` makes "
        "for its kind (free text and formulas numbered so the scorer's cache never serves them; multiple choice "
        "a random option), answer the next question the response brings, ... until the answer says finished, "
        "finish, then the next invite; no think time. One answer in ten is preceded by a reload (read the "
        "session, then the question) and one in twenty is sent again with the same idempotency key, which "
        "must return the same answer. A failed answer is not resent: the question is read again (a 503 "
        "scoring-delayed means the answer is saved). "
        f"Seeded {seeded:,} invites in {seed_s:.0f} s (enough for {args.mix_seed_rate:,.0f} requests/s); "
        f"{details['interviews']:,} interviews finished, {details['abandoned']:,} left after "
        f"{details['give_up_after']} failed requests in a row"
        + (f"; **{dry} connections ran out of invites and stopped early**" if dry else "") + ".",
        "",
        "| phase | requests/s | requests/min | p50 ms | p99 ms | errors | " + " | ".join(groups) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(groups),
        f"| {mix.name} | {mix.rate:,.0f} | {60 * mix.rate:,.0f} | {mix.p50_ms:,.1f} | {mix.p99_ms:,.1f} | "
        f"{mix.errors:,} | {_cpu_cells(mix, groups)} |",
        "",
        "Latency is wrk's, over every request of the mix together (wrk keeps one histogram for the run); "
        "errors are wrk's socket errors and timeouts plus HTTP statuses ≥ 400; CPU columns: µs of CPU per "
        f"request of each process group over all {mix.requests:,} requests, from psutil CPU times around the run. "
        "Responses per request type, as the script counted them"
        + (f" ({lost:,} requests whose response never came, as wrk reconnected, are in non-2xx)" if lost else "")
        + ":",
        "",
        "| request | responses | share | non-2xx |",
        "|---|---|---|---|",
        *rows,
        "",
        *([f"Non-2xx by status and problem type: {failed}.", ""] if failed else []),
        f"Target: ≥ {TARGET_RATE:,.0f}/s for 5 minutes, 0 errors (issue #8): **{'met' if met else 'not met'}**: "
        f"{mix.rate:,.0f}/s over {mix.seconds:.0f} s is {versus}, with {mix.errors:,} errors"
        + ("" if five_minutes else f"; this run lasted {mix.seconds:.0f} s, not 5 minutes") + ".",
    ])


def _mix_block(markdown: str) -> str:
    """The mix's markdown inside its own markers, as it sits in the gateway section."""
    return f"<!-- {MIX_SECTION}:start -->\n{markdown.rstrip()}\n<!-- {MIX_SECTION}:end -->"


def recorded_mix_block() -> str:
    """The mix's part of the gateway section as README.md has it now, or "" without one."""
    text = README.read_text()
    start, end = f"<!-- {MIX_SECTION}:start -->", f"<!-- {MIX_SECTION}:end -->"
    if start not in text or end not in text:
        return ""
    return text[text.index(start) : text.index(end) + len(end)]


def publish_mix_alone(markdown: str, write: bool) -> None:
    """Prints the mix's markdown and, when ``write``, replaces its part of the gateway section
    (the first time, at the section's end), leaving the other phases' results as they are."""
    print(markdown)
    if not write:
        return
    text = README.read_text()
    if f"<!-- {MIX_SECTION}:start -->" not in text and f"<!-- {SECTION}:end -->" in text:
        README.write_text(text.replace(f"<!-- {SECTION}:end -->", f"{_mix_block('')}\n<!-- {SECTION}:end -->", 1))
    write_section(README, MIX_SECTION, markdown)
    print(f"\nupdated {README}")


def phases_section(phases: list[Phase], halves: tuple[list[Candidate], list[Candidate]], formula_first: int,
                   args: argparse.Namespace, load: tuple[float, float]) -> str:
    """The markdown of the reference, get question and submit formula phases."""
    reference, bound, question, question_many, submit, submit_many = phases
    replays = sum(max(p.requests - len(h), 0) for p, h in zip((submit, submit_many), halves))
    return "\n".join([
        "## gateway (`make bench-gateway`)",
        "",
        f"wrk, {dt.date.today().isoformat()}, {code_state()}, {machine()}; the stack on embedded PostgreSQL, "
        f"Redis and Triton (CPU); the gateway phases run on the stack's gateway (one worker) and on a second "
        f"gateway with {args.workers} worker processes (`XLI_GATEWAY_WORKERS`) over the same orchestrator and "
        f"Redis; wrk with {args.threads} threads and {args.connections} connections, all on 127.0.0.1. The "
        f"reference and get question phases take turns in {args.rounds} rounds of {read_seconds(args)} s each, "
        "each round starting with the next phase, so a change of the machine's speed meets them alike (their "
        "rows sum the rounds; p99 is the highest round's); each submit phase runs up to "
        f"{args.duration} s. 1-minute load average before/after: "
        f"{load[0]:.1f}/{load[1]:.1f}. Reference: a bare FastAPI endpoint forwarding to a grpc.aio echo "
        "under the gateway's uvicorn options (`benchmarks/gateway/reference.py`), one worker; "
        f"\"{bound.name}\": a second such pair that also makes the two Redis round trips every question read "
        "needs and nothing else (the gateway's rate-limit script before forwarding, the orchestrator's "
        "session-state `HGET` in the echo, each with the project's own Redis client, on the stack's Redis). "
        "Submit: each of "
        f"{formula_first:,} sessions whose first question is a formula item answers it once with the "
        "item's reference formula, half of them through each gateway; a submit phase ends when its "
        f"sessions are all answered (these lasted {submit.seconds:.1f} and {submit_many.seconds:.1f} s), so "
        "every request stores a new answer"
        + (f" except {replays:,} idempotent replays sent as the sessions ran out" if replays else "")
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
        f"  The pair that makes only a question read's Redis round trips served {bound.rate / reference.rate:.0%} "
        "of the reference in this run: what a question read could reach if nothing else it does cost anything "
        "(one run).",
        *[f"- submit formula ≥ 500/s with p99 < 100 ms, {p.name.split(', ')[1]}: **{p.rate:,.0f}/s, "
          f"p99 {p.p99_ms:,.0f} ms** ({'met' if p.rate >= 500 and p.p99_ms < 100 else 'not met'})."
          for p in (submit, submit_many)],
        "",
        f"{args.workers} gateway workers against 1: get question {question_many.rate / question.rate:.2f}×, "
        f"submit formula {submit_many.rate / submit.rate:.2f}× the rate.",
    ])


def read_seconds(args: argparse.Namespace) -> int:
    """Seconds of one round of a read phase."""
    return max(1, round(args.duration / max(args.rounds, 1)))


def formula_references() -> dict[str, str]:
    """Each formula item's reference formula, by item id."""
    return {item.id: item.formula.reference_formula
            for item in load_bank(DEFAULT_BANK_DIR) if isinstance(item, FormulaItem)}


def seed_sessions(stack: Stack, args: argparse.Namespace, references: dict[str, str]) -> tuple[list[Candidate], list[Candidate]]:
    """Seeds ``args.interviews`` interviews and accepts them; returns every session and those
    whose first question is a formula item with a reference formula."""
    started = time.monotonic()
    invites = asyncio.run(seed(stack.gateway_url, args.interviews))
    candidates = asyncio.run(accept_all(stack.gateway_url, invites))
    formula_first = [c for c in candidates if c.kind == "QUESTION_KIND_FORMULA" and c.item_id in references]
    print(f"seeded and accepted {len(candidates):,} interviews in {time.monotonic() - started:.0f} s "
          f"({len(formula_first):,} start with a formula item)", flush=True)
    return candidates, formula_first


def run_submit_alone(stack: Stack, args: argparse.Namespace, work: Path) -> str:
    """One submit formula phase on the stack's gateway over every formula-first session; returns
    its rate, latency and CPU per request of every process as one line, for comparing the code of
    two commits run one after the other (``--only submit``; nothing is written to the README)."""
    references = formula_references()
    _, formula_first = seed_sessions(stack, args, references)
    print(f"wrk: submit formula for up to {args.duration} s ...", flush=True)
    phase = run_wrk("submit formula", stack.gateway_url, submit_script(formula_first, references, args.threads),
                    args, work)
    cpu = ", ".join(f"{group} {phase.cpu_us_per_request(group):,.0f}" for group in _busy_groups([phase]))
    return (f"submit formula: {phase.requests:,} requests in {phase.seconds:.1f} s, {phase.rate:,.0f}/s, "
            f"p50 {phase.p50_ms:,.0f} ms, p99 {phase.p99_ms:,.0f} ms, {phase.errors:,} errors; "
            f"CPU µs per request: {cpu}")


def run_phases(stack: Stack, args: argparse.Namespace, work: Path) -> str:
    """The reference, get question and submit formula phases; returns their markdown."""
    references = formula_references()
    load_before = os.getloadavg()[0]
    with (
        reference_pair(work) as reference_url,
        reference_pair(work, stack.redis_url) as bound_url,
        gateway_with_workers(stack, args.workers, work) as multi_url,
    ):
        candidates, formula_first = seed_sessions(stack, args, references)
        # Each submit phase answers its own half of the sessions, so neither replays the other's.
        halves = formula_first[::2], formula_first[1::2]
        many = f"{args.workers} workers"
        reads = [
            ("reference", f"{reference_url}/ref", DONE_LUA),
            ("reference + a question read's Redis round trips", f"{bound_url}/ref", DONE_LUA),
            ("get question, 1 worker", stack.gateway_url, question_script(candidates)),
            (f"get question, {many}", multi_url, question_script(candidates)),
        ]
        writes = [
            ("submit formula, 1 worker", stack.gateway_url, submit_script(halves[0], references, args.threads)),
            (f"submit formula, {many}", multi_url, submit_script(halves[1], references, args.threads)),
        ]
        # Reads change nothing, so they can take turns: the ratios to the reference then
        # hold even when the shared machine's speed changes during the run.
        per_round = argparse.Namespace(**{**vars(args), "duration": read_seconds(args)})
        rounds: dict[str, list[Phase]] = {name: [] for name, _, _ in reads}
        for turn in range(args.rounds):
            for name, url, script in reads[turn % len(reads) :] + reads[: turn % len(reads)]:
                print(f"wrk: {name}, round {turn + 1} of {args.rounds}, {per_round.duration} s ...", flush=True)
                rounds[name].append(run_wrk(name, url, script, per_round, work))
        phases = [merge_rounds(name, rounds[name]) for name, _, _ in reads]
        for name, url, script in writes:
            print(f"wrk: {name} for up to {args.duration} s ...", flush=True)
            phases.append(run_wrk(name, url, script, args, work))
    return phases_section(phases, halves, len(formula_first), args, (load_before, os.getloadavg()[0]))


def run_mix_phase(stack: Stack, args: argparse.Namespace, work: Path) -> str:
    """Seeds invites for the mix, runs it; returns its markdown."""
    started = time.monotonic()
    invites = asyncio.run(seed(stack.gateway_url, mix_invites_needed(args.mix_seed_rate, args.mix_duration,
                                                                     args.mix_connections)))
    seed_s = time.monotonic() - started
    print(f"seeded {len(invites):,} invites for the mix in {seed_s:.0f} s; "
          f"wrk: candidate mix for {args.mix_duration} s ...", flush=True)
    load_before = os.getloadavg()[0]
    mix = run_mix(stack.gateway_url, invites, args, work)
    return mix_section(mix, args, len(invites), seed_s, (load_before, os.getloadavg()[0]))


def main() -> None:
    """Runs the phases and writes the results (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per phase (a read phase's, over its rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the read phases take turns in")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--interviews", type=int, default=6000,
                        help="interviews seeded (the two submit phases answer half each)")
    parser.add_argument("--workers", type=int, default=2,
                        help="the gateway's phases run again on a second gateway with this many worker processes")
    parser.add_argument("--mix-duration", type=int, default=TARGET_SECONDS,
                        help="seconds of the candidate mix (issue #8 asks for 300)")
    parser.add_argument("--mix-connections", type=int, default=MIX_CONNECTIONS,
                        help="wrk connections of the candidate mix, each on a wrk thread of its own")
    parser.add_argument("--mix-seed-rate", type=float, default=MIX_SEED_RATE,
                        help="requests/s the invites seeded for the mix last for at the shortest interviews "
                             f"(default {MIX_SEED_RATE:g}; a machine that reaches the target needs {TARGET_RATE:,.0f})")
    parser.add_argument("--only", choices=["mix", "phases", "submit"],
                        help="run only the mix or only the other phases, each writing only its part of the README "
                             "section; or only one submit formula phase, printed and not written")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave benchmarks/README.md alone")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk; `make bench-gateway` does it)")
    os.environ.update(RATE_LIMIT_ENV)
    for name in REMOTE_ENV:
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        settings = StackSettings.isolated(work / "data")
        print(f"starting the stack in {settings.data_dir} ...", flush=True)
        with Stack(settings) as stack:
            if args.only == "submit":
                print(run_submit_alone(stack, args, work))
                return
            phases = None if args.only == "mix" else run_phases(stack, args, work)
            mix = None if args.only == "phases" else run_mix_phase(stack, args, work)
    if phases is None:
        assert mix is not None
        publish_mix_alone(mix, write=not args.no_readme)
    else:
        # Without a mix of this run, the section keeps the mix's part it has.
        mix_block = _mix_block(mix) if mix is not None else recorded_mix_block()
        publish(README, SECTION, f"{phases}\n\n{mix_block}".rstrip(), write=not args.no_readme)


if __name__ == "__main__":
    main()
