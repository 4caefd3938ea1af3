"""Failure handling for calls to Triton: a circuit breaker and deadline-bounded retries.

Only idempotent calls go through :func:`call_with_retries` (inference of a pure model,
readiness and metadata queries), so repeating one after a lost connection is safe.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import Counter, Gauge

from common.errors import DeadlineExceeded, ServiceError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

BREAKER_STATE = Gauge(
    "xli_scorer_triton_circuit_state", "Triton circuit breaker: 0 closed, 1 half-open, 2 open", ["target"]
)
BREAKER_REJECTED = Counter(
    "xli_scorer_triton_circuit_rejected_total", "Calls failed fast because the circuit was open", ["target"]
)
RETRIES = Counter("xli_scorer_triton_retries_total", "Triton calls retried after a transient failure", ["target"])


class TransientError(Unavailable):
    """A failure worth retrying and counting against the breaker (connection lost, server down)."""


class SlowError(DeadlineExceeded):
    """The call ran out of time; counts against the breaker but is not retried (it would add load)."""


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Fails calls fast while a dependency keeps failing, then probes it again.

    Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: calls
    fail at once with UNAVAILABLE for ``reset_timeout_s``. Half-open: one probe call
    passes (others still fail fast); its success closes the breaker, its failure
    opens it again.

    Args:
        target: Name used in messages and metrics, e.g. ``triton``.
        failure_threshold: Consecutive failures that open the circuit.
        reset_timeout_s: How long the circuit stays open before a probe.
        clock: Monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        target: str,
        failure_threshold: int = 5,
        reset_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED
        self._probing = False
        self._last_error = ""
        BREAKER_STATE.labels(target).set(0)

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose timeout passed reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._reset_timeout_s:
            return BreakerState.HALF_OPEN
        return self._state

    def before_call(self) -> None:
        """Admits a call or fails it fast.

        Raises:
            Unavailable: The circuit is open, or half-open with a probe already in flight.
        """
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            self._set(BreakerState.HALF_OPEN)
            return
        BREAKER_REJECTED.labels(self.target).inc()
        retry_in = max(0.0, self._reset_timeout_s - (self._clock() - self._opened_at))
        raise Unavailable(
            f"{self.target} circuit open after {self._failures} consecutive failures "
            f"(last: {self._last_error}); next probe in {retry_in:.1f}s"
        )

    def record_success(self) -> None:
        """Closes the circuit."""
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            log.info("%s circuit closed", self.target)
        self._set(BreakerState.CLOSED)

    def release_probe(self) -> None:
        """Frees the half-open probe slot of a call that ended without a verdict (cancelled)."""
        self._probing = False

    def record_failure(self, error: str) -> None:
        """Counts a failure; opens the circuit at the threshold or when a probe fails."""
        self._failures += 1
        self._last_error = error
        if self._probing or self._failures >= self._threshold:
            if self._state is not BreakerState.OPEN or self._probing:
                log.warning("%s circuit open after %d failures: %s", self.target, self._failures, error)
            self._probing = False
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        BREAKER_STATE.labels(self.target).set(int(state))


async def call_with_retries(
    call: Callable[[float], Awaitable[T]],
    breaker: CircuitBreaker,
    *,
    timeout_s: float,
    deadline: float | None = None,
    max_retries: int = 2,
    backoff_s: float = 0.02,
) -> T:
    """Runs an idempotent call through the breaker, retrying transient failures with jitter.

    Args:
        call: The call; gets the seconds it may take and raises :class:`TransientError`,
            :class:`SlowError` or another :class:`ServiceError`.
        breaker: Breaker guarding the dependency.
        timeout_s: Longest a single attempt may take.
        deadline: Caller's deadline on the event loop's clock; no attempt or backoff
            starts past it, and no attempt is given more time than is left.
        max_retries: Retries after the first attempt.
        backoff_s: Base backoff; attempt ``n`` sleeps a random ``[0, backoff_s * 2**n]``
            ("full jitter"), so callers that failed together do not retry together.

    Returns:
        The call's result.

    Raises:
        Unavailable: The circuit is open, or the last attempt failed transiently.
        DeadlineExceeded: An attempt timed out, or the caller's deadline left no time.
        ServiceError: A non-transient failure, raised as it is.
    """
    loop = asyncio.get_running_loop()
    attempt = 0
    last_failure: TransientError | None = None
    while True:
        budget = timeout_s if deadline is None else min(timeout_s, deadline - loop.time())
        if budget <= 0:
            # A backoff that overran the deadline (a busy loop sleeps long) still reports
            # why the dependency failed, not only that time ran out.
            if last_failure is not None:
                raise last_failure
            raise DeadlineExceeded(f"no time left for {breaker.target} before the caller's deadline")
        breaker.before_call()
        try:
            result = await call(budget)
        except TransientError as exc:
            last_failure = exc
            breaker.record_failure(exc.message)
            if attempt >= max_retries:
                raise
            pause = random.uniform(0.0, backoff_s * 2**attempt)
            if deadline is not None and loop.time() + pause >= deadline:
                raise
            attempt += 1
            RETRIES.labels(breaker.target).inc()
            await asyncio.sleep(pause)
            continue
        except SlowError as exc:
            breaker.record_failure(exc.message)
            raise
        except ServiceError:
            # The dependency answered (e.g. rejected the input): it is up, so the probe succeeded.
            breaker.record_success()
            raise
        except BaseException:
            # Cancelled by the caller: the dependency is not judged either way.
            breaker.release_probe()
            raise
        breaker.record_success()
        return result
