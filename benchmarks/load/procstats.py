"""Per-process CPU and memory of the stack during a load run, sampled with psutil.

Processes are grouped by what they are (gateway, orchestrator, scorer, postgres, redis,
tritonserver, locust), so PostgreSQL's per-connection backends and Triton's Python
backend stubs count with their server.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

def raise_open_files(needed: int) -> None:
    """Raises this process's open-files limit to its hard limit (the stack's processes
    inherit it): every concurrent user holds a socket in locust and in the gateway.

    Raises:
        SystemExit: When the hard limit is below ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"the open-files limit ({hard}) is below {needed}: raise it (ulimit -n) first")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


GROUPS = ("gateway", "orchestrator", "scorer", "postgres", "redis", "tritonserver", "locust")


def group_of(process: psutil.Process) -> str | None:
    """Which group a process belongs to, from its name and command line; None for others."""
    try:
        name = process.name()
        argv = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if any("locust" in part for part in argv[:3]):
        return "locust"
    for service in ("gateway", "orchestrator", "scorer"):
        if argv[1:3] == ["-m", service]:
            return service
    if name.startswith(("postgres", "postmaster")):
        return "postgres"
    if "redis" in name:
        return "redis"
    if "triton" in name:
        return "tritonserver"
    return None


@dataclass
class GroupStats:
    """One group's samples: CPU in percent of one core, RSS in bytes."""

    cpu_percent: list[float] = field(default_factory=list)
    rss_bytes: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def mean_cpu(self) -> float:
        return statistics.fmean(self.cpu_percent) if self.cpu_percent else 0.0

    @property
    def peak_cpu(self) -> float:
        return max(self.cpu_percent, default=0.0)

    @property
    def mean_rss(self) -> float:
        return statistics.fmean(self.rss_bytes) if self.rss_bytes else 0.0

    @property
    def peak_rss(self) -> int:
        return max(self.rss_bytes, default=0)


class ProcessSampler:
    """Samples every descendant of this process once per ``interval_s`` in a thread.

    CPU is the growth of each process's user+system time between samples, so a process
    first seen at the first sample counts only from then, and one born later counts
    from its start.

    Args:
        interval_s: Seconds between samples.
        root: Whose descendants to sample; this process by default.
    """

    def __init__(self, interval_s: float = 1.0, root: int | None = None) -> None:
        self.interval_s = interval_s
        self._root = psutil.Process(root or os.getpid())
        self.groups = {name: GroupStats() for name in GROUPS}
        self.times: list[float] = []
        self._seen: dict[int, tuple[psutil.Process, str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)

    def start(self) -> None:
        """Takes the baseline sample and starts sampling."""
        self._sample(record=False)
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Takes a last sample and stops."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            self._sample(record=True, elapsed=now - last)
            last = now
        self._sample(record=True, elapsed=max(time.monotonic() - last, 1e-3))

    def _sample(self, record: bool, elapsed: float = 1.0) -> None:
        cpu = dict.fromkeys(GROUPS, 0.0)
        rss = dict.fromkeys(GROUPS, 0)
        for process in self._root.children(recursive=True):
            known = self._seen.get(process.pid)
            group = known[1] if known else group_of(process)
            if group is None:
                continue
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    total = times.user + times.system
                    memory = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            # A process first seen at the baseline counts from now; one born later, from its start.
            previous = known[2] if known else (total if not record else 0.0)
            self._seen[process.pid] = (process, group, total)
            cpu[group] += total - previous
            rss[group] += memory
        if not record:
            return
        self.times.append(time.monotonic() - self._started)
        for name in GROUPS:
            stats = self.groups[name]
            stats.cpu_seconds += cpu[name]
            stats.cpu_percent.append(100.0 * cpu[name] / elapsed)
            stats.rss_bytes.append(rss[name])


def wait_with_sampler(sampler: ProcessSampler, done: Callable[[], bool], poll_s: float = 0.5) -> float:
    """Samples until ``done()`` is true; returns the seconds it took."""
    started = time.monotonic()
    sampler.start()
    try:
        while not done():
            time.sleep(poll_s)
    finally:
        sampler.stop()
    return time.monotonic() - started
