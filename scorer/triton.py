"""The answer-scoring model on Triton, called over KServe v2 gRPC with coalesced batches.

One Triton request per answer caps a Python client near 2,500 requests/s, so concurrent
answers are gathered for up to ``batch_window_ms`` and sent as one multi-row request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from common.errors import DeadlineExceeded, Unavailable

log = logging.getLogger(__name__)

INPUT_NAME = "FEATURES"
OUTPUT_NAME = "SCORE"

BATCH_ROWS = Histogram(
    "xli_scorer_triton_batch_rows",
    "Rows per Triton request",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
TRITON_ERRORS = Counter("xli_scorer_triton_errors_total", "Failed Triton requests", ["status"])


@dataclass(frozen=True)
class ModelInfo:
    """What Triton says about the model it serves."""

    name: str
    version: str
    ready: bool


def _triton_error(exc: InferenceServerException) -> Exception:
    status = str(exc.status() or "")
    TRITON_ERRORS.labels(status or "unknown").inc()
    if "DEADLINE_EXCEEDED" in status:
        return DeadlineExceeded(f"Triton did not answer in time: {exc.message()}")
    return Unavailable(f"Triton inference failed ({status or 'no status'}): {exc.message()}")


class TritonScoringModel:
    """Scores feature rows with the answer-scoring model served by Triton.

    Args:
        url: ``host:port`` of Triton's gRPC endpoint.
        model_name: Model to call.
        feature_count: Width of a feature row.
        deadline_s: Deadline of each Triton request.
        batch_window_s: How long to wait for more rows before sending a batch.
        max_batch_rows: Most rows in one request.
        max_pending_rows: Queue bound; callers wait beyond it.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        feature_count: int,
        deadline_s: float = 2.0,
        batch_window_s: float = 0.001,
        max_batch_rows: int = 512,
        max_pending_rows: int = 8192,
    ) -> None:
        self._client = InferenceServerClient(url=url)
        self._model_name = model_name
        self._feature_count = feature_count
        self._deadline_s = deadline_s
        self._batch_window_s = batch_window_s
        self._max_batch_rows = max_batch_rows
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue(
            maxsize=max_pending_rows
        )
        self._worker: asyncio.Task[None] | None = None
        self._version = ""

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def model_version(self) -> str:
        """The version Triton reported at the last :meth:`describe` (empty before)."""
        return self._version

    async def describe(self) -> ModelInfo:
        """Asks Triton for the model's readiness and newest version.

        Raises:
            Unavailable: Triton cannot be reached.
        """
        try:
            ready = await self._client.is_model_ready(self._model_name, client_timeout=self._deadline_s)
            metadata = await self._client.get_model_metadata(self._model_name, client_timeout=self._deadline_s)
        except InferenceServerException as exc:
            raise _triton_error(exc) from None
        versions = sorted(metadata.versions, key=int)
        self._version = versions[-1] if versions else ""
        return ModelInfo(name=self._model_name, version=self._version, ready=bool(ready))

    async def score(self, rows: np.ndarray) -> np.ndarray:
        """Scores feature rows, batched with whatever else is waiting.

        Args:
            rows: ``float32`` array of shape ``(n, feature_count)``.

        Returns:
            ``float32`` array of shape ``(n,)`` with one score in 0..1 per row.

        Raises:
            Unavailable: Triton failed or cannot be reached.
            DeadlineExceeded: Triton did not answer within the deadline.
        """
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="triton-batcher")
        loop = asyncio.get_running_loop()
        futures = []
        for row in rows:
            future: asyncio.Future[np.ndarray] = loop.create_future()
            await self._queue.put((row, future))
            futures.append(future)
        results = await asyncio.gather(*futures)
        return np.asarray(results, dtype=np.float32).reshape(-1)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = asyncio.get_running_loop().time() + self._batch_window_s
            while len(batch) < self._max_batch_rows:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    while len(batch) < self._max_batch_rows and not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            # Callers that gave up (cancelled) need no result.
            live = [(row, fut) for row, fut in batch if not fut.done()]
            if live:
                asyncio.create_task(self._infer_batch(live))

    async def _infer_batch(self, batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        matrix = np.stack([row for row, _ in batch]).astype(np.float32, copy=False)
        BATCH_ROWS.observe(len(batch))
        try:
            scores = await self._infer(matrix)
        except Exception as exc:  # every waiting caller gets the same failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), value in zip(batch, scores, strict=True):
            if not future.done():
                future.set_result(value)

    async def _infer(self, matrix: np.ndarray) -> np.ndarray:
        infer_input = InferInput(INPUT_NAME, list(matrix.shape), "FP32")
        infer_input.set_data_from_numpy(matrix)
        try:
            result = await self._client.infer(
                self._model_name,
                [infer_input],
                outputs=[InferRequestedOutput(OUTPUT_NAME)],
                client_timeout=self._deadline_s,
            )
        except InferenceServerException as exc:
            raise _triton_error(exc) from None
        output = result.as_numpy(OUTPUT_NAME)
        if output is None or output.shape[0] != matrix.shape[0]:
            TRITON_ERRORS.labels("bad_output").inc()
            raise Unavailable(f"Triton model {self._model_name} returned no usable {OUTPUT_NAME} output")
        return output.reshape(-1)

    async def close(self) -> None:
        """Stops the batcher and closes the gRPC channel."""
        if self._worker is not None:
            self._worker.cancel()
        await self._client.close()
