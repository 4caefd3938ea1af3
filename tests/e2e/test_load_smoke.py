"""A few seconds of the locust load scenario against a real stack, so its files never rot.

Timings are the benchmark's business (``make bench-load``); this only checks that every kind
of user runs its flow against the current API without a single failed request.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
from pathlib import Path

import pytest

# benchmarks/load is on sys.path (conftest.py), as is the unthrottled_stack fixture.
from report import AGGREGATED, read_stats
from run import locust_command, seed
from stack.runner import Stack

pytestmark = pytest.mark.e2e


def test_every_locust_user_runs_without_a_failure(unthrottled_stack: Stack, tmp_path: Path) -> None:
    invites = tmp_path / "invites.txt"
    invites.write_text("\n".join(asyncio.run(seed(unthrottled_stack.gateway_url, 20))) + "\n")
    scenario = argparse.Namespace(
        candidates=3, managers=1, orchestrator_users=1, scorer_users=1, probes=1, spawn_rate=10.0,
        duration=8, think=0.3, manager_think=0.5, grpc_think=0.3,
    )
    command = locust_command(scenario, unthrottled_stack, invites, tmp_path / "locust")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    rows = {row.name: row for row in read_stats(tmp_path / "locust_stats.csv")}
    assert done.returncode == 0, done.stderr[-3000:]
    total = rows[AGGREGATED]
    assert total.requests > 0 and total.failures == 0, done.stderr[-3000:]
    names = " ".join(rows)
    # Each kind of user made its calls: candidates answered, managers read, gRPC users called.
    for needle in ("accept invite", "submit answer", "dashboard list", "health (liveness)", "Orchestrator.", "Scorer."):
        assert needle in names, f"no {needle!r} request among {sorted(rows)}"
