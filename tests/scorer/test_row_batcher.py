"""The row batcher in front of each Triton model, with a fake model call."""

from __future__ import annotations

import asyncio

import numpy as np

from scorer.triton import RowBatcher


class FakeModel:
    """Returns each row's first value; records the size of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, rows: np.ndarray, deadline: float | None) -> tuple[np.ndarray, str]:
        self.calls.append(len(rows))
        return rows[:, 0].copy(), "1"


def rows(*values: float) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.float32)


async def test_rows_arriving_within_the_window_share_one_call() -> None:
    model = FakeModel()
    batcher = RowBatcher("fake", model, window_s=0.05, max_rows=100, max_pending_rows=1000)

    async def later(delay: float, *values: float) -> tuple[np.ndarray, str]:
        await asyncio.sleep(delay)
        return await batcher.submit(rows(*values))

    results = await asyncio.gather(later(0, 1, 2), later(0.01, 3), later(0.02, 4, 5))
    assert model.calls == [5]
    assert [list(r) for r, _ in results] == [[1, 2], [3], [4, 5]]
    await batcher.close()


async def test_a_full_batch_starts_before_its_window_ends() -> None:
    model = FakeModel()
    batcher = RowBatcher("fake", model, window_s=10.0, max_rows=3, max_pending_rows=1000)
    first = asyncio.create_task(batcher.submit(rows(1, 2)))
    await asyncio.sleep(0.01)
    # Two rows would overflow the call: the first waits for one more row, never the 10 s window.
    second, third = await asyncio.wait_for(asyncio.gather(batcher.submit(rows(3)), first), 1.0)
    assert model.calls == [3] and list(second[0]) == [3] and list(third[0]) == [1, 2]
    # 4, 5 wait for a third row; 6, 7 would overflow the call, so 4, 5 go now and 6, 7 are carried.
    overflow = asyncio.create_task(batcher.submit(rows(4, 5)))
    carried = asyncio.create_task(batcher.submit(rows(6, 7)))
    assert list((await asyncio.wait_for(overflow, 1.0))[0]) == [4, 5]
    await asyncio.sleep(0.05)
    assert not carried.done()
    assert list((await asyncio.wait_for(batcher.submit(rows(8)), 1.0))[0]) == [8]
    assert list((await carried)[0]) == [6, 7]
    assert model.calls == [3, 2, 3]
    await batcher.close()
