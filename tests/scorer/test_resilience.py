"""The circuit breaker and the retry policy on their own, with a fake clock and fake calls."""

from __future__ import annotations

import asyncio

import pytest

from common.errors import DeadlineExceeded, InvalidArgument, Unavailable
from scorer.resilience import BreakerState, CircuitBreaker, SlowError, TransientError, call_with_retries


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_at_threshold_probes_once_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker("dep", failure_threshold=3, reset_timeout_s=2.0, clock=clock)
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure("connection refused")
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(Unavailable, match="circuit open .* connection refused"):
        breaker.before_call()
    clock.now = 2.0
    breaker.before_call()  # the one probe
    with pytest.raises(Unavailable):
        breaker.before_call()  # others still fail fast while it is out
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()


def test_failed_probe_reopens_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    breaker.record_failure("down")
    clock.now = 1.5
    breaker.before_call()
    breaker.record_failure("still down")
    assert breaker.state is BreakerState.OPEN
    clock.now = 2.0
    with pytest.raises(Unavailable, match="still down"):
        breaker.before_call()


async def test_transient_failures_are_retried_then_succeed() -> None:
    attempts = []

    async def flaky(budget: float) -> str:
        attempts.append(budget)
        if len(attempts) < 3:
            raise TransientError("connection reset")
        return "ok"

    breaker = CircuitBreaker("dep", failure_threshold=10)
    assert await call_with_retries(flaky, breaker, timeout_s=1.0, max_retries=2, backoff_s=0.001) == "ok"
    assert len(attempts) == 3 and breaker.state is BreakerState.CLOSED


async def test_slow_and_rejected_calls_are_not_retried() -> None:
    calls = 0

    async def slow(budget: float) -> None:
        nonlocal calls
        calls += 1
        raise SlowError("too slow")

    async def rejected(budget: float) -> None:
        nonlocal calls
        calls += 1
        raise InvalidArgument("bad input")

    breaker = CircuitBreaker("dep")
    with pytest.raises(DeadlineExceeded):
        await call_with_retries(slow, breaker, timeout_s=1.0)
    with pytest.raises(InvalidArgument):
        await call_with_retries(rejected, breaker, timeout_s=1.0)
    assert calls == 2


async def test_retries_stop_at_the_callers_deadline() -> None:
    budgets: list[float] = []

    async def down(budget: float) -> None:
        budgets.append(budget)
        raise TransientError("down")

    loop = asyncio.get_running_loop()
    breaker = CircuitBreaker("dep", failure_threshold=100)
    with pytest.raises(Unavailable):
        await call_with_retries(down, breaker, timeout_s=5.0, deadline=loop.time() + 0.05, max_retries=50, backoff_s=0.02)
    # Every attempt got at most the time left, and retrying stopped at the deadline.
    assert all(b <= 0.05 for b in budgets) and len(budgets) < 50
    with pytest.raises(DeadlineExceeded, match="no time left"):
        await call_with_retries(down, breaker, timeout_s=5.0, deadline=loop.time() - 1)
