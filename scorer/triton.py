"""The models on Triton, called over KServe v2 gRPC with coalesced multi-row requests.

One Triton request per answer caps a Python client near 2,500 requests/s, so concurrent
callers' rows are gathered by a :class:`RowBatcher` for up to a short window and sent as
one request. Every call goes through one :class:`TritonEndpoint`, which maps Triton's
errors to service statuses and applies the circuit breaker and retries of
:mod:`scorer.resilience`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from prometheus_client import Counter, Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from common.errors import NotFound, Unavailable
from scorer.resilience import CircuitBreaker, SlowError, TransientError, call_with_retries

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_ROWS = Histogram(
    "xli_scorer_triton_batch_rows",
    "Rows per Triton request",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
TRITON_LATENCY = Histogram(
    "xli_scorer_triton_request_seconds",
    "Latency of one Triton request (one attempt)",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TRITON_ERRORS = Counter("xli_scorer_triton_errors_total", "Failed Triton requests", ["model", "status"])

# Statuses meaning Triton (or the path to it) is down or overloaded: retried, and
# counted by the breaker. INTERNAL covers a crashed Python-backend stub.
_TRANSIENT = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "ABORTED")


# tritonclient's defaults, plus a reconnect backoff capped at 2 s (gRPC's default grows to
# 120 s), so a restarted Triton is found again within the breaker's probe interval.
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass(frozen=True)
class ModelInfo:
    """What Triton says about a model it serves.

    Attributes:
        name: The model's name.
        version: Its newest version.
        ready: Whether Triton can run it.
        origin: The ``origin`` parameter of its config.pbtxt (``trained``, ``hand_set``, ...),
            or "" when the config does not say; scores label a model by it.
    """

    name: str
    version: str
    ready: bool
    origin: str = ""


def _map_error(model: str, exc: InferenceServerException) -> Exception:
    status = str(exc.status() or "").removeprefix("StatusCode.")
    message = exc.message() or str(exc)
    TRITON_ERRORS.labels(model, status or "unknown").inc()
    if status == "DEADLINE_EXCEEDED":
        return SlowError(f"Triton did not answer in time for {model}: {message}")
    if "unknown model" in message.lower() or status == "NOT_FOUND":
        return NotFound(f"Triton does not serve it: {message}")
    if not status or status in _TRANSIENT:
        return TransientError(f"Triton unavailable for {model} ({status or 'no status'}): {message}")
    return Unavailable(f"Triton rejected the {model} request ({status}): {message}")


class TritonEndpoint:
    """One Triton server: a shared gRPC client, its circuit breaker and retry policy.

    Args:
        url: ``host:port`` of Triton's gRPC endpoint.
        timeout_s: Longest one attempt may take.
        breaker: Breaker for this server; a default one is made when None.
        max_retries: Retries of a transient failure (never past the caller's deadline).
        backoff_s: Base of the jittered backoff between attempts.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        breaker: CircuitBreaker | None = None,
        max_retries: int = 2,
        backoff_s: float = 0.02,
    ) -> None:
        self.url = url
        self.client = InferenceServerClient(url=url, channel_args=_CHANNEL_ARGS)
        self.breaker = breaker or CircuitBreaker("triton")
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s

    async def call(
        self,
        model: str,
        request: Callable[[float], Awaitable[T]],
        deadline: float | None = None,
        timeout_s: float | None = None,
    ) -> T:
        """Runs an idempotent Triton call with error mapping, breaker and retries.

        Args:
            model: Model the call is about (for messages and metrics).
            request: Makes the call given the seconds it may take.
            deadline: Caller's deadline on the event loop's clock.
            timeout_s: Longest one attempt may take, if not the endpoint's default.

        Returns:
            The call's result.

        Raises:
            Unavailable: Triton is down, the circuit is open, or Triton rejected the call.
            DeadlineExceeded: Triton was too slow or the deadline left no time.
            NotFound: Triton does not serve the model or version.
        """

        async def attempt(budget: float) -> T:
            started = time.perf_counter()
            try:
                return await request(budget)
            except InferenceServerException as exc:
                raise _map_error(model, exc) from None
            finally:
                TRITON_LATENCY.labels(model).observe(time.perf_counter() - started)

        return await call_with_retries(
            attempt,
            self.breaker,
            timeout_s=timeout_s or self._timeout_s,
            deadline=deadline,
            max_retries=self._max_retries,
            backoff_s=self._backoff_s,
        )

    async def describe(self, model: str) -> ModelInfo:
        """Asks Triton for a model's readiness and newest version."""

        async def ask(budget: float) -> ModelInfo:
            ready = await self.client.is_model_ready(model, client_timeout=budget)
            metadata = await self.client.get_model_metadata(model, client_timeout=budget)
            config = await self.client.get_model_config(model, client_timeout=budget)
            origin = config.config.parameters.get("origin")
            versions = sorted(metadata.versions, key=int)
            return ModelInfo(
                name=model,
                version=versions[-1] if versions else "",
                ready=bool(ready),
                origin=origin.string_value if origin is not None else "",
            )

        return await self.call(model, ask)

    async def close(self) -> None:
        """Closes the gRPC channel."""
        await self.client.close()


@dataclass
class _Entry:
    rows: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, str]]
    deadline: float | None


InferFn = Callable[[np.ndarray, float | None], Awaitable[tuple[np.ndarray, str]]]


class RowBatcher:
    """Coalesces rows from concurrent callers into multi-row calls.

    A call starts when ``max_rows`` rows are waiting or ``window_s`` after the first row
    arrived, and only while fewer than ``max_inflight`` calls are running: when the model
    is the bottleneck, rows keep gathering into bigger calls instead of queueing as many
    small ones inside Triton (where they would time out). At most ``max_pending_rows``
    rows are queued or in flight; callers beyond that wait (backpressure), so memory
    stays bounded however fast answers arrive.

    Args:
        name: Model name, for metrics.
        infer: Runs one call: ``(rows, deadline) -> (outputs, model_version)``.
        window_s: Longest wait for more rows.
        max_rows: Most rows per call.
        max_pending_rows: Bound on rows queued or in flight.
        max_inflight: Most calls running at once.
    """

    def __init__(
        self, name: str, infer: InferFn, window_s: float, max_rows: int, max_pending_rows: int, max_inflight: int = 4
    ) -> None:
        self._name = name
        self._infer = infer
        self._window_s = window_s
        self._max_rows = max_rows
        self._max_pending = max(max_pending_rows, max_rows)
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._carry: _Entry | None = None
        self._pending = 0
        self._space = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_inflight)
        # Set while the worker waits, within a window, for more rows; resolved by the next arrival.
        self._arrival: asyncio.Future[None] | None = None

    async def submit(self, rows: np.ndarray, deadline: float | None = None) -> tuple[np.ndarray, str]:
        """Runs rows through the model together with whatever else is waiting.

        Args:
            rows: Input rows (first axis is the row).
            deadline: Caller's deadline on the event loop's clock.

        Returns:
            ``(outputs, model_version)`` with one output row per input row.
        """
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"batcher-{self._name}")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(rows), self._max_rows):
            chunk = rows[start : start + self._max_rows]
            await self._reserve(len(chunk))
            future: asyncio.Future[tuple[np.ndarray, str]] = loop.create_future()
            future.add_done_callback(lambda _, n=len(chunk): self._release(n))
            self._queue.put_nowait(_Entry(chunk, future, deadline))
            _wake(self._arrival)
            futures.append(future)
        results = await asyncio.gather(*futures)
        if len(results) == 1:
            return results[0]
        return np.concatenate([r for r, _ in results]), results[-1][1]

    async def _reserve(self, n: int) -> None:
        while self._pending and self._pending + n > self._max_pending:
            self._space.clear()
            await self._space.wait()
        self._pending += n

    def _release(self, n: int) -> None:
        self._pending -= n
        self._space.set()

    async def _arrived(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for rows to be queued; whether any are.

        A future woken by :meth:`submit` and one timer: ``asyncio.wait_for`` on the queue
        would start a task and raise on every window that passes without more rows, which
        is most windows once concurrent requests are merged before they get here.
        """
        if self._queue.empty() and timeout > 0:
            loop = asyncio.get_running_loop()
            arrival = self._arrival = loop.create_future()
            timer = loop.call_later(timeout, _wake, arrival)
            try:
                await arrival
            finally:
                timer.cancel()
                self._arrival = None
        return not self._queue.empty()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            if self._carry is not None:
                first, self._carry = self._carry, None
            else:
                first = await self._queue.get()
            batch, rows = [first], len(first.rows)
            closes = loop.time() + self._window_s
            while rows < self._max_rows:
                if not await self._arrived(closes - loop.time()):
                    break
                entry = self._queue.get_nowait()
                if rows + len(entry.rows) > self._max_rows:
                    self._carry = entry
                    break
                batch.append(entry)
                rows += len(entry.rows)
            # Callers that gave up (cancelled) need no result.
            live = [e for e in batch if not e.future.done()]
            if not live:
                self._slots.release()
            else:
                task = asyncio.create_task(self._dispatch(live))
                self._inflight.add(task)
                task.add_done_callback(self._call_done)
                # If every caller of this batch goes away, the Triton call is cancelled too.
                for e in live:
                    e.future.add_done_callback(lambda _, t=task, b=live: self._cancel_if_abandoned(t, b))

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    @staticmethod
    def _cancel_if_abandoned(task: asyncio.Task[None], batch: list[_Entry]) -> None:
        if not task.done() and all(e.future.cancelled() for e in batch):
            task.cancel()

    async def _dispatch(self, batch: list[_Entry]) -> None:
        matrix = batch[0].rows if len(batch) == 1 else np.concatenate([e.rows for e in batch])
        deadlines = [e.deadline for e in batch]
        # The call may run as long as its most patient caller allows.
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        BATCH_ROWS.labels(self._name).observe(len(matrix))
        try:
            outputs, version = await self._infer(matrix, deadline)
        except Exception as exc:  # every waiting caller gets the same failure
            for e in batch:
                if not e.future.done():
                    e.future.set_exception(exc)
            return
        start = 0
        for e in batch:
            n = len(e.rows)
            if not e.future.done():
                e.future.set_result((outputs[start : start + n], version))
            start += n

    async def close(self) -> None:
        """Stops the worker and cancels calls in flight."""
        for task in [self._worker, *self._inflight]:
            if task is not None:
                task.cancel()


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class _TritonModel:
    """A model on a :class:`TritonEndpoint`, with one batcher per requested version.

    Args:
        endpoint: The Triton server.
        name: Model name in the repository.
        window_s: Batching window.
        max_rows: Most rows per request (the model's ``max_batch_size`` or less).
        max_pending_rows: Backpressure bound.
        max_inflight: Most requests running at once.
        timeout_s: Longest one request may take; None for the endpoint's default.
    """

    def __init__(
        self,
        endpoint: TritonEndpoint,
        name: str,
        window_s: float = 0.001,
        max_rows: int = 512,
        max_pending_rows: int = 8192,
        max_inflight: int = 4,
        timeout_s: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self._batch = (window_s, max_rows, max_pending_rows, max_inflight)
        self._timeout_s = timeout_s
        self._batchers: dict[str, RowBatcher] = {}

    def batcher(self, version: str) -> RowBatcher:
        """The batcher for ``version`` ("" = whatever Triton serves newest)."""
        batcher = self._batchers.get(version)
        if batcher is None:
            if len(self._batchers) >= 8:
                raise Unavailable(f"too many pinned versions of {self.name} in use")

            async def infer(rows: np.ndarray, deadline: float | None) -> tuple[np.ndarray, str]:
                return await self.endpoint.call(
                    self.name, lambda budget: self._infer(rows, version, budget), deadline, self._timeout_s
                )

            batcher = self._batchers[version] = RowBatcher(self.name, infer, *self._batch)
        return batcher

    async def _infer(self, rows: np.ndarray, version: str, budget: float) -> tuple[np.ndarray, str]:
        raise NotImplementedError

    async def _request(
        self, inputs: list[InferInput], outputs: Sequence[str], rows: int, version: str, budget: float
    ) -> tuple[np.ndarray, str]:
        """One inference; the outputs come back side by side as the columns of one array."""
        result = await self.endpoint.client.infer(
            self.name,
            inputs,
            model_version=version,
            outputs=[InferRequestedOutput(name) for name in outputs],
            # The same budget as the server's queue timeout (µs): a request that waits past it
            # is dropped there instead of run for a caller who has given up (config.pbtxt).
            timeout=max(1, int(budget * 1e6)),
            client_timeout=budget,
        )
        arrays = [result.as_numpy(name) for name in outputs]
        for name, array in zip(outputs, arrays, strict=True):
            if array is None or array.shape[0] != rows:
                TRITON_ERRORS.labels(self.name, "bad_output").inc()
                raise Unavailable(f"Triton model {self.name} returned no usable {name} output")
        joined = arrays[0] if len(arrays) == 1 else np.hstack([a.reshape(rows, -1) for a in arrays])  # type: ignore[union-attr]
        return joined, result.get_response().model_version

    async def describe(self) -> ModelInfo:
        """Readiness and newest version of this model."""
        return await self.endpoint.describe(self.name)

    async def close(self) -> None:
        """Stops the batchers."""
        for batcher in self._batchers.values():
            await batcher.close()


class AnswerScorerModel(_TritonModel):
    """``answer_scorer``: feature rows (plus each row's text similarity) to scores in 0..1.

    Args:
        endpoint: The Triton server.
        name: Model name in the repository.
        feature_count: Width of a feature row.
        window_s: Batching window.
        max_rows: Most rows per request (the model's ``max_batch_size`` or less).
        max_pending_rows: Backpressure bound.
        max_inflight: Most requests running at once.
    """

    def __init__(
        self,
        endpoint: TritonEndpoint,
        name: str = "answer_scorer",
        feature_count: int = 10,
        window_s: float = 0.001,
        max_rows: int = 512,
        max_pending_rows: int = 8192,
        max_inflight: int = 4,
    ) -> None:
        super().__init__(endpoint, name, window_s, max_rows, max_pending_rows, max_inflight, None)
        self.feature_count = feature_count

    async def score(
        self, features: np.ndarray, similarity: np.ndarray, deadline: float | None = None, version: str = ""
    ) -> tuple[np.ndarray, str]:
        """Scores rows, batched with whatever else is waiting.

        Args:
            features: ``float32`` ``(n, feature_count)``.
            similarity: ``(n,)`` cosine similarity of each free-text answer to its
                references, 0 for other rows.
            deadline: Caller's deadline on the event loop's clock.
            version: Model version to use; "" for the newest.

        Returns:
            ``(scores, model_version)``: ``(n,)`` ``float32`` scores and the version that ran.
        """
        rows = np.empty((len(features), self.feature_count + 1), dtype=np.float32)
        rows[:, :-1] = features
        rows[:, -1] = similarity
        scores, used = await self.batcher(version).submit(rows, deadline)
        return scores.reshape(-1), used

    async def _infer(self, rows: np.ndarray, version: str, budget: float) -> tuple[np.ndarray, str]:
        features = InferInput("FEATURES", [len(rows), self.feature_count], "FP32")
        features.set_data_from_numpy(np.ascontiguousarray(rows[:, :-1]))
        similarity = InferInput("SIMILARITY", [len(rows), 1], "FP32")
        similarity.set_data_from_numpy(np.ascontiguousarray(rows[:, -1:]))
        return await self._request([features, similarity], ["SCORE"], len(rows), version, budget)


class SentenceEncoderModel(_TritonModel):
    """``sentence_encoder``: texts to unit-length all-MiniLM-L6-v2 embeddings.

    Arguments as :class:`_TritonModel`; the defaults differ: at most 64 texts per request (the
    model's ``max_batch_size``), two requests in flight (the model has one CPU instance, so a
    second keeps it busy while a reply travels back), and 10 s per request (64 long texts take
    seconds on a CPU).
    """

    def __init__(
        self,
        endpoint: TritonEndpoint,
        name: str = "sentence_encoder",
        window_s: float = 0.002,
        max_rows: int = 64,
        max_pending_rows: int = 4096,
        max_inflight: int = 2,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(endpoint, name, window_s, max_rows, max_pending_rows, max_inflight, timeout_s)

    async def embed(self, texts: Sequence[str], deadline: float | None = None) -> tuple[np.ndarray, str]:
        """Embeds texts, batched with whatever else is waiting.

        Returns:
            ``(embeddings, model_version)``: ``float32`` ``(n, 384)`` unit rows and the version that ran.
        """
        rows = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        return await self.batcher("").submit(rows, deadline)

    async def _infer(self, rows: np.ndarray, version: str, budget: float) -> tuple[np.ndarray, str]:
        text = InferInput("TEXT", [len(rows), 1], "BYTES")
        text.set_data_from_numpy(rows.reshape(-1, 1))
        return await self._request([text], ["EMBEDDING"], len(rows), version, budget)


class TextFeaturesModel(_TritonModel):
    """``text_features``: a free-text answer and its question to the trained model's feature row.

    Constructed as :class:`_TritonModel`; it runs MiniLM, so give it the encoder's batching
    and deadline (``scorer.__main__.build_service`` does).
    """

    async def features(
        self, answers: Sequence[str], item_json: str, deadline: float | None = None
    ) -> tuple[np.ndarray, str]:
        """Feature rows of answers to one question, batched with whatever else is waiting.

        Args:
            answers: The answers.
            item_json: The question as the model's ``ITEM`` JSON.
            deadline: Caller's deadline on the event loop's clock.

        Returns:
            ``(features, model_version)``: ``float32`` ``(n, width)`` rows and the version that ran.
        """
        item = item_json.encode("utf-8")
        rows = np.array([[a.encode("utf-8"), item] for a in answers], dtype=np.object_).reshape(len(answers), 2)
        return await self.batcher("").submit(rows, deadline)

    async def _infer(self, rows: np.ndarray, version: str, budget: float) -> tuple[np.ndarray, str]:
        answer = InferInput("ANSWER", [len(rows), 1], "BYTES")
        answer.set_data_from_numpy(np.ascontiguousarray(rows[:, :1]))
        item = InferInput("ITEM", [len(rows), 1], "BYTES")
        item.set_data_from_numpy(np.ascontiguousarray(rows[:, 1:]))
        return await self._request([answer, item], ["FEATURES"], len(rows), version, budget)


class TextScorerModel(_TritonModel):
    """``answer_scorer_text``: feature rows to a score and its calibrated confidence.

    Constructed as :class:`_TritonModel`.
    """

    async def score(
        self, features: np.ndarray, deadline: float | None = None, version: str = ""
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Scores feature rows.

        Returns:
            ``(scores, confidences, model_version)``, each array ``(n,)`` ``float32``.
        """
        out, used = await self.batcher(version).submit(np.asarray(features, dtype=np.float32), deadline)
        return out[:, 0], out[:, 1], used

    async def _infer(self, rows: np.ndarray, version: str, budget: float) -> tuple[np.ndarray, str]:
        features = InferInput("FEATURES", list(rows.shape), "FP32")
        features.set_data_from_numpy(np.ascontiguousarray(rows))
        return await self._request([features], ["SCORE", "CONFIDENCE"], len(rows), version, budget)
