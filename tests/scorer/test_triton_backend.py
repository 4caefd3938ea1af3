"""Helpers of the Triton Python-backend models, outside Triton."""

from __future__ import annotations

import json
import subprocess
import sys


def test_single_threaded_blas_holds_numpy_to_one_thread() -> None:
    # In a process of its own: the limit is for good, as it is in a Triton stub.
    script = (
        "import json, numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from scorer.triton_backend import single_threaded_blas\n"
        "before = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "single_threaded_blas()\n"
        "after = [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "print(json.dumps([before, after]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout)
    assert before and after == [1] * len(before)
