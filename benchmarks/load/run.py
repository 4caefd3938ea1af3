"""Load scenario: the whole stack on embedded defaults, driven by locust, measured per process.

Starts PostgreSQL, Redis, Triton and the three services in a temporary data directory
(``stack.runner.Stack``, as the e2e tests do), seeds interviews with invites through the
admin REST API, runs ``benchmarks/load/locustfile.py`` headless for a bounded time with
bounded users, samples CPU and memory of every process each second, and writes the
results section of benchmarks/README.md and the plots in benchmarks/load/.

    make bench-load                              # the recorded scenario
    .venv/bin/python benchmarks/load/run.py --candidates 20 --duration 20 --no-readme   # a smoke run

Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO_ROOT)]

from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD  # noqa: E402
import profiles  # noqa: E402
from procstats import ProcessSampler, raise_open_files, wait_with_sampler  # noqa: E402
from report import (  # noqa: E402
    AGGREGATED,
    busiest,
    plot,
    process_table,
    publish,
    read_history,
    read_stats,
    request_table,
    target_lines,
    versus_target,
)
from stack.runner import Stack  # noqa: E402
from stack.settings import StackSettings  # noqa: E402

README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "load"

# Every request of the run comes from 127.0.0.1, so the per-IP limits (and the sign-in
# limit, which invites share) would throttle the load generator, not the product.
UNTHROTTLED = 10_000_000
RATE_LIMIT_ENV = {
    "XLI_RATE_LIMIT_IP_PER_MIN": str(UNTHROTTLED),
    "XLI_RATE_LIMIT_LOGIN_PER_MIN": str(UNTHROTTLED),
    "XLI_RATE_LIMIT_API_KEY_PER_MIN": str(UNTHROTTLED),
    "XLI_RATE_LIMIT_CANDIDATE_PER_MIN": str(UNTHROTTLED),
}


def make_parser() -> argparse.ArgumentParser:
    """The scenario's options; the defaults are the recorded scenario."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300, help="concurrent candidate users")
    # Enough to ask for issue #8's 1,000 reports a minute: 4 of a manager's 5 page views open a
    # report, so 30 managers at 1 s between pages ask for about 1,300 a minute while responses are fast.
    parser.add_argument("--managers", type=int, default=30, help="hiring-manager users")
    parser.add_argument("--orchestrator-users", type=int, default=2, help="gRPC users on the orchestrator")
    parser.add_argument("--scorer-users", type=int, default=2, help="gRPC users on the scorer")
    parser.add_argument("--probes", type=int, default=1, help="health-probe users")
    parser.add_argument("--spawn-rate", type=float, default=20.0, help="users started per second")
    parser.add_argument("--duration", type=int, default=150, help="seconds of load (at most 180 on a shared box)")
    parser.add_argument("--think", type=float, default=4.0, help="candidates' mean think time in seconds")
    parser.add_argument("--manager-think", type=float, default=1.0, help="managers' mean seconds between pages")
    parser.add_argument("--grpc-think", type=float, default=0.5, help="gRPC users' mean seconds between calls")
    parser.add_argument("--interviews", type=int, default=0,
                        help="interviews to seed (default: enough for every candidate to keep going)")
    # `make bench-load` installs py-spy into the virtual environment, whose bin may not be on PATH.
    beside_python = Path(sys.executable).with_name("py-spy")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or (str(beside_python) if beside_python.exists() else ""),
                        help="py-spy binary; when set, the services are profiled in the middle of the run")
    parser.add_argument("--profile-seconds", type=int, default=30, help="how long py-spy samples each service")
    parser.add_argument("--raw-dir", type=Path, default=None, help="keep locust's CSVs and logs here")
    parser.add_argument("--plots-dir", type=Path, default=HERE, help="where the PNG plots go")
    parser.add_argument("--no-readme", action="store_true", help="print the section instead of writing it")
    return parser


# Where results go, not what is measured: left out of the command that reproduces a run.
OUTPUT_OPTIONS = ("raw_dir", "plots_dir", "no_readme", "py_spy", "profile_seconds")
SERVICES = ["gateway", "orchestrator", "scorer"]


def reproduce_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``make bench-load`` for the default scenario, else run.py with the options that differ."""
    changed = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
               if name not in OUTPUT_OPTIONS and value != parser.get_default(name)]
    return "python benchmarks/load/run.py " + shlex.join(changed) if changed else "make bench-load"


def interviews_needed(args: argparse.Namespace) -> int:
    """Enough invites that no candidate runs out: an interview is at least 8 answers apart by think time."""
    per_candidate = args.duration / max(8 * 0.5 * args.think, 1.0) + 1
    return int(args.candidates * per_candidate) + 10


async def seed(base_url: str, count: int, concurrency: int = 8) -> list[str]:
    """Creates ``count`` interviews as the development admin; returns their invite tokens."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        login = await client.post("/api/v1/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
        login.raise_for_status()
        headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        gate = asyncio.Semaphore(concurrency)

        async def create(index: int) -> str:
            async with gate:
                reply = await client.post("/api/v1/interviews", json={"candidate_name": f"Load Candidate {index}"},
                                          headers=headers)
                reply.raise_for_status()
                url: str = reply.json()["invite_url"]
                return url.split("#invite=", 1)[1]

        return list(await asyncio.gather(*(create(i) for i in range(count))))


@dataclass
class Candidate:
    """One accepted invite: the session, its token and its first question."""

    session_id: str
    token: str
    item_id: str
    kind: str
    question: dict[str, Any]


async def accept_all(base_url: str, tokens: list[str], concurrency: int = 8) -> list[Candidate]:
    """Accepts each invite as its candidate would."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        gate = asyncio.Semaphore(concurrency)

        async def accept(invite: str) -> Candidate:
            async with gate:
                reply = await client.post("/api/v1/invites/accept", json={"invite_token": invite})
                reply.raise_for_status()
                body = reply.json()
                question = body["question"]
                return Candidate(body["session"]["session_id"], body["access_token"], question["item_id"],
                                 question["kind"], question)

        return list(await asyncio.gather(*(accept(t) for t in tokens)))


async def database_size(url: str) -> int:
    """Bytes of the interview database on disk (``pg_database_size``)."""
    connection = await asyncpg.connect(url, timeout=10)
    try:
        size: int = await connection.fetchval("SELECT pg_database_size(current_database())")
        return size
    finally:
        await connection.close()


async def interview_counts(url: str) -> dict[str, int]:
    """Rows in the tables that grow with interviews."""
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return {table: await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
                for table in ("sessions", "answers", "scores")}
    finally:
        await connection.close()


def redis_memory(url: str) -> int:
    """Redis ``used_memory`` in bytes."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def locust_command(args: argparse.Namespace, stack: Stack, invites: Path, csv_prefix: Path) -> list[str]:
    """locust headless against ``stack``: bounded users and time, CSVs with the per-second history."""
    users = args.candidates + args.managers + args.orchestrator_users + args.scorer_users + args.probes
    return [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
        "-u", str(users), "-r", str(args.spawn_rate), "-t", f"{args.duration}s",
        "--host", stack.gateway_url, "--csv", str(csv_prefix), "--csv-full-history", "--only-summary",
        "--loglevel", "WARNING",
        "--invites-file", str(invites), "--think-time", str(args.think),
        "--manager-think-time", str(args.manager_think), "--grpc-think-time", str(args.grpc_think),
        "--managers", str(args.managers), "--orchestrator-users", str(args.orchestrator_users),
        "--scorer-users", str(args.scorer_users), "--probes", str(args.probes),
        "--scorer-address", stack.scorer_address, "--orchestrator-address", stack.orchestrator_address,
    ]


def code_state() -> str:
    """The commit measured, and how many files differed from it (others may edit the tree meanwhile)."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True, check=False).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line for line in git("status", "--porcelain").splitlines() if "benchmarks/" not in line]
    return f"commit {commit}" + (f" with {len(changed)} uncommitted changed files outside benchmarks/" if changed else "")


def machine() -> str:
    """CPU model, cores and memory of this machine, in one phrase."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} cores ({model}), {memory_gb:.0f} GB RAM, Python {platform.python_version()}"


# Kept out of the services' environment: with it the scorer would ask a remote LLM judge, and
# every byte of a load run has to stay on 127.0.0.1.
REMOTE_ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY")


def main() -> None:
    """Runs the scenario and writes the results (see the module docstring)."""
    parser = make_parser()
    args = parser.parse_args()
    # The Stack passes this process's environment on to the services it starts.
    os.environ.update(RATE_LIMIT_ENV)
    for name in REMOTE_ENV:
        os.environ.pop(name, None)
    interviews = args.interviews or interviews_needed(args)
    raise_open_files(args.candidates + 1024)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        raw = args.raw_dir or Path(tmp) / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        settings = StackSettings.isolated(Path(tmp) / "data")
        print(f"starting the stack in {settings.data_dir} ...", flush=True)
        with Stack(settings) as stack:
            started = time.monotonic()
            tokens = asyncio.run(seed(stack.gateway_url, interviews))
            seed_s = time.monotonic() - started
            print(f"seeded {len(tokens)} interviews in {seed_s:.1f} s; running locust for {args.duration} s ...",
                  flush=True)
            invites = raw / "invites.txt"
            invites.write_text("\n".join(tokens) + "\n")
            db_before, redis_before = asyncio.run(database_size(stack.database_url)), redis_memory(stack.redis_url)
            command = locust_command(args, stack, invites, raw / "locust")
            sampler = ProcessSampler(interval_s=1.0)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
            recorders: list[subprocess.Popen[bytes]] = []
            if args.py_spy:
                # Mid-run, once every user is running and before the end.
                pids = {name: stack.process(name).pid for name in SERVICES}
                delay = max(args.duration / 2 - args.profile_seconds / 2, 0)
                timer = threading.Timer(delay, lambda: recorders.extend(
                    profiles.record(args.py_spy, pids, args.profile_seconds, raw)))
                timer.start()
            with (raw / "locust.log").open("wb") as log:
                locust = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    seconds = wait_with_sampler(sampler, lambda: locust.poll() is not None)
                finally:
                    # Interrupted: locust must not outlive the stack it drives.
                    if locust.poll() is None:
                        locust.terminate()
                        locust.wait(timeout=30)
            for recorder in recorders:
                recorder.wait(timeout=60)
            dead = stack.check_alive()
            db_after, redis_after = asyncio.run(database_size(stack.database_url)), redis_memory(stack.redis_url)
            counts = asyncio.run(interview_counts(stack.database_url))
        load_after = os.getloadavg()[0]

        rows = read_stats(raw / "locust_stats.csv")
        if not any(r.requests for r in rows):
            tail = (raw / "locust.log").read_text(errors="replace")[-3000:]
            sys.exit(f"locust made no requests; the end of its log:\n{tail}")
        history = read_history(raw / "locust_stats_history.csv")
        plots = plot(history, sampler, args.plots_dir)
        run_s = float(args.duration)
        total = next(r for r in rows if r.name == AGGREGATED)
        reproduce = reproduce_command(parser, args)
        section = "\n".join([
            "## load (`make bench-load`)",
            "",
            f"Load scenario, {dt.date.today().isoformat()}, {code_state()}, {machine()}; everything (PostgreSQL, Redis, Triton on CPU, "
            "the three services, one gateway worker, and locust itself) shares the machine. 1-minute load average "
            f"before/after: {load_before:.1f}/{load_after:.1f} (other work on the shared box competes for the cores).",
            "",
            f"Scenario: **{args.candidates} candidates** over REST with a **{args.think:g} s mean think time** "
            "(uniform 0.5×–1.5×), "
            f"{args.managers} hiring managers ({args.manager_think:g} s between pages), {args.orchestrator_users} "
            f"orchestrator and {args.scorer_users} scorer gRPC users ({args.grpc_think:g} s), {args.probes} health "
            f"probe; {args.spawn_rate:g} users/s ramp, {args.duration} s. Seeded {len(tokens):,} interviews through "
            f"the admin API in {seed_s:.0f} s ({len(tokens) / seed_s:.0f}/s). Rate limits raised for loopback "
            f"(all traffic is 127.0.0.1). Reproduce: `{reproduce}`. What the users do and what the figures "
            "point at: [load/README.md](load/README.md).",
            "",
            f"Throughput: **{total.requests / run_s:,.0f} requests/s** ({60 * total.requests / run_s:,.0f}/min), "
            f"{total.requests:,} requests, **{total.failures:,} failures**."
            + (f" Services that exited during the run: {', '.join(dead)}." if dead else ""),
            "",
            request_table(rows, run_s),
            "",
            f"Targets (issue #8; this run: {versus_target(args.candidates, args.think)}):",
            "",
            *target_lines(rows, run_s),
            "",
            f"Processes, sampled every second with psutil over {seconds:.0f} s (CPU % of one core; RSS sums every "
            "process of a group, so PostgreSQL's shared buffers count once per backend):",
            "",
            process_table(sampler, total.requests),
            "",
            busiest(sampler),
            "",
            profiles.markdown(raw, SERVICES, args.profile_seconds) if args.py_spy else
            "(No py-spy profiles: pass `--py-spy PATH` or put py-spy on PATH.)",
            "",
            f"Storage: PostgreSQL database {db_before / 1024**2:,.1f} → {db_after / 1024**2:,.1f} MB, Redis used_memory "
            f"{redis_before / 1024**2:,.1f} → {redis_after / 1024**2:,.1f} MB; at the end {counts['sessions']:,} "
            f"sessions, {counts['answers']:,} answers, {counts['scores']:,} scores "
            f"(≈ {(redis_after - redis_before) / max(counts['sessions'], 1) / 1024:,.1f} KB of Redis and "
            f"{(db_after - db_before) / max(counts['sessions'], 1) / 1024:,.1f} KB of database per session started).",
            "",
            *(f"![{p.stem}](load/{p.name})" for p in plots),
        ])
    publish(README, SECTION, section, write=not args.no_readme)


if __name__ == "__main__":
    main()
