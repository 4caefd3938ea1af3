"""A few seconds of the gateway benchmark's candidate mix (mix.lua under wrk) against a real
stack, so the script never rots.

Rates are the benchmark's business (``make bench-mix``); this only checks that wrk's
connections walk whole interviews through the current API, every request answered with a 2xx.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from stack.runner import Stack

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "gateway"))

from bench_gateway import MIX_SCRIPT, measure_wrk, mix_invites_needed, write_answer_pool  # noqa: E402
from run import seed  # noqa: E402

pytestmark = pytest.mark.e2e

# One connection per wrk thread, as mix.lua requires.
CONNECTIONS = 2
SECONDS = 6
# Far above the mix's 10% and 5%, so a run this short surely reloads and resends, and checks
# that a resend under the same key brings back the same answer.
RELOAD_P = RESEND_P = 0.5
# Invites for a rate well above what two connections reach on two cores, so neither is likely to
# run dry; one that does stops early (the script's own way), which this test does not mind.
SEED_RATE = 200.0


@pytest.fixture(scope="module")
def wrk() -> str:
    """wrk's path; fails (before the stack starts) when it is missing, as `make test` installs it."""
    path = shutil.which("wrk")
    if path is None:
        pytest.fail("wrk is not installed; `make test` installs it (apt-get install wrk)")
    return path


def test_mix_walks_whole_interviews_without_a_failure(wrk: str, unthrottled_stack: Stack, tmp_path: Path) -> None:
    invites, answers = tmp_path / "invites.txt", tmp_path / "answers.txt"
    tokens = asyncio.run(seed(unthrottled_stack.gateway_url, mix_invites_needed(SEED_RATE, SECONDS, CONNECTIONS)))
    invites.write_text("\n".join(tokens) + "\n")
    write_answer_pool(answers, per_kind=50)
    mix = measure_wrk(
        "candidate mix", unthrottled_stack.gateway_url, MIX_SCRIPT,
        [f"-t{CONNECTIONS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s"],
        script_args=(str(invites), str(answers), str(CONNECTIONS), str(RELOAD_P), str(RESEND_P)),
    )
    result = mix.details
    summary = {key: value for key, value in result.items() if key != "types"}
    responses = {name: n for name, (n, _) in result["types"].items()}
    # Everything a candidate's walk through an interview does; which kinds of answer it gives
    # depends on the questions the adaptive engine picks.
    for name in ("start interview", "get session (reload)", "get question", "submit answer [same key again]",
                 "finish interview"):
        assert responses[name] > 0, f"no {name!r} responses: {responses}, {summary}"
    assert sum(n for name, n in responses.items() if name.startswith("submit answer [")) > 0, responses
    # wrk's socket errors and timeouts, and non-2xx as wrk and the script count them (the
    # script also counts a resend that brought back another answer, and a lost response).
    assert result["errors"] == 0 and result["non_2xx"] == 0, summary
    assert all(bad == 0 for _, bad in result["types"].values()) and not result["failures"], result
    assert result["interviews"] > 0 and result["lost"] == 0 and result["abandoned"] == 0, summary
