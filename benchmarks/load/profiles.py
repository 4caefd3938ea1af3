"""py-spy profiles of the Python services in the middle of a load run.

Optional: used when a ``py-spy`` binary is found (``--py-spy``, or on ``PATH``). Each
service is sampled for a while with ``py-spy record --format raw`` (collapsed stacks),
and the report names the functions that held the CPU: the innermost frames, and the
innermost frames of the project's own code (``gateway/``, ``orchestrator/``,
``scorer/``, ``common/``), which say which step of a request the time belongs to.
Samples whose innermost frame is the event loop itself (``Runner.run``, ``Handle._run``)
are time in native code called from the loop (uvloop, grpc's C core) or the loop's own
bookkeeping.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

OWN_CODE = ("gateway/", "orchestrator/", "scorer/", "common/")
# Innermost frames that are waiting, not working: the event loop's poll and idle worker
# threads. py-spy does not always see these as idle, so they are left out of the shares.
WAITING = ("EpollSelector.select (selectors.py", "Condition.wait (threading.py", "Queue.get (queue.py")


def record(py_spy: str, pids: dict[str, int], seconds: int, out_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Starts one ``py-spy record`` per service; returns the recorders (wait for them)."""
    recorders = []
    for name, pid in pids.items():
        command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50",
                   "--nonblocking", "--format", "raw", "--output", str(out_dir / f"py-spy-{name}.txt")]
        recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return recorders


def _frame(frame: str) -> str:
    """``function (path/to/file.py:12)`` shortened to ``function (file.py)``."""
    function, _, where = frame.partition(" (")
    file = where.split(":", 1)[0].rstrip(")")
    return f"{function} ({file.rsplit('/', 1)[-1]})" if file else function


def top_frames(collapsed: Path, limit: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The innermost frames and innermost own-code frames by share of samples.

    Returns:
        ``(leaves, own)``: lists of ``(frame, share of samples)``, largest first.
    """
    leaves: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(WAITING):
            continue
        total += count
        leaves[_frame(frames[-1])] += count
        # Entry points (__main__.py) sit under every sample; they say nothing about where time goes.
        mine = [f for f in frames if any(part in f for part in OWN_CODE) and "__main__.py" not in f]
        own[_frame(mine[-1]) if mine else "(outside the project's code)"] += count
    if not total:
        return [], []
    return ([(f, c / total) for f, c in leaves.most_common(limit)], [(f, c / total) for f, c in own.most_common(limit)])


def markdown(out_dir: Path, names: list[str], seconds: int) -> str:
    """A table per service of where its CPU samples were; empty when nothing was recorded."""
    parts = []
    for name in names:
        path = out_dir / f"py-spy-{name}.txt"
        if not path.exists():
            continue
        leaves, own = top_frames(path)
        cells = [
            [f"{f} | {share:.0%}" for f, share in column] + [" | "] * (max(len(leaves), len(own)) - len(column))
            for column in (leaves, own)
        ]
        rows = "\n".join(f"| {a} | {b} |" for a, b in zip(*cells, strict=True))
        parts.append(f"**{name}** (py-spy, {seconds} s mid-run, 50 Hz, all threads, waiting samples left out)\n\n"
                     "| innermost frame | share | innermost own-code frame | share |\n|---|---|---|---|\n" + rows)
    return "\n\n".join(parts)
